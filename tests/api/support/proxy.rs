//! A TCP proxy in front of the PostgreSQL server, which a test can stall
//! (bytes stop flowing, connections stay open: a hung server or network)
//! or cut (every connection closed and new ones refused: an outage), and
//! then restore. Signpost is pointed at the proxy; the test itself talks
//! to the server directly.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU8, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Notify,
    task::AbortHandle,
};

const FORWARD: u8 = 0;
const STALL: u8 = 1;
const CUT: u8 = 2;

/// The proxy; dropped, it stops.
pub struct Proxy {
    /// The proxy's `host:port`.
    pub address: String,
    state: Arc<State>,
    accept: AbortHandle,
}

struct State {
    mode: AtomicU8,
    changed: Notify,
    connections: Mutex<Vec<AbortHandle>>,
}

impl Proxy {
    /// Forward every connection to `target` (`host:port`).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            mode: AtomicU8::new(FORWARD),
            changed: Notify::new(),
            connections: Mutex::new(Vec::new()),
        });
        let target = target.to_owned();
        let shared = state.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if shared.mode.load(Ordering::SeqCst) == CUT {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&target).await else {
                    continue;
                };
                let state = shared.clone();
                let task = tokio::spawn(async move {
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    tokio::select! {
                        () = pump(client_read, server_write, &state) => {},
                        () = pump(server_read, client_write, &state) => {},
                    }
                });
                shared.connections.lock().unwrap().push(task.abort_handle());
            }
        })
        .abort_handle();
        Proxy {
            address,
            state,
            accept,
        }
    }

    /// `database_url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).unwrap();
        let (host, port) = self.address.split_once(':').unwrap();
        url.set_host(Some(host)).unwrap();
        url.set_port(Some(port.parse().unwrap())).unwrap();
        url.to_string()
    }

    /// Hold every byte from now on; connections stay open.
    pub fn stall(&self) {
        self.set(STALL);
    }

    /// Close every connection and refuse new ones.
    pub fn cut(&self) {
        self.set(CUT);
        for connection in self.state.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Forward again.
    pub fn restore(&self) {
        self.set(FORWARD);
    }

    fn set(&self, mode: u8) {
        self.state.mode.store(mode, Ordering::SeqCst);
        self.state.changed.notify_waiters();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// Copy `from` to `to`, holding each chunk while the proxy is stalled.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    state: &State,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        loop {
            let changed = state.changed.notified();
            match state.mode.load(Ordering::SeqCst) {
                FORWARD => break,
                STALL => changed.await,
                _ => return,
            }
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
