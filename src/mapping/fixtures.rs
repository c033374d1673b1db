//! The fixtures that ship beside each mapping, in
//! `mappings/tests/<provider>/`, run by `signpost mappings test`, by the
//! test suite and before every hot reload:
//!
//! - `NAME.input.json` (a referral in canonical form, id `REFERRAL-ID`) with
//!   `NAME.expected.json`: the exact payload the provider must receive;
//! - `NAME.input.json` with `NAME.refused.json` (`{"field": …}`): the
//!   referral must be refused, naming that provider field;
//! - `status/NAME.json` (`{"from_status": …, "callback": …,
//!   "expected_task_change": …}`): the Task change a status callback must
//!   produce (`null` = not set), arriving when the Task is in `from_status`;
//!   and `expected_escalation` (`{reason, urgency, note}`) when the
//!   mapping's `inbound.escalation` emits one for it;
//!   the change must be one the Task state machine allows from there.
//!
//! Every input must also route to its own provider and no other: that is
//! checked across the whole set (`super::set_check`).

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Mapping, Place, locate};
use crate::{
    domain::TaskStatus,
    outcome::Issue,
    referrals::task::{TaskChange, apply_change},
};

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
    /// The file to look at: the fixture, or the expected payload beside it.
    pub fixture: PathBuf,
    /// Where in it, when known.
    pub at: Place,
    /// What differed, one line per difference.
    pub message: String,
}

impl std::fmt::Display for FixtureFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.fixture.display())?;
        if let (Some(line), Some(column)) = self.at {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ":\n{}", self.message)
    }
}

/// A failure in `file` at `at`.
type Failure = (PathBuf, Place, String);

/// The referral fixtures (`*.input.json`) in a provider's folder.
pub fn inputs(provider_dir: &Path) -> Vec<PathBuf> {
    files(provider_dir, ".input.json")
}

/// The status fixtures (`status/*.json`) in a provider's folder.
pub fn status_fixtures(provider_dir: &Path) -> Vec<PathBuf> {
    files(&provider_dir.join("status"), ".json")
}

/// Run every fixture of `mapping` found in `tests_dir/<provider>/`.
pub fn run(mapping: &Mapping, tests_dir: &Path) -> FixtureReport {
    let dir = tests_dir.join(&mapping.provider);
    let mut report = FixtureReport {
        provider: mapping.provider.clone(),
        ..FixtureReport::default()
    };
    let mut record = |outcome: Result<(), Failure>| match outcome {
        Ok(()) => report.passed += 1,
        Err((fixture, at, message)) => report.failures.push(FixtureFailure {
            fixture,
            at,
            message,
        }),
    };
    for input in inputs(&dir) {
        record(referral_fixture(mapping, &input));
    }
    for fixture in status_fixtures(&dir) {
        record(status_fixture(mapping, &fixture));
    }
    report
}

fn referral_fixture(mapping: &Mapping, input: &Path) -> Result<(), Failure> {
    let stem = input
        .to_string_lossy()
        .trim_end_matches(".input.json")
        .to_owned();
    let expected = PathBuf::from(format!("{stem}.expected.json"));
    let refused = PathBuf::from(format!("{stem}.refused.json"));
    fn unlocated(file: &Path) -> impl Fn(String) -> Failure + '_ {
        move |message| (file.to_owned(), (None, None), message)
    }
    let (referral, _) = read(input).map_err(unlocated(input))?;
    if expected.exists() {
        let (wanted, text) = read(&expected).map_err(unlocated(&expected))?;
        match mapping.translate(&referral) {
            Ok(payload) => compare(&wanted, &payload)
                .map_err(|(first, message)| (expected.clone(), locate_key(&text, &first), message)),
            Err(issues) => Err((
                input.to_owned(),
                (Some(1), Some(1)),
                format!(
                    "refused, but a payload was expected:\n{}",
                    diagnostics(&issues)
                ),
            )),
        }
    } else if refused.exists() {
        let (case, text) = read(&refused).map_err(unlocated(&refused))?;
        let field = case["field"].as_str().unwrap_or_default().to_owned();
        let at = locate(&text, "\"field\"");
        match mapping.translate(&referral) {
            Ok(payload) => Err((
                refused.clone(),
                at,
                format!("expected a refusal naming `{field}`, got a payload:\n{payload:#}"),
            )),
            Err(issues)
                if issues
                    .iter()
                    .any(|i| i.diagnostics.contains(&format!("`{field}`"))) =>
            {
                Ok(())
            }
            Err(issues) => Err((
                refused.clone(),
                at,
                format!(
                    "refused, but no issue names `{field}`:\n{}",
                    diagnostics(&issues)
                ),
            )),
        }
    } else {
        Err((
            input.to_owned(),
            (Some(1), Some(1)),
            format!(
                "no {} or {} beside it: add the payload the provider must receive, or the field its refusal must name",
                file_name(&expected),
                file_name(&refused)
            ),
        ))
    }
}

