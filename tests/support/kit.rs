//! The kit the integration tests (`tests/api/`) and the end-to-end bench
//! (`benches/delivery/`) share, included by both with
//! `#[path = "…/tests/support/kit.rs"] mod kit;`:
//!
//! - databases: a SQLite file in a temporary folder, or a new PostgreSQL
//!   database created for one test or run and dropped afterwards;
//! - whether the PostgreSQL half of the tests runs: [`postgres_plan`]
//!   decides, [`postgres_server`] asks once per test binary;
//! - the sample configuration on a free port and a given database;
//! - Standard Webhooks signatures, signed and verified with a few lines of
//!   HMAC of their own (deliberately not `signpost::webhooks`, so Signpost
//!   is checked against an independent implementation), and a loopback
//!   server for the signed receivers built on them.

// Each includer uses part of the kit.
#![allow(dead_code)]

use std::{
    collections::HashMap,
    io::Write as _,
    net::{SocketAddr, TcpStream, ToSocketAddrs},
    path::Path,
    sync::OnceLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Router, http::HeaderMap};
use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use signpost::config::{Config, ENV_DATABASE_URL, ENV_LISTEN};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

// ---------------------------------------------------------------------------
// PostgreSQL: run, skip or fail

/// The PostgreSQL server the tests use when `SIGNPOST_TEST_POSTGRES` is not
/// set (and the bench's `--postgres` without a URL).
pub const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Names the PostgreSQL server tests create their databases on.
pub const ENV_TEST_POSTGRES: &str = "SIGNPOST_TEST_POSTGRES";
/// `1` (CI): a missing PostgreSQL server fails the run instead of skipping
/// the PostgreSQL half.
pub const ENV_REQUIRE_POSTGRES: &str = "SIGNPOST_REQUIRE_POSTGRES";

/// What to do with the PostgreSQL half of the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostgresPlan {
    /// Run it on this server.
    Run(String),
    /// Skip it, saying so with this line.
    Skip(String),
    /// Fail every PostgreSQL test with this message.
    Fail(String),
}

/// The decision, apart from the environment and the network: `explicit` is
/// `SIGNPOST_TEST_POSTGRES`, `required` is `SIGNPOST_REQUIRE_POSTGRES=1`,
/// `reachable` says whether a server answers at a URL. A server named
/// explicitly must answer (the user asked for it); so must the default one
/// when required (CI); otherwise a missing default server skips the half.
pub fn postgres_plan(
    explicit: Option<&str>,
    required: bool,
    reachable: impl FnOnce(&str) -> bool,
) -> PostgresPlan {
    let url = explicit.unwrap_or(DEFAULT_POSTGRES);
    if reachable(url) {
        return PostgresPlan::Run(url.to_owned());
    }
    if explicit.is_some() {
        PostgresPlan::Fail(format!(
            "{ENV_TEST_POSTGRES}={url} is set, but no PostgreSQL server answers there"
        ))
    } else if required {
        PostgresPlan::Fail(format!(
            "{ENV_REQUIRE_POSTGRES}=1 is set, but no PostgreSQL server answers at {url} \
             (set {ENV_TEST_POSTGRES}=<url> to name another)"
        ))
    } else {
        PostgresPlan::Skip(format!(
            "PostgreSQL tests SKIPPED: no server at {url}; \
             set {ENV_TEST_POSTGRES}=<url> to run them"
        ))
    }
}

