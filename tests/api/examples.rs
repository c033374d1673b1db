//! The programs in `examples/` work against a real Signpost: the Python and
//! Node.js notification receivers verify signatures with the official
//! `standardwebhooks` libraries, notice an event they missed and recover it
//! with `Subscription/{id}/$events`; the SMART on FHIR Python client
//! (`fhirclient`) sends a transaction Bundle referral as it always does.
//! Skipped, loudly, where Python, Node.js or the libraries are missing
//! (failed instead under `SIGNPOST_REQUIRE_EXAMPLES=1`).

use serde_json::Value;
use url::Url;

use crate::{
    on_both_backends,
    support::{
        fleet::{Fleet, PATIENCE, REFERRER},
        helpers::{Backend, json, test_secret, valid, with_new_identifier},
        programs::{Program, Runtime},
        receiver::{Receiver, sign, unix_now},
    },
};

fn booked(referral_id: &str) -> Value {
    serde_json::json!({"referral_ref": referral_id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"})
}

fn attended(referral_id: &str) -> Value {
    serde_json::json!({"referral_ref": referral_id, "event": "first_session_attended", "event_time": "2026-03-10T10:05:00Z"})
}

/// The receiver is down when event 1 (the referral accepted) is sent, and
/// Signpost gives up on it (one attempt only here); once up, it gets event
/// 2, sees that 1 is missing, recovers it with `$events` and handles both,
/// in order. A notification that is not validly signed is refused.
async fn receiver_recovers_a_missed_event(backend: Backend, runtime: Runtime, test: &str) {
    if !runtime.available(test).await {
        return;
    }
    let address = Receiver::unused_addr();
    let fleet = Fleet::start_with(backend, |config| {
        config.delivery.retry_schedule = Vec::new();
        config.referrers.get_mut(REFERRER).unwrap().callback_url =
            Url::parse(&format!("http://{address}/notifications")).unwrap();
    })
    .await;
    let referral = fleet.refer("activelives-exercise.json").await;
    let response = fleet
        .callback("activelives", "e1", &booked(&referral))
        .await;
    assert_eq!(response.status(), 200);
    // Event 1 was tried once, met no listener and was dead-lettered.
    fleet.settled(&referral).await;
    let dead = json(
        fleet
            .app
            .get(&format!(
                "/admin/deliveries?endpoint=referrer:{REFERRER}&state=dead"
            ))
            .await,
    )
    .await;
    assert_eq!(dead["messages"].as_array().unwrap().len(), 1, "{dead}");

    let secret = test_secret(&format!("referrer:{REFERRER}"));
    let mut receiver = Program::start(
        runtime,
        match runtime {
            Runtime::Python => "receiver.py",
            Runtime::Node => "receiver.mjs",
        },
        &[],
        &[
            ("SIGNPOST_WEBHOOK_SECRET", secret.clone()),
            ("SIGNPOST_TOKEN", fleet.app.referrer_token.clone()),
            ("SIGNPOST_FHIR_BASE", fleet.app.url("/fhir")),
            ("PORT", address.port().to_string()),
        ],
    );
    let mut seen = Vec::new();
    receiver
        .line_where(&mut seen, PATIENCE, |l| l.starts_with("listening on"))
        .await;

    let response = fleet
        .callback("activelives", "e2", &attended(&referral))
        .await;
    assert_eq!(response.status(), 200);
    let task = fleet.task(&referral).await;
    let task_ref = format!("Task/{}", task["id"].as_str().unwrap());
    receiver
        .line_where(&mut seen, PATIENCE, |l| l.starts_with("received event 2"))
        .await;
    let handled: Vec<&String> = seen.iter().filter(|l| l.contains(" event ")).collect();
    assert_eq!(
        handled,
        [
            &format!("recovered event 1: {task_ref} accepted"),
            &format!("received event 2: {task_ref} in-progress"),
        ],
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("gap: events 1..1")),
        "{seen:#?}"
    );

    // A forged notification (signed with another secret) is refused.
    let body = r#"{"resourceType":"Bundle"}"#;
    let wrong = test_secret("referrer:someone-else");
    let now = unix_now();
    let forged = reqwest::Client::new()
        .post(format!("http://{address}/notifications"))
        .header("webhook-id", "msg_forged")
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            sign(&wrong, "msg_forged", now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    receiver
        .line_where(&mut seen, PATIENCE, |l| l.starts_with("refused:"))
        .await;
}

async fn the_python_receiver_recovers_a_missed_event(backend: Backend) {
    receiver_recovers_a_missed_event(
        backend,
        Runtime::Python,
        "the_python_receiver_recovers_a_missed_event",
    )
    .await;
}

async fn the_node_receiver_recovers_a_missed_event(backend: Backend) {
    receiver_recovers_a_missed_event(
        backend,
        Runtime::Node,
        "the_node_receiver_recovers_a_missed_event",
    )
    .await;
}

/// `fhirclient` posts a transaction Bundle to the base URL with a trailing
/// slash (`POST /fhir/`), checks it against its R4 models on the way out
/// and parses the transaction-response on the way back: no workaround.
async fn fhirclient_sends_a_transaction_bundle_referral(backend: Backend) {
    let test = "fhirclient_sends_a_transaction_bundle_referral";
    if !Runtime::Python.available(test).await {
        return;
    }
    let fleet = Fleet::start(backend).await;
    let (bundle, value) = with_new_identifier(valid("grow-together.bundle.json"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("referral.json");
    std::fs::write(&file, bundle.to_string()).unwrap();

    let program = Program::start(
        Runtime::Python,
        "send_referral.py",
        &[file.to_str().unwrap()],
        &[
            ("SIGNPOST_TOKEN", fleet.app.referrer_token.clone()),
            ("SIGNPOST_FHIR_BASE", fleet.app.url("/fhir")),
        ],
    );
    let (status, output) = program.finish().await;
    assert!(status.success(), "fhirclient failed: {output:#?}");
    let answer: Value = serde_json::from_str(output.last().expect("the answer")).unwrap();
    assert_eq!(answer["type"], "transaction-response");
    assert_eq!(answer["entry"][0]["response"]["status"], "201 Created");

    let found = fleet.app.search_identifier(&value).await;
    assert_eq!(found["total"], 1, "{found}");
    let contained = found["entry"][0]["resource"]["contained"]
        .as_array()
        .unwrap();
    assert!(contained.iter().any(|r| r["resourceType"] == "Patient"));
}

on_both_backends!(
    the_python_receiver_recovers_a_missed_event,
    the_node_receiver_recovers_a_missed_event,
    fhirclient_sends_a_transaction_bundle_referral,
);
