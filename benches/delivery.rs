//! End-to-end delivery: how fast referrals go from Signpost's outbox to the
//! providers, and how long a referral waits between its `201 Created` and
//! the provider's receipt of the signed webhook.
//!
//! One process runs a real Signpost (HTTP server and in-process delivery
//! worker, with the sample configuration and the default `[delivery]`
//! settings) on a fresh database, and stand-in endpoints for the three
//! providers and the referrer: small axum servers on loopback ports that
//! verify each request's Standard Webhooks signature with the endpoint's
//! secret, note the `Instant` it arrived, and answer `202 Accepted`.
//!
//! After a warm-up, `--clients` concurrent clients POST `--n` referrals
//! (the bare ServiceRequest fixtures in `tests/fixtures/referrals/valid/`,
//! in turn, each under a new business identifier) to
//! `/fhir/ServiceRequest`, and note when each `201` arrived. The bench then
//! waits for every referral to reach its provider and reports:
//!
//! - intake: wall time from the first POST to the last `201`, and
//!   referrals/s; POST → `201` latency;
//! - delivery throughput: N / (last receipt − first `201`), and
//!   N / (last receipt − first receipt); and split at the last `201`: the
//!   rate while intake was running, and how fast the backlog left at the
//!   end of intake drained;
//! - `201` → provider receipt latency: p50, p90, p99, max;
//! - errors: intake answers other than `201`, bad signatures, referrals
//!   that reached the wrong provider or none before `--timeout`.
//!
//! Client, server and receivers share the machine (and one Tokio runtime),
//! as they would share a small host; the numbers are for this machine only.
//! Nothing from the referrals (patient data) is printed.
//!
//! Run (SQLite, then PostgreSQL on a fresh database that is dropped
//! afterwards; the URL names the server, default
//! `postgres://postgres@127.0.0.1:5432/test`):
//!
//! ```text
//! cargo bench --bench delivery -- --n 2000 --clients 16 --json benches/results/delivery-sqlite.json
//! cargo bench --bench delivery -- --postgres --json benches/results/delivery-postgres.json
//! cargo bench --bench delivery -- --postgres postgres://user@host:5432/db
//! cargo bench --bench delivery -- --rate 200
//! ```
//!
//! Options: `--n N` (default 2000), `--clients C` (16), `--warmup W` (50),
//! `--rate R` to send at most R referrals/s in all (default: as fast as the
//! clients go, which outruns delivery, so the latency is mostly queueing),
//! `--delivery-concurrency K` to override `[delivery] concurrency` (64),
//! `--timeout SECS` to wait for deliveries (120), `--postgres [URL]`,
//! `--json FILE`. Under `cargo test --benches` (no `--bench` flag) it makes
//! a quick smoke run of 20 referrals unless `--n` is given.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use serde_json::{Value, json};
use signpost::{
    config::{Config, ENV_DATABASE_URL, ENV_LISTEN, SecretSource},
    startup::Application,
    webhooks::{Secret, SigningKeys},
};
use url::Url;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The bare ServiceRequest fixtures, sent in turn, and the provider each
/// is routed to.
const FIXTURES: [(&str, &str); 6] = [
    ("activelives-exercise.json", "activelives"),
    ("activelives-fall-second-coding.json", "activelives"),
    ("activelives-weight.json", "activelives"),
    ("community-connect-loneliness.json", "community-connect"),
    ("community-connect-minimal.json", "community-connect"),
    ("grow-together-performer-ref.json", "grow-together"),
];

/// Where each provider's payload carries Signpost's referral id.
const REFERRAL_ID_AT: [(&str, &str); 3] = [
    ("activelives", "/referral_ref"),
    ("community-connect", "/case/external_id"),
    ("grow-together", "/ref"),
];

const USAGE: &str = "usage: cargo bench --bench delivery -- [--n N] [--clients C] [--warmup W] \
    [--rate R] [--delivery-concurrency K] [--timeout SECS] [--postgres [URL]] [--json FILE]";

