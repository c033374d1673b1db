//! The attacks of issue #14 on the HTTP boundary, replayed in bounded form
//! over real HTTP: slow unsigned uploads to the callback endpoint while a
//! referrer posts, an anonymous flood against the audit trail's growth, a
//! method and route flood against the metrics' series, a write-locked
//! database against readiness, and a forged `Host` against `Location`.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::{io::AsyncWriteExt, net::TcpStream};

use crate::{
    on_both_backends,
    support::{
        fleet::PATIENCE,
        helpers::{Backend, TestApp, TestDb, json, valid, with_new_identifier},
        kit,
    },
};

/// A status callback upload to `provider` that sends its headers and the
/// start of a body, then stalls. `signed`: with well-formed Standard
/// Webhooks headers dated now (and a signature that cannot match), else
/// with none.
async fn stalled_callback(app: &TestApp, provider: &str, n: usize, signed: bool) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let webhook = if signed {
        format!(
            "webhook-id: msg_stalled_{n}\r\nwebhook-timestamp: {}\r\n\
             webhook-signature: v1,c3RhbGxlZCB1cGxvYWQgc3RhbGxlZCB1cGxvYWQgISE=\r\n",
            kit::unix_now()
        )
    } else {
        String::new()
    };
    let head = format!(
        "POST /providers/{provider}/status HTTP/1.1\r\nHost: {address}\r\n{webhook}\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"referral_ref\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// The status line the server has sent on `stream` so far, if any
/// (without waiting).
fn answered(stream: &TcpStream) -> Option<String> {
    let mut buffer = [0u8; 512];
    match stream.try_read(&mut buffer) {
        Ok(0) => Some("closed".into()),
        Ok(n) => Some(
            String::from_utf8_lossy(&buffer[..n])
                .lines()
                .next()
                .unwrap_or("")
                .to_owned(),
        ),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
        Err(e) => Some(format!("error: {e}")),
    }
}

/// Finding 1: slow uploads to `POST /providers/{id}/status`, unsigned or
/// with forged signatures, held open in their hundreds, must not take the
/// request slots a referrer needs.
async fn stalled_callback_uploads_leave_referrers_their_slots(backend: Backend) {
    const SLOTS: usize = 128;
    // The default `limits.max_unverified_uploads`.
    const BUDGET: usize = 64;
    const UNSIGNED: usize = 200;
    const FORGED: usize = 100;
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.max_concurrent_requests = SLOTS;
        // A burst large enough that refusals are 401, not the address's 429.
        config.limits.burst = 10_000;
        // Every upload comes from 127.0.0.1: this test is about slots, not
        // connections per address.
        config.limits.max_connections_per_client = 1_000;
    })
    .await;
    let mut uploads = Vec::new();
    for n in 0..UNSIGNED {
        uploads.push((false, stalled_callback(&app, "activelives", n, false).await));
    }
    for n in 0..FORGED {
        uploads.push((true, stalled_callback(&app, "activelives", n, true).await));
    }
    // Wait until the server has taken in every upload: each is answered,
    // or held for its body; or until the server is full (as it was before:
    // every slot held by a stalled upload).
    let mut answers: Vec<Option<String>> = vec![None; uploads.len()];
    let deadline = Instant::now() + PATIENCE;
    loop {
        for (answer, (_, stream)) in answers.iter_mut().zip(&uploads) {
            if answer.is_none() {
                *answer = answered(stream);
            }
        }
        let waiting = answers.iter().filter(|a| a.is_none()).count();
        // Never more held than the pre-authentication budget, which leaves
        // the rest to referrers.
        if waiting <= BUDGET {
            break;
        }
        let probe = app.get("/fhir/Task?_lastUpdated=ge2020-01-01").await;
        if probe.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{waiting} uploads neither answered nor refused"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The referrer is served while the uploads are held.
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "a referral while {} stalled uploads are open: {:?}",
        uploads.len(),
        json(created).await
    );
    // Unsigned uploads were refused from their headers, at once.
    for ((signed, _), answer) in uploads.iter().zip(&answers) {
        if !signed {
            let answer = answer.as_deref().unwrap_or("still held");
            assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
        }
    }
    // Forged ones beyond the budget were turned away; those within it are
    // cut off at the short body deadline (5 s), long before the 30 s
    // request timeout.
    for ((signed, stream), answer) in uploads.iter_mut().zip(&answers) {
        if !*signed {
            continue;
        }
        let answer = match answer {
            Some(answer) => answer.clone(),
            None => {
                let mut head = [0u8; 512];
                let n = tokio::time::timeout(
                    Duration::from_secs(20),
                    tokio::io::AsyncReadExt::read(stream, &mut head),
                )
                .await
                .expect("a held upload is answered at its body deadline")
                .unwrap();
                String::from_utf8_lossy(&head[..n])
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            }
        };
        assert!(
            answer.starts_with("HTTP/1.1 503") || answer.starts_with("HTTP/1.1 408"),
            "{answer}"
        );
    }
}

