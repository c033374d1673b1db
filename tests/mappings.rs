//! The mapping files and their fixtures, and the integrator commands.

use std::{path::Path, process::Command};

use signpost::mapping::{MappingSet, fixtures};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn signpost(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(args)
        .current_dir(MANIFEST_DIR)
        .output()
        .expect("signpost runs")
}

/// The `provider:` each `*.yaml` in `dir` names, sorted.
fn mapping_files(dir: &Path) -> Vec<String> {
    let mut named: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let head: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            head["provider"].as_str().unwrap().to_owned()
        })
        .collect();
    named.sort();
    named
}

#[test]
fn every_mapping_passes_every_fixture_beside_it() {
    let root = Path::new(MANIFEST_DIR);
    let set =
        MappingSet::load(&root.join("mappings"), &root.join("schemas")).expect("mappings load");
    // Every mapping file in mappings/ is loaded, under the provider it names.
    let named = mapping_files(&root.join("mappings"));
    assert!(named.len() >= 3, "{named:?}");
    assert_eq!(
        set.mappings.keys().map(String::as_str).collect::<Vec<_>>(),
        named.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for mapping in set.mappings.values() {
        let report = fixtures::run(mapping, &root.join("mappings/tests"));
        let failures: Vec<String> = report.failures.iter().map(ToString::to_string).collect();
        assert!(
            failures.is_empty(),
            "{}:\n{}",
            mapping.provider,
            failures.join("\n")
        );
        // Outbound payloads, refusals and every status value are covered.
        assert!(
            report.passed >= 8,
            "{}: only {} fixtures",
            mapping.provider,
            report.passed
        );
    }
}

#[test]
fn signpost_mappings_test_passes_and_says_so() {
    let output = signpost(&["mappings", "test"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(" 0 failed"), "{stdout}");
}

#[test]
fn signpost_mappings_test_fails_with_a_diff_when_a_fixture_breaks() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(MANIFEST_DIR).join("mappings"), dir.path());
    let yaml = dir.path().join("activelives.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    // An integrator's slip: the wrong scheme for weight management.
    let broken = text.replacen("\": WEIGHT_MANAGEMENT", "\": WEIGHT_MGMT", 1);
    assert_ne!(text, broken);
    std::fs::write(&yaml, broken).unwrap();

    let output = signpost(&[
        "mappings",
        "test",
        "--mappings",
        dir.path().to_str().unwrap(),
    ]);

    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("FAIL"), "{stdout}");
    assert!(stdout.contains("activelives-weight"), "{stdout}");
    assert!(stdout.contains("scheme"), "{stdout}");
}

#[test]
fn signpost_mappings_check_reports_errors_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(MANIFEST_DIR).join("mappings"), dir.path());
    let yaml = dir.path().join("community-connect.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    let (before, after) = text.split_once("outbound:").unwrap();
    std::fs::write(
        &yaml,
        format!("{before}outbound:\n  broken: \"{{{{ name.where( }}}}\"{after}"),
    )
    .unwrap();

    let output = signpost(&[
        "mappings",
        "check",
        "--mappings",
        dir.path().to_str().unwrap(),
    ]);

    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = before.lines().count() + 2;
    assert!(
        stderr.contains(&format!("community-connect.yaml:{line}:")),
        "expected line {line} in: {stderr}"
    );
    assert!(stderr.contains("name.where("), "{stderr}");
}