struct Args {
    n: usize,
    clients: usize,
    warmup: usize,
    /// Referrals/s to send at most, in all clients together.
    rate: Option<f64>,
    /// `[delivery] concurrency`, when not the default.
    delivery_concurrency: Option<usize>,
    timeout: Duration,
    /// The PostgreSQL server to create the database on; SQLite when `None`.
    postgres: Option<String>,
    json: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1).peekable();
    let mut n = None;
    let mut parsed = Args {
        n: 2000,
        clients: 16,
        warmup: 50,
        rate: None,
        delivery_concurrency: None,
        timeout: Duration::from_secs(120),
        postgres: None,
        json: None,
    };
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let mut benchmarking = false;
    let number = |flag: &str, value: Option<String>| -> Result<usize, String> {
        value
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} takes a number\n{USAGE}"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bench" => benchmarking = true,
            "--n" => n = Some(number("--n", args.next())?),
            "--clients" => parsed.clients = number("--clients", args.next())?,
            "--warmup" => parsed.warmup = number("--warmup", args.next())?,
            "--rate" => parsed.rate = Some(number("--rate", args.next())? as f64),
            "--delivery-concurrency" => {
                parsed.delivery_concurrency =
                    Some(number("--delivery-concurrency", args.next())?.max(1));
            }
            "--timeout" => {
                parsed.timeout = Duration::from_secs(number("--timeout", args.next())? as u64);
            }
            "--json" => {
                parsed.json = Some(
                    args.next()
                        .ok_or(format!("--json takes a file\n{USAGE}"))?
                        .into(),
                );
            }
            "--postgres" => {
                let url = match args.peek() {
                    Some(next) if !next.starts_with("--") => args.next().unwrap_or_default(),
                    _ => DEFAULT_POSTGRES.to_owned(),
                };
                parsed.postgres = Some(url);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    parsed.n = match (n, benchmarking) {
        (Some(n), _) => n,
        (None, true) => parsed.n,
        (None, false) => {
            parsed.warmup = parsed.warmup.min(5);
            20
        }
    };
    if parsed.n == 0 || parsed.clients == 0 || parsed.rate == Some(0.0) {
        return Err(format!(
            "--n, --clients and --rate must be at least 1\n{USAGE}"
        ));
    }
    Ok(parsed)
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let db = match Database::fresh(args.postgres.as_deref()).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("cannot set up the database: {e:#}");
            std::process::exit(1);
        }
    };
    let result = run(&args, &db).await;
    db.drop_database().await;
    match result {
        Ok(report) => {
            print!("{}", report.table());
            if let Some(path) = &args.json {
                let text = serde_json::to_string_pretty(&report.json()).expect("JSON") + "\n";
                if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    let _ = std::fs::create_dir_all(folder);
                }
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("cannot write {}: {e}", path.display());
                    std::process::exit(1);
                }
                println!("written to {}", path.display());
            }
            if report.errors.total() > 0 {
                std::process::exit(1);
            }
        }
        Err(e) => {
            eprintln!("benchmark failed: {e:#}");
            std::process::exit(1);
        }
    }
}

// ---------------------------------------------------------------------------
// The database

/// The database Signpost runs on: a SQLite file in a temporary folder, or a
/// new PostgreSQL database, dropped at the end.
struct Database {
    url: String,
    backend: String,
    _dir: Option<tempfile::TempDir>,
    /// The server's URL and the database's name, to drop it.
    postgres: Option<(String, String)>,
}

