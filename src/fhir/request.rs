//! Request plumbing shared by every FHIR endpoint: the JSON body extractor
//! (media type, size and nesting limits, parse errors as OperationOutcome)
//! and the request/correlation id middleware.

use std::time::Instant;

use axum::{
    body::Body,
    extract::{FromRequest, MatchedPath, Request},
    http::{HeaderMap, HeaderName, HeaderValue, header},
    middleware::Next,
    response::Response,
};
use serde_json::Value;
use tracing::Instrument;

use super::{AppState, FhirError};
use crate::outcome::{Issue, IssueCode};

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");

/// A FHIR JSON request body, checked and parsed.
pub struct FhirJson(pub Value);

impl FromRequest<AppState> for FhirJson {
    type Rejection = FhirError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, FhirError> {
        if !is_fhir_json(request.headers()) {
            return Err(FhirError::UnsupportedMediaType);
        }
        let LimitedBody(bytes) = LimitedBody::from_request(request, state).await?;
        let max_depth = state.config.max_json_depth;
        if nesting_depth(&bytes) > max_depth {
            return Err(bad_request(format!(
                "JSON nested deeper than {max_depth} levels"
            )));
        }
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| bad_request(format!("malformed JSON: {e}")))?;
        if !value.is_object() {
            return Err(bad_request(
                "the body must be a JSON object (a FHIR resource)".into(),
            ));
        }
        let max_array = state.config.limits.max_array_length;
        if longest_array(&value) > max_array {
            return Err(bad_request(format!(
                "a JSON array is longer than {max_array} elements"
            )));
        }
        Ok(FhirJson(value))
    }
}

/// A request body of any media type, within `max_body_bytes`.
pub struct LimitedBody(pub Vec<u8>);

impl FromRequest<AppState> for LimitedBody {
    type Rejection = FhirError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, FhirError> {
        let limit = state.config.max_body_bytes;
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > DRAIN_LIMIT) {
            // Too large even to drain politely.
            return Err(FhirError::PayloadTooLarge { limit });
        }
        Ok(LimitedBody(read_body(request.into_body(), limit).await?))
    }
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

/// The length of the longest array anywhere in `value`.
fn longest_array(value: &Value) -> usize {
    match value {
        Value::Array(items) => items
            .iter()
            .map(longest_array)
            .max()
            .unwrap_or(0)
            .max(items.len()),
        Value::Object(fields) => fields.values().map(longest_array).max().unwrap_or(0),
        _ => 0,
    }
}

/// The deepest nesting of arrays and objects in a JSON text, found without
/// parsing it (so that a hostile document cannot exhaust the parser's stack).
/// Brackets inside strings are skipped.
pub fn nesting_depth(json: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in json {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

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
        .insert(crate::audit::RequestId(request_id.clone()));
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

#[cfg(test)]
mod tests {
    use super::nesting_depth;

    #[test]
    fn nesting_depth_counts_brackets_outside_strings() {
        assert_eq!(nesting_depth(b"{}"), 1);
        assert_eq!(nesting_depth(br#"{"a":[{"b":"[[[[{{"}]}"#), 3);
        assert_eq!(nesting_depth(br#"{"a":"\"[[["}"#), 1);
        assert_eq!(nesting_depth(b"1"), 0);
    }
}
