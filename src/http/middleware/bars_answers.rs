//! Every answer on BaRS's `$process-message` is a BaRS receiver answer.
//! The handler shapes its own ([`crate::bars::answer`]) and marks them
//! [`Shaped`]; an error answered by a layer shared with the rest of the API
//! (admission control's `408` and `503`, the rate limit's `429`,
//! authentication's `401`, a body too large) is a plain FHIR
//! OperationOutcome, which this layer reshapes with the `REC_*` code
//! (`REC_TIMEOUT`, `REC_SERVICE_UNAVAILABLE`, `REC_TOO_MANY_REQUESTS`, …),
//! keeping its headers (`Retry-After`, `WWW-Authenticate`) and giving it the
//! code's status. The
//! request-id layer, outside this one, echoes `X-Request-Id` and
//! `X-Correlation-Id` on all of them.

use axum::{
    body::{Body, to_bytes},
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::Response,
};

use crate::{
    bars::answer,
    http::{AppState, FHIR_JSON},
};

/// The path of the BaRS endpoint (after the trailing-slash rewrite).
pub const PROCESS_MESSAGE: &str = "/fhir/$process-message";

/// A response extension: this answer is already a BaRS receiver answer.
#[derive(Debug, Clone, Copy)]
pub struct Shaped;

/// How much of a shared layer's error body is read to reshape it (they
/// are a few hundred bytes).
const BODY_LIMIT: usize = 64 * 1024;

/// Middleware: reshape `$process-message`'s error answers that a shared
/// layer made.
pub async fn shape(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if request.uri().path() != PROCESS_MESSAGE {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Shaped>().is_some()
    {
        return response;
    }
    let receiver_ods = app
        .bars
        .receiver()
        .map_or("Signpost".to_owned(), |r| r.receiver_ods.clone());
    let (mut parts, body) = response.into_parts();
    let outcome = to_bytes(body, BODY_LIMIT)
        .await
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(serde_json::Value::Null);
    let reshaped = answer::reshape(status.as_u16(), &outcome, &receiver_ods).to_string();
    // The status the catalogue gives the code (`413` is answered `422`, as
    // the handler answers it).
    if let Ok(rec_status) = StatusCode::from_u16(answer::Rec::for_status(status.as_u16()).status())
    {
        parts.status = rec_status;
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(FHIR_JSON),
    );
    parts.extensions.insert(Shaped);
    Response::from_parts(parts, Body::from(reshaped))
}
