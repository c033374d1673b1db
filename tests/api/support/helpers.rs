//! Test harness: a real Signpost on an ephemeral port, over real HTTP, on a
//! fresh database per test — a SQLite file in a temporary folder, or a new
//! PostgreSQL database (dropped afterwards) on the server named by
//! `SIGNPOST_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`).
//! With no server there and `SIGNPOST_TEST_POSTGRES` unset, the PostgreSQL
//! tests are skipped, said once on stderr; `SIGNPOST_REQUIRE_POSTGRES=1`
//! (CI) makes that a failure (see `kit::postgres_plan`).

use std::{
    path::{Path, PathBuf},
    sync::LazyLock,
};

use base64::Engine as _;
use serde_json::Value;
use sha2::Digest as _;
use signpost::{
    config::{Config, SecretSource},
    delivery::{Tick, Worker},
    domain::{Clock, ManualClock, SystemClock, Timestamp},
    security::tokens::Role,
    startup::Application,
    webhooks::Secret,
};
use tokio::sync::oneshot;

pub use super::kit::{self, MANIFEST_DIR};

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

static TRACING: LazyLock<()> = LazyLock::new(|| {
    if std::env::var("TEST_LOG").is_ok() {
        signpost::telemetry::init();
    }
});

/// A database that exists for one test (dropped with it).
pub type TestDb = kit::Database;

impl TestDb {
    /// A fresh database on `backend`. PostgreSQL tests reach this only
    /// when [`kit::postgres_server`] found a server (see
    /// [`on_both_backends`](crate::on_both_backends)).
    pub async fn fresh(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => kit::Database::sqlite().expect("temp dir"),
            Backend::Postgres => {
                let admin = kit::postgres_server()
                    .unwrap_or_else(|| panic!("a PostgreSQL test ran without a PostgreSQL server"));
                kit::Database::postgres(&admin, "signpost_test")
                    .await
                    .unwrap_or_else(|e| panic!("cannot create a test database on {admin}: {e}"))
            }
        }
    }
}

/// The fixed webhook signing secret (`whsec_…`) of an endpoint in the test
/// configuration, named as in `Config::signing_keys`: `provider:<id>` or
/// `referrer:<id>`. Start a `Receiver` with it to stand in for that
/// endpoint, or sign its status callbacks with it.
pub fn test_secret(endpoint: &str) -> String {
    assert!(
        endpoint.starts_with("provider:") || endpoint.starts_with("referrer:"),
        "name the endpoint provider:<id> or referrer:<id>, not {endpoint:?}"
    );
    let key = sha2::Sha256::digest(format!("signpost test webhook secret for {endpoint}"));
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
}

/// The sample configuration, on port 0 and the given database, with the
/// fixed [`test_secret`]s in place of the sample's secret files (which tests
/// must not create).
pub fn test_config(database_url: &str) -> Config {
    let mut config = kit::sample_config(database_url).expect("sample config is valid");
    let inline = |endpoint: String| {
        SecretSource::Inline(Secret::parse(&test_secret(&endpoint)).expect("a test secret"))
    };
    for (id, provider) in &mut config.providers {
        provider.secret = inline(format!("provider:{id}"));
    }
    for (id, referrer) in &mut config.referrers {
        referrer.secret = inline(format!("referrer:{id}"));
    }
    config
}

