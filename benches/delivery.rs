//! The end-to-end benchmark harness: Signpost under load from concurrent
//! clients, against a do-nothing baseline server driven the same way in the
//! same run, with signed delivery to local provider stand-ins, and the
//! start-up time and idle memory of the real `signpost` binary. It prints a
//! table with each of the performance targets and whether it was met, and
//! writes the results as JSON (`--json FILE`).
//!
//! One documented command (the full run, 64 clients):
//!
//! ```text
//! cargo bench --bench delivery -- --n 20000 --clients 64 --json benches/results/delivery-sqlite.json
//! cargo bench --bench delivery -- --n 20000 --clients 64 --postgres --json benches/results/delivery-postgres.json
//! cargo bench --bench delivery -- --duration 600 --rate 1270 --clients 64 --process --json benches/results/soak-sqlite.json
//! ```
//!
//! The run has three phases, one after the other:
//!
//! 1. **Start-up probe.** The real binary (`signpost serve`, release build
//!    under `cargo bench`) is started on a fresh SQLite database with a
//!    generated configuration (the sample's providers and referrer, secrets
//!    in files, endpoints on a closed port: nothing is sent). The time from
//!    spawning it to the first `200` from `GET /health/ready` (polled every
//!    5 ms) is *start-up to ready*; after 2 s idle its `VmRSS` is the *idle
//!    RSS*. Then it gets `SIGTERM` and must exit.
//! 2. **Baseline.** A minimal axum server on a loopback port, one handler
//!    that reads the whole body (`Bytes`) and answers `201`, driven by the
//!    same clients (same HTTP client settings, same bodies, same count,
//!    same warm-up). Its rate is `baseline_per_s`; `ratio` is
//!    `accepted_per_s / baseline_per_s`: how much of what this machine's
//!    HTTP stack and clients can do is left once Signpost does its work.
//! 3. **Signpost.** In this process, a real Signpost (HTTP server and
//!    delivery worker, the sample configuration and the default
//!    `[delivery]` settings, per-token rate limit lifted) on a fresh
//!    database, and stand-ins for the three providers and the referrer:
//!    small axum servers on loopback ports that verify each request's
//!    Standard Webhooks signature with the endpoint's secret, note the
//!    `Instant` it arrived, and answer `202 Accepted`. After a warm-up the
//!    clients POST the referrals to `/fhir/ServiceRequest` and note when
//!    each `201` arrived; the bench then waits for every referral to reach
//!    its provider. With `--process`, Signpost is instead the real
//!    `signpost serve` in its own process (same settings, its secrets in
//!    files), so the peak RSS, the RSS sampled each second, and the CPU
//!    are Signpost's alone: the soak runs this way.
//!
//! Referrals are the six bare ServiceRequest fixtures in
//! `tests/fixtures/referrals/valid/` (all three providers), in turn, each
//! under a new business identifier. Each client sends its next referral as
//! soon as the last one's answer arrived (or, with `--rate`, on schedule).
//!
//! Reported (table and JSON; the JSON's top level has `accepted_per_s`,
//! `baseline_per_s`, `ratio`, `intake_p50_ms` … `intake_max_ms`,
//! `delivery_p50_ms`, `delivery_p99_ms`, `deliveries_per_s`, `errors`,
//! `peak_rss_mb`, `cpu_seconds`, `startup_to_ready_ms`, `idle_rss_mb`, with
//! the details nested below):
//!
//! - intake: accepted referrals/s (accepted / first POST → last `201`),
//!   POST → `201` latency p50/p90/p99/max;
//! - delivery: deliveries/s (delivered / first `201` → last receipt, and
//!   split at the last `201`: while intake ran, and the backlog after), and
//!   `201` → provider receipt p50/p90/p99/max;
//! - errors: intake answers other than `201`, bad signatures, referrals that
//!   reached the wrong provider or none before `--timeout`;
//! - resources: peak RSS (`VmHWM`, reset through `/proc/self/clear_refs`
//!   before Signpost starts) and CPU seconds (`/proc/self/stat`, from the
//!   first measured POST to the last receipt) **of the whole bench
//!   process**: Signpost, the clients and the receivers share it, so these
//!   are upper bounds for Signpost alone (the baseline phase's CPU per
//!   request shows what the clients and a bare HTTP server cost);
//! - where Signpost's time goes: its own `/metrics` before and after the
//!   measured run (mean handler time, validation, mapping, delivery
//!   attempt);
//! - the targets, each with ✓ or ✗. The per-referral micro-benchmark target
//!   (validate + route + map) is measured by `cargo bench --bench mapping`
//!   and `--bench validation`, not here.
//!
//! Client, server and receivers share the machine (and one Tokio runtime),
//! as they would share a small host; the numbers are for this machine only.
//! Nothing from the referrals (patient data) is printed. The bench keeps
//! about 100 bytes per referral for its own bookkeeping, which counts in the
//! peak RSS (about 2 MB for 20,000 referrals).
//!
//! Options: `--n N` referrals (default 20000) or `--duration SECS` (send
//! for that long instead, each client looping; the baseline then runs for
//! the same time, at most 30 s), `--clients C` (64), `--warmup W` (200),
//! `--rate R` to send at most R referrals/s in all (default: as fast as the
//! clients go; with a rate the ratio to the baseline means little),
//! `--delivery-concurrency K` to override `[delivery] concurrency` (64),
//! `--timeout SECS` to wait for deliveries (120), `--postgres [URL]` to run
//! Signpost on a fresh PostgreSQL database, dropped afterwards (the URL
//! names the server, default `postgres://postgres@127.0.0.1:5432/test`;
//! the start-up probe always uses SQLite), `--process` (above),
//! `--json FILE`. A progress bar
//! shows on a terminal (stderr). The exit status is 1 when any referral
//! failed (errors > 0), not when a target is missed.
//!
//! Under `cargo test --benches` (no `--bench` flag) it makes a quick smoke
//! run of 20 referrals (5 warm-up, a short idle wait) unless `--n` or
//! `--duration` is given.

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};
use signpost::{
    config::{Config, ENV_DATABASE_URL, ENV_LISTEN, SecretSource},
    security::webhooks::{Secret, SigningKeys},
    startup::Application,
};
use url::Url;
use uuid::Uuid;

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
const REFERRER: &str = "riverside-surgery";

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

/// The targets (2 cores, load generator on the same machine, fsync-durable
/// commits, 64 concurrent clients).
mod target {
    pub const CLIENTS: usize = 64;
    /// Intake throughput as a share of the baseline handler's.
    pub const RATIO: f64 = 0.10;
    pub const ACCEPTED_PER_S: f64 = 5_000.0;
    pub const INTAKE_P99_MS: f64 = 25.0;
    pub const DELIVERY_P50_MS: f64 = 20.0;
    pub const DELIVERY_P99_MS: f64 = 250.0;
    pub const PEAK_RSS_MB: f64 = 150.0;
    pub const IDLE_RSS_MB: f64 = 40.0;
    pub const STARTUP_MS: f64 = 1_000.0;
    /// RSS at the end of a long run over RSS a minute in (soak).
    pub const RSS_GROWTH_PCT: f64 = 10.0;
}

/// The longest baseline phase of a `--duration` run.
const BASELINE_MAX: Duration = Duration::from_secs(30);

