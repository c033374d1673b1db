//! The structural layer against the official examples, without a server:
//! every real FHIR R4 JSON example in tests/fixtures/real passes the official
//! schema, except the one BaRS example known to be invalid, and
//! `signpost validate` reports on files offline.

use std::path::Path;

use serde_json::Value;
use signpost::validation::Validator;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn validator() -> Validator {
    Validator::load(&Path::new(MANIFEST_DIR).join("schemas")).expect("schemas load")
}

/// A real example from `tests/fixtures/real/` (see its `SOURCES.md`).
fn real(relative: &str) -> Value {
    let path = Path::new(MANIFEST_DIR)
        .join("tests/fixtures/real")
        .join(relative);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

#[test]
fn every_official_json_example_passes_the_structural_layer() {
    let validator = validator();
    let mut checked = 0;
    for folder in ["hl7-r4", "bars", "subscriptions"] {
        let dir = Path::new(MANIFEST_DIR)
            .join("tests/fixtures/real")
            .join(folder);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if !name.ends_with(".json")
                || name == "fhir.schema.json"
                || name == "api-1.4.0-servicerequest-read-success.json"
            {
                continue;
            }
            let resource = real(&format!("{folder}/{name}"));
            let issues = validator.check_structure(&resource);
            assert!(issues.is_empty(), "{folder}/{name}: {issues:#?}");
            checked += 1;
        }
    }
    // The R4 ServiceRequest, Task and Patient examples are among them.
    assert!(checked >= 37, "only {checked} examples found");
}

#[test]
fn structural_errors_inside_contained_resources_and_entries_are_located() {
    let validator = validator();
    let mut task = real("hl7-r4/task-example1.json");
    task["status"] = "ongoing".into();
    task["contained"] =
        serde_json::json!([{"resourceType": "Patient", "id": "p", "birthDate": 1948}]);
    let issues = validator.check_structure(&task);
    let at: Vec<_> = issues.iter().filter_map(|i| i.expression.clone()).collect();
    assert!(at.contains(&"Task.status".to_owned()), "{at:?}");
    assert!(
        at.contains(&"Task.contained[0].birthDate".to_owned()),
        "{at:?}"
    );

    let mut bundle = real("hl7-r4/bundle-example.json");
    bundle["entry"][1]["resource"]["colour"] = "red".into();
    let at: Vec<_> = validator
        .check_structure(&bundle)
        .into_iter()
        .filter_map(|i| i.expression)
        .collect();
    assert_eq!(at, ["Bundle.entry[1].resource.colour"]);
}

#[test]
fn signpost_validate_prints_the_outcome_and_sets_the_exit_status() {
    let run = |file: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
            .args(["validate", file])
            .current_dir(MANIFEST_DIR)
            .output()
            .expect("signpost runs")
    };
    let invalid = run("tests/fixtures/real/bars/api-1.4.0-servicerequest-read-success.json");
    assert_eq!(invalid.status.code(), Some(1));
    let outcome: Value = serde_json::from_slice(&invalid.stdout).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let text = outcome.to_string();
    assert!(
        text.contains("ServiceRequest.basedOn")
            && text.contains("ServiceRequest.PatientInstruction")
    );

    let valid = run("tests/fixtures/referrals/valid/activelives-falls.bundle.json");
    assert_eq!(
        valid.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&valid.stdout)
    );
    let outcome: Value = serde_json::from_slice(&valid.stdout).unwrap();
    assert_eq!(outcome["issue"][0]["severity"], "information");

    let profile = run("tests/fixtures/referrals/invalid/nhs-number-bad-check-digit.json");
    assert_eq!(profile.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&profile.stdout)
            .contains("ServiceRequest.contained[0].identifier[1].value")
    );

    let missing = run("no-such-file.json");
    assert_eq!(missing.status.code(), Some(2));
}
