//! The HTTP/2 and connection attacks of issue #21 (finding 2), over real
//! cleartext HTTP/2 (`h2c`, prior knowledge) with the `h2` crate or raw
//! frames: idle connections and half-sent header blocks held open, many
//! connections from one address, the descriptor limit, and the slot
//! starvation of issue #14 finding 1 multiplexed over a few connections.
//! (TLS with ALPN `h2` is covered in `tls.rs`.)

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use axum::{body::Bytes, http::Request};
use reqwest::StatusCode;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinHandle,
};

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, TestDb, valid, with_new_identifier},
};

/// The server's address.
fn server(app: &TestApp) -> SocketAddr {
    app.address.trim_start_matches("http://").parse().unwrap()
}

/// A TCP connection to the server from the loopback address `from` (all of
/// 127.0.0.0/8 is loopback on Linux), so that a test can be several
/// clients.
async fn connect_from(app: &TestApp, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    socket.connect(server(app)).await.unwrap()
}

/// An HTTP/2 client connection from `from`: the handle to send requests,
/// and the task driving the connection (it ends when the server closes it).
async fn h2_from(app: &TestApp, from: [u8; 4]) -> (h2::client::SendRequest<Bytes>, JoinHandle<()>) {
    let stream = connect_from(app, from).await;
    let (send, connection) = h2::client::handshake(stream).await.unwrap();
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    (send, driver)
}

fn get(app: &TestApp, path: &str) -> Request<()> {
    Request::get(app.url(path)).body(()).unwrap()
}

/// Whether the server answers a request on `stream` (HTTP/1.1, kept
/// alive): proof that it admitted the connection. Admission runs on the
/// server's own tasks, so a connection only just opened may not be counted
/// yet; asking first keeps a bound test from racing it.
async fn served(stream: &mut TcpStream) -> bool {
    let request = b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n";
    if stream.write_all(request).await.is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    read.is_ok() && answer.starts_with(b"HTTP/1.1 200")
}

/// Whether the server closed `stream` within `within` (end of stream or
/// reset; what it sent before is skipped).
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await
    .is_ok()
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![length[1], length[2], length[3], kind, flags];
    frame.extend_from_slice(&stream.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

const HEADERS: u8 = 0x1;
const SETTINGS: u8 = 0x4;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// Finding 2: after one request, an idle HTTP/2 connection is closed at
/// `limits.idle_timeout` (it used to stay open for good).
async fn an_idle_http2_connection_is_closed(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.idle_timeout = Duration::from_millis(500);
    })
    .await;
    let (send, driver) = h2_from(&app, [127, 0, 0, 1]).await;
    let mut send = send.ready().await.unwrap();
    let (answer, _) = send.send_request(get(&app, "/health/live"), true).unwrap();
    assert_eq!(answer.await.unwrap().status(), StatusCode::OK);
    // Keep the handle: the client is not done with the connection, the
    // server must end it.
    let closed = tokio::time::timeout(Duration::from_secs(5), driver).await;
    assert!(
        closed.is_ok(),
        "an idle HTTP/2 connection was still open after 5 s"
    );
    drop(send);
}

/// Finding 2: a connection that sends half a header block after its first
/// request (and never answers the server's pings) is closed by the
/// keep-alive ping's deadline or the idle timeout.
async fn a_half_header_block_after_a_request_is_cut_off(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.idle_timeout = Duration::from_secs(2);
        config.limits.http2_keep_alive_interval = Duration::from_millis(300);
        config.limits.http2_keep_alive_timeout = Duration::from_millis(300);
    })
    .await;
    let mut stream = connect_from(&app, [127, 0, 0, 1]).await;
    let authority = server(&app).to_string();
    // :method GET, :scheme http, :path /health/live, :authority.
    let mut block = vec![0x82, 0x86, 0x44, 12];
    block.extend_from_slice(b"/health/live");
    block.push(0x41);
    block.push(u8::try_from(authority.len()).unwrap());
    block.extend_from_slice(authority.as_bytes());
    let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    hello.extend(frame(SETTINGS, 0, 0, &[]));
    hello.extend(frame(HEADERS, END_STREAM | END_HEADERS, 1, &block));
    stream.write_all(&hello).await.unwrap();
    // Read until the answer's HEADERS frame on stream 1.
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let n = stream.read(&mut buffer).await.unwrap();
            assert!(n > 0, "closed before answering the first request");
            received.extend_from_slice(&buffer[..n]);
            let mut at = 0;
            while received.len() >= at + 9 {
                let length = (usize::from(received[at]) << 16)
                    | (usize::from(received[at + 1]) << 8)
                    | usize::from(received[at + 2]);
                if received[at + 3] == HEADERS && received[at + 8] == 1 {
                    return;
                }
                at += 9 + length;
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "the first request was not answered");
    // Half a header block: HEADERS without END_HEADERS, and no
    // CONTINUATION ever.
    stream
        .write_all(&frame(HEADERS, END_STREAM, 3, &[0x82, 0x86]))
        .await
        .unwrap();
    assert!(
        closed_within(&mut stream, Duration::from_secs(6)).await,
        "a half-sent header block held the connection open"
    );
}