impl Database {
    async fn fresh(postgres: Option<&str>) -> anyhow::Result<Database> {
        let Some(admin) = postgres else {
            let dir = tempfile::tempdir()?;
            let url = format!("sqlite://{}", dir.path().join("signpost.db").display());
            return Ok(Database {
                url,
                backend: "sqlite (embedded file, WAL, synchronous=FULL)".into(),
                _dir: Some(dir),
                postgres: None,
            });
        };
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        let (version,): (String,) = sqlx::query_as("SHOW server_version")
            .fetch_one(&mut conn)
            .await?;
        let name = format!("signpost_bench_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await?;
        conn.close().await?;
        let mut url = Url::parse(admin)?;
        url.set_path(&name);
        let server = format!(
            "{}:{}",
            url.host_str().unwrap_or("?"),
            url.port().unwrap_or(5432)
        );
        Ok(Database {
            url: url.to_string(),
            backend: format!("postgres {version} on {server} (fresh database, dropped afterwards)"),
            _dir: None,
            postgres: Some((admin.to_owned(), name)),
        })
    }

    async fn drop_database(&self) {
        let Some((admin, name)) = &self.postgres else {
            return;
        };
        use sqlx::Connection;
        let dropped = async {
            let mut conn = sqlx::PgConnection::connect(admin).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await?;
            conn.close().await
        };
        if let Err(e) = dropped.await {
            eprintln!("could not drop the bench database {name}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------
// The provider and referrer stand-ins

/// When a referral reached a provider.
#[derive(Clone, Copy)]
struct Arrival {
    at: Instant,
    provider: &'static str,
}

#[derive(Default)]
struct Received {
    /// First arrival of each referral, by Signpost's referral id.
    referrals: HashMap<String, Arrival>,
    /// Referrals that arrived again (delivery is at least once).
    duplicates: usize,
    /// Requests refused for a missing or wrong signature.
    bad_signatures: usize,
    /// Validly signed provider requests without a referral id.
    unreadable: usize,
    /// Validly signed notifications to the referrer.
    notifications: usize,
}

/// One endpoint's stand-in.
#[derive(Clone)]
struct Endpoint {
    /// The provider's id, or `None` for the referrer.
    provider: Option<&'static str>,
    keys: Arc<SigningKeys>,
    received: Arc<Mutex<Received>>,
}

/// Start a stand-in on a free loopback port; returns its address.
async fn serve_endpoint(endpoint: Endpoint) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = Router::new().fallback(receive).with_state(endpoint);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn receive(State(endpoint): State<Endpoint>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let signed = endpoint
        .keys
        .verify(&headers, &body, chrono::Utc::now())
        .is_ok();
    let referral_id = endpoint.provider.and_then(|provider| {
        let pointer = REFERRAL_ID_AT.iter().find(|(p, _)| *p == provider)?.1;
        let payload: Value = serde_json::from_slice(&body).ok()?;
        Some(payload.pointer(pointer)?.as_str()?.to_owned())
    });
    let mut received = endpoint.received.lock().expect("receiver lock");
    if !signed {
        received.bad_signatures += 1;
        return StatusCode::UNAUTHORIZED;
    }
    match (endpoint.provider, referral_id) {
        (None, _) => received.notifications += 1,
        (Some(_), None) => received.unreadable += 1,
        (Some(provider), Some(id)) => {
            use std::collections::hash_map::Entry;
            match received.referrals.entry(id) {
                Entry::Vacant(first) => {
                    first.insert(Arrival { at, provider });
                }
                Entry::Occupied(_) => received.duplicates += 1,
            }
        }
    }
    StatusCode::ACCEPTED
}

// ---------------------------------------------------------------------------
// Signpost

/// The sample configuration on a free port and `database_url`, with new
/// inline secrets, its endpoints pointed at the stand-ins.
async fn configure(database_url: &str, received: &Arc<Mutex<Received>>) -> anyhow::Result<Config> {
    let path = Path::new(MANIFEST_DIR).join("config/signpost.toml");
    let text = std::fs::read_to_string(&path)?;
    let env = HashMap::from([
        (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
        (ENV_DATABASE_URL.to_owned(), database_url.to_owned()),
    ]);
    let mut config = Config::from_toml(&text, &path, &env)?;
    config.schemas_dir = Path::new(MANIFEST_DIR).join("schemas");
    config.mappings_dir = Path::new(MANIFEST_DIR).join("mappings");

    // A new shared secret per endpoint: Signpost signs with it, the
    // stand-in verifies with it.
    let shared_secret = || -> anyhow::Result<(SecretSource, Arc<SigningKeys>)> {
        let whsec = Secret::generate().to_whsec();
        Ok((
            SecretSource::Inline(Secret::parse(&whsec)?),
            Arc::new(SigningKeys::new(Secret::parse(&whsec)?)),
        ))
    };
    for (id, _) in REFERRAL_ID_AT {
        let provider = config
            .providers
            .get_mut(id)
            .ok_or_else(|| anyhow::anyhow!("the sample configuration has no provider {id}"))?;
        let (secret, keys) = shared_secret()?;
        provider.secret = secret;
        provider.previous_secret = None;
        let addr = serve_endpoint(Endpoint {
            provider: Some(id),
            keys,
            received: received.clone(),
        })
        .await?;
        provider.intake_url = Url::parse(&format!("http://{addr}/{id}/intake"))?;
    }
    for referrer in config.referrers.values_mut() {
        let (secret, keys) = shared_secret()?;
        referrer.secret = secret;
        referrer.previous_secret = None;
        let addr = serve_endpoint(Endpoint {
            provider: None,
            keys,
            received: received.clone(),
        })
        .await?;
        referrer.callback_url = Url::parse(&format!("http://{addr}/notifications"))?;
    }
    Ok(config)
}

// ---------------------------------------------------------------------------
// The clients

/// A referral Signpost accepted.
struct Created {
    referral_id: String,
    provider: &'static str,
    /// When the POST was sent.
    sent: Instant,
    /// When the `201`'s head arrived.
    created: Instant,
}

#[derive(Default)]
struct Intake {
    created: Vec<Created>,
    /// Answers other than `201`, by status (0: no answer).
    refused: BTreeMap<u16, usize>,
}

/// `count` referral bodies, the fixtures in turn, each under a new business
/// identifier.
fn referral_bodies(count: usize) -> anyhow::Result<Vec<(String, &'static str)>> {
    let mut fixtures = Vec::new();
    for (name, provider) in FIXTURES {
        let path = Path::new(MANIFEST_DIR)
            .join("tests/fixtures/referrals/valid")
            .join(name);
        let fixture: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        fixtures.push((fixture, provider));
    }
    Ok((0..count)
        .map(|i| {
            let (fixture, provider) = &fixtures[i % fixtures.len()];
            let mut referral = fixture.clone();
            referral["identifier"] = json!([{
                "system": "https://fhir.riverside-surgery.example/Id/referral",
                "value": uuid::Uuid::new_v4().to_string(),
            }]);
            (referral.to_string(), *provider)
        })
        .collect())
}

/// POST every body from `clients` concurrent clients; with a `rate`, the
/// i-th no earlier than i / rate seconds after the start.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<(String, &'static str)>,
    clients: usize,
    rate: Option<f64>,
) -> Intake {
    let bodies = Arc::new(bodies);
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, bodies, next) =
            (client.clone(), url.to_owned(), bodies.clone(), next.clone());
        tasks.spawn(async move {
            let mut intake = Intake::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((body, provider)) = bodies.get(i) else {
                    break;
                };
                if let Some(rate) = rate {
                    tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate))
                        .await;
                }
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/fhir+json")
                    .body(body.clone())
                    .send()
                    .await;
                let created = Instant::now();
                let response = match response {
                    Ok(response) => response,
                    Err(_) => {
                        *intake.refused.entry(0).or_default() += 1;
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let answer: Option<Value> = match response.bytes().await {
                    Ok(bytes) => serde_json::from_slice(&bytes).ok(),
                    Err(_) => None,
                };
                let referral_id = answer
                    .as_ref()
                    .and_then(|a| a["id"].as_str())
                    .map(str::to_owned);
                match (status, referral_id) {
                    (201, Some(referral_id)) => intake.created.push(Created {
                        referral_id,
                        provider,
                        sent,
                        created,
                    }),
                    _ => *intake.refused.entry(status).or_default() += 1,
                }
            }
            intake
        });
    }
    let mut all = Intake::default();
    while let Some(done) = tasks.join_next().await {
        let done = done.expect("client task");
        all.created.extend(done.created);
        for (status, count) in done.refused {
            *all.refused.entry(status).or_default() += count;
        }
    }
    all
}

/// Wait until every created referral has reached a provider, or `timeout`.
async fn await_deliveries(received: &Mutex<Received>, created: &[Created], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let arrived = {
            let received = received.lock().expect("receiver lock");
            created
                .iter()
                .filter(|c| received.referrals.contains_key(&c.referral_id))
                .count()
        };
        if arrived == created.len() || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// The run

async fn run(args: &Args, db: &Database) -> anyhow::Result<Report> {
    let received = Arc::new(Mutex::new(Received::default()));
    let mut config = configure(&db.url, &received).await?;
    if let Some(concurrency) = args.delivery_concurrency {
        config.delivery.concurrency = concurrency;
    }
    // One practice system sending flat out: the per-token rate limit would
    // otherwise be what is measured.
    config.limits.requests_per_second = 1_000_000.0;
    config.limits.burst = 1_000_000;
    let settings = format!(
        "concurrency {}, poll {:?}, database_max_connections {}",
        config.delivery.concurrency, config.delivery.poll_interval, config.database_max_connections
    );
    let app = Application::build(config).await?;
    let url = format!("http://{}/fhir/ServiceRequest", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    // The clients authenticate as the sample referrer, as a practice would.
    let issued = signpost::auth::issue(&signpost::auth::Role::Referrer("riverside-surgery".into()));
    signpost::store::open(&db.url, 1)
        .await?
        .insert_token(issued.row)
        .await?;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", issued.token).parse()?,
    );
    let client = reqwest::Client::builder()
        .default_headers(headers)
        .build()?;

    let warmup = drive(
        &client,
        &url,
        referral_bodies(args.warmup)?,
        args.clients,
        args.rate,
    )
    .await;
    await_deliveries(&received, &warmup.created, args.timeout).await;
    if !warmup.refused.is_empty() {
        anyhow::bail!(
            "warm-up referrals refused (status: count): {:?}",
            warmup.refused
        );
    }

    let bodies = referral_bodies(args.n)?;
    let intake = drive(&client, &url, bodies, args.clients, args.rate).await;
    await_deliveries(&received, &intake.created, args.timeout).await;

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(40), server).await;

    let received = received.lock().expect("receiver lock");
    Ok(Report::new(args, db, settings, &intake, &received))
}

// ---------------------------------------------------------------------------
// The report

#[derive(Default)]
struct Errors {
    refused: BTreeMap<u16, usize>,
    bad_signatures: usize,
    unreadable: usize,
    misrouted: usize,
    missing: usize,
}

impl Errors {
    fn total(&self) -> usize {
        self.refused.values().sum::<usize>()
            + self.bad_signatures
            + self.unreadable
            + self.misrouted
            + self.missing
    }
}

/// p50, p90, p99 and max of some milliseconds (nearest rank).
struct Spread {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

impl Spread {
    fn of(mut ms: Vec<f64>) -> Option<Spread> {
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let rank =
            |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Spread {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: ms[ms.len() - 1],
        })
    }

    fn line(spread: &Option<Spread>) -> String {
        match spread {
            Some(s) => format!(
                "p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
                s.p50, s.p90, s.p99, s.max
            ),
            None => "-".into(),
        }
    }

    fn json(spread: &Option<Spread>) -> Value {
        match spread {
            Some(s) => json!({
                "p50": round(s.p50, 2), "p90": round(s.p90, 2),
                "p99": round(s.p99, 2), "max": round(s.max, 2),
            }),
            None => Value::Null,
        }
    }
}

struct Report {
    referrals: usize,
    clients: usize,
    rate: Option<f64>,
    warmup: usize,
    backend: String,
    settings: String,
    cpus: usize,
    cpu_model: String,
    commit: Option<String>,
    /// First POST to last `201`, in seconds.
    intake_wall_s: f64,
    intake_ms: Option<Spread>,
    /// First `201` to last receipt, in seconds.
    created_to_last_receipt_s: f64,
    /// First receipt to last receipt, in seconds.
    receipts_span_s: f64,
    /// Receipts from the first `201` to the last, and the time between.
    during_intake: (usize, f64),
    /// Receipts after the last `201`, and the time from it to the last
    /// receipt.
    after_intake: (usize, f64),
    delivered: usize,
    latency_ms: Option<Spread>,
    /// Receipts noted before the client saw the `201` head.
    early: usize,
    duplicates: usize,
    notifications: usize,
    errors: Errors,
}

fn seconds(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64()
}

/// `to - from` in milliseconds, negative when `to` came first.
fn signed_ms(from: Instant, to: Instant) -> f64 {
    if to >= from {
        (to - from).as_secs_f64() * 1000.0
    } else {
        -(from - to).as_secs_f64() * 1000.0
    }
}

fn round(x: f64, places: i32) -> f64 {
    let scale = 10f64.powi(places);
    (x * scale).round() / scale
}

fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

impl Report {
    fn new(
        args: &Args,
        db: &Database,
        settings: String,
        intake: &Intake,
        received: &Received,
    ) -> Report {
        let mut errors = Errors {
            refused: intake.refused.clone(),
            bad_signatures: received.bad_signatures,
            unreadable: received.unreadable,
            ..Errors::default()
        };
        let mut latencies = Vec::new();
        let mut arrivals = Vec::new();
        for c in &intake.created {
            match received.referrals.get(&c.referral_id) {
                None => errors.missing += 1,
                Some(arrival) => {
                    if arrival.provider != c.provider {
                        errors.misrouted += 1;
                    }
                    latencies.push(signed_ms(c.created, arrival.at));
                    arrivals.push(arrival.at);
                }
            }
        }
        let first_sent = intake.created.iter().map(|c| c.sent).min();
        let first_created = intake.created.iter().map(|c| c.created).min();
        let last_created = intake.created.iter().map(|c| c.created).max();
        let first_receipt = arrivals.iter().min().copied();
        let last_receipt = arrivals.iter().max().copied();
        let span = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(from), Some(to)) => seconds(from, to),
            _ => 0.0,
        };
        Report {
            referrals: args.n,
            clients: args.clients,
            rate: args.rate,
            warmup: args.warmup,
            backend: db.backend.clone(),
            settings,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(),
            commit: commit(),
            intake_wall_s: span(first_sent, last_created),
            intake_ms: Spread::of(
                intake
                    .created
                    .iter()
                    .map(|c| signed_ms(c.sent, c.created))
                    .collect(),
            ),
            created_to_last_receipt_s: span(first_created, last_receipt),
            receipts_span_s: span(first_receipt, last_receipt),
            during_intake: (
                arrivals
                    .iter()
                    .filter(|at| Some(**at) <= last_created)
                    .count(),
                span(first_created, last_created),
            ),
            after_intake: (
                arrivals
                    .iter()
                    .filter(|at| Some(**at) > last_created)
                    .count(),
                span(last_created, last_receipt),
            ),
            delivered: arrivals.len(),
            early: latencies.iter().filter(|ms| **ms < 0.0).count(),
            latency_ms: Spread::of(latencies),
            duplicates: received.duplicates,
            notifications: received.notifications,
            errors,
        }
    }