/// What the process-wide figures cover.
const RSS_SCOPE: &str = "bench process (Signpost + clients + receivers)";
const PROCESS_SCOPE: &str = "signpost serve process (--process)";

const USAGE: &str = "usage: cargo bench --bench delivery -- [--n N | --duration SECS] [--clients C] \
    [--warmup W] [--rate R] [--delivery-concurrency K] [--timeout SECS] [--postgres [URL]] \
    [--process] [--json FILE]";

/// How long the clients send.
#[derive(Clone, Copy)]
enum Run {
    /// This many requests in all.
    Count(usize),
    /// Until this long after the first.
    For(Duration),
}

struct Args {
    run: Run,
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
    /// Run Signpost as its own process (`signpost serve`), so that RSS and
    /// CPU are its own.
    process: bool,
    /// How long the real binary idles before its RSS is read.
    idle: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1).peekable();
    let mut n = None;
    let mut duration = None;
    let mut parsed = Args {
        run: Run::Count(20_000),
        clients: target::CLIENTS,
        warmup: 200,
        rate: None,
        delivery_concurrency: None,
        timeout: Duration::from_secs(120),
        postgres: None,
        json: None,
        process: false,
        idle: Duration::from_secs(2),
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
            "--duration" => {
                let secs: f64 = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or(format!("--duration takes a number of seconds\n{USAGE}"))?;
                duration = Some(Duration::from_secs_f64(secs));
            }
            "--process" => parsed.process = true,
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
    parsed.run = match (n, duration, benchmarking) {
        (Some(_), Some(_), _) => return Err(format!("--n or --duration, not both\n{USAGE}")),
        (Some(n), None, _) => Run::Count(n),
        (None, Some(duration), _) => Run::For(duration),
        (None, None, true) => parsed.run,
        // The smoke run of `cargo test --benches`.
        (None, None, false) => {
            parsed.warmup = parsed.warmup.min(5);
            parsed.idle = Duration::from_millis(300);
            Run::Count(20)
        }
    };
    if matches!(parsed.run, Run::Count(0)) || parsed.clients == 0 || parsed.rate == Some(0.0) {
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
    // First, while nothing else runs: the real binary's start-up.
    eprintln!("start-up probe: signpost serve on a fresh SQLite database");
    let startup = probe_startup(args.idle).await.map_err(|e| format!("{e:#}"));
    match &startup {
        Ok(s) => eprintln!(
            "  ready in {:.0} ms, idle RSS {:.1} MB",
            s.ready_ms, s.idle_rss_mb
        ),
        Err(e) => eprintln!("  start-up probe failed: {e}"),
    }
    let db = match Database::fresh(args.postgres.as_deref()).await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("cannot set up the database: {e:#}");
            std::process::exit(1);
        }
    };
    let result = run(&args, &db, startup).await;
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
            if report.errors.total() + report.baseline.refused() > 0 {
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
    /// How commits are made durable.
    durability: String,
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
                backend: "sqlite (embedded file)".into(),
                // As `src/store/sqlite.rs` opens it.
                durability: "WAL, synchronous=FULL".into(),
                _dir: Some(dir),
                postgres: None,
            });
        };
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        let show = async |conn: &mut sqlx::PgConnection, setting: &str| {
            sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(conn)
                .await
                .map(|(value,)| value)
        };
        let version = show(&mut conn, "server_version").await?;
        let durability = format!(
            "fsync={}, synchronous_commit={}",
            show(&mut conn, "fsync").await?,
            show(&mut conn, "synchronous_commit").await?
        );
        let name = format!("signpost_bench_{}", Uuid::new_v4().simple());
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
            durability,
            _dir: None,
            postgres: Some((admin.to_owned(), name)),
        })
    }

    /// Whether a commit waits for the disk (the targets assume it does).
    fn durable(&self) -> bool {
        self.durability.contains("synchronous=FULL")
            || (self.durability.contains("fsync=on")
                && self.durability.contains("synchronous_commit=on"))
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
    referrals: HashMap<Uuid, Arrival>,
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
        Uuid::parse_str(payload.pointer(pointer)?.as_str()?).ok()
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

/// A stand-in for one of the sample configuration's endpoints, running.
struct StandIn {
    /// `providers.<id>` or `referrers.<id>`.
    table: String,
    /// `intake_url` or `callback_url`.
    url_key: &'static str,
    url: Url,
    /// The endpoint's new signing secret (`whsec_…`): Signpost signs with
    /// it, the stand-in verifies with it.
    whsec: String,
}

/// A stand-in for each provider and for the referrer, on free loopback
/// ports, each with a new secret.
async fn start_stand_ins(received: &Arc<Mutex<Received>>) -> anyhow::Result<Vec<StandIn>> {
    let mut stand_ins = Vec::new();
    let mut endpoints: Vec<(Option<&'static str>, String)> = REFERRAL_ID_AT
        .iter()
        .map(|(id, _)| (Some(*id), format!("providers.{id}")))
        .collect();
    endpoints.push((None, format!("referrers.{REFERRER}")));
    for (provider, table) in endpoints {
        let whsec = Secret::generate().to_whsec();
        let addr = serve_endpoint(Endpoint {
            provider,
            keys: Arc::new(SigningKeys::new(Secret::parse(&whsec)?)),
            received: received.clone(),
        })
        .await?;
        let (url_key, url) = match provider {
            Some(id) => ("intake_url", format!("http://{addr}/{id}/intake")),
            None => ("callback_url", format!("http://{addr}/notifications")),
        };
        stand_ins.push(StandIn {
            table,
            url_key,
            url: Url::parse(&url)?,
            whsec,
        });
    }
    Ok(stand_ins)
}

/// The sample configuration on a free port and `database_url`, its
/// endpoints pointed at the stand-ins, with their secrets inline.
fn configure(database_url: &str, stand_ins: &[StandIn]) -> anyhow::Result<Config> {
    let path = Path::new(MANIFEST_DIR).join("config/signpost.toml");
    let text = std::fs::read_to_string(&path)?;
    let env = HashMap::from([
        (ENV_LISTEN.to_owned(), "127.0.0.1:0".to_owned()),
        (ENV_DATABASE_URL.to_owned(), database_url.to_owned()),
    ]);
    let mut config = Config::from_toml(&text, &path, &env)?;
    config.schemas_dir = Path::new(MANIFEST_DIR).join("schemas");
    config.mappings_dir = Path::new(MANIFEST_DIR).join("mappings");
    for stand_in in stand_ins {
        let secret = SecretSource::Inline(Secret::parse(&stand_in.whsec)?);
        let missing = || anyhow::anyhow!("the sample configuration has no [{}]", stand_in.table);
        match stand_in.table.split_once('.') {
            Some(("providers", id)) => {
                let provider = config.providers.get_mut(id).ok_or_else(missing)?;
                provider.secret = secret;
                provider.previous_secret = None;
                provider.intake_url = stand_in.url.clone();
            }
            Some(("referrers", id)) => {
                let referrer = config.referrers.get_mut(id).ok_or_else(missing)?;
                referrer.secret = secret;
                referrer.previous_secret = None;
                referrer.callback_url = stand_in.url.clone();
            }
            _ => anyhow::bail!("unknown endpoint table {}", stand_in.table),
        }
    }
    // One practice system sending flat out: the per-token rate limit would
    // otherwise be what is measured.
    config.limits.requests_per_second = 1_000_000.0;
    config.limits.burst = 1_000_000;
    Ok(config)
}

// ---------------------------------------------------------------------------
// The clients

/// The referral bodies: the fixtures in turn, each under a new business
/// identifier. Each fixture is serialised once, split around its
/// identifier, so a body costs a copy, not a JSON round trip.
struct Bodies {
    /// The text before and after the identifier, and the provider.
    templates: Vec<(String, String, &'static str)>,
    /// Random per run, so identifiers never repeat across runs.
    run: u64,
    /// Bodies made so far (warm-ups and both phases).
    made: AtomicU64,
}

impl Bodies {
    fn load() -> anyhow::Result<Bodies> {
        const MARK: &str = "@@business-identifier@@";
        let mut templates = Vec::new();
        for (name, provider) in FIXTURES {
            let path = Path::new(MANIFEST_DIR)
                .join("tests/fixtures/referrals/valid")
                .join(name);
            let mut referral: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            referral["identifier"] = json!([{
                "system": "https://fhir.riverside-surgery.example/Id/referral",
                "value": MARK,
            }]);
            let text = referral.to_string();
            let (head, tail) = text
                .split_once(MARK)
                .ok_or_else(|| anyhow::anyhow!("{name}: identifier not found"))?;
            templates.push((head.to_owned(), tail.to_owned(), provider));
        }
        Ok(Bodies {
            templates,
            run: Uuid::new_v4().as_u64_pair().0,
            made: AtomicU64::new(0),
        })
    }

    /// The `i`-th body (fixture `i` mod 6) and the provider it is for.
    fn body(&self, i: usize) -> (String, &'static str) {
        let (head, tail, provider) = &self.templates[i % self.templates.len()];
        let id = Uuid::from_u64_pair(self.run, self.made.fetch_add(1, Ordering::Relaxed));
        let mut body = String::with_capacity(head.len() + 36 + tail.len());
        body.push_str(head);
        let _ = write!(body, "{id}");
        body.push_str(tail);
        (body, provider)
    }

    /// The mean body size, in bytes.
    fn mean_size(&self) -> usize {
        self.templates
            .iter()
            .map(|(head, tail, _)| head.len() + 36 + tail.len())
            .sum::<usize>()
            / self.templates.len()
    }
}

/// An accepted request.
struct Created {
    /// Signpost's referral id (nil from the baseline).
    referral_id: Uuid,
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

impl Intake {
    fn refused(&self) -> usize {
        self.refused.values().sum()
    }
}

/// What counts as accepted.
#[derive(Clone, Copy)]
enum Expect {
    /// `201` with Signpost's referral id in the answer.
    Referral,
    /// Any `201` (the baseline).
    Created,
}

/// How the clients send.
#[derive(Clone, Copy)]
struct Load {
    run: Run,
    clients: usize,
    rate: Option<f64>,
}

/// POST bodies from `load.clients` concurrent clients until `load.run` is
/// done; with a `rate`, the i-th no earlier than i / rate seconds after the
/// start. Each `201` moves `bar` on.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    bodies: &Arc<Bodies>,
    load: Load,
    expect: Expect,
    bar: &ProgressBar,
) -> Intake {
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let (limit, deadline) = match load.run {
        Run::Count(n) => (n, None),
        Run::For(duration) => (usize::MAX, Some(start + duration)),
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..load.clients {
        let (client, url, bodies, next, bar) = (
            client.clone(),
            url.to_owned(),
            bodies.clone(),
            next.clone(),
            bar.clone(),
        );
        tasks.spawn(async move {
            let mut intake = Intake::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= limit {
                    break;
                }
                if let Some(rate) = load.rate {
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    if deadline.is_some_and(|d| due >= d) {
                        break;
                    }
                    tokio::time::sleep_until(due).await;
                }
                if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                    break;
                }
                let (body, provider) = bodies.body(i);
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/fhir+json")
                    .body(body)
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
                let answer = response.bytes().await;
                let referral_id = match expect {
                    Expect::Created => answer.ok().map(|_| Uuid::nil()),
                    Expect::Referral => answer
                        .ok()
                        .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
                        .and_then(|a| Uuid::parse_str(a["id"].as_str()?).ok()),
                };
                match (status, referral_id) {
                    (201, Some(referral_id)) => {
                        intake.created.push(Created {
                            referral_id,
                            provider,
                            sent,
                            created,
                        });
                        bar.inc(1);
                    }
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

/// The HTTP client of both phases, authenticated as the sample referrer
/// (as a practice system would be; the baseline ignores it).
fn http_client(token: &str) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse()?,
    );
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .build()?)
}

/// A progress bar (on stderr, hidden when it is not a terminal): with a
/// length, or a counter with a rate when `len` is `None`.
fn progress(prefix: &'static str, len: Option<u64>, unit: &'static str) -> ProgressBar {
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::new(len),
            format!(
                "{{prefix:>9}} [{{bar:40}}] {{pos}}/{{len}} {unit}  {{per_sec}}  {{elapsed}}  {{msg}}"
            ),
        ),
        None => (
            ProgressBar::new_spinner(),
            format!("{{prefix:>9}} {{spinner}} {{pos}} {unit}  {{per_sec}}  {{elapsed}}  {{msg}}"),
        ),
    };
    bar.set_style(
        ProgressStyle::with_template(&template)
            .expect("progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A progress bar for `load`: 201s out of N, or a counter for a duration.
fn intake_progress(prefix: &'static str, load: Load) -> ProgressBar {
    match load.run {
        Run::Count(n) => progress(prefix, Some(n as u64), "accepted"),
        Run::For(duration) => {
            let bar = progress(prefix, None, "accepted");
            bar.set_message(format!("of {:.0} s", duration.as_secs_f64()));
            bar
        }
    }
}

/// Wait until every created referral has reached a provider, or `timeout`.
/// `before` is how many had arrived before these were sent.
async fn await_deliveries(
    received: &Mutex<Received>,
    created: &[Created],
    before: usize,
    timeout: Duration,
    bar: &ProgressBar,
) {
    let deadline = Instant::now() + timeout;
    let all_arrived = || {
        let received = received.lock().expect("receiver lock");
        created
            .iter()
            .all(|c| received.referrals.contains_key(&c.referral_id))
    };
    loop {
        // Counting is cheap; matching every id is done only once the count
        // says they may all be in (the lock is the receivers' too).
        let arrived = received.lock().expect("receiver lock").referrals.len() - before;
        bar.set_position(arrived.min(created.len()) as u64);
        if (arrived >= created.len() && all_arrived()) || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Measuring the process

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds of a process so far (all threads; `pid` may
/// be `self`).
fn cpu_seconds(ticks: f64, pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is
    // field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| -> f64 {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0.0)
    };
    (field(14) + field(15)) / ticks
}

/// A `kB` field (`VmRSS`, `VmHWM`) of `/proc/<pid>/status`, in MB
/// (MiB, as `ps` and `top` count).
fn status_mb(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Reset this process's peak RSS (`VmHWM`) to its current RSS.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU and wall time from a start.
struct Mark {
    ticks: f64,
    pid: String,
    cpu: f64,
    at: Instant,
}

impl Mark {
    fn now(ticks: f64, pid: &str) -> Mark {
        Mark {
            ticks,
            pid: pid.to_owned(),
            cpu: cpu_seconds(ticks, pid),
            at: Instant::now(),
        }
    }

    /// (CPU seconds, wall seconds) since the mark.
    fn since(&self) -> (f64, f64) {
        (
            cpu_seconds(self.ticks, &self.pid) - self.cpu,
            self.at.elapsed().as_secs_f64(),
        )
    }
}

// ---------------------------------------------------------------------------
// The start-up probe: the real binary

struct Startup {
    /// Spawn to the first `200` from `/health/ready`.
    ready_ms: f64,
    /// After idling.
    idle_rss_mb: f64,
    idle_peak_rss_mb: f64,
    idle_s: f64,
    /// `SIGTERM` to exit.
    stop_ms: f64,
    exit: String,
}

/// `signpost serve`, the binary cargo built for this bench, as its own
/// process: for the start-up probe, and for `--process` runs, where its
/// memory and CPU are measured apart from the clients and stand-ins.
struct SignpostProcess {
    child: tokio::process::Child,
    pid: String,
    listen: SocketAddr,
    log_path: PathBuf,
    /// Spawn to the first `200` from `/health/ready`.
    ready_ms: f64,
    /// The configuration, secrets and (SQLite) database live here.
    _dir: tempfile::TempDir,
}

impl SignpostProcess {
    /// Write a configuration like `tests/api/fleet.rs::write_config`
    /// (absolute paths, each endpoint's secret in a file, `extra` TOML
    /// appended), start `signpost serve` on `database_url` (`None`: a new
    /// SQLite file), and wait until `/health/ready` answers `200`.
    async fn start(
        stand_ins: &[StandIn],
        extra: &str,
        database_url: Option<&str>,
    ) -> anyhow::Result<SignpostProcess> {
        let dir = tempfile::tempdir()?;
        let mut config = format!(
            "schemas_dir = \"{MANIFEST_DIR}/schemas\"\nmappings_dir = \"{MANIFEST_DIR}/mappings\"\n\
             [limits]\nrequests_per_second = 1000000.0\nburst = 1000000\n"
        );
        for stand_in in stand_ins {
            let secret = dir.path().join(format!("{}.whsec", stand_in.table));
            std::fs::write(&secret, &stand_in.whsec)?;
            let ods = if stand_in.table.starts_with("referrers.") {
                "ods_codes = [\"A81001\"]\n"
            } else {
                ""
            };
            let _ = write!(
                config,
                "[{}]\n{ods}{} = \"{}\"\nallow_insecure_http = true\nsecret_file = \"{}\"\n",
                stand_in.table,
                stand_in.url_key,
                stand_in.url,
                secret.display()
            );
        }
        config.push_str(extra);
        let config_path = dir.path().join("signpost.toml");
        std::fs::write(&config_path, config)?;
        let database_url = match database_url {
            Some(url) => url.to_owned(),
            None => format!("sqlite://{}", dir.path().join("signpost.db").display()),
        };
        let listen = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log_path = dir.path().join("signpost.log");
        let log = std::fs::File::create(&log_path)?;
        let poll = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()?;
        let ready_url = format!("http://{listen}/health/ready");
        let spawned = Instant::now();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env(ENV_LISTEN, listen.to_string())
            .env(ENV_DATABASE_URL, database_url)
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("no pid"))?
            .to_string();
        let mut process = SignpostProcess {
            child,
            pid,
            listen,
            log_path,
            ready_ms: f64::NAN,
            _dir: dir,
        };
        loop {
            let ready = poll
                .get(&ready_url)
                .send()
                .await
                .is_ok_and(|r| r.status() == StatusCode::OK);
            if ready {
                break;
            }
            if let Some(status) = process.child.try_wait()? {
                anyhow::bail!(
                    "signpost serve exited ({status}) before ready:\n{}",
                    process.log_tail()
                );
            }
            if spawned.elapsed() > Duration::from_secs(60) {
                anyhow::bail!(
                    "signpost serve not ready after 60 s:\n{}",
                    process.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        process.ready_ms = spawned.elapsed().as_secs_f64() * 1000.0;
        Ok(process)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(5)..].join("\n")
    }

    /// `SIGTERM`, then wait for the exit: (milliseconds, exit status).
    async fn stop(mut self) -> anyhow::Result<(f64, String)> {
        let stopping = Instant::now();
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid])
            .status()?;
        let exit = match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => status?.to_string(),
            Err(_) => {
                self.child.kill().await?;
                "did not exit within 20 s of SIGTERM (killed)".into()
            }
        };
        Ok((stopping.elapsed().as_secs_f64() * 1000.0, exit))
    }
}

/// Start `signpost serve` on a fresh SQLite database, its endpoints on a
/// closed port (nothing is sent), time it to ready, read its RSS after
/// `idle`, stop it with `SIGTERM`.
async fn probe_startup(idle: Duration) -> anyhow::Result<Startup> {
    let stand_ins = REFERRAL_ID_AT
        .iter()
        .map(|(id, _)| (format!("providers.{id}"), "intake_url"))
        .chain([(format!("referrers.{REFERRER}"), "callback_url")])
        .map(|(table, url_key)| {
            Ok(StandIn {
                url: Url::parse(&format!("http://127.0.0.1:9/{table}"))?,
                table,
                url_key,
                whsec: Secret::generate().to_whsec(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let process = SignpostProcess::start(&stand_ins, "", None).await?;
    tokio::time::sleep(idle).await;
    let rss = status_mb(&process.pid, "VmRSS:");
    let peak = status_mb(&process.pid, "VmHWM:");
    let ready_ms = process.ready_ms;
    let pid = process.pid.clone();
    let (stop_ms, exit) = process.stop().await?;
    Ok(Startup {
        ready_ms,
        idle_rss_mb: rss.ok_or_else(|| anyhow::anyhow!("no VmRSS for {pid}"))?,
        idle_peak_rss_mb: peak.unwrap_or(f64::NAN),
        idle_s: idle.as_secs_f64(),
        stop_ms,
        exit,
    })
}

// ---------------------------------------------------------------------------
// The baseline: the same clients against a handler that does nothing

/// A phase's intake and what it cost the process.
struct Phase {
    intake: Intake,
    cpu_s: f64,
    wall_s: f64,
}

async fn run_baseline(
    args: &Args,
    client: &reqwest::Client,
    bodies: &Arc<Bodies>,
    ticks: f64,
) -> anyhow::Result<Phase> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/fhir/ServiceRequest", listener.local_addr()?);
    let app = Router::new().route(
        "/fhir/ServiceRequest",
        axum::routing::post(|_body: Bytes| async { StatusCode::CREATED }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await
    });
    let load = Load {
        run: match args.run {
            Run::For(duration) => Run::For(duration.min(BASELINE_MAX)),
            run => run,
        },
        clients: args.clients,
        rate: args.rate,
    };
    let warmup = Load {
        run: Run::Count(args.warmup),
        ..load
    };
    drive(
        client,
        &url,
        bodies,
        warmup,
        Expect::Created,
        &ProgressBar::hidden(),
    )
    .await;

    let bar = intake_progress("baseline", load);
    let mark = Mark::now(ticks, "self");
    let intake = drive(client, &url, bodies, load, Expect::Created, &bar).await;
    let (cpu_s, wall_s) = mark.since();
    bar.finish_and_clear();

    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    Ok(Phase {
        intake,
        cpu_s,
        wall_s,
    })
}

// ---------------------------------------------------------------------------
// Signpost's own metrics: where its time goes

/// Sums of Signpost's timing histograms (seconds) and their counts.
#[derive(Default, Clone, Copy)]
struct ServerTimes {
    intake: (f64, f64),
    validation: (f64, f64),
    mapping: (f64, f64),
    attempts: (f64, f64),
}

impl ServerTimes {
    async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<ServerTimes> {
        let text = client
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        // Sum `name_sum` and `name_count` over the series whose labels
        // contain `filter`.
        let histogram = |name: &str, filter: &str| -> (f64, f64) {
            let total = |series: String| -> f64 {
                text.lines()
                    .filter(|l| !l.starts_with('#'))
                    .filter_map(|line| {
                        let (key, value) = match line.find('}') {
                            Some(end) => (&line[..=end], &line[end + 1..]),
                            None => line.split_once(' ')?,
                        };
                        let (metric, labels) = key.split_once('{').unwrap_or((key, ""));
                        (metric == series && labels.contains(filter))
                            .then(|| value.split_whitespace().next()?.parse::<f64>().ok())
                            .flatten()
                    })
                    .sum()
            };
            (
                total(format!("signpost_{name}_sum")),
                total(format!("signpost_{name}_count")),
            )
        };
        Ok(ServerTimes {
            intake: histogram(
                "http_request_duration_seconds",
                "route=\"/fhir/ServiceRequest\"",
            ),
            validation: histogram("validation_duration_seconds", ""),
            mapping: histogram("mapping_duration_seconds", ""),
            attempts: histogram("delivery_attempt_duration_seconds", ""),
        })
    }

    /// The mean of each in milliseconds between two scrapes, and counts.
    fn means_since(&self, before: &ServerTimes) -> Value {
        let mean = |after: (f64, f64), before: (f64, f64)| {
            let count = after.1 - before.1;
            json!({
                "count": count,
                "mean_ms": if count > 0.0 { round((after.0 - before.0) / count * 1000.0, 3) } else { 0.0 },
            })
        };
        json!({
            "intake_handler": mean(self.intake, before.intake),
            "validation": mean(self.validation, before.validation),
            "mapping": mean(self.mapping, before.mapping),
            "delivery_attempt": mean(self.attempts, before.attempts),
        })
    }
}

// ---------------------------------------------------------------------------
// The run

async fn run(
    args: &Args,
    db: &Database,
    startup: Result<Startup, String>,
) -> anyhow::Result<Report> {
    let ticks = clock_ticks();
    let bodies = Arc::new(Bodies::load()?);
    // Tokens are made up front, so both phases use the same client; they
    // are stored once Signpost's database exists.
    let referrer = signpost::security::tokens::issue(&signpost::security::tokens::Role::Referrer(
        REFERRER.into(),
    ));
    let monitor = signpost::security::tokens::issue(&signpost::security::tokens::Role::Monitor);

    eprintln!("baseline: minimal axum handler (read body, answer 201)");
    let baseline = run_baseline(args, &http_client(&referrer.token)?, &bodies, ticks).await?;

    eprintln!("signpost: {}", db.backend);
    // From here the peak RSS is Signpost's phase (the baseline's memory,
    // mostly freed, may stay in the allocator: a few MB).
    let peak_reset = reset_peak_rss();
    let received = Arc::new(Mutex::new(Received::default()));
    let stand_ins = start_stand_ins(&received).await?;
    let mut config = configure(&db.url, &stand_ins)?;
    if let Some(concurrency) = args.delivery_concurrency {
        config.delivery.concurrency = concurrency;
    }
    let settings = format!(
        "concurrency {}, poll {:?}, database_max_connections {}",
        config.delivery.concurrency, config.delivery.poll_interval, config.database_max_connections
    );
    let serving = if args.process {
        let extra = args.delivery_concurrency.map_or(String::new(), |c| {
            format!("[delivery]\nconcurrency = {c}\n")
        });
        Serving::Process(Box::new(
            SignpostProcess::start(&stand_ins, &extra, Some(&db.url)).await?,
        ))
    } else {
        let app = Application::build(config).await?;
        let addr = app.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = stopped.await;
        }));
        Serving::InProcess { addr, stop, server }
    };
    let base = format!("http://{}", serving.addr());
    let url = format!("{base}/fhir/ServiceRequest");
    let store = signpost::store::open(&db.url, 1).await?;
    store.insert_token(referrer.row).await?;
    store.insert_token(monitor.row).await?;
    drop(store);
    let client = http_client(&referrer.token)?;
    let metrics_client = http_client(&monitor.token)?;
    let metrics_url = format!("{base}/metrics");

    let load = Load {
        run: args.run,
        clients: args.clients,
        rate: args.rate,
    };
    let warmup = drive(
        &client,
        &url,
        &bodies,
        Load {
            run: Run::Count(args.warmup),
            ..load
        },
        Expect::Referral,
        &ProgressBar::hidden(),
    )
    .await;
    await_deliveries(
        &received,
        &warmup.created,
        0,
        args.timeout,
        &ProgressBar::hidden(),
    )
    .await;
    if !warmup.refused.is_empty() {
        anyhow::bail!(
            "warm-up referrals refused (status: count): {:?}",
            warmup.refused
        );
    }
    let before = received.lock().expect("receiver lock").referrals.len();
    let metrics_before = ServerTimes::scrape(&metrics_client, &metrics_url).await;

    let bar = intake_progress("signpost", load);
    let pid = serving.pid();
    let mark = Mark::now(ticks, pid);
    let sampler = RssSampler::start(pid);
    let intake = drive(&client, &url, &bodies, load, Expect::Referral, &bar).await;
    bar.finish_and_clear();
    let bar = progress("delivered", Some(intake.created.len() as u64), "referrals");
    await_deliveries(&received, &intake.created, before, args.timeout, &bar).await;
    bar.finish_and_clear();
    let (cpu_s, wall_s) = mark.since();
    let resources = Resources {
        scope: serving.scope(),
        peak_rss_mb: status_mb(pid, "VmHWM:"),
        rss_mb: status_mb(pid, "VmRSS:"),
        peak_reset: args.process || peak_reset,
        samples: sampler.stop().await,
        cpu_s,
        wall_s,
    };
    let server_times = match (
        metrics_before,
        ServerTimes::scrape(&metrics_client, &metrics_url).await,
    ) {
        (Ok(before), Ok(after)) => after.means_since(&before),
        (Err(e), _) | (_, Err(e)) => json!({ "unavailable": format!("{e:#}") }),
    };

    serving.stop().await;

    let received = received.lock().expect("receiver lock");
    Ok(Report::new(Context {
        args,
        db,
        settings,
        body_bytes: bodies.mean_size(),
        intake: &intake,
        received: &received,
        baseline,
        resources,
        startup,
        server_times,
    }))
}

/// Where the Signpost under test runs.
enum Serving {
    /// In this process (the default).
    InProcess {
        addr: SocketAddr,
        stop: tokio::sync::oneshot::Sender<()>,
        server: tokio::task::JoinHandle<std::io::Result<()>>,
    },
    /// `signpost serve` as its own process (`--process`).
    Process(Box<SignpostProcess>),
}

impl Serving {
    fn addr(&self) -> SocketAddr {
        match self {
            Serving::InProcess { addr, .. } => *addr,
            Serving::Process(process) => process.listen,
        }
    }

    /// The process whose memory and CPU are measured (`/proc/<pid>`).
    fn pid(&self) -> &str {
        match self {
            Serving::InProcess { .. } => "self",
            Serving::Process(process) => &process.pid,
        }
    }

    fn scope(&self) -> &'static str {
        match self {
            Serving::InProcess { .. } => RSS_SCOPE,
            Serving::Process(_) => PROCESS_SCOPE,
        }
    }

    async fn stop(self) {
        match self {
            Serving::InProcess { stop, server, .. } => {
                let _ = stop.send(());
                let _ = tokio::time::timeout(Duration::from_secs(40), server).await;
            }
            Serving::Process(process) => {
                if let Err(e) = process.stop().await {
                    eprintln!("stopping signpost serve: {e:#}");
                }
            }
        }
    }
}

/// `VmRSS` of the measured process once a second, from the first measured
/// POST to the last receipt: whether memory grows over a long run.
struct RssSampler {
    samples: Arc<Mutex<Vec<(f64, f64)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    fn start(pid: &str) -> RssSampler {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let (pid, into) = (pid.to_owned(), samples.clone());
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                if let Some(mb) = status_mb(&pid, "VmRSS:") {
                    let at = started.elapsed().as_secs_f64();
                    into.lock().expect("sampler lock").push((at, mb));
                }
            }
        });
        RssSampler { samples, task }
    }

    /// (seconds since the start, MB) pairs.
    async fn stop(self) -> Vec<(f64, f64)> {
        self.task.abort();
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().expect("sampler lock"))
    }
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

    /// POST → `201` of each accepted request.
    fn of_intake(intake: &Intake) -> Option<Spread> {
        Spread::of(
            intake
                .created
                .iter()
                .map(|c| signed_ms(c.sent, c.created))
                .collect(),
        )
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

    /// One percentile as a JSON number (null without samples).
    fn pick(spread: &Option<Spread>, which: fn(&Spread) -> f64) -> Option<f64> {
        spread.as_ref().map(|s| round(which(s), 2))
    }
}

/// What the Signpost phase cost the measured process: the whole bench
/// process, or with `--process` the `signpost serve` process alone.
struct Resources {
    scope: &'static str,
    /// `VmHWM` since just before Signpost started (or since the process
    /// started, when the reset failed).
    peak_rss_mb: Option<f64>,
    /// `VmRSS` at the end.
    rss_mb: Option<f64>,
    peak_reset: bool,
    /// `VmRSS` once a second: (seconds, MB).
    samples: Vec<(f64, f64)>,
    /// First measured POST to last receipt.
    cpu_s: f64,
    wall_s: f64,
}

impl Resources {
    /// RSS at the last sample over RSS a minute into the run (once the
    /// caches, pools and buffers have grown to the load), in per cent;
    /// `None` for runs shorter than two minutes.
    fn growth_pct(&self) -> Option<f64> {
        let (last_at, last) = *self.samples.last()?;
        if last_at < 120.0 {
            return None;
        }
        let (_, settled) = *self.samples.iter().find(|(at, _)| *at >= 60.0)?;
        Some((last - settled) / settled * 100.0)
    }

    /// Every tenth sample: (seconds, MB), for the JSON.
    fn thinned(&self) -> Vec<Value> {
        self.samples
            .iter()
            .step_by(10)
            .map(|(at, mb)| json!([round(*at, 0), round(*mb, 1)]))
            .collect()
    }
}

/// Intake as the clients saw it, for either phase.
struct IntakeSummary {
    accepted: usize,
    /// First POST to last `201`, in seconds.
    wall_s: f64,
    latency_ms: Option<Spread>,
}

impl IntakeSummary {
    fn of(intake: &Intake) -> IntakeSummary {
        let first_sent = intake.created.iter().map(|c| c.sent).min();
        let last_created = intake.created.iter().map(|c| c.created).max();
        IntakeSummary {
            accepted: intake.created.len(),
            wall_s: match (first_sent, last_created) {
                (Some(from), Some(to)) => seconds(from, to),
                _ => 0.0,
            },
            latency_ms: Spread::of_intake(intake),
        }
    }

    fn per_s(&self) -> f64 {
        per_second(self.accepted, self.wall_s)
    }
}

/// The baseline phase, summarised.
struct Baseline {
    summary: IntakeSummary,
    refused: BTreeMap<u16, usize>,
    cpu_s: f64,
    wall_s: f64,
}

impl Baseline {
    fn refused(&self) -> usize {
        self.refused.values().sum()
    }
}

/// Everything a report is made from.
struct Context<'a> {
    args: &'a Args,
    db: &'a Database,
    settings: String,
    body_bytes: usize,
    intake: &'a Intake,
    received: &'a Received,
    baseline: Phase,
    resources: Resources,
    startup: Result<Startup, String>,
    server_times: Value,
}

struct Report {
    sent: usize,
    run: Run,
    clients: usize,
    rate: Option<f64>,
    warmup: usize,
    body_bytes: usize,
    backend: String,
    durability: String,
    durable: bool,
    settings: String,
    cpus: usize,
    cpu_model: String,
    mem_total_mb: Option<f64>,
    commit: Option<String>,
    intake: IntakeSummary,
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
    baseline: Baseline,
    resources: Resources,
    startup: Result<Startup, String>,
    server_times: Value,
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

/// One of the targets, as measured.
struct Check {
    what: &'static str,
    goal: String,
    value: Option<f64>,
    shown: String,
    met: Option<bool>,
}

impl Report {
    fn new(cx: Context) -> Report {
        let Context {
            args,
            db,
            intake,
            received,
            ..
        } = cx;
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
        let first_created = intake.created.iter().map(|c| c.created).min();
        let last_created = intake.created.iter().map(|c| c.created).max();
        let first_receipt = arrivals.iter().min().copied();
        let last_receipt = arrivals.iter().max().copied();
        let span = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(from), Some(to)) => seconds(from, to),
            _ => 0.0,
        };
        Report {
            sent: intake.created.len() + intake.refused(),
            run: args.run,
            clients: args.clients,
            rate: args.rate,
            warmup: args.warmup,
            body_bytes: cx.body_bytes,
            backend: db.backend.clone(),
            durability: db.durability.clone(),
            durable: db.durable(),
            settings: cx.settings,
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(),
            mem_total_mb: mem_total_mb(),
            commit: commit(),
            intake: IntakeSummary::of(intake),
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
            baseline: Baseline {
                summary: IntakeSummary::of(&cx.baseline.intake),
                refused: cx.baseline.intake.refused.clone(),
                cpu_s: cx.baseline.cpu_s,
                wall_s: cx.baseline.wall_s,
            },
            resources: cx.resources,
            startup: cx.startup,
            server_times: cx.server_times,
        }
    }

    fn accepted_per_s(&self) -> f64 {
        self.intake.per_s()
    }

    fn deliveries_per_s(&self) -> f64 {
        per_second(self.delivered, self.created_to_last_receipt_s)
    }

    /// Signpost's intake rate as a share of the baseline's.
    fn ratio(&self) -> Option<f64> {
        let baseline = self.baseline.summary.per_s();
        (baseline > 0.0).then(|| self.accepted_per_s() / baseline)
    }

    /// Each target, its goal, the measured value and whether it is met.
    fn checks(&self) -> Vec<Check> {
        let at_most = |what, goal: f64, unit: &str, value: Option<f64>| Check {
            what,
            goal: format!("≤ {goal} {unit}"),
            value,
            shown: value.map_or("-".into(), |v| format!("{v:.1} {unit}")),
            met: value.map(|v| v <= goal),
        };
        let at_least = |what, goal: f64, unit: &str, value: Option<f64>| Check {
            what,
            goal: format!("≥ {goal} {unit}"),
            value,
            shown: value.map_or("-".into(), |v| format!("{v:.1} {unit}")),
            met: value.map(|v| v >= goal),
        };
        let intake_p99 = Spread::pick(&self.intake.latency_ms, |s| s.p99);
        let delivery_p50 = Spread::pick(&self.latency_ms, |s| s.p50);
        let delivery_p99 = Spread::pick(&self.latency_ms, |s| s.p99);
        let startup = self.startup.as_ref().ok();
        let mut checks = vec![
            at_least(
                "intake ÷ baseline",
                target::RATIO * 100.0,
                "%",
                self.ratio().map(|r| r * 100.0),
            ),
            at_least(
                "accepted referrals/s",
                target::ACCEPTED_PER_S,
                "/s",
                Some(self.accepted_per_s()),
            ),
            at_most("intake p99", target::INTAKE_P99_MS, "ms", intake_p99),
            at_most(
                "201 → receipt p50",
                target::DELIVERY_P50_MS,
                "ms",
                delivery_p50,
            ),
            at_most(
                "201 → receipt p99",
                target::DELIVERY_P99_MS,
                "ms",
                delivery_p99,
            ),
            at_most(
                if self.resources.scope == PROCESS_SCOPE {
                    "peak RSS (signpost serve)"
                } else {
                    "peak RSS (bench process)"
                },
                target::PEAK_RSS_MB,
                "MB",
                self.resources.peak_rss_mb,
            ),
            at_most(
                "idle RSS (signpost serve)",
                target::IDLE_RSS_MB,
                "MB",
                startup.map(|s| s.idle_rss_mb),
            ),
            at_most(
                "start-up to ready",
                target::STARTUP_MS,
                "ms",
                startup.map(|s| s.ready_ms),
            ),
        ];
        // Memory growth is Signpost's own only when it runs apart.
        if self.resources.scope == PROCESS_SCOPE {
            checks.push(at_most(
                "RSS growth over the run",
                target::RSS_GROWTH_PCT,
                "%",
                self.resources.growth_pct(),
            ));
        }
        checks
    }

    /// How this run differs from the targets' conditions, if it does.
    fn conditions(&self) -> String {
        let mut notes = Vec::new();
        if self.clients != target::CLIENTS {
            notes.push(format!("{} clients, not {}", self.clients, target::CLIENTS));
        }
        if self.rate.is_some() {
            notes.push("rate-limited clients: the ratio to the baseline means little".into());
        }
        if !self.durable {
            notes.push(format!("commits not fsync-durable ({})", self.durability));
        }
        if notes.is_empty() {
            format!(
                "as the targets assume: {} clients, {} CPUs shared with the load generator, \
                 fsync-durable commits ({})",
                self.clients, self.cpus, self.durability
            )
        } else {
            format!("differ from the targets': {}", notes.join("; "))
        }
    }

    fn table(&self) -> String {
        let e = &self.errors;
        let refused: usize = e.refused.values().sum();
        let b = &self.baseline;
        let r = &self.resources;
        let mb = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1} MB"));
        let cpu_per = |cpu_s: f64, n: usize| {
            if n > 0 {
                format!("{:.0} µs CPU/request", cpu_s / n as f64 * 1e6)
            } else {
                "-".into()
            }
        };
        let mut rows: Vec<(&str, String)> = vec![
            (
                "machine",
                format!(
                    "{} CPUs, {}, {}",
                    self.cpus,
                    self.cpu_model,
                    self.mem_total_mb
                        .map_or("?".into(), |m| format!("{:.1} GiB", m / 1024.0))
                ),
            ),
            ("backend", format!("{} ({})", self.backend, self.durability)),
            ("delivery settings", self.settings.clone()),
        ];
        if let Some(commit) = &self.commit {
            rows.push(("commit", commit.clone()));
        }
        rows.extend([
            (
                "run",
                match self.run {
                    Run::Count(n) => format!("{n} referrals (after {} warm-up)", self.warmup),
                    Run::For(d) => format!(
                        "{:.0} s: {} referrals sent (after {} warm-up)",
                        d.as_secs_f64(),
                        self.sent,
                        self.warmup
                    ),
                },
            ),
            (
                "clients",
                match self.rate {
                    Some(rate) => format!("{} (at most {rate} referrals/s)", self.clients),
                    None => format!(
                        "{} (each sends as soon as its last answer arrives); bodies {} B on average",
                        self.clients, self.body_bytes
                    ),
                },
            ),
            ("", String::new()),
            (
                "baseline",
                format!(
                    "{:.0} requests/s  ({} in {:.2} s; axum handler: read body, answer 201)",
                    b.summary.per_s(),
                    b.summary.accepted,
                    b.summary.wall_s
                ),
            ),
            ("baseline POST → 201", Spread::line(&b.summary.latency_ms)),
            (
                "baseline CPU",
                format!(
                    "{:.2} s in {:.2} s ({})",
                    b.cpu_s,
                    b.wall_s,
                    cpu_per(b.cpu_s, b.summary.accepted)
                ),
            ),
            ("", String::new()),
            (
                "accepted referrals/s",
                format!(
                    "{:.1}  ({} in {:.2} s, first POST → last 201)",
                    self.accepted_per_s(),
                    self.intake.accepted,
                    self.intake.wall_s
                ),
            ),
            (
                "ratio to baseline",
                self.ratio()
                    .map_or("-".into(), |r| format!("{:.2} %", r * 100.0)),
            ),
            ("POST → 201 (ms)", Spread::line(&self.intake.latency_ms)),
            (
                "deliveries/s",
                format!(
                    "{:.1}  (N / first 201 → last receipt, {:.2} s)",
                    self.deliveries_per_s(),
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
        if !b.refused.is_empty() {
            rows.push(("baseline refused", format!("{:?}", b.refused)));
        }
        let server = &self.server_times;
        let mean = |key: &str| {
            server[key]["mean_ms"]
                .as_f64()
                .map_or("-".into(), |ms| format!("{ms:.2} ms"))
        };
        rows.extend([
            ("", String::new()),
            (
                "peak RSS",
                format!(
                    "{}  ({}, {}; {} at the end{})",
                    mb(r.peak_rss_mb),
                    r.scope,
                    if r.scope == PROCESS_SCOPE {
                        "since it started"
                    } else if r.peak_reset {
                        "since just before Signpost started"
                    } else {
                        "since the process started"
                    },
                    mb(r.rss_mb),
                    r.growth_pct()
                        .map_or(String::new(), |g| format!("; {g:+.1} % since a minute in"))
                ),
            ),
            (
                "CPU",
                format!(
                    "{:.2} s in {:.2} s, {:.0} % of {} CPUs ({}, {})",
                    r.cpu_s,
                    r.wall_s,
                    r.cpu_s / (r.wall_s * self.cpus.max(1) as f64) * 100.0,
                    self.cpus,
                    cpu_per(r.cpu_s, self.intake.accepted),
                    r.scope
                ),
            ),
            (
                "Signpost's /metrics",
                format!(
                    "means: intake handler {}, validation {}, mapping {}, delivery attempt {}",
                    mean("intake_handler"),
                    mean("validation"),
                    mean("mapping"),
                    mean("delivery_attempt")
                ),
            ),
            (
                "signpost serve",
                match &self.startup {
                    Ok(s) => format!(
                        "ready {:.0} ms after spawn; after {:.1} s idle RSS {:.1} MB (peak {:.1} MB); \
                         SIGTERM → exit {:.0} ms ({})",
                        s.ready_ms, s.idle_s, s.idle_rss_mb, s.idle_peak_rss_mb, s.stop_ms, s.exit
                    ),
                    Err(e) => format!("probe failed: {e}"),
                },
            ),
        ]);
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut text = String::from("\nSignpost end-to-end benchmark\n");
        for (key, value) in rows {
            if key.is_empty() && value.is_empty() {
                text.push('\n');
                continue;
            }
            let pad = width - key.chars().count();
            let _ = writeln!(text, "  {key}{}  {value}", " ".repeat(pad));
        }

        let checks = self.checks();
        let what = checks
            .iter()
            .map(|c| c.what.chars().count())
            .max()
            .unwrap_or(0);
        let _ = writeln!(text, "\nTargets (conditions {})", self.conditions());
        for c in &checks {
            let mark = match c.met {
                Some(true) => "✓",
                Some(false) => "✗",
                None => "?",
            };
            let pad = what - c.what.chars().count();
            let _ = writeln!(
                text,
                "  {mark} {}{}  {:<12} target {}",
                c.what,
                " ".repeat(pad),
                c.shown,
                c.goal
            );
        }
        let _ = writeln!(
            text,
            "  · validate + route + map per referral: see `cargo bench --bench mapping` \
             and `cargo bench --bench validation` (not measured here)"
        );
        text
    }

    fn json(&self) -> Value {
        let e = &self.errors;
        let b = &self.baseline;
        let r = &self.resources;
        let startup = self.startup.as_ref().ok();
        let pick = Spread::pick;
        let headline = json!({
            "benchmark": "delivery",
            "at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "commit": self.commit,
            "machine": {
                "nproc": self.cpus,
                "cpu_model": self.cpu_model,
                "mem_total_mb": self.mem_total_mb.map(|m| round(m, 0)),
            },
            "backend": self.backend,
            "durability": self.durability,
            "delivery_settings": self.settings,

            // The headline figures.
            "accepted_per_s": round(self.accepted_per_s(), 1),
            "baseline_per_s": round(b.summary.per_s(), 1),
            "ratio": self.ratio().map(|r| round(r, 4)),
            "intake_p50_ms": pick(&self.intake.latency_ms, |s| s.p50),
            "intake_p90_ms": pick(&self.intake.latency_ms, |s| s.p90),
            "intake_p99_ms": pick(&self.intake.latency_ms, |s| s.p99),
            "intake_max_ms": pick(&self.intake.latency_ms, |s| s.max),
            "delivery_p50_ms": pick(&self.latency_ms, |s| s.p50),
            "delivery_p90_ms": pick(&self.latency_ms, |s| s.p90),
            "delivery_p99_ms": pick(&self.latency_ms, |s| s.p99),
            "delivery_max_ms": pick(&self.latency_ms, |s| s.max),
            "deliveries_per_s": round(self.deliveries_per_s(), 1),
            "errors": e.total(),
            "peak_rss_mb": r.peak_rss_mb.map(|v| round(v, 1)),
            "cpu_seconds": round(r.cpu_s, 2),
            "rss_scope": r.scope,
            "startup_to_ready_ms": startup.map(|s| round(s.ready_ms, 1)),
            "idle_rss_mb": startup.map(|s| round(s.idle_rss_mb, 1)),
        });
        let details = json!({
            "run": match self.run {
                Run::Count(n) => json!({ "referrals": n }),
                Run::For(d) => json!({ "duration_s": d.as_secs_f64() }),
            },
            "referrals": self.sent,
            "warmup": self.warmup,
            "clients": self.clients,
            "rate_limit_per_s": self.rate,
            "mean_body_bytes": self.body_bytes,
            "targets": self.checks().iter().map(|c| json!({
                "target": c.what, "goal": c.goal,
                "value": c.value.map(|v| round(v, 2)), "met": c.met,
            })).collect::<Vec<_>>(),
            "target_conditions": self.conditions(),
            "baseline": {
                "handler": "axum: read the whole body (Bytes), answer 201",
                "accepted": b.summary.accepted,
                "wall_s": round(b.summary.wall_s, 3),
                "requests_per_s": round(b.summary.per_s(), 1),
                "post_to_201_ms": Spread::json(&b.summary.latency_ms),
                "refused_by_status": status_counts(&b.refused),
                "cpu_seconds": round(b.cpu_s, 2),
                "cpu_wall_s": round(b.wall_s, 3),
            },
            "intake": {
                "accepted": self.intake.accepted,
                "wall_s": round(self.intake.wall_s, 3),
                "referrals_per_s": round(self.accepted_per_s(), 1),
                "post_to_201_ms": Spread::json(&self.intake.latency_ms),
            },
            "delivery": {
                "delivered": self.delivered,
                "first_201_to_last_receipt_s": round(self.created_to_last_receipt_s, 3),
                "deliveries_per_s_from_first_201": round(self.deliveries_per_s(), 1),
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
            "resources": {
                "scope": r.scope,
                "peak_rss_mb": r.peak_rss_mb.map(|v| round(v, 1)),
                "peak_since": if r.peak_reset { "just before Signpost started" } else { "process start" },
                "rss_growth_pct": r.growth_pct().map(|g| round(g, 1)),
                "rss_growth_window": "last sample over the sample a minute into the run (runs of 2 minutes or more)",
                "rss_samples_s_mb": r.thinned(),
                "rss_at_end_mb": r.rss_mb.map(|v| round(v, 1)),
                "cpu_seconds": round(r.cpu_s, 2),
                "cpu_wall_s": round(r.wall_s, 3),
                "cpu_window": "first measured POST to last receipt",
            },
            "server_metrics": self.server_times,
            "startup": match &self.startup {
                Ok(s) => json!({
                    "command": "signpost serve (fresh SQLite database)",
                    "to_ready_ms": round(s.ready_ms, 1),
                    "idle_s": s.idle_s,
                    "idle_rss_mb": round(s.idle_rss_mb, 1),
                    "idle_peak_rss_mb": round(s.idle_peak_rss_mb, 1),
                    "sigterm_to_exit_ms": round(s.stop_ms, 1),
                    "exit": s.exit,
                }),
                Err(e) => json!({ "error": e }),
            },
            "error_detail": {
                "total": e.total(),
                "refused_by_status": status_counts(&e.refused),
                "bad_signatures": e.bad_signatures,
                "unreadable": e.unreadable,
                "misrouted": e.misrouted,
                "missing": e.missing,
            },
        });
        // One `json!` for all would pass serde_json's macro recursion limit.
        let (Value::Object(mut all), Value::Object(details)) = (headline, details) else {
            unreachable!("JSON objects");
        };
        all.extend(details);
        Value::Object(all)
    }
}

fn status_counts(counts: &BTreeMap<u16, usize>) -> serde_json::Map<String, Value> {
    counts
        .iter()
        .map(|(s, n)| (s.to_string(), json!(n)))
        .collect()
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

/// The machine's memory, from `/proc/meminfo`, in MB (MiB).
fn mem_total_mb() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
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
