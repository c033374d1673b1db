//! A submitted document from raw bytes: the JSON limits every FHIR body is
//! read under (nesting depth, longest array, an object at the top). The
//! HTTP boundary, the `validate` tool and the intake fuzz target (`fuzz/`)
//! all read through [`parse`], and then make intake's checks
//! (`referrals::checks`), so the tool and the fuzzer reach exactly what a
//! request body reaches.

use serde_json::Value;

/// The server's default `max_json_depth`.
pub const DEFAULT_MAX_DEPTH: usize = 64;
/// The server's default `limits.max_array_length`.
pub const DEFAULT_MAX_ARRAY: usize = 1000;

/// Why a body is not a JSON object within the limits. The texts never quote
/// the document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("JSON nested deeper than {0} levels")]
    TooDeep(usize),
    /// Where the JSON stops being JSON (see [`place`]).
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("the body must be a JSON object (a FHIR resource)")]
    NotAnObject,
    #[error("a JSON array is longer than {0} elements")]
    ArrayTooLong(usize),
}

/// Parse `bytes` as a JSON object nested at most `max_depth` deep with no
/// array longer than `max_array`.
pub fn parse(bytes: &[u8], max_depth: usize, max_array: usize) -> Result<Value, DocumentError> {
    if nesting_depth(bytes) > max_depth {
        return Err(DocumentError::TooDeep(max_depth));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| DocumentError::Malformed(place(&e)))?;
    if !value.is_object() {
        return Err(DocumentError::NotAnObject);
    }
    if longest_array(&value) > max_array {
        return Err(DocumentError::ArrayTooLong(max_array));
    }
    Ok(value)
}

/// What kind of JSON error and where, without serde_json's message: that
/// can quote the document (`invalid type: string "…"`, `unknown variant`).
pub fn place(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Eof => "the text ends early",
        serde_json::error::Category::Syntax => "a syntax error",
        serde_json::error::Category::Data => "a value of the wrong type",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{what} at line {}, column {}", e.line(), e.column())
}

/// The length of the longest array anywhere in `value`.
pub fn longest_array(value: &Value) -> usize {
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
