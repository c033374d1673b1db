//! Hot reload of mapping files under a running server: a good edit goes
//! live without a restart; a broken edit changes nothing and is reported.

use std::{path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    on_both_backends,
    support::helpers::{
        Backend, MANIFEST_DIR, TestApp, TestDb, json, test_config, valid, with_new_identifier,
    },
};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Poll `/admin/mappings` until `done` holds (bounded: 10 s).
async fn wait_for(app: &TestApp, done: impl Fn(&Value) -> bool) -> (Value, Duration) {
    let started = std::time::Instant::now();
    loop {
        let report = json(app.get("/admin/mappings").await).await;
        if done(&report) {
            return (report, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no reload seen: {report:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn version_of(report: &Value, provider: &str) -> String {
    report["mappings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["provider"] == provider)
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn mapping_edits_are_reloaded_only_when_they_compile_and_pass_their_fixtures(
    backend: Backend,
) {
    // Arrange: a server on its own copy of the mappings.
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    copy_dir(&Path::new(MANIFEST_DIR).join("mappings"), &mappings);
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.mappings_dir = mappings.clone();
    })
    .await;
    let before = json(app.get("/admin/mappings").await).await;
    assert_eq!(version_of(&before, "activelives"), "1.0.0");
    assert!(before["last_reload_error"].is_null());
    let file = mappings.join("activelives.yaml");
    let original = std::fs::read_to_string(&file).unwrap();

    // Act 1: a good edit (a new version whose payload differs: the
    // practice name is no longer sent).
    let edited = original
        .replacen("version: \"1.0.0\"", "version: \"1.0.1\"", 1)
        .replacen("    practice_name: \"{{ %organization.name }}\"\n", "", 1);
    assert_ne!(edited, original);
    std::fs::write(&file, &edited).unwrap();
    // Its fixtures must still pass: drop the name from the expected payloads.
    for entry in std::fs::read_dir(mappings.join("tests/activelives")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().ends_with(".expected.json") {
            let mut expected: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            expected["received_from"]
                .as_object_mut()
                .unwrap()
                .remove("practice_name");
            std::fs::write(&path, expected.to_string()).unwrap();
        }
    }

    // Assert 1: live without a restart.
    let (after, took) = wait_for(&app, |r| version_of(r, "activelives") == "1.0.1").await;
    eprintln!("good edit live after {took:?}");
    assert!(after["last_reload_error"].is_null(), "{after:#}");
    let translated = json(
        app.post_json(
            "/fhir/ServiceRequest/$translate",
            &valid("activelives-exercise.json"),
        )
        .await,
    )
    .await;
    assert!(
        translated["received_from"].get("practice_name").is_none(),
        "{translated}"
    );

    let failed_before = after["failed_reloads"].as_u64().unwrap();

    // Act 2: a broken edit.
    std::fs::write(&file, edited.replacen("{{ id }}", "{{ id.where( }}", 1)).unwrap();

    // Assert 2: refused, reported, and the previous mapping keeps serving.
    let (report, _) = wait_for(&app, |r| r["failed_reloads"].as_u64() > Some(failed_before)).await;
    let error = report["last_reload_error"].as_str().unwrap();
    assert!(error.contains("activelives.yaml"), "{error}");
    assert!(error.contains("id.where("), "{error}");
    assert_eq!(version_of(&report, "activelives"), "1.0.1");
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let response = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let translated = json(
        app.post_json("/fhir/ServiceRequest/$translate", &referral)
            .await,
    )
    .await;
    assert_eq!(translated["referral_ref"], "DRY-RUN");

    // A fixture that no longer passes is refused the same way.
    std::fs::write(
        &file,
        original.replacen("version: \"1.0.0\"", "version: \"1.0.2\"", 1),
    )
    .unwrap();
    let (report, _) = wait_for(&app, |r| {
        r["failed_reloads"].as_u64() > Some(failed_before + 1)
    })
    .await;
    assert!(
        report["last_reload_error"]
            .as_str()
            .unwrap()
            .contains("fixture"),
        "{report:#}"
    );
    assert_eq!(version_of(&report, "activelives"), "1.0.1");

    // Prometheus sees the same counts.
    let metrics = app.get_text("/metrics").await;
    let reloads = report["reloads"].as_u64().unwrap();
    let failed = report["failed_reloads"].as_u64().unwrap();
    assert!(
        metrics.contains(&format!(
            "signpost_mapping_reloads_total{{outcome=\"ok\"}} {reloads}\n"
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "signpost_mapping_reloads_total{{outcome=\"failed\"}} {failed}\n"
        )),
        "{metrics}"
    );
}

/// What an overlap must say: both providers, a fixture, both predicates.
fn assert_names_the_overlap(error: &str) {
    for wanted in [
        "community-connect.yaml:",
        "routing: fixture ",
        "activelives-exercise.input.json of activelives is also taken by community-connect",
        "code in ('390893007' | '771491000000104')",
        "code in ('871731000000106' | '390893007')",
        "make the predicates exclusive",
    ] {
        assert!(error.contains(wanted), "no {wanted:?} in:\n{error}");
    }
}

async fn a_set_whose_routes_overlap_is_refused_at_start_up_and_on_reload(backend: Backend) {
    // Arrange: Community Connect's mapping made to take ActiveLives' code
    // too (each file still compiles and passes its own fixtures).
    let dir = tempfile::tempdir().unwrap();
    let mappings = dir.path().join("mappings");
    copy_dir(&Path::new(MANIFEST_DIR).join("mappings"), &mappings);
    let file = mappings.join("community-connect.yaml");
    let original = std::fs::read_to_string(&file).unwrap();
    let overlapping = original
        .replacen(
            "code = '871731000000106'",
            "code in ('871731000000106' | '390893007')",
            1,
        )
        .replacen("version: \"1.0.0\"", "version: \"1.1.0\"", 1);
    assert_ne!(original, overlapping);
    std::fs::write(&file, &overlapping).unwrap();

    // Start-up refuses it, saying why.
    let db = TestDb::fresh(backend).await;
    let mut config = test_config(&db.url);
    config.mappings_dir = mappings.clone();
    let error = match signpost::startup::Application::build(config).await {
        Ok(_) => panic!("a server started on overlapping routes"),
        Err(error) => format!("{error:#}"),
    };
    assert_names_the_overlap(&error);

    // A server on the good set refuses the same edit on reload.
    std::fs::write(&file, &original).unwrap();
    let app = TestApp::spawn_on(db, |config| config.mappings_dir = mappings.clone()).await;
    std::fs::write(&file, &overlapping).unwrap();
    let (report, _) = wait_for(&app, |r| r["failed_reloads"].as_u64() > Some(0)).await;
    assert_names_the_overlap(report["last_reload_error"].as_str().unwrap());

    // The running set stays live: ActiveLives still gets its referrals.
    assert_eq!(version_of(&report, "community-connect"), "1.0.0");
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let response = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let response = app
        .post_json("/fhir/ServiceRequest/$translate", &referral)
        .await;
    assert_eq!(response.headers()["x-signpost-provider"], "activelives");
}

on_both_backends!(
    mapping_edits_are_reloaded_only_when_they_compile_and_pass_their_fixtures,
    a_set_whose_routes_overlap_is_refused_at_start_up_and_on_reload,
);
