//! Request and correlation ids: accepted from the client when sane,
//! generated otherwise, carried in the request's tracing span (so every
//! log line of the request has them) and echoed on the answer.

use std::time::Instant;

use axum::{
    body::Body,
    extract::{MatchedPath, Request},
    http::{HeaderMap, HeaderName, HeaderValue},
    middleware::Next,
    response::Response,
};
use tracing::Instrument;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// The request id (a request extension, for the audit trail).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The client's id if it is sane (1–200 visible ASCII characters), else a
/// new one. Ids go into logs, so nothing else is accepted.
fn id_from(headers: &HeaderMap, name: &HeaderName) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| (1..=200).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Accept or generate `X-Request-Id` and `X-Correlation-Id`, run the request
/// in a span carrying them (so every log line of the request has them), echo
/// both on the response, and log one line per request: route template,
/// status and latency, never the URL's query or any body.
pub async fn request_ids(mut request: Request<Body>, next: Next) -> Response {
    let request_id = id_from(request.headers(), &X_REQUEST_ID);
    request
        .extensions_mut()
        .insert(RequestId(request_id.clone()));
    let correlation_id = id_from(request.headers(), &X_CORRELATION_ID);
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        route = %route,
        request_id = %request_id,
        correlation_id = %correlation_id,
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (X_REQUEST_ID, &request_id),
        (X_CORRELATION_ID, &correlation_id),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    response
}