/// Audit records by `query`, once the writer has caught up with every
/// answer sent so far (an admin request made now is recorded after them).
async fn audit_after_catching_up(app: &TestApp, query: &str) -> Vec<Value> {
    let marker = uuid::Uuid::new_v4().to_string();
    let answer = app
        .admin
        .get(app.url("/admin/endpoints"))
        .header("x-request-id", &marker)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let deadline = Instant::now() + PATIENCE;
    loop {
        let recent = json(app.get("/admin/audit?limit=1000").await).await;
        if recent["records"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["request_id"] == marker.as_str())
        {
            break;
        }
        assert!(Instant::now() < deadline, "the audit writer fell behind");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let found = json(app.get(&format!("/admin/audit?{query}&limit=1000")).await).await;
    found["records"].as_array().unwrap().clone()
}

/// Finding 2: anonymous traffic (unmatched paths, missing and wrong
/// tokens) writes counts and samples, not a row per request, and never
/// the raw path.
async fn an_anonymous_flood_writes_a_bounded_audit_trail(backend: Backend) {
    const EACH: usize = 200;
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.burst = 10_000;
    })
    .await;
    let guess = crate::support::helpers::client_with("sp_0123456789abcdef_guess");
    let filler = "x".repeat(2000);
    for n in 0..EACH {
        let unmatched = app
            .anonymous
            .get(app.url(&format!("/wp-admin/probe-{n}-{filler}")))
            .send()
            .await
            .unwrap();
        assert_eq!(unmatched.status(), StatusCode::NOT_FOUND);
        let no_token = app
            .anonymous
            .get(app.url(&format!("/fhir/ServiceRequest/probe-{n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
        let wrong_token = guess
            .get(app.url("/fhir/Task?_lastUpdated=ge2020-01-01"))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong_token.status(), StatusCode::UNAUTHORIZED);
    }
    let anonymous = audit_after_catching_up(&app, "actor=unauthenticated").await;
    // One sample per kind of refusal (and later one count for the rest),
    // not 600 rows.
    assert!(
        (1..=10).contains(&anonymous.len()),
        "{} audit rows for {} anonymous requests",
        anonymous.len(),
        3 * EACH
    );
    let text = serde_json::to_string(&anonymous).unwrap();
    assert!(!text.contains("probe-"), "a raw path in the audit trail");
    assert!(
        anonymous
            .iter()
            .any(|r| r["action"] == "GET /fhir/ServiceRequest/{id}" && r["outcome"] == "401"),
        "{text}"
    );
    // Authenticated reads are still recorded one by one.
    for _ in 0..3 {
        app.get("/fhir/Task?_lastUpdated=ge2020-01-01").await;
    }
    let referrer = audit_after_catching_up(&app, "actor=referrer:riverside-surgery").await;
    assert_eq!(
        referrer
            .iter()
            .filter(|r| r["action"] == "GET /fhir/Task")
            .count(),
        3
    );
}

/// Finding 3: made-up methods and paths add no `/metrics` series.
async fn a_method_and_route_flood_adds_no_metrics_series(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("signpost_http_requests_total{"))
            .count()
    };
    for n in 0..150 {
        let method = Method::from_bytes(format!("PROBE{n}").as_bytes()).unwrap();
        for path in ["/fhir/metadata".to_owned(), format!("/nowhere/{n}")] {
            let answer = app
                .anonymous
                .request(method.clone(), app.url(&path))
                .send()
                .await
                .unwrap();
            assert!(answer.status().is_client_error(), "{path}");
        }
        app.anonymous
            .get(app.url(&format!("/nowhere/{n}")))
            .send()
            .await
            .unwrap();
    }
    let metrics = app.get_text("/metrics").await;
    assert!(
        series(&metrics) <= 6,
        "{} request series:\n{metrics}",
        series(&metrics)
    );
    assert!(!metrics.contains("PROBE"), "a made-up method is a label");
    assert!(!metrics.contains("nowhere"), "a raw path is a label");
    assert!(metrics.contains("method=\"other\""), "{metrics}");
}

/// Holds the database's write lock (as another process might) until
/// dropped: SQLite's `BEGIN IMMEDIATE`, PostgreSQL's `SHARE` lock on the
/// outbox (readers pass, writers wait).
async fn lock_for_writing(db: &TestDb, backend: Backend) -> Box<dyn std::any::Any + Send> {
    use sqlx::Connection;
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut conn)
                .await
                .unwrap();
            Box::new(conn)
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
            sqlx::query("LOCK TABLE outbox IN SHARE MODE")
                .execute(&mut conn)
                .await
                .unwrap();
            Box::new(conn)
        }
    }
}

