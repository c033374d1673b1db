//! Polling an inbox: 100 messages from an inbox holding 10,000, on SQLite
//! (the issue's target: p50 ≤ 5 ms).
//!
//! Signpost runs on the sample configuration (Grow Together collects from
//! its inbox) with a fresh SQLite database in a temporary folder and a
//! stopped clock. 10,000 referrals for Grow Together are posted over HTTP
//! (through validation, mapping and the outbox, as a practice would), then
//! each sample polls 100 of them: `poll_http` as the provider's software
//! does (`GET /providers/grow-together/inbox?consumer=bench&limit=100`,
//! over loopback, the JSON answer read in full), `poll_domain` the
//! domain's call alone (lease and read, no HTTP). Between samples the
//! clock moves past the lease, so every poll leases the same first 100 of
//! 10,000 waiting messages again, as a poll after a consumer's restart
//! would.
//!
//! Run: `cargo bench --bench inbox` (seeding takes a while; the samples
//! are what is timed).

#[path = "../tests/support/kit.rs"]
mod kit;

use std::{
    sync::{Arc, LazyLock},
    time::Duration,
};

use serde_json::Value;
use signpost::{
    domain::ManualClock,
    referrals::{Referrals, inbox::Consumer},
    security::tokens::{Role, issue},
    startup::Application,
};

/// Messages waiting in the inbox.
const WAITING: usize = 10_000;
/// Messages one poll hands out.
const POLLED: usize = 100;
/// The lease each poll takes (the clock moves past it between samples).
const LEASE: Duration = Duration::from_secs(1);

fn main() {
    divan::main();
}

/// A running Signpost whose Grow Together inbox holds [`WAITING`] messages.
struct Bench {
    runtime: tokio::runtime::Runtime,
    clock: ManualClock,
    poll_url: String,
    provider: reqwest::Client,
    referrals: Arc<Referrals>,
    _db: kit::Database,
}

static BENCH: LazyLock<Bench> = LazyLock::new(seed);

fn seed() -> Bench {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let db = kit::Database::sqlite().unwrap();
    let clock = ManualClock::starting_now();
    let (poll_url, provider, referrals) = runtime.block_on(async {
        let mut config = kit::sample_config(&db.url).unwrap();
        // No secret files in the repository: inline test secrets.
        for (id, p) in &mut config.providers {
            p.secret = inline(&format!("provider:{id}"));
        }
        for (id, r) in &mut config.referrers {
            r.secret = inline(&format!("referrer:{id}"));
        }
        // Nobody is listening for the referrer's notifications: no worker.
        config.delivery.worker = false;
        let app = Application::build_with_clock(config.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let address = format!("http://{}", app.local_addr());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let store = signpost::store::open(&db.url, 1).await.unwrap();
        let token = |role: Role| {
            let issued = issue(&role);
            let store = store.clone();
            async move {
                store.insert_token(issued.row).await.unwrap();
                issued.token
            }
        };
        let referrer = client(&token(Role::Referrer("riverside-surgery".parse().unwrap())).await);
        let provider = client(&token(Role::Provider("grow-together".parse().unwrap())).await);
        let template: Value = serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/tests/fixtures/referrals/valid/grow-together-performer-ref.json",
                kit::MANIFEST_DIR
            ))
            .unwrap(),
        )
        .unwrap();
        let progress = indicatif::ProgressBar::new(WAITING as u64);
        let url = format!("{address}/fhir/ServiceRequest");
        let mut posts = tokio::task::JoinSet::new();
        for i in 0..WAITING {
            if posts.len() >= 16 {
                posts.join_next().await.unwrap().unwrap();
                progress.inc(1);
            }
            let mut referral = template.clone();
            referral["identifier"][0]["value"] = Value::String(format!("inbox-bench-{i}"));
            let (referrer, url) = (referrer.clone(), url.clone());
            posts.spawn(async move {
                let response = referrer
                    .post(url)
                    .header("content-type", "application/fhir+json")
                    .body(referral.to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
            });
        }
        while let Some(done) = posts.join_next().await {
            done.unwrap();
            progress.inc(1);
        }
        progress.finish_and_clear();
        // A second handle on the same database, for the domain's call alone.
        let domain = signpost::startup::domain_with_clock(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        (
            format!(
                "{address}/providers/grow-together/inbox?consumer=bench&limit={POLLED}&lease=1s"
            ),
            provider,
            domain.referrals,
        )
    });
    Bench {
        runtime,
        clock,
        poll_url,
        provider,
        referrals,
        _db: db,
    }
}

fn inline(endpoint: &str) -> signpost::config::SecretSource {
    use base64::Engine as _;
    use sha2::Digest as _;
    let key = sha2::Sha256::digest(format!("signpost inbox bench secret for {endpoint}"));
    let text = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    signpost::config::SecretSource::Inline(signpost::webhooks::Secret::parse(&text).unwrap())
}

fn client(token: &str) -> reqwest::Client {
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

/// `GET /providers/grow-together/inbox?consumer=bench&limit=100&lease=1s`.
#[divan::bench(sample_count = 200)]
fn poll_http(bencher: divan::Bencher) {
    let b = &*BENCH;
    bencher
        .with_inputs(|| b.clock.advance(LEASE + Duration::from_millis(1)))
        .bench_local_values(|()| {
            b.runtime.block_on(async {
                let response = b.provider.get(&b.poll_url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                let page: Value = response.json().await.unwrap();
                assert_eq!(page["data"].as_array().unwrap().len(), POLLED);
                assert_eq!(page["done"], false, "{WAITING} are waiting");
                page
            })
        });
}

/// [`Referrals::poll_inbox`] alone: the lease (one statement) and the page.
#[divan::bench(sample_count = 200)]
fn poll_domain(bencher: divan::Bencher) {
    let b = &*BENCH;
    let provider = "grow-together".parse().unwrap();
    let consumer: Consumer = "bench".parse().unwrap();
    bencher
        .with_inputs(|| b.clock.advance(LEASE + Duration::from_millis(1)))
        .bench_local_values(|()| {
            b.runtime.block_on(async {
                let page = b
                    .referrals
                    .poll_inbox(&provider, &consumer, POLLED, LEASE)
                    .await
                    .unwrap();
                assert_eq!(page.data.len(), POLLED);
                page
            })
        });
}
