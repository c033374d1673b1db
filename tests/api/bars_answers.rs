//! Every answer on `$process-message` is a BaRS receiver answer, the
//! shared layers' too: admission control's `503` and `408` and the rate
//! limit's `429` carry the `REC_*` code, BaRS's diagnostics and the echoed
//! `X-Request-Id` and `X-Correlation-Id`, and keep their `Retry-After`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    bars::{Ids, bars_referral, fresh, process, rec_answer},
    on_both_backends,
    support::helpers::{Backend, TestApp, TestDb},
};

/// Open a connection to `$process-message` and send a request whose body
/// never finishes.
async fn slow_bars_upload(app: &TestApp, ids: &Ids) -> TcpStream {
    let address = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /fhir/$process-message HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\
         X-Request-Id: {}\r\nX-Correlation-Id: {}\r\n\
         Content-Type: application/fhir+json\r\nContent-Length: 100000\r\n\r\n{{\"resourceType\":",
        app.referrer_token, ids.request, ids.correlation
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream
}

/// Read one HTTP/1.1 answer with a `Content-Length` body: status, the
/// lower-cased head, and the body as JSON.
async fn read_answer(stream: &mut TcpStream) -> (u16, String, Value) {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buffer))
            .await
            .expect("an answer")
            .unwrap();
        bytes.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let head = head.to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .expect("a content-length")
                .trim()
                .parse()
                .unwrap();
            if body.len() >= length || n == 0 {
                let status = head[9..12].parse().unwrap();
                return (status, head, serde_json::from_str(body).unwrap());
            }
        }
        assert!(n > 0, "closed before the answer was complete");
    }
}

async fn shared_layers_answer_process_message_in_bars_shape(backend: Backend) {
    // Arrange: one request at a time, each within 800 ms.
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.max_concurrent_requests = 1;
        config.limits.request_timeout = Duration::from_millis(800);
    })
    .await;
    let slow_ids = Ids::new();
    let mut slow = slow_bars_upload(&app, &slow_ids).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Act: a message while the slow upload holds the only slot; then the
    // slow upload runs out of time.
    let ids = Ids::new();
    let turned_away = process(&app, &bars_referral(), &ids).await;
    let (status, head, timed_out) = read_answer(&mut slow).await;

    // Assert: 503 REC_SERVICE_UNAVAILABLE, with the ids and Retry-After.
    assert_eq!(turned_away.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(turned_away.headers()["retry-after"], "1");
    assert_eq!(turned_away.headers()["x-request-id"], ids.request.as_str());
    assert_eq!(
        turned_away.headers()["x-correlation-id"],
        ids.correlation.as_str()
    );
    assert_eq!(
        rec_answer(turned_away).await,
        (503, "transient".into(), "REC_SERVICE_UNAVAILABLE".into())
    );
    // 408 REC_TIMEOUT, with the ids.
    assert_eq!(status, 408, "{head}");
    assert!(
        head.contains(&format!("x-request-id: {}", slow_ids.request)),
        "{head}"
    );
    assert!(
        head.contains(&format!("x-correlation-id: {}", slow_ids.correlation)),
        "{head}"
    );
    let issue = &timed_out["issue"][0];
    assert_eq!(issue["code"], "timeout", "{timed_out}");
    assert_eq!(issue["details"]["coding"][0]["code"], "REC_TIMEOUT");
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("X9S1P was unable to process the request: "),
        "{timed_out}"
    );
}

async fn a_sender_over_its_rate_is_answered_rec_too_many_requests(backend: Backend) {
    // Arrange
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.requests_per_second = 0.5;
        config.limits.burst = 1;
    })
    .await;
    let (message, _) = fresh(bars_referral());
    assert_eq!(
        process(&app, &message, &Ids::new()).await.status(),
        StatusCode::OK
    );

    // Act
    let ids = Ids::new();
    let throttled = process(&app, &fresh(bars_referral()).0, &ids).await;

    // Assert
    assert_eq!(throttled.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(throttled.headers().contains_key("retry-after"));
    assert_eq!(throttled.headers()["x-request-id"], ids.request.as_str());
    assert_eq!(
        throttled.headers()["x-correlation-id"],
        ids.correlation.as_str()
    );
    assert_eq!(
        rec_answer(throttled).await,
        (429, "throttled".into(), "REC_TOO_MANY_REQUESTS".into())
    );
}

on_both_backends!(
    shared_layers_answer_process_message_in_bars_shape,
    a_sender_over_its_rate_is_answered_rec_too_many_requests,
);
