//! Request bodies, read within limits: the FHIR JSON body extractor
//! (media type, size and nesting limits, parse errors as
//! OperationOutcome) and a size-limited body of any media type.

use axum::{
    body::Body,
    extract::{FromRequest, Request},
    http::{HeaderMap, header},
};
use serde_json::Value;

use super::{AppState, FhirError};
use crate::outcome::{Issue, IssueCode};

/// A FHIR JSON request body, checked and parsed.
pub struct FhirJson(pub Value);

impl FromRequest<AppState> for FhirJson {
    type Rejection = FhirError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, FhirError> {
        if !is_fhir_json(request.headers()) {
            return Err(FhirError::UnsupportedMediaType);
        }
        let LimitedBody(bytes) = LimitedBody::from_request(request, state).await?;
        let value = crate::validation::document::parse(
            &bytes,
            state.config.max_json_depth,
            state.config.limits.max_array_length,
        )
        .map_err(|e| bad_request(e.to_string()))?;
        Ok(FhirJson(value))
    }
}

/// A request body of any media type, within `max_body_bytes`.
pub struct LimitedBody(pub Vec<u8>);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = FhirError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, FhirError> {
        let (parts, body) = request.into_parts();
        let limit = state.config.max_body_bytes;
        Ok(LimitedBody(
            read_limited(&parts.headers, body, limit).await?,
        ))
    }
}

/// The body, or `413` once it passes `limit` (at once when the declared
/// length is too large even to drain).
pub async fn read_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Vec<u8>, FhirError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > DRAIN_LIMIT) {
        // Too large even to drain politely.
        return Err(FhirError::PayloadTooLarge { limit });
    }
    read_body(body, limit).await
}

/// Oversized bodies up to this size are read to the end (and dropped) before
/// the `413` is sent: a server that answers and closes while the client is
/// still sending makes the client see a reset instead of the answer.
const DRAIN_LIMIT: usize = 16 * 1024 * 1024;

/// The body, or `413` once it passes `limit`.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>, FhirError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| bad_request("the request body could not be read".into()))?;
        total += chunk.len();
        if total <= limit {
            bytes.extend_from_slice(&chunk);
        } else if total > DRAIN_LIMIT {
            break;
        }
    }
    if total > limit {
        return Err(FhirError::PayloadTooLarge { limit });
    }
    Ok(bytes)
}

pub fn bad_request(text: String) -> FhirError {
    FhirError::BadRequest(vec![Issue::error(IssueCode::Structure, text)])
}

/// A PATCH must say it sends a JSON Patch (`application/json-patch+json`,
/// any parameters): `415` otherwise.
pub fn require_json_patch(headers: &HeaderMap) -> Result<(), FhirError> {
    let essence = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if essence.eq_ignore_ascii_case("application/json-patch+json") {
        Ok(())
    } else {
        Err(FhirError::UnsupportedMediaType)
    }
}

/// A JSON Patch body, read as `T`; `400` naming where it stops being one
/// (never quoting it).
pub fn json_patch<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, FhirError> {
    serde_json::from_slice(body).map_err(|e| {
        bad_request(format!(
            "not a JSON Patch document ({})",
            crate::validation::document::place(&e)
        ))
    })
}

/// `application/fhir+json` or `application/json`, with any parameters.
fn is_fhir_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/fhir+json")
        || essence.eq_ignore_ascii_case("application/json")
}
