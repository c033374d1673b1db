//! Attack suite for the data findings of the adversarial review (issue 14:
//! 4, 5, 7 and the file modes of 9), each replayed in bounded form over
//! real HTTP: an answer that claimed "nothing was stored" about a referral
//! that was stored; erasure missing a patient by where the NHS number sat,
//! leaving refused callbacks and dead letters behind, or losing the race
//! with a delivery in flight; a removed referrer's token still reading;
//! a database created readable by everyone.

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::{
        fleet::{Fleet, PATIENCE},
        helpers::{
            Backend, MANIFEST_DIR, TestApp, TestDb, client_with, issue_token, json, valid,
            with_new_identifier,
        },
        receiver::Scripted,
    },
};

/// The patient erased (as in the fixtures), another valid NHS number of
/// theirs, and a name found nowhere else.
const A_NHS: &str = "9990124833";
const A_SECOND_NHS: &str = "9434765919";
const A_NAME: &str = "Fairbrother";
/// Another patient, kept.
const B_NHS: &str = "9993270415";

/// The Patient of a referral (contained, or a Bundle entry).
fn patient(referral: &mut Value) -> &mut Value {
    let resources: Vec<&mut Value> = if referral["resourceType"] == "Bundle" {
        referral["entry"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .map(|e| &mut e["resource"])
            .collect()
    } else {
        referral["contained"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .collect()
    };
    resources
        .into_iter()
        .find(|r| r["resourceType"] == "Patient")
        .expect("a Patient")
}

fn nhs(value: &str) -> Value {
    json!({"system": "https://fhir.nhs.uk/Id/nhs-number", "value": value})
}

async fn erase(app: &TestApp, nhs_number: &str) -> Value {
    let response = app
        .admin
        .post(app.url("/admin/erase"))
        .body(json!({ "nhs_number": nhs_number }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    json(response).await
}

/// Every message of a referral as operators see it, with its attempts.
async fn messages_shown(app: &TestApp, referral_id: &str) -> Vec<Value> {
    let listed = json(
        app.get(&format!("/admin/deliveries?referral={referral_id}"))
            .await,
    )
    .await;
    let mut shown = Vec::new();
    for message in listed["messages"].as_array().unwrap() {
        let id = message["id"].as_str().unwrap();
        shown.push(json(app.get(&format!("/admin/deliveries/{id}")).await).await);
    }
    shown
}

/// 5(a): the Patient's identifiers, in every position the review and the
/// brief name: after another identifier, after another NHS number of the
/// same patient, posted alone (contained) or in a transaction Bundle.
async fn erasure_finds_the_patient_wherever_the_nhs_number_is_placed(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let other =
        json!({"system": "https://fhir.riverside-surgery.example/Id/patient", "value": "RS-1"});
    let placements = [
        ("activelives-exercise.json", json!([other, nhs(A_NHS)])),
        (
            "activelives-exercise.json",
            json!([nhs(A_SECOND_NHS), nhs(A_NHS)]),
        ),
        ("activelives-falls.bundle.json", json!([other, nhs(A_NHS)])),
        (
            "activelives-falls.bundle.json",
            json!([other, nhs(A_SECOND_NHS), nhs(A_NHS)]),
        ),
    ];
    let mut ids = Vec::new();
    for (fixture, identifiers) in placements {
        let (mut referral, _) = with_new_identifier(valid(fixture));
        let patient = patient(&mut referral);
        patient["identifier"] = identifiers;
        patient["name"][0]["family"] = json!(A_NAME);
        ids.push(fleet.refer_body(&referral).await);
    }
    let kept = fleet.refer("community-connect-loneliness.json").await;
    fleet.app.deliver_all().await;

    let erased = erase(&fleet.app, A_NHS).await;
    let mut named: Vec<String> = erased["erased"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap()
                .trim_start_matches("ServiceRequest/")
                .to_owned()
        })
        .collect();
    named.sort();
    ids.sort();
    assert_eq!(named, ids, "every referral of the patient is erased");
    for id in &ids {
        let served = json(fleet.app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
        assert_eq!(served["meta"]["tag"][0]["code"], "erased", "{served}");
        let task = fleet.task(id).await.to_string();
        let messages = serde_json::to_string(&messages_shown(&fleet.app, id).await).unwrap();
        for held in [served.to_string(), task, messages] {
            for needle in [A_NHS, A_SECOND_NHS, A_NAME] {
                assert!(!held.contains(needle), "{needle} kept in {held}");
            }
        }
    }
    let other_patient = json(fleet.app.get(&format!("/fhir/ServiceRequest/{kept}")).await).await;
    assert!(other_patient.to_string().contains(B_NHS), "B is kept");
}

/// 5(b): a provider callback refused because it names an unknown referral
/// (here the NHS number where the referral's id belongs, a name in its
/// detail) must not keep those values in its stored outcome, and erasure
/// must empty its body.
async fn refused_callbacks_keep_no_submitted_values(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_all().await;
    let mistaken = json!({"referral_ref": A_NHS, "event": "declined",
                          "event_time": "2026-03-04T11:40:00Z", "detail": A_NAME});
    let response = fleet.callback("activelives", "wrong-ref", &mistaken).await;
    assert_eq!(response.status(), 404);
    let callbacks = json(fleet.app.get("/admin/callbacks").await).await;
    let refused = callbacks["callbacks"][0].clone();
    let outcome = refused["outcome"].as_str().unwrap();
    assert!(outcome.starts_with("refused"), "{refused}");
    for needle in [A_NHS, A_NAME] {
        assert!(
            !outcome.contains(needle),
            "the outcome quotes {needle}: {outcome}"
        );
    }
    // A resent callback gets the same answer, still without the values.
    let again = fleet.callback("activelives", "wrong-ref", &mistaken).await;
    assert_eq!(again.status(), 404);
    let text = again.text().await.unwrap();
    assert!(!text.contains(A_NHS), "{text}");

    erase(&fleet.app, A_NHS).await;
    let callbacks = json(fleet.app.get("/admin/callbacks").await).await;
    for needle in [A_NHS, A_NAME] {
        assert!(
            !callbacks.to_string().contains(needle),
            "{needle} kept after erasure: {callbacks}"
        );
    }
    // The referral the callback meant (A's) is a tombstone now.
    let served = json(fleet.app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert_eq!(served["meta"]["tag"][0]["code"], "erased", "{served}");
}

/// 5: retention purges the payloads of dead letters too (not only of
/// delivered messages).
async fn dead_lettered_payloads_are_purged_by_retention(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    fleet
        .provider("activelives")
        .set_default(Scripted::status(400));
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_all().await;
    let shown = messages_shown(&fleet.app, &id).await;
    let dead = shown
        .iter()
        .find(|m| m["state"] == "dead")
        .unwrap_or_else(|| panic!("a dead letter: {shown:?}"));
    assert!(dead["payload"].to_string().contains(A_NAME), "{dead}");

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["purge", "--days", "0"])
        .current_dir(MANIFEST_DIR)
        .env("SIGNPOST_DATABASE_URL", &fleet.app.db.url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for message in messages_shown(&fleet.app, &id).await {
        assert_eq!(message["payload"], json!(""), "purged: {message}");
        assert!(!message.to_string().contains(A_NAME), "{message}");
    }
}

/// 5: a message of an erased patient has nothing left to send; replaying
/// it (as sent, or re-mapped from the tombstone) is refused, and nothing is
/// sent.
async fn replaying_an_erased_message_is_refused(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_all().await;
    let message = messages_shown(&fleet.app, &id).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    erase(&fleet.app, A_NHS).await;
    for query in ["", "?remap=true"] {
        let response = fleet
            .app
            .admin
            .post(
                fleet
                    .app
                    .url(&format!("/admin/deliveries/{message}/replay{query}")),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409, "replay{query}");
        let outcome = json(response).await;
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .is_some_and(|d| d.contains("erased")),
            "{outcome}"
        );
    }
    fleet.app.deliver_all().await;
    assert_eq!(
        fleet.provider("activelives").received().len(),
        1,
        "nothing more is sent"
    );
}

/// 5(c): the provider holds its answer (which echoes the patient's NHS
/// number and name) until the patient has been erased; the answer recorded
/// afterwards must not put them back.
async fn erasure_wins_the_race_with_a_delivery_in_flight(backend: Backend) {
    let fleet = Fleet::start_with(backend, |config| {
        config.delivery.request_timeout = Duration::from_secs(60);
        config.delivery.lease = Duration::from_secs(90);
    })
    .await;
    let gate = Arc::new(tokio::sync::Notify::new());
    let echo = format!(r#"{{"accepted":true,"patient":"{A_NAME}","nhs":"{A_NHS}"}}"#);
    fleet
        .provider("activelives")
        .set_default(Scripted::accepted().held_until(gate.clone()).body(echo));
    let id = fleet.refer("activelives-exercise.json").await;
    let deadline = std::time::Instant::now() + PATIENCE;
    while fleet.provider("activelives").received().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The delivery is in flight, its answer held: erase now.
    erase(&fleet.app, A_NHS).await;
    gate.notify_one();
    fleet.provider("activelives").wait_for(1, PATIENCE).await;
    fleet.settled(&id).await;

    let shown = messages_shown(&fleet.app, &id).await;
    let provider_message = shown
        .iter()
        .find(|m| m["endpoint"] == "provider:activelives")
        .expect("the provider's message");
    assert_eq!(
        provider_message["attempt_log"].as_array().unwrap().len(),
        1,
        "{provider_message}"
    );
    for needle in [A_NHS, A_NAME] {
        assert!(
            !serde_json::to_string(&shown).unwrap().contains(needle),
            "{needle} written back after erasure: {shown:?}"
        );
    }
}

/// 5(c), after the race: a provider's callback about a referral already
/// erased is refused, and neither its body nor its detail is kept, on the
/// Task, in the referrer's notifications or with the callback.
async fn a_callback_after_erasure_keeps_nothing_of_the_patient(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_all().await;
    erase(&fleet.app, A_NHS).await;
    let late = json!({"referral_ref": id, "event": "declined",
                      "event_time": "2026-03-04T11:40:00Z", "detail": format!("{A_NAME} declined")});
    let response = fleet.callback("activelives", "late", &late).await;
    assert_eq!(response.status(), 409);
    fleet.app.deliver_all().await;
    let task = fleet.task(&id).await;
    let callbacks = json(
        fleet
            .app
            .get(&format!("/admin/callbacks?referral={id}"))
            .await,
    )
    .await;
    let messages = serde_json::to_string(&messages_shown(&fleet.app, &id).await).unwrap();
    for held in [task.to_string(), callbacks.to_string(), messages] {
        assert!(
            !held.contains(A_NAME),
            "{A_NAME} kept after erasure: {held}"
        );
    }
}

/// 7: once its referrer is removed from the configuration, a token issued
/// to it reads nothing, polls no Task and translates nothing; an admin's
/// token still works.
async fn a_removed_referrers_token_is_refused(backend: Backend) {
    let app = TestApp::spawn_stepped_on(TestDb::fresh(backend).await, |_| {}).await;
    let token = issue_token(
        &app.db.url,
        signpost::security::tokens::Role::Referrer("riverside-surgery".parse().unwrap()),
    )
    .await;
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = json(app.post_json("/fhir/ServiceRequest", &referral).await).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let db = app.stop().await;

    let app = TestApp::spawn_stepped_on(db, |config| {
        config.referrers.clear();
    })
    .await;
    let old = client_with(&token);
    let requests = [
        old.get(app.url(&format!("/fhir/ServiceRequest/{id}"))),
        old.get(app.url(&format!("/fhir/Task?focus=ServiceRequest/{id}"))),
        old.get(app.url("/fhir/ServiceRequest")),
        old.post(app.url("/fhir/ServiceRequest/$translate?provider=activelives"))
            .header("content-type", "application/fhir+json")
            .body(referral.to_string()),
        old.post(app.url("/fhir/ServiceRequest"))
            .header("content-type", "application/fhir+json")
            .body(with_new_identifier(referral.clone()).0.to_string()),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert_eq!(status, 401, "{text}");
        assert!(!text.contains(A_NAME), "{text}");
    }
    let read = app
        .admin
        .get(app.url(&format!("/fhir/ServiceRequest/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200, "an admin still reads");
}

/// 4: with the SQLite file locked by another connection, a referral's
/// write waits; the request times out first. Whatever the answer says must
/// be true: "nothing was stored" only if the referral was not stored. A
/// retry with the same identifier then never makes a second referral.
async fn a_locked_database_never_gets_a_false_nothing_was_stored() {
    use sqlx::{Connection, Executor};
    let db = TestDb::fresh(Backend::Sqlite).await;
    let app = TestApp::spawn_on(db, |config| {
        config.limits.request_timeout = Duration::from_millis(500);
        config.delivery.worker = false;
    })
    .await;
    let mut locker = sqlx::SqliteConnection::connect(&app.db.url).await.unwrap();
    locker.execute("BEGIN EXCLUSIVE").await.unwrap();

    let (referral, value) = with_new_identifier(valid("activelives-exercise.json"));
    let first = app.post_json("/fhir/ServiceRequest", &referral).await;
    let first_status = first.status();
    let first_text = first.text().await.unwrap();
    assert!(
        first_status == 408 || first_status == 503,
        "{first_status}: {first_text}"
    );
    locker.execute("COMMIT").await.unwrap();
    locker.close().await.unwrap();

    // The retry queues behind the first write, so by its answer the first
    // one has been committed or dropped.
    let retry = app.post_json("/fhir/ServiceRequest", &referral).await;
    let retry_status = retry.status();
    assert!(
        retry_status == 200 || retry_status == 201,
        "{retry_status}: {}",
        retry.text().await.unwrap()
    );
    if first_text.contains("nothing was stored") {
        assert_eq!(
            retry_status, 201,
            "the first answer said nothing was stored, but it was: {first_text}"
        );
    } else {
        assert!(
            first_text.contains("same identifier"),
            "an unknown outcome says how to retry safely: {first_text}"
        );
    }
    let found = app.search_identifier(&value).await;
    assert_eq!(found["total"], 1, "{found}");
}

/// 9 (part): the SQLite file, its -wal and -shm, and the folder Signpost
/// creates for them are its owner's only.
#[cfg(unix)]
async fn the_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn(Backend::Sqlite).await;
    // A write, so the -wal and -shm exist.
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    assert_eq!(
        app.post_json("/fhir/ServiceRequest", &referral)
            .await
            .status(),
        201
    );
    let file = std::path::PathBuf::from(app.db.url.trim_start_matches("sqlite://"));
    let folder = file.parent().unwrap().to_owned();
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&folder), 0o700, "{}", folder.display());
    for suffix in ["", "-wal", "-shm"] {
        let path = std::path::PathBuf::from(format!("{}{suffix}", file.display()));
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

on_both_backends!(
    erasure_finds_the_patient_wherever_the_nhs_number_is_placed,
    refused_callbacks_keep_no_submitted_values,
    dead_lettered_payloads_are_purged_by_retention,
    replaying_an_erased_message_is_refused,
    erasure_wins_the_race_with_a_delivery_in_flight,
    a_callback_after_erasure_keeps_nothing_of_the_patient,
    a_removed_referrers_token_is_refused,
);

mod sqlite_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_locked_database_never_gets_a_false_nothing_was_stored() {
        super::a_locked_database_never_gets_a_false_nothing_was_stored().await
    }

    #[cfg(unix)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_database_files_are_private() {
        super::the_database_files_are_private().await
    }
}
