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