    fn table(&self) -> String {
        let e = &self.errors;
        let refused: usize = e.refused.values().sum();
        let mut rows: Vec<(&str, String)> = vec![
            ("machine", format!("{} CPUs, {}", self.cpus, self.cpu_model)),
            ("backend", self.backend.clone()),
            ("delivery settings", self.settings.clone()),
        ];
        if let Some(commit) = &self.commit {
            rows.push(("commit", commit.clone()));
        }
        rows.extend([
            ("referrals", format!("{} (after {} warm-up)", self.referrals, self.warmup)),
            (
                "clients",
                match self.rate {
                    Some(rate) => format!("{} (at most {rate} referrals/s)", self.clients),
                    None => format!("{} (each sends as soon as its last 201 arrives)", self.clients),
                },
            ),
            (
                "intake wall time",
                format!(
                    "{:.2} s  ({:.1} referrals/s)",
                    self.intake_wall_s,
                    per_second(self.referrals, self.intake_wall_s)
                ),
            ),
            ("POST → 201 (ms)", Spread::line(&self.intake_ms)),
            (
                "deliveries/s",
                format!(
                    "{:.1}  (N / first 201 → last receipt, {:.2} s)",
                    per_second(self.delivered, self.created_to_last_receipt_s),
                    self.created_to_last_receipt_s
                ),
            ),
            (
                "",
                format!(
                    "{:.1}  (N / first receipt → last receipt, {:.2} s)",
                    per_second(self.delivered, self.receipts_span_s),
                    self.receipts_span_s
                ),
            ),
            (
                "",
                format!(
                    "{:.1}  (while intake ran: {} delivered in {:.2} s)",
                    per_second(self.during_intake.0, self.during_intake.1),
                    self.during_intake.0,
                    self.during_intake.1,
                ),
            ),
            (
                "",
                format!(
                    "{:.1}  (after the last 201: {} delivered in {:.2} s)",
                    per_second(self.after_intake.0, self.after_intake.1),
                    self.after_intake.0,
                    self.after_intake.1,
                ),
            ),
            ("201 → receipt (ms)", Spread::line(&self.latency_ms)),
            (
                "errors",
                format!(
                    "{}  (refused {refused}, bad signature {}, unreadable {}, misrouted {}, missing {})",
                    e.total(),
                    e.bad_signatures,
                    e.unreadable,
                    e.misrouted,
                    e.missing
                ),
            ),
            (
                "other",
                format!(
                    "{} duplicate deliveries, {} referrer notifications, {} receipts before the 201",
                    self.duplicates, self.notifications, self.early
                ),
            ),
        ]);
        if !e.refused.is_empty() {
            rows.push(("refused by status", format!("{:?}", e.refused)));
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut text = String::from("\nSignpost delivery benchmark\n");
        for (key, value) in rows {
            let pad = width - key.chars().count();
            text.push_str(&format!("  {key}{}  {value}\n", " ".repeat(pad)));
        }
        text
    }

    fn json(&self) -> Value {
        let e = &self.errors;
        json!({
            "benchmark": "delivery",
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "commit": self.commit,
            "machine": { "nproc": self.cpus, "cpu_model": self.cpu_model },
            "backend": self.backend,
            "delivery_settings": self.settings,
            "referrals": self.referrals,
            "warmup": self.warmup,
            "clients": self.clients,
            "rate_limit_per_s": self.rate,
            "intake": {
                "wall_s": round(self.intake_wall_s, 3),
                "referrals_per_s": round(per_second(self.referrals, self.intake_wall_s), 1),
                "post_to_201_ms": Spread::json(&self.intake_ms),
            },
            "delivery": {
                "delivered": self.delivered,
                "first_201_to_last_receipt_s": round(self.created_to_last_receipt_s, 3),
                "deliveries_per_s_from_first_201": round(per_second(self.delivered, self.created_to_last_receipt_s), 1),
                "first_to_last_receipt_s": round(self.receipts_span_s, 3),
                "deliveries_per_s_from_first_receipt": round(per_second(self.delivered, self.receipts_span_s), 1),
                "during_intake": {
                    "delivered": self.during_intake.0,
                    "seconds": round(self.during_intake.1, 3),
                    "deliveries_per_s": round(per_second(self.during_intake.0, self.during_intake.1), 1),
                },
                "after_intake": {
                    "delivered": self.after_intake.0,
                    "seconds": round(self.after_intake.1, 3),
                    "deliveries_per_s": round(per_second(self.after_intake.0, self.after_intake.1), 1),
                },
                "created_to_receipt_ms": Spread::json(&self.latency_ms),
                "receipts_before_201": self.early,
                "duplicates": self.duplicates,
                "referrer_notifications": self.notifications,
            },
            "errors": {
                "total": e.total(),
                "refused_by_status": e.refused.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "bad_signatures": e.bad_signatures,
                "unreadable": e.unreadable,
                "misrouted": e.misrouted,
                "missing": e.missing,
            },
        })
    }
}

/// The CPU's model name, from `/proc/cpuinfo`.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The checked-out commit, marked when the work tree has changes.
fn commit() -> Option<String> {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(MANIFEST_DIR)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let head = git(&["rev-parse", "--short", "HEAD"])?;
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty {
        format!("{head} (work tree modified)")
    } else {
        head
    })
}