/// Whether something accepts TCP connections at the URL's host and port
/// (5432 when it names none) within a second.
pub fn tcp_reachable(url: &str) -> bool {
    let Ok(parsed) = url::Url::parse(url) else {
        return false;
    };
    let host = parsed.host_str().unwrap_or("127.0.0.1");
    let port = parsed.port().unwrap_or(5432);
    let Ok(addrs) = (host, port).to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// The PostgreSQL server for this test binary's PostgreSQL half, or `None`
/// to skip it. Decided once per binary from the environment; a skip is said
/// once, on stderr, past the test harness's output capture; a failure
/// panics in every PostgreSQL test.
pub fn postgres_server() -> Option<String> {
    static PLAN: OnceLock<PostgresPlan> = OnceLock::new();
    let plan = PLAN.get_or_init(|| {
        let explicit = std::env::var(ENV_TEST_POSTGRES)
            .ok()
            .filter(|v| !v.is_empty());
        let required = std::env::var(ENV_REQUIRE_POSTGRES).is_ok_and(|v| v == "1");
        let plan = postgres_plan(explicit.as_deref(), required, tcp_reachable);
        if let PostgresPlan::Skip(line) = &plan {
            // `eprintln!` would be captured with the first test's output.
            let _ = writeln!(std::io::stderr(), "\n{line}\n");
        }
        plan
    });
    match plan {
        PostgresPlan::Run(url) => Some(url.clone()),
        PostgresPlan::Skip(_) => None,
        PostgresPlan::Fail(message) => panic!("{message}"),
    }
}

// ---------------------------------------------------------------------------
// Databases

/// A database that exists for one test or one bench run: a SQLite file in
/// a temporary folder, or a new PostgreSQL database, dropped with it.
pub struct Database {
    pub url: String,
    /// Keeps the SQLite folder alive.
    dir: Option<tempfile::TempDir>,
    /// The server's URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

impl Database {
    /// A SQLite database `data/signpost.db` in a new temporary folder (the
    /// file is created when Signpost opens it).
    pub fn sqlite() -> std::io::Result<Database> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("data/signpost.db").display());
        Ok(Database {
            url,
            dir: Some(dir),
            postgres: None,
        })
    }

    /// A new database `<prefix>_<uuid>` on the PostgreSQL server `admin`
    /// names.
    pub async fn postgres(admin: &str, prefix: &str) -> Result<Database, sqlx::Error> {
        use sqlx::Connection;
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let mut url = url::Url::parse(admin).map_err(|e| sqlx::Error::Configuration(e.into()))?;
        url.set_path(&name);
        Ok(Database {
            url: url.to_string(),
            dir: None,
            postgres: Some((admin.to_owned(), name)),
        })
    }

    /// Another handle on a database something else owns (a second instance
    /// on the same PostgreSQL database); dropping it drops nothing.
    pub fn shared(url: &str) -> Database {
        Database {
            url: url.to_owned(),
            dir: None,
            postgres: None,
        }
    }

    /// The server's URL, for a PostgreSQL database this owns.
    pub fn postgres_admin(&self) -> Option<&str> {
        self.postgres.as_ref().map(|(admin, _)| admin.as_str())
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop may run inside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime
                .block_on(async {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&admin).await?;
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await?;
                    conn.close().await
                })
                .map_err(|e| format!("could not drop the database {name}: {e}"))
        })
        .join();
        if let Ok(Err(message)) = dropped {
            eprintln!("{message}");
        }
    }
}

// ---------------------------------------------------------------------------
// Configuration

/// The sample configuration (`config/signpost.toml`) on a free loopback
/// port and `database_url`, with the repository's schemas and mappings and
/// the per-token rate limit lifted (tests and the bench send far faster
/// than a practice system would; the limits have their own tests). Its
/// endpoints and secrets are still the sample's: point them somewhere.
pub fn sample_config(database_url: &str) -> anyhow::Result<Config> {
    let path = Path::new(MANIFEST_DIR).join("config/signpost.toml");
    let text = std::fs::read_to_string(&path)?;
    let env = HashMap::from([
        (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
        (ENV_DATABASE_URL.to_owned(), database_url.to_owned()),
    ]);
    let mut config = Config::from_toml(&text, &path, &env)?;
    config.schemas_dir = Path::new(MANIFEST_DIR).join("schemas");
    config.mappings_dir = Path::new(MANIFEST_DIR).join("mappings");
    config.limits.requests_per_second = 1_000_000.0;
    config.limits.burst = 1_000_000;
    Ok(config)
}

/// The providers the repository maps: each `mappings/*.yaml`'s `provider`,
/// sorted. Signpost refuses to start unless these are exactly the
/// configured providers, so tests find them here rather than listing them.
pub fn mapped_providers() -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Head {
        provider: String,
    }
    let dir = Path::new(MANIFEST_DIR).join("mappings");
    let mut providers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a mapping file");
            serde_saphyr::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| serde_json::from_value::<Head>(v).ok())
                .unwrap_or_else(|| panic!("{} names no provider", path.display()))
                .provider
        })
        .collect();
    providers.sort();
    providers
}

// ---------------------------------------------------------------------------
// Signed webhooks

/// How far a `webhook-timestamp` may be from now, as the spec recommends.
pub const TOLERANCE_SECS: i64 = 5 * 60;

