//! Operators put delivery right: a pending message is sent now on request
//! (admin API and CLI); a replay that arrives mends the Task's "delivery
//! failed" and tells the referrer; dead letters and endpoints disabled by
//! `410` are logged at WARN with their ids and shown in `/metrics`; an
//! endpoint is re-enabled by its bare id.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::Value;
use signpost::security::tokens::Role;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::{
    delivery::signpost_cli,
    on_both_backends,
    support::fleet::{Fleet, PATIENCE, receivers, write_config},
    support::helpers::{
        Backend, MANIFEST_DIR, TestDb, client_with, issue_token, json, valid, with_new_identifier,
    },
    support::receiver::Scripted,
};

const HOUR: Duration = Duration::from_secs(3600);

/// The one outbox message to `provider` for a referral.
async fn message_to(fleet: &Fleet, referral: &str, provider: &str) -> Value {
    let listed = json(
        fleet
            .app
            .get(&format!(
                "/admin/deliveries?referral={referral}&provider={provider}"
            ))
            .await,
    )
    .await;
    listed["messages"][0].clone()
}

async fn admin_post(fleet: &Fleet, path: &str) -> reqwest::Response {
    fleet
        .app
        .admin
        .post(fleet.app.url(path))
        .send()
        .await
        .unwrap()
}

async fn a_retry_sends_a_pending_message_now(backend: Backend) {
    // Retries an hour apart: without the operator, nothing goes for an hour.
    let fleet = Fleet::start_stepped(backend, |config| {
        config.delivery.retry_schedule = vec![HOUR, HOUR];
    })
    .await;
    let provider = fleet.provider("activelives");
    provider.script(vec![Scripted::status(503), Scripted::status(503)]);
    let first = fleet.refer("activelives-exercise.json").await;
    let second = fleet.refer("activelives-weight.json").await;
    fleet.app.deliver_due().await;
    assert_eq!(provider.received().len(), 2, "both tried once");
    fleet.app.advance(Duration::from_secs(60));
    fleet.app.deliver_due().await;
    assert_eq!(provider.received().len(), 2, "neither is due yet");

    // The admin API makes the first due now.
    let message = message_to(&fleet, &first, "activelives").await;
    let id = message["id"].as_str().unwrap().to_owned();
    assert_eq!(message["state"], "pending");
    let retried = admin_post(&fleet, &format!("/admin/deliveries/{id}/retry")).await;
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    assert_eq!(json(retried).await["state"], "pending");
    fleet.app.deliver_due().await;
    let delivered = provider.delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].webhook_id, id);
    assert_eq!(
        message_to(&fleet, &first, "activelives").await["state"],
        "delivered"
    );
    assert_eq!(
        message_to(&fleet, &second, "activelives").await["state"],
        "pending",
        "only the message asked for"
    );

    // The command line does the same for the second (its time is the
    // system's, a moment past the test's stopped clock).
    let other = message_to(&fleet, &second, "activelives").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ok, out) = signpost_cli(&fleet.app.db.url, &["deliveries", "retry", &other]).await;
    assert!(ok, "{out}");
    fleet.app.advance(Duration::from_secs(5));
    fleet.app.deliver_due().await;
    assert_eq!(provider.delivered().len(), 2);
    assert_eq!(provider.delivered()[1].webhook_id, other);

    // A message that is not pending is not retried; an unknown one is not found.
    let again = admin_post(&fleet, &format!("/admin/deliveries/{id}/retry")).await;
    assert_eq!(again.status(), StatusCode::CONFLICT);
    let (ok, _) = signpost_cli(&fleet.app.db.url, &["deliveries", "retry", &other]).await;
    assert!(!ok);
    let unknown = admin_post(&fleet, "/admin/deliveries/msg_nope/retry").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

async fn a_replay_that_arrives_clears_delivery_failed_and_tells_the_referrer(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    fleet
        .provider("grow-together")
        .script(vec![Scripted::status(400)]);
    let id = fleet.refer("grow-together-performer-ref.json").await;
    fleet.app.deliver_due().await;
    assert_eq!(
        fleet.task(&id).await["businessStatus"]["text"],
        "delivery failed"
    );
    assert_eq!(fleet.referrer.delivered().len(), 1);
    let original = message_to(&fleet, &id, "grow-together").await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let replayed = admin_post(&fleet, &format!("/admin/deliveries/{original}/replay")).await;
    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    fleet.app.deliver_due().await;
    assert_eq!(fleet.provider("grow-together").delivered().len(), 1);

    let task = fleet.task(&id).await;
    assert_eq!(task["businessStatus"]["text"], "delivered");
    assert_eq!(task["status"], "requested");
    let notified = fleet.referrer.delivered();
    assert_eq!(notified.len(), 2, "the referrer is told it arrived");
    let told = &notified[1].body["entry"][1]["resource"];
    assert!(notified[1].signature_valid);
    assert_eq!(told["businessStatus"]["text"], "delivered");
    assert_eq!(told["meta"]["versionId"], task["meta"]["versionId"]);

    // A later replay of a delivered message changes the Task no more.
    let again = admin_post(&fleet, &format!("/admin/deliveries/{original}/replay")).await;
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    fleet.app.deliver_due().await;
    assert_eq!(fleet.provider("grow-together").delivered().len(), 2);
    assert_eq!(fleet.referrer.delivered().len(), 2);
}