#[test]
fn signpost_translate_prints_the_payload_or_the_refusal() {
    let output = signpost(&[
        "translate",
        "tests/fixtures/referrals/valid/community-connect-loneliness.json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let payload: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(payload["case"]["reasons"][0]["code"], "LONELINESS");

    let refused = signpost(&[
        "translate",
        "tests/fixtures/referrals/refused/activelives-no-consent.json",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    let outcome: serde_json::Value = serde_json::from_slice(&refused.stdout).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert!(outcome.to_string().contains("consent_to_share"));
    // The refusal's expression is the FHIRPath the field is read from.
    assert_eq!(
        outcome["issue"][0]["expression"][0],
        "supportingInfo.resolve().ofType(Consent).where(status = 'active').exists()",
        "{outcome:#}"
    );
}

#[test]
fn signpost_fhirpath_and_fpml_evaluate_against_a_file() {
    let output = signpost(&[
        "fhirpath",
        "contained.ofType(Patient).name.where(use = 'official').family",
        "tests/fixtures/referrals/valid/activelives-exercise.json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result.as_array().unwrap().len(), 1);
    assert!(result[0].is_string());

    let bad = signpost(&[
        "fhirpath",
        "name.where(",
        "tests/fixtures/referrals/valid/activelives-exercise.json",
    ]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("column"));

    let fpml = signpost(&[
        "fpml",
        "--template",
        "tests/fixtures/fpml/complex-example.fhir.template.yaml",
        "--context",
        "tests/fixtures/fpml/complex-example.fhir.context.yaml",
        "tests/fixtures/referrals/valid/activelives-exercise.json",
    ]);
    // The template's body reads QuestionnaireResponse variables; against a
    // ServiceRequest it still renders (to its resource-independent parts).
    assert!(
        fpml.status.success(),
        "{}",
        String::from_utf8_lossy(&fpml.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn routing_refuses_a_referral_several_providers_would_take_and_one_none_takes() {
    let root = Path::new(MANIFEST_DIR);
    let read = |p: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(root.join(p)).unwrap()).unwrap()
    };
    let activelives = read("mappings/tests/activelives/activelives-exercise.input.json");
    let nobody = read("mappings/tests/routing/no-provider-matches.input.json");

    let set = MappingSet::load(&root.join("mappings"), &root.join("schemas")).unwrap();
    assert_eq!(set.route(&activelives).unwrap().provider, "activelives");
    let issues = set.route(&nobody).err().expect("no provider");
    assert_eq!(issues[0].expression.as_deref(), Some("ServiceRequest.code"));

    // An integrator makes Grow Together take everything: now two match.
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root.join("mappings"), dir.path());
    let file = dir.path().join("grow-together.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let greedy = text.replacen("accepts: \"false\"", "accepts: \"true\"", 1);
    assert_ne!(text, greedy);
    std::fs::write(&file, greedy).unwrap();
    let set = MappingSet::load(dir.path(), &root.join("schemas")).unwrap();
    let issues = set.route(&activelives).err().expect("ambiguous");
    let text = &issues[0].diagnostics;
    assert!(
        text.contains("activelives") && text.contains("grow-together"),
        "{text}"
    );
}

/// A copy of the repository's mappings and schemas in a new folder, with a
/// new provider `walking-club` as `signpost mappings new` writes it, and a
/// configuration: the sample's, with the printed block pasted unless
/// `configured` is false.
fn set_with_new_provider(configured: bool) -> tempfile::TempDir {
    let root = Path::new(MANIFEST_DIR);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root.join("mappings"), &dir.path().join("mappings"));
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    copy_dir(&root.join("schemas"), &dir.path().join("schemas"));
    let new = run_in(dir.path(), &["mappings", "new", "walking-club"]);
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    let mut config = std::fs::read_to_string(root.join("config/signpost.toml")).unwrap();
    if configured {
        config.push_str(&String::from_utf8(new.stdout).unwrap());
    }
    std::fs::write(dir.path().join("signpost.toml"), config).unwrap();
    dir
}

fn run_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("signpost runs")
}

/// stdout and stderr of `signpost mappings <command>` in `dir`.
fn mappings_command(dir: &Path, command: &str) -> (bool, String) {
    let output = run_in(dir, &["mappings", command, "--config", "signpost.toml"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_new_provider_from_signpost_mappings_new_passes_check_and_test_once_configured() {
    let dir = set_with_new_provider(true);
    // Every file it wrote says what to fill in.
    for written in [
        "mappings/walking-club.yaml",
        "mappings/tests/walking-club/walking-club-example.input.json",
        "mappings/tests/walking-club/status/accepted.json",
        "schemas/providers/walking-club.schema.json",
        "schemas/providers/walking-club.status.schema.json",
    ] {
        let text = std::fs::read_to_string(dir.path().join(written)).unwrap();
        assert!(text.contains("TODO"), "{written} says nothing to fill in");
        assert!(!text.contains("__PROVIDER__"), "{written}");
    }
    for command in ["check", "test"] {
        let (ok, output) = mappings_command(dir.path(), command);
        assert!(ok, "mappings {command}:\n{output}");
        assert!(output.contains("walking-club"), "{output}");
    }
    let (_, output) = mappings_command(dir.path(), "test");
    assert!(
        output.contains("walking-club: 2 passed, 0 failed"),
        "{output}"
    );

    // It never overwrites: a second run writes nothing and fails.
    let again = run_in(dir.path(), &["mappings", "new", "walking-club"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

/// Each folder of `tests/fixtures/mapping-checks/` is a mistake that used to
/// pass every check and then broke with real traffic: `case.json` says how
/// to make it from a freshly added provider (`renames`, `remove`, `edits`),
/// which command must refuse it, and what the refusal must say (file, line
/// and column, what is wrong and what would fix it).
#[test]
fn each_mapping_mistake_in_the_fixture_sets_is_refused_with_its_message() {
    let cases_dir = Path::new(MANIFEST_DIR).join("tests/fixtures/mapping-checks");
    let mut cases: Vec<_> = std::fs::read_dir(&cases_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    cases.sort();
    assert!(cases.len() >= 11, "{cases:?}");
    let mut failures = Vec::new();
    for case_dir in &cases {
        let name = case_dir.file_name().unwrap().to_string_lossy().into_owned();
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(case_dir.join("case.json")).unwrap())
                .unwrap();
        let dir = set_with_new_provider(case["configured"].as_bool() != Some(false));
        let at = |p: &serde_json::Value| dir.path().join(p.as_str().unwrap());
        for pair in case["renames"].as_array().into_iter().flatten() {
            std::fs::rename(at(&pair[0]), at(&pair[1])).unwrap();
        }
        for file in case["remove"].as_array().into_iter().flatten() {
            std::fs::remove_file(at(file)).unwrap();
        }
        for edit in case["edits"].as_array().into_iter().flatten() {
            let file = at(&edit["file"]);
            let text = std::fs::read_to_string(&file).unwrap();
            let old = edit["replace"].as_str().unwrap();
            assert_eq!(text.matches(old).count(), 1, "{name}: {old:?} in {file:?}");
            std::fs::write(&file, text.replacen(old, edit["with"].as_str().unwrap(), 1)).unwrap();
        }
        let (ok, output) = mappings_command(dir.path(), case["command"].as_str().unwrap());
        if ok {
            failures.push(format!("{name}: passed, but must be refused:\n{output}"));
            continue;
        }
        for expected in case["expect"].as_array().unwrap() {
            let expected = expected.as_str().unwrap();
            if !output.contains(expected) {
                failures.push(format!("{name}: no {expected:?} in:\n{output}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A referral whose `performer` names its provider goes to that provider
/// without any other mapping's `route.accepts` being evaluated: one that
/// fails at run time (here a unary minus on a string) does not refuse it.
#[test]
fn a_performer_match_routes_without_evaluating_other_mappings_accepts() {
    let root = Path::new(MANIFEST_DIR);
    let named: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            root.join("mappings/tests/grow-together/grow-together-hilltop.input.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root.join("mappings"), dir.path());
    let file = dir.path().join("activelives.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let start = text.find("  accepts: ").unwrap();
    let end = start + text[start..].find('\n').unwrap();
    let failing = format!(
        "{}  accepts: \"(-code.coding.code.first()).exists()\"{}",
        &text[..start],
        &text[end..]
    );
    std::fs::write(&file, failing).unwrap();
    let set = MappingSet::load(dir.path(), &root.join("schemas")).unwrap();
    // The broken expression does fail when it is evaluated.
    assert!(
        set.mappings["activelives"].accepts(&named).is_err(),
        "the edited route.accepts must fail at run time"
    );
    let routed = set.route(&named).map_err(|issues| format!("{issues:?}"));
    assert_eq!(routed.unwrap().provider, "grow-together");
}

/// `routing` is the folder of fixtures no provider takes
/// (`mappings/tests/routing/`), so it cannot be a provider id: `mappings
/// new routing` is refused and writes nothing.
#[test]
fn mappings_new_refuses_the_reserved_id_routing() {
    let root = Path::new(MANIFEST_DIR);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&root.join("mappings"), &dir.path().join("mappings"));
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    let refused = run_in(dir.path(), &["mappings", "new", "routing"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("reserved"), "{stderr}");
    assert!(!dir.path().join("mappings/routing.yaml").exists());
}

/// What an integrator adds to ActiveLives' mapping so that a callback
/// carrying `concern` (and `urgent`) asks for an escalation beside its
/// change (the schema lets unknown fields through), with a fixture.
pub const ESCALATION_TEMPLATE: &str = "  escalation:\n    \"{% if concern.exists() %}\":\n      reason: \"{{ concern }}\"\n      urgency: \"{{ iif(urgent = true, 'urgent', 'routine') }}\"\n      note: \"{{ detail }}\"\n";

fn escalation_fixture(reason: &str) -> String {
    serde_json::json!({
        "from_status": "in-progress",
        "callback": {"referral_ref": "REFERRAL-ID", "event": "did_not_attend",
                     "event_time": "2026-03-17T10:30:00Z", "detail": "Fell twice at the class",
                     "concern": reason, "urgent": true},
        "expected_task_change": {"status": null, "businessStatus": "did not attend"},
        "expected_escalation": {"reason": "functional-decline", "urgency": "urgent", "note": "Fell twice at the class"}
    })
    .to_string()
}

#[test]
fn mappings_test_checks_an_escalation_an_inbound_mapping_emits() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(MANIFEST_DIR).join("mappings"), dir.path());
    let yaml = dir.path().join("activelives.yaml");
    let mut text = std::fs::read_to_string(&yaml).unwrap();
    text.push_str(ESCALATION_TEMPLATE);
    std::fs::write(&yaml, text).unwrap();
    let fixture = dir.path().join("tests/activelives/status/concern.json");
    let run = |command: &str| {
        let output = signpost(&[
            "mappings",
            command,
            "--mappings",
            dir.path().to_str().unwrap(),
        ]);
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };

    std::fs::write(&fixture, escalation_fixture("functional-decline")).unwrap();
    for command in ["check", "test"] {
        let (ok, out) = run(command);
        assert!(ok, "{command}: {out}");
    }

    // The callback's escalation differs from the fixture's: a diff.
    std::fs::write(&fixture, escalation_fixture("medication-concern")).unwrap();
    let (ok, out) = run("test");
    assert!(!ok, "{out}");
    assert!(out.contains("concern.json"), "{out}");

    // An escalation Signpost would refuse (an unknown reason) fails the
    // fixture even when it expects it.
    let mut case: serde_json::Value = serde_json::from_str(&escalation_fixture("falls")).unwrap();
    case["expected_escalation"]["reason"] = serde_json::json!("falls");
    std::fs::write(&fixture, case.to_string()).unwrap();
    let (ok, out) = run("test");
    assert!(!ok, "{out}");
    assert!(out.contains("not a known escalation reason"), "{out}");

    // A fixture that does not expect the escalation the mapping emits.
    case.as_object_mut().unwrap().remove("expected_escalation");
    std::fs::write(&fixture, case.to_string()).unwrap();
    let (ok, out) = run("test");
    assert!(!ok, "{out}");
    assert!(out.contains("expected_escalation"), "{out}");
}