/// Finding 2: connections are bounded per client address and in total;
/// one over either bound is closed at once, and others are still served.
async fn connections_are_bounded_per_client_and_in_total(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.max_connections_per_client = 3;
        config.limits.max_connections = 6;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(&app, [127, 0, 0, 2]).await;
        assert!(served(&mut stream).await, "a connection within the bound");
        held.push(stream);
    }
    let mut fourth = connect_from(&app, [127, 0, 0, 2]).await;
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2)).await,
        "a fourth connection from one address was kept"
    );
    for stream in &mut held {
        assert!(
            !closed_within(stream, Duration::from_millis(100)).await,
            "a connection within the bound was closed"
        );
    }
    // Another address is served, as long as the total allows.
    for _ in 0..3 {
        let mut stream = connect_from(&app, [127, 0, 0, 3]).await;
        assert!(
            served(&mut stream).await,
            "another address within the total"
        );
        held.push(stream);
    }
    let mut seventh = connect_from(&app, [127, 0, 0, 4]).await;
    assert!(
        closed_within(&mut seventh, Duration::from_secs(2)).await,
        "a seventh connection was kept over a total of 6"
    );
    drop(held);
    // Closed connections give their places back.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let answer = app.anonymous.get(app.url("/health/live")).send().await;
        if answer.is_ok_and(|a| a.status() == StatusCode::OK) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no place given back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Finding 2 (issue #14 finding 1 over HTTP/2): a client multiplexing
/// stalled uploads over a few HTTP/2 connections must not take every
/// request slot. The uploads carry a referrer's valid token, so each is
/// admitted and holds a slot until its body arrives (an HTTP/1.1 client
/// needs a connection per slot; over HTTP/2, 6 connections used to be
/// enough for 1,024).
async fn multiplexed_stalled_uploads_leave_other_clients_their_slots(backend: Backend) {
    const SLOTS: usize = 128;
    const CONNECTIONS: usize = 6;
    // Below the server's default of 32 streams per connection, so that
    // every stream is opened at once.
    const STREAMS: usize = 30;
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, |config| {
        config.limits.max_concurrent_requests = SLOTS;
        config.limits.max_requests_per_client = 32;
        config.limits.burst = 10_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        let (send, driver) = h2_from(&app, [127, 0, 0, 2]).await;
        for _ in 0..STREAMS {
            let Ok(Ok(mut sender)) =
                tokio::time::timeout(Duration::from_secs(1), send.clone().ready()).await
            else {
                break;
            };
            let request = Request::post(app.url("/fhir/ServiceRequest"))
                .header("authorization", format!("Bearer {}", app.referrer_token))
                .header("content-type", "application/fhir+json")
                .header("content-length", "100000")
                .body(())
                .unwrap();
            let Ok((answer, mut body)) = sender.send_request(request, false) else {
                break;
            };
            let _ = body.send_data(Bytes::from_static(b"{\"resourceType\":"), false);
            held.push((answer, body));
        }
        // The driver runs on until the connection closes.
        drop(driver);
    }
    // Let the server take in the streams it admits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let created = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "a referral while {} uploads were stalled over {CONNECTIONS} HTTP/2 connections",
        held.len()
    );
}

/// Finding 2: the process's descriptor soft limit is raised to its hard
/// limit (where allowed) at start-up, so that `max_connections` and not a
/// default of 1,024 descriptors bounds the connections.
#[tokio::test]
async fn the_descriptor_limit_is_raised_at_start_up() {
    use rlimit::Resource;
    let (_, hard) = Resource::NOFILE.get().unwrap();
    let lowered = hard.min(4096) - 1;
    Resource::NOFILE.set(lowered, hard).unwrap();
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (soft, _) = Resource::NOFILE.get().unwrap();
    assert_eq!(soft, hard, "the soft limit stayed at {lowered}");
    app.stop().await;
}

on_both_backends!(
    an_idle_http2_connection_is_closed,
    a_half_header_block_after_a_request_is_cut_off,
    connections_are_bounded_per_client_and_in_total,
    multiplexed_stalled_uploads_leave_other_clients_their_slots,
);
