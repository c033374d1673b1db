//! What each fuzz target does with its input: arbitrary bytes that must
//! neither panic nor hang, plus the invariants asserted below. Shared by the
//! libFuzzer targets (`fuzz/fuzz_targets/`) and the ordinary test suite
//! (`tests/fuzz_corpus.rs`), which replays the committed corpus and a
//! bounded number of mutations of it on every `cargo test`.
//!
//! Two-part inputs (expression and resource, template and resource) are
//! split at the first newline.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::Value;
use signpost::{
    config::Config,
    fhirpath::{Env, Expr},
    mapping::{MappingSet, fpml::Template},
    referrals::checks,
    validation::{Validator, document},
    webhooks::{Secret, SigningKeys},
};

/// The server's default JSON limits (`max_json_depth`, `max_array_length`).
const MAX_DEPTH: usize = document::DEFAULT_MAX_DEPTH;
const MAX_ARRAY: usize = document::DEFAULT_MAX_ARRAY;

/// `(first line, rest)`, or `None` when the input is not UTF-8.
fn two_parts(data: &[u8]) -> Option<(&str, &str)> {
    let text = std::str::from_utf8(data).ok()?;
    Some(text.split_once('\n').unwrap_or((text, "")))
}

/// A JSON value within the server's limits, or `Null`.
fn resource(text: &str) -> Value {
    document::parse(text.as_bytes(), MAX_DEPTH, MAX_ARRAY).unwrap_or(Value::Null)
}

/// FHIRPath: parse the first line; evaluate it against the rest as JSON.
pub fn fhirpath(data: &[u8]) {
    let Some((expression, rest)) = two_parts(data) else {
        return;
    };
    let Ok(expr) = Expr::parse(expression) else {
        return;
    };
    let resource = resource(rest);
    let env = Env::new().with_resource(&resource);
    let _ = expr.evaluate(&resource, &env);
}

/// FPML: compile the first line as a JSON template; render it against the
/// rest as JSON.
pub fn fpml(data: &[u8]) {
    let Some((template, rest)) = two_parts(data) else {
        return;
    };
    let Ok(template) = document::parse(template.as_bytes(), MAX_DEPTH, MAX_ARRAY) else {
        return;
    };
    let Ok(template) = Template::compile(&template, &[]) else {
        return;
    };
    let resource = resource(rest);
    let env = Env::new().with_resource(&resource);
    let _ = template.render(&resource, &env);
}

/// Intake: the request body's bytes through the JSON limits and intake's
/// checks (validation, canonical form, routing, the provider's mapping
/// with the repository's mapping set), as the pre-flight `$translate` and
/// `signpost validate` make them.
pub fn intake(data: &[u8]) {
    let Ok(document) = document::parse(data, MAX_DEPTH, MAX_ARRAY) else {
        return;
    };
    let _ = checks::dry_run(validator(), mapping_set(), None, None, document, None);
}

fn validator() -> &'static Validator {
    static VALIDATOR: OnceLock<Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| Validator::load(&repository_dir("schemas")).expect("the schemas load"))
}

fn mapping_set() -> &'static MappingSet {
    static SET: OnceLock<MappingSet> = OnceLock::new();
    SET.get_or_init(|| {
        MappingSet::load(&repository_dir("mappings"), &repository_dir("schemas"))
            .expect("the mappings load")
    })
}

/// A folder of the repository (`schemas/`, `mappings/`), from the main
/// crate or from `fuzz/`.
fn repository_dir(name: &str) -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    [here.join(name), here.join("..").join(name)]
        .into_iter()
        .find(|p| p.is_dir())
        .expect("the folder beside or above the crate")
}

/// Standard Webhooks verification: lines are `webhook-id`,
/// `webhook-timestamp`, `webhook-signature` (each may be absent or any
/// bytes), then the body. A forged request must never verify, and a request
/// signed with the key must.
pub fn webhook_verify(data: &[u8]) {
    let keys = SigningKeys::new(Secret::parse(FUZZ_SECRET).expect("a valid secret"));
    let now = DateTime::<Utc>::from_timestamp(1_780_000_000, 0).expect("a time");
    let mut parts = data.splitn(4, |b| *b == b'\n');
    let (id, timestamp, signature) = (parts.next(), parts.next(), parts.next());
    let body = parts.next().unwrap_or_default();
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("webhook-id", id),
        ("webhook-timestamp", timestamp),
        ("webhook-signature", signature),
    ] {
        if let Some(value) = value.and_then(|v| HeaderValue::from_bytes(v).ok()) {
            headers.insert(name, value);
        }
    }
    // Without the key no input may verify: the MAC is over the body, so a
    // fuzzed signature matching is a forgery (or a broken comparison).
    assert!(
        keys.verify(&headers, body, now).is_err(),
        "a request verified without being signed"
    );
    // The same id and body, signed now, must verify (when the id is a
    // header value the signer could send as it is).
    let Some(id) = id
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_graphic()))
    else {
        return;
    };
    let ts = now.timestamp();
    let signed = keys.sign(id, ts, body, now);
    let mut headers = HeaderMap::new();
    headers.insert(
        "webhook-id",
        HeaderValue::from_str(id).expect("visible ASCII"),
    );
    headers.insert("webhook-timestamp", HeaderValue::from(ts));
    headers.insert(
        "webhook-signature",
        HeaderValue::from_str(&signed).expect("a signature header"),
    );
    assert_eq!(
        keys.verify(&headers, body, now).ok().as_deref(),
        Some(id),
        "a signed request did not verify"
    );
}

/// A fixed test key (32 bytes, base64), not used anywhere else.
const FUZZ_SECRET: &str = "whsec_ZnV6ei1zZWNyZXQtZm9yLXNpZ25wb3N0LWZ1enotdGFyZ2V0cw==";

/// The configuration parser and checker, on any text.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::from_toml(text, Path::new("fuzz.toml"), &HashMap::new());
}
