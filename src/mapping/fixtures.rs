//! The fixtures that ship beside each mapping, in
//! `mappings/tests/<provider>/`, run by `signpost mappings test`, by the
//! test suite and before every hot reload:
//!
//! - `NAME.input.json` (a referral in canonical form, id `REFERRAL-ID`) with
//!   `NAME.expected.json`: the exact payload the provider must receive;
//! - `NAME.input.json` with `NAME.refused.json` (`{"field": …}`): the
//!   referral must be refused, naming that provider field;
//! - `status/NAME.json` (`{"callback": …, "expected_task_change": …}`): the
//!   Task change a status callback must produce (`null` = not set).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::Mapping;
use crate::outcome::Issue;

/// The outcome of one mapping's fixtures.
#[derive(Debug, Default)]
pub struct FixtureReport {
    pub provider: String,
    pub passed: usize,
    pub failures: Vec<FixtureFailure>,
}

/// A fixture that did not produce what it expects.
#[derive(Debug)]
pub struct FixtureFailure {
    pub fixture: PathBuf,
    /// What differed, one line per difference.
    pub message: String,
}

impl std::fmt::Display for FixtureFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:\n{}", self.fixture.display(), self.message)
    }
}

/// Run every fixture of `mapping` found in `tests_dir/<provider>/`.
pub fn run(mapping: &Mapping, tests_dir: &Path) -> FixtureReport {
    let dir = tests_dir.join(&mapping.provider);
    let mut report = FixtureReport {
        provider: mapping.provider.clone(),
        ..FixtureReport::default()
    };
    let mut record = |fixture: PathBuf, outcome: Result<(), String>| match outcome {
        Ok(()) => report.passed += 1,
        Err(message) => report.failures.push(FixtureFailure { fixture, message }),
    };
    for input in files(&dir, ".input.json") {
        let stem = input
            .to_string_lossy()
            .trim_end_matches(".input.json")
            .to_owned();
        let expected = PathBuf::from(format!("{stem}.expected.json"));
        let refused = PathBuf::from(format!("{stem}.refused.json"));
        let outcome = read(&input).and_then(|referral| {
            if expected.exists() {
                let expected = read(&expected)?;
                match mapping.translate(&referral) {
                    Ok(payload) => compare(&expected, &payload),
                    Err(issues) => Err(format!(
                        "refused, but a payload was expected:\n{}",
                        diagnostics(&issues)
                    )),
                }
            } else if refused.exists() {
                let field = read(&refused)?["field"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                match mapping.translate(&referral) {
                    Ok(payload) => Err(format!(
                        "expected a refusal naming `{field}`, got a payload:\n{payload:#}"
                    )),
                    Err(issues)
                        if issues
                            .iter()
                            .any(|i| i.diagnostics.contains(&format!("`{field}`"))) =>
                    {
                        Ok(())
                    }
                    Err(issues) => Err(format!(
                        "refused, but no issue names `{field}`:\n{}",
                        diagnostics(&issues)
                    )),
                }
            } else {
                Err("no .expected.json or .refused.json beside it".into())
            }
        });
        record(input, outcome);
    }
    for fixture in files(&dir.join("status"), ".json") {
        let outcome = read(&fixture).and_then(|case| {
            let expected = without_nulls(&case["expected_task_change"]);
            match mapping.status_change(&case["callback"]) {
                Ok(change) if change.referral_id != "REFERRAL-ID" => Err(format!(
                    "inbound.referral gave {:?}, expected \"REFERRAL-ID\"",
                    change.referral_id
                )),
                Ok(change) => compare(&expected, &change.change),
                Err(issues) => Err(diagnostics(&issues)),
            }
        });
        record(fixture, outcome);
    }
    report
}

/// The issues' diagnostics, one indented line each.
fn diagnostics(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("  {}", i.diagnostics))
        .collect::<Vec<_>>()
        .join("\n")
}

fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

fn read(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn without_nulls(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), without_nulls(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn compare(expected: &Value, actual: &Value) -> Result<(), String> {
    let mut differences = Vec::new();
    diff("", expected, actual, &mut differences);
    if differences.is_empty() {
        Ok(())
    } else {
        Err(differences.join("\n"))
    }
}

/// One line per difference: `- path: expected …` / `+ path: got …`.
pub fn diff(path: &str, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    let at = if path.is_empty() { "(root)" } else { path };
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (key, ev) in e {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match a.get(key) {
                    Some(av) => diff(&child, ev, av, out),
                    None => out.push(format!("  - {child}: expected {ev}, missing")),
                }
            }
            for (key, av) in a {
                if !e.contains_key(key) {
                    let child = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    out.push(format!("  + {child}: not expected, got {av}"));
                }
            }
        }
        (Value::Array(e), Value::Array(a)) if e.len() == a.len() => {
            for (i, (ev, av)) in e.iter().zip(a).enumerate() {
                diff(&format!("{path}[{i}]"), ev, av, out);
            }
        }
        (e, a) if e == a => {}
        (e, a) => out.push(format!("  ~ {at}: expected {e}, got {a}")),
    }
}
