//! A real webhook receiver over HTTP, standing in for a provider's intake
//! endpoint or a referrer's callback endpoint.
//!
//! It verifies Standard Webhooks signatures with the kit's own few lines of
//! HMAC (`kit::verify`, deliberately not `signpost::webhooks`, so the tests
//! check Signpost against an independent implementation), records every
//! request, and
//! answers as scripted: `202` by default, `401` to a request whose signature
//! is missing, wrong or stale (a non-retryable refusal, as a real endpoint
//! would answer).

// Shared test support: not every test binary module uses every helper.
#![allow(dead_code)]

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
};

use super::kit;
pub use super::kit::{sign, signed_headers, unix_now};

/// One answer the receiver gives.
#[derive(Debug, Clone)]
pub struct Scripted {
    pub status: u16,
    /// Wait this long before answering (to trip the sender's timeout).
    pub delay: Option<Duration>,
    /// A `Retry-After` header, as written (`"120"` or an HTTP date).
    pub retry_after: Option<String>,
    pub body: Option<String>,
    /// Hold the answer until the test opens this gate (`notify_one`).
    pub gate: Option<Arc<tokio::sync::Notify>>,
}

impl Scripted {
    pub fn status(status: u16) -> Scripted {
        Scripted {
            status,
            delay: None,
            retry_after: None,
            body: None,
            gate: None,
        }
    }

    /// `202 Accepted`, the default answer.
    pub fn accepted() -> Scripted {
        Scripted::status(202)
    }

    /// Answer only after `delay`.
    pub fn after(mut self, delay: Duration) -> Scripted {
        self.delay = Some(delay);
        self
    }

    pub fn retry_after(mut self, value: impl Into<String>) -> Scripted {
        self.retry_after = Some(value.into());
        self
    }

    /// Answer only once `gate` is opened (`gate.notify_one()`).
    pub fn held_until(mut self, gate: Arc<tokio::sync::Notify>) -> Scripted {
        self.gate = Some(gate);
        self
    }

    pub fn body(mut self, body: impl Into<String>) -> Scripted {
        self.body = Some(body.into());
        self
    }
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// `webhook-id`; empty when missing.
    pub webhook_id: String,
    /// `webhook-timestamp`; 0 when missing or not a number.
    pub timestamp: i64,
    /// A `v1` signature made with the receiver's secret, with the timestamp
    /// within five minutes of the receiver's clock.
    pub signature_valid: bool,
    /// The body as JSON; `Null` when it is not JSON.
    pub body: serde_json::Value,
    pub raw_body: Vec<u8>,
    /// The status answered; 0 while a delayed answer is pending, and for good
    /// if the sender hung up first (e.g. its timeout struck).
    pub answered: u16,
    /// When the request arrived.
    pub at: Instant,
}

impl Received {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn is_delivered(&self) -> bool {
        (200..300).contains(&self.answered)
    }
}

struct Shared {
    secret: String,
    state: Mutex<ReceiverState>,
}

struct ReceiverState {
    script: VecDeque<Scripted>,
    default: Scripted,
    received: Vec<Received>,
}

/// A running receiver. Stops listening when dropped or [`Receiver::stop`]ped.
pub struct Receiver {
    /// Base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    /// The secret it verifies with, `whsec_…`.
    pub secret: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: kit::Server,
}