fn status_fixture(mapping: &Mapping, fixture: &Path) -> Result<(), Failure> {
    let (case, text) = read(fixture).map_err(|m| (fixture.to_owned(), (None, None), m))?;
    let failure = |needle: &str, message: String| {
        let at = match locate(&text, needle) {
            (None, _) => (Some(1), Some(1)),
            found => found,
        };
        (fixture.to_owned(), at, message)
    };
    let expected = without_nulls(&case["expected_task_change"]);
    let from = starting_status(&case).map_err(|m| failure("\"from_status\"", m))?;
    let change = mapping
        .status_change(&case["callback"])
        .map_err(|issues| failure("\"callback\"", diagnostics(&issues)))?;
    if change.referral_id != "REFERRAL-ID" {
        return Err(failure(
            "\"callback\"",
            format!(
                "inbound.referral gave {:?}, expected \"REFERRAL-ID\"",
                change.referral_id
            ),
        ));
    }
    compare(&expected, &change.change)
        .map_err(|(first, message)| (fixture.to_owned(), locate_key(&text, &first), message))?;
    // The escalation the callback asks for, if any: as expected, and one
    // Signpost would raise (a known reason and urgency, a note).
    match (
        case.get("expected_escalation").filter(|v| !v.is_null()),
        &change.escalation,
    ) {
        (None, None) => {}
        (Some(_), None) => {
            return Err(failure(
                "\"expected_escalation\"",
                "  inbound.escalation emits no escalation for this callback".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(failure(
                "\"callback\"",
                "  inbound.escalation emits an escalation for this callback: say which in `expected_escalation`".into(),
            ));
        }
        (Some(expected), Some(actual)) => {
            compare(&without_nulls(expected), actual).map_err(|(first, message)| {
                (fixture.to_owned(), locate_key(&text, &first), message)
            })?;
            let mut asked = actual.clone();
            asked["referral"] = serde_json::json!("REFERRAL-ID");
            crate::referrals::escalation::RaiseRequest::parse(&asked).map_err(|e| {
                failure(
                    "\"expected_escalation\"",
                    format!("  inbound.escalation: {e}"),
                )
            })?;
        }
    }
    // The change must be one a real callback could make: the Task state
    // machine decides, exactly as when the callback arrives.
    let task_change = TaskChange::from_mapping(&change.change)
        .map_err(|e| failure("\"expected_task_change\"", format!("  {e}")))?;
    let task = serde_json::json!({ "status": from.as_str() });
    apply_change(&task, &task_change, false, "1970-01-01T00:00:00Z").map_err(|illegal| {
        let allowed: Vec<&str> = TaskStatus::ALL
            .iter()
            .filter(|to| from.may_become(**to))
            .map(|to| to.as_str())
            .collect();
        let allowed = if allowed.is_empty() {
            "none: it is final".to_owned()
        } else {
            allowed.join(", ")
        };
        failure(
            "\"from_status\"",
            format!(
                "  the Task state machine forbids {} -> {}: a real callback would be refused with 409 and the referral would stay {}. From {} a provider may set: {allowed}. Map this callback to an allowed status (or leave `status` out), or correct `from_status` if the callback arrives later in the referral's life",
                illegal.from, illegal.to, illegal.from, illegal.from
            ),
        )
    })?;
    Ok(())
}

/// The fixture's `from_status`: the Task status its callback arrives in.
fn starting_status(case: &Value) -> Result<TaskStatus, String> {
    let all = || {
        TaskStatus::ALL
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match case.get("from_status") {
        Some(Value::String(code)) => code.parse().map_err(|_| {
            format!(
                "  `from_status` {code:?} is not a FHIR Task status; use one of {}",
                all()
            )
        }),
        _ => Err(format!(
            "  no `from_status`: say which Task status this callback arrives in (a new referral's Task is `requested`; one of {}), so that the change can be checked against the Task state machine",
            all()
        )),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Where the last key of a dotted path (`case.reasons[0].code`) is written.
fn locate_key(text: &str, path: &str) -> Place {
    let key = path
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .split('[')
        .next()
        .unwrap_or_default();
    if key.is_empty() || key == "(root)" {
        return (Some(1), Some(1));
    }
    match locate(text, &format!("\"{key}\"")) {
        (None, _) => (Some(1), Some(1)),
        found => found,
    }
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

/// A JSON file, and its text (to locate what is wrong in it).
fn read(path: &Path) -> Result<(Value, String), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok((value, text))
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

/// The differences, one per line, and the path of the first.
fn compare(expected: &Value, actual: &Value) -> Result<(), (String, String)> {
    let mut differences = Vec::new();
    diff("", expected, actual, &mut differences);
    match differences.first() {
        None => Ok(()),
        Some(first) => {
            // "  ~ path: …", "  - path: …", "  + path: …"
            let path = first
                .get(4..)
                .and_then(|rest| rest.split(':').next())
                .unwrap_or_default()
                .to_owned();
            Err((path, differences.join("\n")))
        }
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
