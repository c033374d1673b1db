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
//! cargo bench --bench delivery -- --n 5000 --clients 64 --bars --json benches/results/bars-sqlite.json
//! ```
//!
//! With `--bars` the clients send BaRS messages instead (the tests'
//! social-prescribing referral message, a new Bundle id, ServiceRequest
//! `fullUrl`, `X-Request-Id` and `X-Correlation-Id` each) to
//! `POST /fhir/$process-message`, a `200` with the referral's `Location`
//! counting as accepted; all go to ActiveLives. The table then checks BaRS's
//! non-functional requirement on the intake latencies: 90 % within 2.1 s,
//! all within 5 s.
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
//! the start-up probe always uses SQLite), `--process` (above), `--bars`
//! (above), `--json FILE`. A progress bar
//! shows on a terminal (stderr). The exit status is 1 when any referral
//! failed (errors > 0), not when a target is missed.
//!
//! Under `cargo test --benches` (no `--bench` flag) it makes a quick smoke
//! run of 20 referrals (5 warm-up, a short idle wait) unless `--n` or
//! `--duration` is given.
//!
//! The modules: `args` (the options), `database` (SQLite or a fresh
//! PostgreSQL database, from the kit shared with the tests,
//! `tests/support/kit.rs`), `stand_ins` (the signed receivers and the
//! configuration aimed at them), `clients` (load generation), `process`
//! (`/proc` measurements, the real binary, the start-up probe), `baseline`,
//! `server_metrics` (Signpost's `/metrics`), `run` (the phases), `report`
//! (summaries and target checks), `table` and `results_json` (its outputs).
//! Each module imports the crate root's names (`use crate::*`): one
//! program cut by responsibility, not a library.

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
    startup::Application,
    webhooks::Secret,
};
use url::Url;
use uuid::Uuid;

mod args;
mod baseline;
mod clients;
mod database;
#[path = "../../tests/support/kit.rs"]
mod kit;
mod process;
mod report;
mod results_json;
mod run;
mod server_metrics;
mod stand_ins;
mod table;

use args::*;
use baseline::*;
use clients::*;
use database::*;
use process::*;
use report::*;
use run::*;
use server_metrics::*;
use stand_ins::*;

use kit::{DEFAULT_POSTGRES, MANIFEST_DIR};

pub(crate) const REFERRER: &str = "riverside-surgery";

/// The bare ServiceRequest fixtures, sent in turn, and the provider each
/// is routed to.
pub(crate) const FIXTURES: [(&str, &str); 6] = [
    ("activelives-exercise.json", "activelives"),
    ("activelives-fall-second-coding.json", "activelives"),
    ("activelives-weight.json", "activelives"),
    ("community-connect-loneliness.json", "community-connect"),
    ("community-connect-minimal.json", "community-connect"),
    ("grow-together-performer-ref.json", "grow-together"),
];

/// Where each provider's payload carries Signpost's referral id.
pub(crate) const REFERRAL_ID_AT: [(&str, &str); 3] = [
    ("activelives", "/referral_ref"),
    ("community-connect", "/case/external_id"),
    ("grow-together", "/ref"),
];

/// The targets (2 cores, load generator on the same machine, fsync-durable
/// commits, 64 concurrent clients).
pub(crate) mod target {
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
    /// BaRS's NFR for `$process-message` (`--bars`): 90 % of answers
    /// within 2.1 s, all within 5 s.
    pub const BARS_P90_MS: f64 = 2_100.0;
    pub const BARS_MAX_MS: f64 = 5_000.0;
}

/// The longest baseline phase of a `--duration` run.
pub(crate) const BASELINE_MAX: Duration = Duration::from_secs(30);

/// What the process-wide figures cover.
pub(crate) const RSS_SCOPE: &str = "bench process (Signpost + clients + receivers)";
pub(crate) const PROCESS_SCOPE: &str = "signpost serve process (--process)";

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
    // Drops a PostgreSQL database (the exits below would skip it).
    drop(db);
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