/// A running Signpost.
pub struct TestApp {
    pub address: String,
    /// Sends the referrer's token (Riverside Surgery) on every request.
    pub client: reqwest::Client,
    /// Sends an admin token on every request.
    pub admin: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    pub referrer_token: String,
    pub db: TestDb,
    /// Delivery stepped by the test on a stopped clock (see
    /// [`TestApp::spawn_stepped_on`]); `None` when the app's own worker
    /// runs on the system clock.
    stepped: Option<Stepped>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_on(TestDb::fresh(backend).await, |_| {}).await
    }

    /// Start on an existing database, after adjusting the configuration.
    pub async fn spawn_on(db: TestDb, adjust: impl FnOnce(&mut Config)) -> TestApp {
        Self::launch(db, adjust, None).await
    }

    /// Start on an existing database with time stopped (a [`ManualClock`]
    /// at the present) and no delivery worker in the background: the test
    /// delivers with [`TestApp::deliver_due`] and moves time on with
    /// [`TestApp::advance`], so retries fall due without waiting.
    pub async fn spawn_stepped_on(db: TestDb, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let clock = ManualClock::starting_now();
        Self::launch(
            db,
            |config| {
                adjust(config);
                config.delivery.worker = false;
            },
            Some(clock),
        )
        .await
    }

    async fn launch(
        db: TestDb,
        adjust: impl FnOnce(&mut Config),
        manual: Option<ManualClock>,
    ) -> TestApp {
        LazyLock::force(&TRACING);
        let mut config = test_config(&db.url);
        adjust(&mut config);
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let clock: std::sync::Arc<dyn Clock> = match &manual {
            Some(manual) => std::sync::Arc::new(manual.clone()),
            None => std::sync::Arc::new(SystemClock),
        };
        let app = Application::build_with_clock(config, clock)
            .await
            .expect("application builds");
        let stepped = manual.map(|clock| Stepped {
            clock,
            worker: app.worker(),
        });
        let address = format!("{scheme}://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        let referrer_token = issue_token(
            &db.url,
            Role::Referrer("riverside-surgery".parse().unwrap()),
        )
        .await;
        let admin_token = issue_token(&db.url, Role::Admin).await;
        TestApp {
            address,
            client: client_with(&referrer_token),
            admin: client_with(&admin_token),
            anonymous: reqwest::Client::new(),
            referrer_token,
            db,
            stepped,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stop gracefully and hand back the database (for restart tests).
    pub async fn stop(mut self) -> TestDb {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stopped cleanly");
        }
        // Let the pools close their connections.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        std::mem::replace(&mut self.db, TestDb::shared(""))
    }

    fn stepped(&self) -> &Stepped {
        self.stepped
            .as_ref()
            .expect("a stepped app (TestApp::spawn_stepped_on)")
    }

    /// The app's time: its stopped clock when stepped, else the system's.
    pub fn now(&self) -> Timestamp {
        match &self.stepped {
            Some(stepped) => stepped.clock.now(),
            None => SystemClock.now(),
        }
    }

    /// Sets the stopped clock: back to the system's time, say, so that
    /// what is delivered next carries a timestamp receivers accept after
    /// the test has moved the clock hours on.
    pub fn set_now(&self, at: Timestamp) {
        self.stepped().clock.set(at);
    }

    /// Moves the stopped clock on.
    pub fn advance(&self, by: std::time::Duration) {
        self.stepped().clock.advance(by);
    }

    /// Deliver everything due now, as the worker would: rounds until one
    /// finds nothing due (each round records its attempts before the next
    /// starts, so what a delivery unblocks or queues goes too). Returns when
    /// the next message falls due, if any is waiting.
    pub async fn deliver_due(&self) -> Option<Timestamp> {
        let stepped = self.stepped();
        loop {
            match stepped.worker.tick(stepped.clock.now()).await {
                Ok(Tick::Busy { .. }) => continue,
                Ok(Tick::Idle { next_due }) => return next_due,
                Err(e) => panic!("delivery round failed: {e}"),
            }
        }
    }

    /// Move the clock on to the next due message (if it is not yet due)
    /// and deliver what is due then. `false` when nothing is waiting.
    pub async fn step(&self) -> bool {
        let Some(next_due) = self.deliver_due().await else {
            return false;
        };
        let now = self.now();
        if next_due > now {
            self.advance(next_due.since(now));
        }
        self.deliver_due().await;
        true
    }

    /// Step until nothing is waiting: every retry made, every message
    /// delivered or dead-lettered (or held behind a disabled endpoint).
    pub async fn deliver_all(&self) {
        for _ in 0..1000 {
            if !self.step().await {
                return;
            }
        }
        panic!("delivery did not come to rest in 1000 steps");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request sent")
    }

    /// `GET /fhir/ServiceRequest?identifier=TOKEN`, as JSON.
    pub async fn search_identifier(&self, token: impl AsRef<str>) -> Value {
        let token = token.as_ref();
        let encoded: String = url::form_urlencoded::byte_serialize(token.as_bytes()).collect();
        json(
            self.get(&format!("/fhir/ServiceRequest?identifier={encoded}"))
                .await,
        )
        .await
    }

    /// GET with the admin's token, as text (e.g. `/metrics`).
    pub async fn get_text(&self, path: &str) -> String {
        let response = self
            .admin
            .get(self.url(path))
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status(), reqwest::StatusCode::OK, "GET {path}");
        response.text().await.unwrap()
    }

    /// GET with the referrer's token (the admin's for `/admin/…`).
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let client = if path.starts_with("/admin/") {
            &self.admin
        } else {
            &self.client
        };
        client
            .get(self.url(path))
            .send()
            .await
            .expect("request sent")
    }
}

/// A stepped app's clock and the worker the test turns.
struct Stepped {
    clock: ManualClock,
    worker: Worker,
}

/// Issue a token straight into the database, as `signpost tokens create`
/// does.
pub async fn issue_token(database_url: &str, role: Role) -> String {
    let store = signpost::store::open(database_url, 1)
        .await
        .expect("the test database opens");
    let issued = signpost::security::tokens::issue(&role);
    store.insert_token(issued.row).await.expect("token stored");
    issued.token
}

/// A client that sends `token` on every request.
pub fn client_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Read a response body as JSON.
pub async fn json(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A JSON fixture, by path relative to the repository.
pub fn fixture(relative: &str) -> Value {
    let path: PathBuf = Path::new(MANIFEST_DIR).join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A valid referral from `tests/fixtures/referrals/valid/`.
pub fn valid(name: &str) -> Value {
    fixture(&format!("tests/fixtures/referrals/valid/{name}"))
}

/// A real, public example from `tests/fixtures/real/` (provenance in its
/// `SOURCES.md`).
pub fn real(relative: &str) -> Value {
    fixture(&format!("tests/fixtures/real/{relative}"))
}

/// The same referral under a new business identifier, so it is a new referral.
pub fn with_new_identifier(mut referral: Value) -> (Value, String) {
    let value = uuid::Uuid::new_v4().to_string();
    let sr = if referral["resourceType"] == "Bundle" {
        let entries = referral["entry"].as_array_mut().unwrap();
        let entry = entries
            .iter_mut()
            .find(|e| e["resource"]["resourceType"] == "ServiceRequest")
            .unwrap();
        &mut entry["resource"]
    } else {
        &mut referral
    };
    sr["identifier"] = serde_json::json!([{
        "system": "https://fhir.riverside-surgery.example/Id/referral",
        "value": value
    }]);
    (referral, value)
}

/// The `expression`s of an OperationOutcome's issues.
pub fn expressions(outcome: &Value) -> Vec<String> {
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    outcome["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .flat_map(|i| i["expression"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect()
}

/// Run each listed `async fn name(backend: Backend)` as two tests,
/// `sqlite::name` and `postgres::name`. The PostgreSQL one returns at once
/// when there is no server to run it on (said once per test binary).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() { super::$name($crate::support::helpers::Backend::Sqlite).await }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if $crate::support::kit::postgres_server().is_none() {
                        return;
                    }
                    super::$name($crate::support::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}
