//! What operators rely on: Prometheus metrics that count what happened,
//! health endpoints, and a graceful stop on SIGTERM.

use std::{collections::BTreeMap, time::Duration};

use reqwest::StatusCode;
use serde_json::json;
use signpost::security::tokens::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    on_both_backends,
    support::fleet::{Fleet, PATIENCE},
    support::helpers::{
        Backend, TestApp, TestDb, client_with, issue_token, json, valid, with_new_identifier,
    },
    support::receiver::Scripted,
};

/// The samples of a scrape: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// Scrape until `check` accepts the samples (the outbox moves on its own).
async fn scrape_until(
    app: &TestApp,
    monitor: &reqwest::Client,
    check: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let response = monitor.get(app.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let found = samples(&response.text().await.unwrap());
        if check(&found) {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metrics never matched: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn metrics_count_referrals_deliveries_callbacks_and_the_outbox(backend: Backend) {
    let fleet = Fleet::start_with(backend, |config| {
        // A failed attempt waits long enough to be seen waiting.
        config.delivery.retry_schedule = vec![Duration::from_secs(3600)];
    })
    .await;
    let app = &fleet.app;
    fleet
        .provider("community-connect")
        .set_default(Scripted::status(400));
    fleet
        .provider("grow-together")
        .set_default(Scripted::status(503));

    // Who may scrape: a monitor or an admin token; not a referrer's, not
    // anonymous.
    let monitor = client_with(&issue_token(&app.db.url, Role::Monitor).await);
    let anonymous = app.anonymous.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let referrer = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(referrer.status(), StatusCode::FORBIDDEN);
    let scraped = monitor.get(app.url("/metrics")).send().await.unwrap();
    assert!(
        scraped.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(scraped.text().await.unwrap().ends_with("# EOF\n"));
    // And a monitor token opens nothing else.
    let fhir = monitor
        .get(app.url("/fhir/Task?_lastUpdated=ge2020-01-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(fhir.status(), StatusCode::FORBIDDEN);
    let admin = monitor
        .get(app.url("/admin/deliveries"))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::FORBIDDEN);

    let first = fleet.refer("activelives-exercise.json").await;
    fleet.refer("activelives-weight.json").await;
    fleet.refer("community-connect-minimal.json").await;
    fleet.refer("grow-together-performer-ref.json").await;
    let (mut invalid, _) = with_new_identifier(valid("activelives-exercise.json"));
    invalid["intent"] = json!("directive");
    let refused = app.post_json("/fhir/ServiceRequest", &invalid).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    fleet.provider("activelives").wait_for(2, PATIENCE).await;
    let booked =
        json!({"referral_ref": first, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet.callback("activelives", "m1", &booked).await.status(),
        200
    );

    let found = scrape_until(app, &monitor, |s| {
        s.get(r#"signpost_dead_letters{endpoint="provider:community-connect"}"#) == Some(&1.0)
            && s.get(r#"signpost_outbox_pending{endpoint="provider:grow-together"}"#) == Some(&1.0)
            && s.get(r#"signpost_delivery_attempts_total{endpoint="provider:activelives",outcome="delivered"}"#)
                == Some(&2.0)
    })
    .await;
    let value = |key: &str| {
        found
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no {key} in {found:#?}"))
    };
    assert_eq!(
        value(r#"signpost_referrals_accepted_total{referrer="riverside-surgery"}"#),
        4.0
    );
    assert_eq!(
        value(
            r#"signpost_referrals_rejected_total{referrer="riverside-surgery",reason="profile"}"#
        ),
        1.0
    );
    assert_eq!(value("signpost_validation_duration_seconds_count"), 5.0);
    assert_eq!(value("signpost_mapping_duration_seconds_count"), 4.0);
    assert_eq!(
        value(
            r#"signpost_delivery_attempts_total{endpoint="provider:community-connect",outcome="dead"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"signpost_delivery_attempts_total{endpoint="provider:grow-together",outcome="retry"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            r#"signpost_delivery_attempt_duration_seconds_count{endpoint="provider:activelives"}"#
        ),
        2.0
    );
    assert_eq!(
        value(
            r#"signpost_status_events_total{provider="activelives",outcome="applied",status="accepted"}"#
        ),
        1.0
    );
    assert!(
        value(r#"signpost_outbox_oldest_pending_age_seconds{endpoint="provider:grow-together"}"#)
            >= 0.0
    );
    assert_eq!(
        value(
            r#"signpost_http_requests_total{method="POST",route="/fhir/ServiceRequest",status="201"}"#
        ),
        4.0
    );
    // Labels name ids and outcomes, never patient data.
    let text = monitor
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains(&first), "a referral id is not a label");
    assert!(!text.contains("9990124833"), "no NHS number");
}

async fn anonymous_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.anonymous.get(app.url(path)).send().await.unwrap()
}

async fn health_says_live_and_ready_and_not_ready_without_its_tables(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let live = anonymous_get(&app, "/health/live").await;
    assert_eq!(live.status(), StatusCode::OK);
    let ready = anonymous_get(&app, "/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        json(ready).await,
        json!({"status": "ready", "checks": {"database": "ok", "mappings": "ok", "worker": "running"}})
    );

    crate::errors::sabotage_table(&app.db.url, "outbox").await;
    let ready = anonymous_get(&app, "/health/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(json(ready).await["checks"]["database"], "failing");
    // Live still: restarting would not help.
    let live = anonymous_get(&app, "/health/live").await;
    assert_eq!(live.status(), StatusCode::OK);

    // A server that leaves delivery to separate workers is ready without one.
    let db = TestDb::fresh(backend).await;
    let apart = TestApp::spawn_on(db, |config| config.delivery.worker = false).await;
    let ready = json(anonymous_get(&apart, "/health/ready").await).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["worker"], "elsewhere");
}

/// SIGTERM: the real binary stops accepting connections, finishes the
/// request and the delivery attempt in flight, gives back its leases, and
/// exits 0.
async fn sigterm_finishes_what_is_in_flight_and_exits_cleanly(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let (providers, referrer) = crate::support::fleet::receivers().await;
    // The provider takes a while to answer: the attempt is in flight when
    // the signal comes.
    providers["activelives"].set_default(Scripted::accepted().after(Duration::from_millis(1500)));
    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::fleet::write_config(dir.path(), &providers, &referrer);
    let (mut child, address) = crate::durability::start_binary(&db, &config).await;
    let token = issue_token(
        &db.url,
        Role::Referrer("riverside-surgery".parse().unwrap()),
    )
    .await;
    let client = client_with(&token);

    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = client
        .post(format!("{address}/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let delivered_id = json(created).await["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A second referral is half uploaded when the signal comes.
    let (second, _) = with_new_identifier(valid("activelives-weight.json"));
    let body = second.to_string();
    let host = address.trim_start_matches("http://").to_owned();
    let mut upload = tokio::net::TcpStream::connect(&host).await.unwrap();
    let head = format!(
        "POST /fhir/ServiceRequest HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    upload
        .write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    tokio::time::sleep(Duration::from_millis(300)).await;

    // No new connections...
    assert!(
        tokio::net::TcpStream::connect(&host).await.is_err(),
        "still accepting after SIGTERM"
    );
    // ...but the upload in flight is finished and answered.
    upload
        .write_all(&body.as_bytes()[body.len() / 2..])
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), upload.read_to_string(&mut answer))
        .await
        .expect("the answer comes")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");

    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("signpost exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "exit status {status}");

    // The attempt in flight was completed and recorded; no lease is left.
    let store = signpost::store::open(&db.url, 1).await.unwrap();
    let messages = store
        .messages(&signpost::store::MessageFilter {
            state: None,
            endpoint: None,
            referral_id: None,
            limit: 100,
        })
        .await
        .unwrap();
    let first = messages
        .iter()
        .find(|m| m.referral_id == delivered_id && m.kind != "notification")
        .expect("the first referral's message");
    assert_eq!(first.state, "delivered", "{first:?}");
    assert!(
        messages.iter().all(|m| m.lease_owner.is_none()),
        "leases given back: {messages:?}"
    );
    assert_eq!(providers["activelives"].received().len(), 1);
}

on_both_backends!(
    metrics_count_referrals_deliveries_callbacks_and_the_outbox,
    health_says_live_and_ready_and_not_ready_without_its_tables,
    sigterm_finishes_what_is_in_flight_and_exits_cleanly,
);