/// Finding 9 (readiness): a database that answers reads but cannot be
/// written is not ready, and says why: intake would wait on a lock.
async fn readiness_fails_while_the_database_cannot_be_written(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let ready = || async {
        app.anonymous
            .get(app.url("/health/ready"))
            .send()
            .await
            .unwrap()
    };
    assert_eq!(ready().await.status(), StatusCode::OK);
    let lock = lock_for_writing(&app.db, backend).await;
    let locked = ready().await;
    assert_eq!(locked.status(), StatusCode::SERVICE_UNAVAILABLE);
    let said = json(locked).await["checks"]["database"].clone();
    match backend {
        Backend::Postgres => assert_eq!(said, "waiting for a lock"),
        // SQLite has one write connection: when a background writer (the
        // delivery worker, a heartbeat) is already waiting on the lock
        // with it, the probe cannot get the connection within
        // `ready_timeout` and says "failing"; otherwise its own BEGIN
        // IMMEDIATE is refused as busy. Either way, not ready.
        Backend::Sqlite => assert!(said == "waiting for a lock" || said == "failing", "{said}"),
    }
    drop(lock);
    assert_eq!(ready().await.status(), StatusCode::OK);
}

/// Finding 9 (`Host`): without `public_base_url`, only the listen address
/// and loopback names are taken from `Host`; any other is never reflected
/// into `Location` or a search's links.
async fn a_forged_host_is_never_reflected(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.public_base_url = None;
    })
    .await;
    let (referral, identifier) = with_new_identifier(valid("activelives-exercise.json"));
    let created = app
        .client
        .post(app.url("/fhir/ServiceRequest"))
        .header("host", "attacker.example")
        .header("content-type", "application/fhir+json")
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    assert!(!location.contains("attacker"), "{location}");
    let encoded: String = url::form_urlencoded::byte_serialize(identifier.as_bytes()).collect();
    let search = app
        .client
        .get(app.url(&format!("/fhir/ServiceRequest?identifier={encoded}")))
        .header("host", "attacker.example:8443")
        .send()
        .await
        .unwrap();
    let text = search.text().await.unwrap();
    assert!(!text.contains("attacker"), "{text}");
    // The address the client reached is still used.
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = app.post_json("/fhir/ServiceRequest", &referral).await;
    let location = created.headers()["location"].to_str().unwrap();
    assert!(
        location.starts_with(&format!("{}/fhir/ServiceRequest/", app.address)),
        "{location}"
    );
}

/// A signed status callback from `local` (a loopback address of the
/// client's choosing, so that it is another client than the tests' usual
/// 127.0.0.1), about a referral that does not exist: its status.
async fn genuine_callback_from(app: &TestApp, local: &str) -> StatusCode {
    let client = reqwest::Client::builder()
        .local_address(local.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap();
    let secret = crate::support::helpers::test_secret("provider:activelives");
    let body =
        r#"{"referral_ref": "nobody", "event": "booked", "event_time": "2026-03-04T10:15:00Z"}"#;
    let now = kit::unix_now();
    client
        .post(app.url("/providers/activelives/status"))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_genuine")
        .header("webhook-timestamp", now.to_string())
        .header(
            "webhook-signature",
            kit::sign(&secret, "msg_genuine", now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

/// Review finding 7: one client address with forged signatures cannot
/// hold every slot of the unverified-upload budget (default 64), so a
/// provider calling from another address is still heard.
async fn one_address_cannot_hold_the_whole_unverified_upload_budget(backend: Backend) {
    const BUDGET: usize = 64;
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.burst = 10_000;
    })
    .await;
    let mut uploads = Vec::new();
    for n in 0..BUDGET {
        uploads.push(stalled_callback(&app, "activelives", n, true).await);
    }
    // Give the server the time to take in every upload's headers (it
    // reads them at once; their bodies never come).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Verified, about no known referral: 404 (it was 503: every slot held).
    assert_eq!(
        genuine_callback_from(&app, "127.0.0.2").await,
        StatusCode::NOT_FOUND
    );
    // Most of the forged uploads were turned away at once.
    let turned_away = uploads
        .iter()
        .filter(|stream| answered(stream).is_some_and(|a| a.starts_with("HTTP/1.1 503")))
        .count();
    assert!(turned_away >= BUDGET / 2, "{turned_away} turned away");
}

/// Review finding 12: a callback whose body does not arrive in time is
/// answered 408 saying so and that nothing was done, not that its outcome
/// is unknown nor how to resend a referral.
async fn a_callback_body_not_received_in_time_says_nothing_was_done(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.unverified_body_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = stalled_callback(&app, "activelives", 0, true).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until the whole OperationOutcome has arrived.
    while !String::from_utf8_lossy(&answer).trim_end().ends_with('}') {
        let n = tokio::time::timeout_at(
            deadline.into(),
            tokio::io::AsyncReadExt::read(&mut stream, &mut buffer),
        )
        .await
        .expect("an answer at the body deadline")
        .unwrap();
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("nothing was done"), "{answer}");
    assert!(
        !answer.contains("not known") && !answer.contains("referral"),
        "{answer}"
    );
}

on_both_backends!(
    one_address_cannot_hold_the_whole_unverified_upload_budget,
    a_callback_body_not_received_in_time_says_nothing_was_done,
    stalled_callback_uploads_leave_referrers_their_slots,
    an_anonymous_flood_writes_a_bounded_audit_trail,
    a_method_and_route_flood_adds_no_metrics_series,
    readiness_fails_while_the_database_cannot_be_written,
    a_forged_host_is_never_reflected,
);
