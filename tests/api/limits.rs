//! Limits, attacked over HTTP: per-token rate, requests in flight, slow
//! uploads (slow-loris), array length.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, TestDb, json, valid, with_new_identifier},
};

async fn a_token_over_its_rate_gets_429_with_retry_after(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.requests_per_second = 0.5;
        config.limits.burst = 3;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            app.get("/fhir/Task?_lastUpdated=ge2020-01-01")
                .await
                .status(),
            StatusCode::OK
        );
    }
    let throttled = app.get("/fhir/Task?_lastUpdated=ge2020-01-01").await;
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = throttled.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(json(throttled).await["issue"][0]["code"], "throttled");
    // Another token is not held back by this one.
    assert_eq!(app.get("/admin/endpoints").await.status(), StatusCode::OK);
}

/// Open a connection and send a request whose body never finishes.
async fn slow_upload(app: &TestApp) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /fhir/ServiceRequest HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n{{\"resourceType\":",
        app.referrer_token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

async fn slow_uploads_time_out_and_requests_beyond_the_cap_are_turned_away(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.max_concurrent_requests = 1;
        config.limits.request_timeout = Duration::from_millis(800);
    })
    .await;
    let mut slow = slow_upload(&app).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The slow upload holds the only slot.
    let turned_away = app.get("/fhir/Task?_lastUpdated=ge2020-01-01").await;
    assert_eq!(turned_away.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(turned_away.headers()["retry-after"], "1");
    // Then it runs out of time: 408, and the slot is free again.
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut answer))
        .await
        .expect("an answer within the request timeout")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(
        app.get("/fhir/Task?_lastUpdated=ge2020-01-01")
            .await
            .status(),
        StatusCode::OK
    );
}

async fn an_overlong_array_is_refused(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.max_array_length = 50;
    })
    .await;
    let (mut referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    referral["note"] = json!(
        (0..51)
            .map(|i| json!({"text": format!("note {i}")}))
            .collect::<Vec<_>>()
    );
    let response = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let outcome = json(response).await;
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("longer than 50"),
        "{outcome}"
    );
    referral["note"] = json!([{"text": "one note"}]);
    assert_eq!(
        app.post_json("/fhir/ServiceRequest", &referral)
            .await
            .status(),
        StatusCode::CREATED
    );
}

/// Read until the server closes the connection; what it said, if anything.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    String::from_utf8_lossy(&answer).into_owned()
}

async fn slow_headers_and_silent_connections_are_cut_off(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.header_read_timeout = Duration::from_millis(500);
    })
    .await;
    let address = app.address.trim_start_matches("http://");

    // Headers trickle in and never end (slow-loris).
    let mut slow = TcpStream::connect(address).await.unwrap();
    let started = std::time::Instant::now();
    slow.write_all(b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            break;
        }
    }
    let answer = until_closed(&mut slow).await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // A connection that never says anything.
    let mut silent = TcpStream::connect(address).await.unwrap();
    assert_eq!(until_closed(&mut silent).await, "");

    // A prompt client is served as usual.
    assert_eq!(app.get("/fhir/metadata").await.status(), StatusCode::OK);
}

async fn guessing_credentials_is_throttled_by_address_and_callbacks_by_provider(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.requests_per_second = 0.2;
        config.limits.burst = 3;
    })
    .await;
    let guess = crate::support::helpers::client_with("sp_0123456789abcdef_guess");
    let search = app.url("/fhir/Task?_lastUpdated=ge2020-01-01");
    for _ in 0..2 {
        let answer = guess.get(&search).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    }
    // A forged status callback counts against the same address.
    let forged = app
        .anonymous
        .post(app.url("/providers/activelives/status"))
        .header("content-type", "application/json")
        .header("webhook-id", "msg_forged")
        .header(
            "webhook-timestamp",
            crate::support::receiver::unix_now().to_string(),
        )
        .header("webhook-signature", "v1,Zm9yZ2Vk")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    let throttled = guess.get(&search).send().await.unwrap();
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
    // Real callers keep their own buckets.
    assert_eq!(
        app.get("/fhir/Task?_lastUpdated=ge2020-01-01")
            .await
            .status(),
        StatusCode::OK
    );

    // A provider's signed callbacks have a bucket of their own.
    let secret = crate::support::helpers::test_secret("provider:activelives");
    let mut statuses = Vec::new();
    for n in 0..4 {
        let id = format!("msg_rate_{n}");
        let body = json!({"referral_ref": "nobody", "event": "booked", "event_time": "2026-03-04T10:15:00Z"})
            .to_string();
        let now = crate::support::receiver::unix_now();
        let answer = app
            .anonymous
            .post(app.url("/providers/activelives/status"))
            .header("content-type", "application/json")
            .header("webhook-id", &id)
            .header("webhook-timestamp", now.to_string())
            .header(
                "webhook-signature",
                crate::support::receiver::sign(&secret, &id, now, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        statuses.push(answer.status().as_u16());
    }
    // Three verified (about an unknown referral: 404), then throttled.
    assert_eq!(statuses, [404, 404, 404, 429]);
}

on_both_backends!(
    slow_headers_and_silent_connections_are_cut_off,
    guessing_credentials_is_throttled_by_address_and_callbacks_by_provider,
    a_token_over_its_rate_gets_429_with_retry_after,
    slow_uploads_time_out_and_requests_beyond_the_cap_are_turned_away,
    an_overlong_array_is_refused,
);