/// The admin API re-enables an endpoint named by its bare id.
async fn the_admin_api_enables_an_endpoint_by_its_bare_id(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    fleet
        .provider("activelives")
        .script(vec![Scripted::status(410)]);
    fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_due().await;
    assert_eq!(fleet.provider("activelives").delivered().len(), 0);

    let enabled = admin_post(&fleet, "/admin/endpoints/activelives/enable").await;
    assert_eq!(enabled.status(), StatusCode::OK);
    assert_eq!(json(enabled).await["endpoint"], "provider:activelives");
    fleet.app.deliver_due().await;
    assert_eq!(fleet.provider("activelives").delivered().len(), 1);
    let again = admin_post(&fleet, "/admin/endpoints/activelives/enable").await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
    let unknown = admin_post(&fleet, "/admin/endpoints/nobody/enable").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

/// The `signpost_<name>{endpoint="<endpoint>"}` sample of a scrape.
fn sample(metrics: &str, name: &str, endpoint: &str) -> Option<f64> {
    let prefix = format!("signpost_{name}{{endpoint=\"{endpoint}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// The real binary: its WARN lines name the dead letter and the disabled
/// endpoint by id, `/metrics` counts both, and `signpost endpoints enable
/// activelives` re-enables the provider, whose waiting message then goes.
async fn dead_letters_and_disabled_endpoints_are_logged_counted_and_re_enabled(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let (providers, referrer) = receivers().await;
    providers["activelives"].script(vec![Scripted::status(410)]);
    providers["community-connect"].script(vec![Scripted::status(400)]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &providers, &referrer);
    let mut child = Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(MANIFEST_DIR)
        .env("SIGNPOST_LISTEN", "127.0.0.1:0")
        .env("SIGNPOST_DATABASE_URL", &db.url)
        .env("SIGNPOST_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("signpost binary starts");
    let log = Arc::new(Mutex::new(Vec::<Value>::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let collected = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                collected.lock().unwrap().push(event);
            }
        }
    });
    let wait_for_event = |wanted: &'static str| {
        let log = log.clone();
        async move {
            let deadline = std::time::Instant::now() + PATIENCE;
            loop {
                if let Some(event) = log
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|e| e["message"].as_str().is_some_and(|m| m.starts_with(wanted)))
                {
                    return event.clone();
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no log line {wanted:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let address = wait_for_event("signpost listening").await["address"]
        .as_str()
        .unwrap()
        .to_owned();
    let client = client_with(
        &issue_token(
            &db.url,
            Role::Referrer("riverside-surgery".parse().unwrap()),
        )
        .await,
    );
    let mut ids = Vec::new();
    for fixture in [
        "activelives-exercise.json",
        "community-connect-minimal.json",
    ] {
        let (referral, _) = with_new_identifier(valid(fixture));
        let created = client
            .post(format!("http://{address}/fhir/ServiceRequest"))
            .header("content-type", "application/fhir+json")
            .body(referral.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), StatusCode::CREATED);
        ids.push(json(created).await["id"].as_str().unwrap().to_owned());
    }

    let disabled = wait_for_event("endpoint disabled").await;
    assert_eq!(disabled["level"], "WARN");
    assert_eq!(disabled["endpoint"], "provider:activelives");
    assert_eq!(disabled["referral_id"], ids[0].as_str());
    assert!(disabled["message_id"].as_str().unwrap().starts_with("msg_"));
    let dead = wait_for_event("message dead-lettered").await;
    assert_eq!(dead["level"], "WARN");
    assert_eq!(dead["endpoint"], "provider:community-connect");
    assert_eq!(dead["referral_id"], ids[1].as_str());
    assert!(dead["message_id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(dead["status"], 400);

    let monitor = client_with(&issue_token(&db.url, Role::Monitor).await);
    let scrape = || async {
        monitor
            .get(format!("http://{address}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let metrics = scrape().await;
    assert_eq!(
        sample(&metrics, "endpoint_disabled", "provider:activelives"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "dead_letters", "provider:community-connect"),
        Some(1.0),
        "{metrics}"
    );

    // The operator re-enables the provider by its bare id.
    let (ok, out) = signpost_cli(&db.url, &["endpoints", "enable", "activelives"]).await;
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "provider:activelives re-enabled");
    providers["activelives"].wait_for(1, PATIENCE).await;
    assert_eq!(
        sample(&scrape().await, "endpoint_disabled", "provider:activelives"),
        None
    );
    let (ok, _) = signpost_cli(&db.url, &["endpoints", "enable", "activelives"]).await;
    assert!(!ok, "no longer disabled");
    let (ok, _) = signpost_cli(&db.url, &["endpoints", "enable", "nobody"]).await;
    assert!(!ok);
    child.kill().await.unwrap();
}

on_both_backends!(
    a_retry_sends_a_pending_message_now,
    a_replay_that_arrives_clears_delivery_failed_and_tells_the_referrer,
    the_admin_api_enables_an_endpoint_by_its_bare_id,
    dead_letters_and_disabled_endpoints_are_logged_counted_and_re_enabled,
);