/// The `webhook-signature` value for `{id}.{ts}.{body}` under `secret`
/// (`whsec_<base64>`): `v1,<base64 HMAC-SHA256>`. Use it to sign the status
/// callbacks tests post.
pub fn sign(secret: &str, id: &str, ts: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(
            secret
                .trim()
                .strip_prefix("whsec_")
                .expect("a whsec_ secret"),
        )
        .expect("base64 after whsec_");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key size");
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The three Standard Webhooks headers for `body`, signed now under
/// `secret` with a new message id: `(webhook-id, webhook-timestamp,
/// webhook-signature)`.
pub fn signed_headers(secret: &str, body: &[u8]) -> [(&'static str, String); 3] {
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let ts = unix_now();
    let signature = sign(secret, &id, ts, body);
    [
        ("webhook-id", id),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature),
    ]
}

/// What a receiver read from a request's Standard Webhooks headers.
#[derive(Debug, Clone)]
pub struct Signature {
    /// `webhook-id` (empty when missing).
    pub webhook_id: String,
    /// `webhook-timestamp`, when it is a number.
    pub timestamp: Option<i64>,
    /// An id, a timestamp within [`TOLERANCE_SECS`] of now, and one of the
    /// `webhook-signature` values matching `body` under the secret.
    pub valid: bool,
}

/// Check a request's signature under `secret` (`whsec_…`).
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Signature {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let webhook_id = text("webhook-id");
    let timestamp: Option<i64> = text("webhook-timestamp").parse().ok();
    let valid = match timestamp {
        Some(ts) if !webhook_id.is_empty() && (unix_now() - ts).abs() <= TOLERANCE_SECS => {
            let expected = sign(secret, &webhook_id, ts, body);
            headers
                .get_all("webhook-signature")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(str::split_whitespace)
                .any(|offered| offered == expected)
        }
        _ => false,
    };
    Signature {
        webhook_id,
        timestamp,
        valid,
    }
}

/// A receiver's HTTP server, serving a router on a loopback address.
pub struct Server {
    pub addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Serve `app` on `addr` (port 0: a free port).
    pub async fn start(addr: SocketAddr, app: Router) -> std::io::Result<Server> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
                .expect("receiver serves");
        });
        Ok(Server {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Stop listening (new connections are refused afterwards), waiting at
    /// most 5 s for requests in flight.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    // The bench builds with cfg(test) but without its #[test] functions.
    #[allow(unused_imports)]
    use super::*;

    const CUSTOM: &str = "postgres://u@db.example:6543/x";

    #[test]
    fn a_reachable_server_runs_the_postgres_half() {
        let mut asked = None;
        let plan = postgres_plan(None, false, |url| {
            asked = Some(url.to_owned());
            true
        });
        assert_eq!(plan, PostgresPlan::Run(DEFAULT_POSTGRES.into()));
        assert_eq!(asked.as_deref(), Some(DEFAULT_POSTGRES));
        assert_eq!(
            postgres_plan(Some(CUSTOM), true, |url| url == CUSTOM),
            PostgresPlan::Run(CUSTOM.into())
        );
    }

    #[test]
    fn no_default_server_skips_loudly_unless_required() {
        let PostgresPlan::Skip(line) = postgres_plan(None, false, |_| false) else {
            panic!("skipped");
        };
        assert!(line.starts_with("PostgreSQL tests SKIPPED"), "{line}");
        assert!(
            line.contains(DEFAULT_POSTGRES) && line.contains(ENV_TEST_POSTGRES),
            "{line}"
        );
        let PostgresPlan::Fail(message) = postgres_plan(None, true, |_| false) else {
            panic!("required: fails");
        };
        assert!(message.contains(ENV_REQUIRE_POSTGRES), "{message}");
    }

    #[test]
    fn an_explicit_server_that_does_not_answer_fails() {
        for required in [false, true] {
            let PostgresPlan::Fail(message) = postgres_plan(Some(CUSTOM), required, |_| false)
            else {
                panic!("fails");
            };
            assert!(message.contains(CUSTOM), "{message}");
        }
    }

    #[test]
    fn the_probe_sees_a_listener_and_not_a_closed_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(tcp_reachable(&format!("postgres://u@127.0.0.1:{port}/db")));
        drop(listener);
        assert!(!tcp_reachable(&format!("postgres://u@127.0.0.1:{port}/db")));
        assert!(!tcp_reachable("not a url"));
    }

    #[test]
    fn signatures_verify_only_under_the_right_secret_and_time() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"a":1}"#;
        let mut headers = HeaderMap::new();
        for (name, value) in signed_headers(secret, body) {
            headers.insert(name, value.parse().unwrap());
        }
        assert!(verify(secret, &headers, body).valid);
        assert!(!verify(secret, &headers, b"{}").valid);
        let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(!verify(other, &headers, body).valid);
        let stale = unix_now() - TOLERANCE_SECS - 10;
        let id = "msg_stale";
        headers.insert("webhook-id", id.parse().unwrap());
        headers.insert("webhook-timestamp", stale.to_string().parse().unwrap());
        headers.insert(
            "webhook-signature",
            sign(secret, id, stale, body).parse().unwrap(),
        );
        assert!(!verify(secret, &headers, body).valid);
    }
}