impl Receiver {
    /// Listen on a free loopback port.
    pub async fn start(secret: &str) -> Receiver {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), secret).await
    }

    /// Listen on `addr` (e.g. one from [`Receiver::unused_addr`], to start a
    /// receiver only after the sender has met connection refused).
    pub async fn start_on(addr: SocketAddr, secret: &str) -> Receiver {
        let shared = Arc::new(Shared {
            secret: secret.to_owned(),
            state: Mutex::new(ReceiverState {
                script: VecDeque::new(),
                default: Scripted::accepted(),
                received: Vec::new(),
            }),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let server = kit::Server::start(addr, app)
            .await
            .unwrap_or_else(|e| panic!("receiver cannot listen on {addr}: {e}"));
        let addr = server.addr;
        Receiver {
            url: format!("http://{addr}"),
            secret: secret.to_owned(),
            addr,
            shared,
            server,
        }
    }

    /// A loopback address with no listener (at the time of asking).
    pub fn unused_addr() -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
        listener.local_addr().expect("local address")
    }

    /// `url` + `path`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// The next validly signed POSTs get these answers, in order; then the
    /// default again.
    pub fn script(&self, responses: Vec<Scripted>) {
        self.shared.state.lock().unwrap().script.extend(responses);
    }

    /// The answer once the script has run out.
    pub fn set_default(&self, answer: Scripted) {
        self.shared.state.lock().unwrap().default = answer;
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.state.lock().unwrap().received.clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn delivered(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(Received::is_delivered)
            .collect()
    }

    /// Wait until at least `n` requests were answered 2xx and return them
    /// all; panics listing what did arrive if that takes longer than
    /// `timeout`.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let delivered = self.delivered();
            if delivered.len() >= n {
                return delivered;
            }
            if Instant::now() >= deadline {
                let listing: Vec<String> = self
                    .received()
                    .iter()
                    .map(|r| {
                        format!(
                            "  {} {} id={:?} ts={} signature_valid={} answered={} body={}",
                            r.method,
                            r.path,
                            r.webhook_id,
                            r.timestamp,
                            r.signature_valid,
                            r.answered,
                            String::from_utf8_lossy(&r.raw_body)
                                .chars()
                                .take(200)
                                .collect::<String>(),
                        )
                    })
                    .collect();
                panic!(
                    "receiver {}: expected {n} delivered request(s) within {timeout:?}, got {}; all {} received:\n{}",
                    self.url,
                    delivered.len(),
                    listing.len(),
                    listing.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stop listening: new connections are refused afterwards. Graceful
    /// shutdown waits for requests in flight, at most 5 s (one may be held
    /// by a scripted delay).
    pub async fn stop(self) {
        self.server.stop().await;
    }
}

/// Any method, any path.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let kit::Signature {
        webhook_id,
        timestamp,
        valid: signature_valid,
    } = kit::verify(&shared.secret, &headers, &body);

    let (index, answer) = {
        let mut state = shared.state.lock().unwrap();
        let answer = if method != Method::POST {
            Scripted::status(405)
        } else if !signature_valid {
            Scripted::status(401).body(r#"{"error":"invalid webhook signature"}"#)
        } else {
            let default = state.default.clone();
            state.script.pop_front().unwrap_or(default)
        };
        state.received.push(Received {
            method: method.clone(),
            path: uri.path().to_owned(),
            headers: headers.clone(),
            webhook_id,
            timestamp: timestamp.unwrap_or(0),
            signature_valid,
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            raw_body: body.to_vec(),
            answered: 0,
            at,
        });
        (state.received.len() - 1, answer)
    };

    if let Some(delay) = answer.delay {
        tokio::time::sleep(delay).await;
    }
    if let Some(gate) = answer.gate {
        gate.notified().await;
    }
    shared.state.lock().unwrap().received[index].answered = answer.status;

    let status = StatusCode::from_u16(answer.status).expect("a valid status code");
    let mut response = answer.body.unwrap_or_default().into_response();
    *response.status_mut() = status;
    if let Some(retry_after) = answer.retry_after {
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_str(&retry_after).expect("a header value"),
        );
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::helpers::{test_config, test_secret};

    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn receiver_signs_the_published_standard_webhooks_vector() {
        assert_eq!(
            sign(SPEC_SECRET, SPEC_ID, SPEC_TS, SPEC_BODY),
            SPEC_SIGNATURE
        );
    }

    /// A signed POST from a plain HTTP client.
    async fn post(
        client: &reqwest::Client,
        url: &str,
        secret: &str,
        body: &serde_json::Value,
    ) -> reqwest::Response {
        let body = body.to_string();
        let mut request = client
            .post(url)
            .header("content-type", "application/json")
            .body(body.clone());
        for (name, value) in signed_headers(secret, body.as_bytes()) {
            request = request.header(name, value);
        }
        request.send().await.expect("request sent")
    }

    #[tokio::test]
    async fn receiver_accepts_a_validly_signed_post_and_records_it() {
        let receiver = Receiver::start(&test_secret("provider:activelives")).await;
        let client = reqwest::Client::new();
        let body = serde_json::json!({"referral": "r-1"});

        let response = post(
            &client,
            &receiver.url_for("/referrals"),
            &receiver.secret,
            &body,
        )
        .await;

        assert_eq!(response.status(), 202);
        let got = receiver.wait_for(1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].path, "/referrals");
        assert!(got[0].signature_valid);
        assert!(got[0].webhook_id.starts_with("msg_"));
        assert!((unix_now() - got[0].timestamp).abs() <= 5);
        assert_eq!(got[0].body, body);
        assert_eq!(got[0].raw_body, body.to_string().as_bytes());
        assert_eq!(got[0].header("content-type"), Some("application/json"));
    }

    #[tokio::test]
    async fn receiver_refuses_bad_signatures_with_401_and_records_them() {
        let receiver = Receiver::start(&test_secret("referrer:riverside-surgery")).await;
        let client = reqwest::Client::new();
        let body = serde_json::json!({"status": "accepted"});
        let url = receiver.url_for("/cb");

        // Signed with another endpoint's secret.
        let wrong = post(&client, &url, &test_secret("provider:activelives"), &body).await;
        // Not signed at all.
        let unsigned = client
            .post(&url)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        // Signed properly, then the body changed.
        let mut tampered = client.post(&url).body(r#"{"status":"rejected"}"#);
        for (name, value) in signed_headers(&receiver.secret, body.to_string().as_bytes()) {
            tampered = tampered.header(name, value);
        }
        let tampered = tampered.send().await.unwrap();
        // Signed properly, but five and a half minutes ago.
        let ts = unix_now() - 330;
        let stale = client
            .post(&url)
            .header("webhook-id", "msg_stale")
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                sign(
                    &receiver.secret,
                    "msg_stale",
                    ts,
                    body.to_string().as_bytes(),
                ),
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap();

        for response in [wrong, unsigned, tampered, stale] {
            assert_eq!(response.status(), 401);
        }
        let received = receiver.received();
        assert_eq!(received.len(), 4);
        assert!(
            received
                .iter()
                .all(|r| !r.signature_valid && r.answered == 401)
        );
        assert!(receiver.delivered().is_empty());
    }

    #[tokio::test]
    async fn receiver_follows_its_script_then_the_default() {
        let receiver = Receiver::start(&test_secret("provider:grow-together")).await;
        receiver.script(vec![
            Scripted::status(503).retry_after("7"),
            Scripted::status(500).body(r#"{"error":"boom"}"#),
        ]);
        let client = reqwest::Client::new();
        let url = receiver.url_for("/intake");
        let body = serde_json::json!({"n": 1});

        let first = post(&client, &url, &receiver.secret, &body).await;
        assert_eq!(first.status(), 503);
        assert_eq!(first.headers()["retry-after"], "7");
        let second = post(&client, &url, &receiver.secret, &body).await;
        assert_eq!(second.status(), 500);
        assert_eq!(second.text().await.unwrap(), r#"{"error":"boom"}"#);
        let third = post(&client, &url, &receiver.secret, &body).await;
        assert_eq!(third.status(), 202);

        receiver.set_default(Scripted::status(200));
        let fourth = post(&client, &url, &receiver.secret, &body).await;
        assert_eq!(fourth.status(), 200);

        let answered: Vec<u16> = receiver.received().iter().map(|r| r.answered).collect();
        assert_eq!(answered, [503, 500, 202, 200]);
        let delivered = receiver.wait_for(2, Duration::from_secs(1)).await;
        assert_eq!(delivered.len(), 2);
        assert!(delivered[0].at <= delivered[1].at);
    }

    #[tokio::test]
    async fn a_delayed_answer_trips_the_senders_timeout_and_is_not_counted_as_delivered() {
        let receiver = Receiver::start(&test_secret("provider:activelives")).await;
        receiver.script(vec![Scripted::accepted().after(Duration::from_millis(800))]);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let body = serde_json::json!({"slow": true});
        let body_text = body.to_string();
        let mut request = client
            .post(receiver.url_for("/slow"))
            .body(body_text.clone());
        for (name, value) in signed_headers(&receiver.secret, body_text.as_bytes()) {
            request = request.header(name, value);
        }

        let result = request.send().await;

        assert!(result.unwrap_err().is_timeout());
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let received = receiver.received();
        assert_eq!(received.len(), 1);
        assert!(received[0].signature_valid);
        assert_eq!(
            received[0].answered, 0,
            "the sender hung up before the answer"
        );
        assert!(receiver.delivered().is_empty());
    }

    #[tokio::test]
    async fn wait_for_reports_what_arrived_when_it_times_out() {
        let receiver = Receiver::start(&test_secret("provider:activelives")).await;
        receiver.script(vec![Scripted::status(503)]);
        let client = reqwest::Client::new();
        post(
            &client,
            &receiver.url_for("/x"),
            &receiver.secret,
            &serde_json::json!({}),
        )
        .await;

        let waiting = tokio::spawn(async move {
            receiver.wait_for(1, Duration::from_millis(100)).await;
        });
        let panic = waiting.await.unwrap_err().into_panic();
        let message = panic.downcast_ref::<String>().unwrap();
        assert!(message.contains("expected 1 delivered"), "{message}");
        assert!(message.contains("POST /x"), "{message}");
        assert!(message.contains("answered=503"), "{message}");
    }

    #[tokio::test]
    async fn a_stopped_receiver_refuses_connections_and_can_start_again_on_its_address() {
        let addr = Receiver::unused_addr();
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/referrals");
        let body = serde_json::json!({"again": true});
        let secret = test_secret("provider:community-connect");

        let refused = client.post(&url).body("{}").send().await.unwrap_err();
        assert!(refused.is_connect(), "{refused:?}");

        let receiver = Receiver::start_on(addr, &secret).await;
        assert_eq!(receiver.addr, addr);
        assert_eq!(post(&client, &url, &secret, &body).await.status(), 202);
        receiver.stop().await;

        let refused = client.post(&url).body("{}").send().await.unwrap_err();
        assert!(refused.is_connect(), "{refused:?}");

        let again = Receiver::start_on(addr, &secret).await;
        assert_eq!(post(&client, &url, &secret, &body).await.status(), 202);
        assert_eq!(again.wait_for(1, Duration::from_secs(5)).await.len(), 1);
    }

    #[tokio::test]
    async fn receiver_verifies_what_signpost_signs() {
        // Two independent implementations agree: Signpost signs, the
        // receiver verifies.
        use signpost::webhooks::{Secret, SigningKeys};
        let receiver = Receiver::start(&test_secret("referrer:riverside-surgery")).await;
        let keys = SigningKeys::new(Secret::parse(&receiver.secret).unwrap());
        let body = br#"{"resourceType":"Task","status":"accepted"}"#;
        let ts = unix_now();
        let signature = keys.sign("msg_from_signpost", ts, body, chrono::Utc::now());

        let response = reqwest::Client::new()
            .post(receiver.url_for("/signpost/notifications"))
            .header("webhook-id", "msg_from_signpost")
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(&body[..])
            .send()
            .await
            .unwrap();

        assert_eq!(response.status(), 202);
        assert!(receiver.received()[0].signature_valid);
    }

    #[test]
    fn the_test_configuration_uses_the_test_secrets() {
        let config = test_config("sqlite://unused.db");
        let keys = config.signing_keys().expect("inline secrets need no files");
        // Every mapped provider and the referrer.
        assert_eq!(keys.len(), super::kit::mapped_providers().len() + 1);
        for (endpoint, keys) in &keys {
            assert_eq!(
                keys.current.to_whsec(),
                test_secret(&endpoint.to_string()),
                "{endpoint}"
            );
        }
        assert_ne!(
            test_secret("provider:activelives"),
            test_secret("provider:grow-together")
        );
    }
}
