//! Portal pages under load: 20 signed-in users at once, each loading the
//! referrals list and a referral's page in turn, on SQLite, over real
//! HTTP. Reports p50/p95/p99 per page (the target: p99 <= 50 ms).
//!
//! ```sh
//! cargo bench --bench portal                       # 20 users, 200 referrals, 10 s
//! cargo bench --bench portal -- --users 20 --referrals 500 --seconds 20
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use signpost::{
    config::SecretSource,
    portal::{Portal, totp},
    security::tokens::Role,
    startup::Application,
    webhooks::Secret,
};

#[path = "../tests/support/kit.rs"]
mod kit;

const PASSWORD: &str = "a long enough bench password";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let users = arg("--users", 20);
    let referrals = arg("--referrals", 200);
    let seconds = arg("--seconds", 10) as u64;

    let db = kit::Database::sqlite()?;
    let mut config = kit::sample_config(&db.url)?;
    let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    for provider in config.providers.values_mut() {
        provider.secret = SecretSource::Inline(Secret::parse(whsec)?);
    }
    for referrer in config.referrers.values_mut() {
        referrer.secret = SecretSource::Inline(Secret::parse(whsec)?);
    }
    // Pages only: nothing is delivered.
    config.delivery.worker = false;
    let app = Application::build(config.clone()).await?;
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));

    // Referrals to Grow Together, posted as a practice would.
    let store = signpost::store::open(&db.url, 1).await?;
    let issued = signpost::security::tokens::issue(&Role::Referrer("riverside-surgery".parse()?));
    store.insert_token(issued.row.clone()).await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let fixture: Value = serde_json::from_str(&std::fs::read_to_string(format!(
        "{}/tests/fixtures/referrals/valid/grow-together.bundle.json",
        kit::MANIFEST_DIR
    ))?)?;
    let mut ids = Vec::new();
    for _ in 0..referrals {
        let mut bundle = fixture.clone();
        for entry in bundle["entry"].as_array_mut().unwrap() {
            if entry["resource"]["resourceType"] == "ServiceRequest" {
                entry["resource"]["identifier"] = serde_json::json!([{
                    "system": "https://fhir.riverside-surgery.example/Id/referral",
                    "value": uuid::Uuid::new_v4().to_string(),
                }]);
            }
        }
        let response = http
            .post(format!("{base}/fhir"))
            .bearer_auth(&issued.token)
            .header("content-type", "application/fhir+json")
            .body(bundle.to_string())
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "intake: {}",
            response.status()
        );
        let answer: Value = response.json().await?;
        let id = answer.to_string();
        let id = id
            .split("ServiceRequest/")
            .nth(1)
            .and_then(|rest| rest.split(['/', '"']).next())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no ServiceRequest id in the answer"))?;
        ids.push(id);
    }

    // The users, enrolled and signed in (with the next step's code: the
    // enrolment spent this one).
    let domain = signpost::startup::domain(config).await?;
    let portal = Portal::new(domain.store, domain.referrals);
    let mut cookies = Vec::new();
    for n in 0..users {
        let email = format!("user{n}@grow.example");
        let (_, link) = portal
            .create_user("grow-together".parse()?, &email, None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("email taken"))?;
        let secret = totp::new_secret();
        let raw = data_encoding::BASE32_NOPAD.decode(secret.as_bytes())?;
        let now = portal.now().as_millis();
        let code = totp::code(&raw, totp::step_at(now));
        anyhow::ensure!(
            portal
                .enrol(&link, &secret, PASSWORD, PASSWORD, &code)
                .await?
                .is_none(),
            "enrolment refused"
        );
        let next = totp::code(&raw, totp::step_at(now) + 1);
        let (_, cookie) = portal
            .sign_in(&email, PASSWORD, &next, None)
            .await
            .map_err(|e| anyhow::anyhow!("sign-in: {e}"))?;
        cookies.push(format!("signpost_session={cookie}"));
    }

    println!(
        "portal bench: {users} signed-in users, {referrals} referrals, {seconds} s, SQLite, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let ids = Arc::new(ids);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for (n, cookie) in cookies.into_iter().enumerate() {
        let http = http.clone();
        let base = base.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut list = Vec::new();
            let mut page = Vec::new();
            let mut i = n;
            while Instant::now() < deadline {
                for (path, into) in [
                    ("/portal/referrals".to_owned(), &mut list),
                    (
                        format!("/portal/referrals/{}", ids[i % ids.len()]),
                        &mut page,
                    ),
                ] {
                    let started = Instant::now();
                    let response = http
                        .get(format!("{base}{path}"))
                        .header("cookie", &cookie)
                        .send()
                        .await
                        .expect("answer");
                    assert_eq!(response.status(), 200, "{path}");
                    response.bytes().await.expect("body");
                    into.push(started.elapsed());
                }
                i += 7;
            }
            (list, page)
        }));
    }
    let mut list = Vec::new();
    let mut page = Vec::new();
    for task in tasks {
        let (l, p) = task.await?;
        list.extend(l);
        page.extend(p);
    }
    for (name, mut times) in [("referrals list", list), ("referral page", page)] {
        times.sort();
        println!(
            "{name:>15}: {:>6} requests, {:>7.1} req/s, p50 {:>6.2} ms, p95 {:>6.2} ms, p99 {:>6.2} ms, max {:>6.2} ms",
            times.len(),
            times.len() as f64 / seconds as f64,
            percentile(&times, 50.0).as_secs_f64() * 1000.0,
            percentile(&times, 95.0).as_secs_f64() * 1000.0,
            percentile(&times, 99.0).as_secs_f64() * 1000.0,
            times.last().copied().unwrap_or_default().as_secs_f64() * 1000.0,
        );
    }
    let _ = stop.send(());
    server.await??;
    Ok(())
}
