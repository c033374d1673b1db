//! The year's funnel at national scale: N referrals with their journeys
//! (stage times, endings) written straight into `report_facts` through the
//! store (through HTTP, 1,000,000 referrals would take hours), then the
//! funnel for the year computed as `/reports/funnel.csv` computes it,
//! unstratified and `by=provider,profession`, on SQLite and PostgreSQL.
//!
//! `cargo bench --bench reports -- 100000 300000 1000000`
//! (sizes default to those three). PostgreSQL is the server named by
//! `SIGNPOST_TEST_POSTGRES` (default postgres://postgres@127.0.0.1:5432/postgres);
//! skipped when it cannot be reached.

use std::{sync::Arc, time::Instant};

use signpost::{
    domain::{ReferralId, TaskId, Timestamp},
    reports::{
        FunnelQuery, Reports,
        facts::{Ending, ReferralFacts},
        suppression::Suppression,
    },
    store::{FactRow, Store},
};
use sqlx::Connection;

const HOUR_MS: i64 = 3_600_000;
/// 2026-01-01T00:00:00Z.
const YEAR_START_MS: i64 = 1_767_225_600_000;
const YEAR_MS: i64 = 365 * 24 * HOUR_MS;

/// A small deterministic generator (xorshift), so every run is the same.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn row(rng: &mut Rng) -> FactRow {
    const PROFESSIONS: &[&str] = &[
        "gp",
        "gp",
        "gp",
        "nurse",
        "physiotherapist",
        "occupational-therapist",
        "paramedic",
        "other",
    ];
    const BANDS: &[&str] = &[
        "18-24", "25-34", "35-44", "45-54", "55-64", "65-74", "75-84", "85+",
    ];
    const SEXES: &[&str] = &["female", "male", "other", "unknown"];
    const SCHEMES: &[&str] = &[
        "871731000000106",
        "390893007",
        "771491000000104",
        "306206005",
    ];
    let referred =
        YEAR_START_MS + i64::try_from(rng.below(u64::try_from(YEAR_MS).unwrap())).unwrap();
    let after = |rng: &mut Rng, base: i64, max_hours: u64| {
        base + i64::try_from(rng.below(max_hours * 3600)).unwrap() * 1000
    };
    let delivered = (rng.below(100) < 98).then(|| after(rng, referred, 2));
    let contact = delivered
        .filter(|_| rng.below(100) < 80)
        .map(|d| after(rng, d, 240));
    let engaged = contact
        .filter(|_| rng.below(100) < 75)
        .map(|c| after(rng, c, 480));
    let completed = engaged
        .filter(|_| rng.below(100) < 70)
        .map(|e| after(rng, e, 2000));
    let ending = match (completed, rng.below(10)) {
        (Some(_), _) => Some(Ending::Completed),
        (None, 0) => Some(Ending::Declined),
        (None, 1) => Some(Ending::Rejected),
        (None, 2) => Some(Ending::Revoked),
        (None, 3) => Some(Ending::EnteredInError),
        (None, 4 | 5) => Some(Ending::Failed),
        _ => None,
    };
    let pick = |rng: &mut Rng, list: &[&str]| {
        list[usize::try_from(rng.below(list.len() as u64)).unwrap()].to_owned()
    };
    FactRow {
        task_id: TaskId::generate(),
        referral_id: ReferralId::generate(),
        facts: ReferralFacts {
            referred_at: Timestamp::from_millis(referred),
            provider: format!("provider-{}", rng.below(40)),
            scheme: pick(rng, SCHEMES),
            ods: format!("A{:05}", rng.below(6500)),
            profession: pick(rng, PROFESSIONS),
            age_band: pick(rng, BANDS),
            sex: pick(rng, SEXES),
        },
        delivered_ms: delivered,
        contact_ms: contact,
        engaged_ms: engaged,
        completed_ms: completed,
        ending: ending.map(Ending::as_str),
        escalated: rng.below(100) == 0,
    }
}

async fn fill(store: &Arc<dyn Store>, rng: &mut Rng, from: usize, to: usize) {
    let mut done = from;
    while done < to {
        let n = (to - done).min(10_000);
        let rows: Vec<FactRow> = (0..n).map(|_| row(rng)).collect();
        store.insert_fact_rows(&rows).await.expect("facts inserted");
        done += n;
    }
}

async fn measure(name: &str, store: Arc<dyn Store>, sizes: &[usize]) {
    let reports = Reports::new(store.clone(), Suppression::Nhs);
    let mut rng = Rng(0x5167_9057);
    let mut have = 0;
    for &size in sizes {
        let started = Instant::now();
        fill(&store, &mut rng, have, size).await;
        have = size;
        eprintln!(
            "{name}: {size} referrals generated in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        for by in ["", "provider,profession"] {
            let query = FunnelQuery::parse("2026-01-01", "2026-12-31", by).unwrap();
            // The best and the median of three (the machine is shared).
            let mut times: Vec<f64> = Vec::new();
            for _ in 0..3 {
                let started = Instant::now();
                let funnel = reports.funnel(&query).await.unwrap();
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                assert_eq!(funnel.total.counts[0], i64::try_from(size).unwrap());
            }
            times.sort_by(f64::total_cmp);
            println!(
                "{name:10} {size:>9} referrals  by={:<22} year funnel: median {:7.1} ms  best {:7.1} ms",
                if by.is_empty() { "(none)" } else { by },
                times[1],
                times[0]
            );
        }
    }
}

fn main() {
    let mut sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    if sizes.is_empty() {
        sizes = vec![100_000, 300_000, 1_000_000];
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/bench.db", dir.path().display());
        let store = signpost::store::open(&url, 4).await.unwrap();
        measure("sqlite", store, &sizes).await;

        let admin = std::env::var("SIGNPOST_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
            eprintln!("PostgreSQL at {admin} unreachable: skipped");
            return;
        };
        let name = format!("signpost_bench_reports_{}", std::process::id());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let store = signpost::store::open(&format!("{base}/{name}"), 4)
            .await
            .unwrap();
        measure("postgresql", store, &sizes).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .unwrap();
    });
}
