//! Delivery to providers: every accepted referral reaches its provider,
//! signed, with exactly the mapped body; failures are retried in order;
//! refusals are dead-lettered and can be replayed; `410 Gone` disables the
//! endpoint until an operator re-enables it.

use std::{collections::BTreeMap, time::Duration};

use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::fleet::{Fleet, PATIENCE},
    support::helpers::{Backend, json},
    support::receiver::{Receiver, Scripted},
};

/// Fixtures for each provider.
const REFERRALS: [(&str, &str); 5] = [
    ("activelives-exercise.json", "activelives"),
    ("activelives-falls.bundle.json", "activelives"),
    ("community-connect-loneliness.json", "community-connect"),
    (
        "community-connect-debt-housing.bundle.json",
        "community-connect",
    ),
    ("grow-together.bundle.json", "grow-together"),
];

async fn every_accepted_referral_is_delivered_signed_with_the_mapped_body(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let mut sent = Vec::new();
    for (fixture, provider) in REFERRALS {
        sent.push((fleet.refer(fixture).await, provider));
    }
    fleet.app.deliver_due().await;
    for provider in ["activelives", "community-connect", "grow-together"] {
        let expected: Vec<&String> = sent
            .iter()
            .filter(|(_, p)| *p == provider)
            .map(|(id, _)| id)
            .collect();
        let delivered = fleet.provider(provider).delivered();
        assert_eq!(
            delivered.len(),
            expected.len(),
            "{provider}: one delivery per referral"
        );
        for id in expected {
            let want = fleet.expected_payload(id, provider).await;
            let got = delivered
                .iter()
                .find(|r| r.body == want)
                .unwrap_or_else(|| panic!("{provider} did not receive the mapped payload of {id}"));
            assert!(got.signature_valid, "signed with the provider's secret");
            assert_eq!(got.path, format!("/{provider}/intake"));
            assert!(got.webhook_id.starts_with("msg_"), "{}", got.webhook_id);
            assert_eq!(got.header("content-type"), Some("application/json"));
            assert!((crate::support::receiver::unix_now() - got.timestamp).abs() < 60);
        }
    }
    // The operators' view agrees (the round recorded every 2xx it got).
    let listed = json(fleet.app.get("/admin/deliveries?state=delivered").await).await;
    assert_eq!(
        listed["messages"].as_array().unwrap().len(),
        REFERRALS.len(),
        "deliveries recorded: {listed}"
    );
}

async fn a_provider_that_fails_for_a_while_receives_everything_once_it_recovers(backend: Backend) {
    // ActiveLives is down (connection refused) when the referrals arrive;
    // Community Connect answers 503 (with Retry-After), 500, then times
    // out, then recovers.
    let fleet = Fleet::start_stepped(backend, |config| {
        // Enough attempts to outlast the outage below.
        let ms = Duration::from_millis;
        config.delivery.retry_schedule = [
            100, 200, 300, 500, 800, 1000, 1000, 1000, 2000, 2000, 2000, 2000,
        ]
        .into_iter()
        .map(ms)
        .collect();
    })
    .await;
    let down = fleet.provider("activelives").addr;
    let secret = fleet.provider("activelives").secret.clone();
    let mut fleet = fleet;
    fleet.providers.remove("activelives").unwrap().stop().await;
    fleet.provider("community-connect").script(vec![
        Scripted::status(503).retry_after("0"),
        Scripted::status(500),
        Scripted::status(503).after(Duration::from_millis(1500)),
    ]);
    let active = fleet.refer("activelives-exercise.json").await;
    let connect = fleet.refer("community-connect-loneliness.json").await;

    // Time moves on from one due retry to the next (the timeout itself
    // takes its real second).
    while fleet.provider("community-connect").delivered().is_empty() {
        assert!(fleet.app.step().await, "Community Connect is still retried");
    }
    let delivered = fleet.provider("community-connect").delivered();
    let received = fleet.provider("community-connect").received();
    assert_eq!(received.len(), 4, "503, 500, timeout, then 202");
    assert!(
        received
            .iter()
            .all(|r| r.webhook_id == delivered[0].webhook_id),
        "one webhook-id across retries"
    );
    assert_eq!(
        delivered[0].body,
        fleet.expected_payload(&connect, "community-connect").await
    );

    // ActiveLives, retried meanwhile, comes back on the same port.
    let back = Receiver::start_on(down, &secret).await;
    while back.delivered().is_empty() {
        assert!(fleet.app.step().await, "ActiveLives is still retried");
    }
    let delivered = back.delivered();
    assert_eq!(
        delivered[0].body,
        fleet.expected_payload(&active, "activelives").await
    );

    fleet.settled(&active).await;
    let message = &json(
        fleet
            .app
            .get(&format!(
                "/admin/deliveries?referral={active}&provider=activelives"
            ))
            .await,
    )
    .await["messages"][0];
    let shown = json(
        fleet
            .app
            .get(&format!(
                "/admin/deliveries/{}",
                message["id"].as_str().unwrap()
            ))
            .await,
    )
    .await;
    let log = shown["attempt_log"].as_array().unwrap();
    assert!(log.len() >= 2, "{shown}");
    assert!(
        log[0]["error"].as_str().unwrap().contains("connect"),
        "{shown}"
    );
    assert_eq!(log.last().unwrap()["status"], 202);
    assert_eq!(shown["state"], "delivered");
}

async fn retry_after_replaces_the_scheduled_wait(backend: Backend) {
    // The schedule says wait 20 s; the provider asks for 1 s and gets it.
    let fleet = Fleet::start_stepped(backend, |config| {
        config.delivery.retry_schedule = vec![Duration::from_secs(20)];
    })
    .await;
    fleet
        .provider("community-connect")
        .script(vec![Scripted::status(429).retry_after("1")]);
    fleet.refer("community-connect-minimal.json").await;
    let asked = fleet.app.now();
    let next_due = fleet.app.deliver_due().await;
    assert_eq!(fleet.provider("community-connect").received().len(), 1);
    let waits = next_due.expect("a retry is waiting").since(asked);
    assert!(
        waits >= Duration::from_secs(1) && waits < Duration::from_secs(15),
        "waits {waits:?}"
    );
    // Not a moment before it asked...
    fleet.app.advance(Duration::from_millis(999));
    fleet.app.deliver_due().await;
    assert_eq!(fleet.provider("community-connect").received().len(), 1);
    // ...and long before the schedule's 20 s.
    fleet.app.advance(waits - Duration::from_millis(999));
    fleet.app.deliver_due().await;
    let received = fleet.provider("community-connect").received();
    assert_eq!(received.len(), 2);
    assert_eq!(fleet.provider("community-connect").delivered().len(), 1);
}

async fn messages_for_one_referral_go_in_order_while_others_pass(backend: Backend) {
    // The referrer's callback endpoint fails for a while; three status
    // changes of one referral queue up behind the first and arrive in order.
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_due().await;
    assert_eq!(fleet.provider("activelives").delivered().len(), 1);
    fleet.referrer.script(vec![
        Scripted::status(503),
        Scripted::status(503),
        Scripted::status(503),
    ]);
    for (n, event) in ["booked", "first_session_attended", "completed"]
        .iter()
        .enumerate()
    {
        let body = serde_json::json!({"referral_ref": id, "event": event, "event_time": "2026-03-04T10:15:00Z"});
        let response = fleet
            .callback("activelives", &format!("evt-{n}"), &body)
            .await;
        assert_eq!(response.status(), 200);
    }
    // Another referral's notification is interleaved but does not disturb the order.
    let other = fleet.refer("activelives-weight.json").await;
    let body = serde_json::json!({"referral_ref": other, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet
            .callback("activelives", "evt-other", &body)
            .await
            .status(),
        200
    );
    fleet.app.deliver_all().await;
    let delivered: Vec<_> = fleet
        .referrer
        .delivered()
        .into_iter()
        .filter(|r| {
            r.body["entry"][1]["resource"]["focus"]["reference"] == format!("ServiceRequest/{id}")
        })
        .collect();
    let versions: Vec<String> = delivered
        .iter()
        .map(|r| {
            r.body["entry"][1]["resource"]["meta"]["versionId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(versions, ["2", "3", "4"], "in the order the Task changed");
    let statuses: Vec<&str> = delivered
        .iter()
        .map(|r| r.body["entry"][1]["resource"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["accepted", "in-progress", "completed"]);
    let numbers: Vec<&str> = delivered
        .iter()
        .map(|r| {
            r.body["entry"][0]["resource"]["parameter"][4]["valueString"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(
        numbers
            .windows(2)
            .all(|w| w[0].parse::<u32>().unwrap() < w[1].parse::<u32>().unwrap()),
        "event numbers count up: {numbers:?}"
    );
}

async fn a_refusal_is_dead_lettered_shown_on_the_task_and_replay_delivers_it(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    fleet.provider("grow-together").script(vec![
        Scripted::status(400).body("{\"error\":\"site unknown\"}"),
    ]);
    let id = fleet.refer("grow-together.bundle.json").await;

    // The referrer hears that delivery failed.
    fleet.app.deliver_due().await;
    let notified = fleet.referrer.delivered();
    assert_eq!(notified.len(), 1);
    let task = &notified[0].body["entry"][1]["resource"];
    assert_eq!(task["businessStatus"]["text"], "delivery failed");
    assert_eq!(task["status"], "requested");
    assert_eq!(
        fleet.task(&id).await["businessStatus"]["text"],
        "delivery failed"
    );
    assert_eq!(
        fleet.provider("grow-together").received().len(),
        1,
        "a 4xx is not retried"
    );

    let dead = json(fleet.app.get("/admin/deliveries?state=dead").await).await;
    let dead = dead["messages"].as_array().unwrap();
    assert_eq!(dead.len(), 1);
    let original = dead[0]["id"].as_str().unwrap().to_owned();
    let shown = json(
        fleet
            .app
            .get(&format!("/admin/deliveries/{original}"))
            .await,
    )
    .await;
    assert_eq!(shown["attempt_log"][0]["status"], 400);
    assert_eq!(
        shown["attempt_log"][0]["response_excerpt"],
        "{\"error\":\"site unknown\"}"
    );

    // Replay as sent, and re-mapped: both delivered, each with its own id.
    let replayed = fleet
        .app
        .admin
        .post(
            fleet
                .app
                .url(&format!("/admin/deliveries/{original}/replay")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 202);
    let replay = json(replayed).await;
    assert_eq!(replay["replay_of"], original.as_str());
    let remapped = fleet
        .app
        .admin
        .post(
            fleet
                .app
                .url(&format!("/admin/deliveries/{original}/replay?remap=true")),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(remapped.status(), 202);
    fleet.app.deliver_due().await;
    let delivered = fleet.provider("grow-together").delivered();
    assert_eq!(delivered.len(), 2);
    let expected = fleet.expected_payload(&id, "grow-together").await;
    assert!(
        delivered
            .iter()
            .all(|r| r.body == expected && r.signature_valid)
    );
    assert_ne!(delivered[0].webhook_id, delivered[1].webhook_id);
    assert!(delivered.iter().all(|r| r.webhook_id != original));

    // A pending message cannot be replayed; an unknown one is not found.
    let unknown = fleet
        .app
        .admin
        .post(fleet.app.url("/admin/deliveries/msg_nope/replay"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

/// Operators see a notification as the Bundle the referrer received, and a
/// notification replayed as sent is that same Bundle again, under its own
/// webhook-id.
async fn a_notification_is_shown_and_replayed_as_the_bundle_the_referrer_received(
    backend: Backend,
) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_due().await;
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet.callback("activelives", "b1", &booked).await.status(),
        200
    );
    fleet.app.deliver_due().await;
    let notified = fleet.referrer.delivered();
    assert_eq!(notified.len(), 1);
    let sent = &notified[0];
    assert_eq!(sent.body["resourceType"], "Bundle");

    let shown = json(
        fleet
            .app
            .get(&format!("/admin/deliveries/{}", sent.webhook_id))
            .await,
    )
    .await;
    assert_eq!(shown["kind"], "notification");
    assert_eq!(shown["state"], "delivered");
    assert_eq!(shown["payload"], sent.body);

    // Two minutes on (the receiver accepts signatures five minutes either
    // side of its own clock), the operator replays it as sent.
    fleet.app.advance(Duration::from_secs(120));
    let replayed = fleet
        .app
        .admin
        .post(
            fleet
                .app
                .url(&format!("/admin/deliveries/{}/replay", sent.webhook_id)),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), 202);
    fleet.app.deliver_due().await;
    let notified = fleet.referrer.delivered();
    assert_eq!(notified.len(), 2);
    let again = &notified[1];
    assert_ne!(again.webhook_id, sent.webhook_id);
    assert!(again.signature_valid);
    assert_eq!(
        String::from_utf8_lossy(&again.raw_body),
        String::from_utf8_lossy(&sent.raw_body)
    );
}

async fn retries_that_run_out_dead_letter_the_message(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    fleet
        .provider("activelives")
        .set_default(Scripted::status(503));
    let id = fleet.refer("activelives-exercise.json").await;
    // Each retry falls due as time moves on; then nothing is waiting.
    fleet.app.deliver_all().await;
    let notified = fleet.referrer.delivered();
    assert_eq!(notified.len(), 1);
    assert_eq!(
        notified[0].body["entry"][1]["resource"]["businessStatus"]["text"],
        "delivery failed"
    );
    // The first attempt and one per entry of the six-step schedule.
    assert_eq!(fleet.provider("activelives").received().len(), 7);
    let messages = json(
        fleet
            .app
            .get(&format!("/admin/deliveries?referral={id}"))
            .await,
    )
    .await;
    let provider_message = messages["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["endpoint"] == "provider:activelives")
        .unwrap()
        .clone();
    assert_eq!(provider_message["state"], "dead");
    assert_eq!(provider_message["attempts"], 7);
}

async fn gone_disables_the_endpoint_until_an_operator_re_enables_it(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    fleet
        .provider("community-connect")
        .script(vec![Scripted::status(410)]);
    let first = fleet.refer("community-connect-loneliness.json").await;
    let endpoints = async || json(fleet.app.get("/admin/endpoints").await).await;
    fleet.app.deliver_due().await;
    assert_eq!(
        endpoints().await["disabled"][0]["endpoint"],
        "provider:community-connect"
    );
    let second = fleet.refer("community-connect-minimal.json").await;
    // Other providers are not affected.
    fleet.refer("activelives-exercise.json").await;
    // Nothing is waiting but what the disabled endpoint holds back, however
    // long: time moves on and nothing more falls due.
    assert_eq!(fleet.app.deliver_due().await, None);
    fleet.app.advance(Duration::from_secs(60));
    assert_eq!(fleet.app.deliver_due().await, None);
    assert_eq!(fleet.provider("activelives").delivered().len(), 1);
    assert_eq!(
        fleet.provider("community-connect").received().len(),
        1,
        "nothing sent while disabled"
    );

    let enabled = fleet
        .app
        .admin
        .post(
            fleet
                .app
                .url("/admin/endpoints/provider:community-connect/enable"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);
    fleet.app.deliver_due().await;
    let delivered = fleet.provider("community-connect").delivered();
    assert_eq!(delivered.len(), 2);
    let bodies: Vec<&Value> = delivered.iter().map(|r| &r.body).collect();
    assert!(bodies.contains(&&fleet.expected_payload(&first, "community-connect").await));
    assert!(bodies.contains(&&fleet.expected_payload(&second, "community-connect").await));
    assert!(endpoints().await["disabled"].as_array().unwrap().is_empty());
}

/// Run `signpost ARGS` against the test's database; returns its exit
/// status and standard output.
pub async fn signpost_cli(db_url: &str, args: &[&str]) -> (bool, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(args)
        .current_dir(crate::support::helpers::MANIFEST_DIR)
        .env("SIGNPOST_DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("signpost runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

async fn operators_inspect_and_replay_from_the_command_line(backend: Backend) {
    let fleet = Fleet::start(backend).await;
    fleet
        .provider("activelives")
        .script(vec![Scripted::status(422)]);
    let id = fleet.refer("activelives-exercise.json").await;
    let notified = fleet.referrer.wait_for(1, PATIENCE).await; // "delivery failed"
    let db = fleet.app.db.url.clone();

    // A notification is shown as the Bundle the referrer received.
    let (ok, out) = signpost_cli(&db, &["deliveries", "show", &notified[0].webhook_id]).await;
    assert!(ok, "{out}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["payload"], notified[0].body);

    let (ok, out) = signpost_cli(&db, &["deliveries", "list", "--state", "dead"]).await;
    assert!(ok, "{out}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{out}");
    assert_eq!(listed[0]["referral"], format!("ServiceRequest/{id}"));
    let original = listed[0]["id"].as_str().unwrap().to_owned();

    let (ok, out) = signpost_cli(&db, &["deliveries", "show", &original]).await;
    assert!(ok, "{out}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["attempt_log"][0]["status"], 422);
    assert_eq!(shown["payload"]["referral_ref"], id.as_str());

    let (ok, out) = signpost_cli(&db, &["deliveries", "replay", &original]).await;
    assert!(ok, "{out}");
    let replay: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(replay["replay_of"], original.as_str());
    // The running server's worker delivers the replay.
    let delivered = fleet.provider("activelives").wait_for(1, PATIENCE).await;
    assert_eq!(delivered[0].webhook_id, replay["id"].as_str().unwrap());

    let (ok, out) = signpost_cli(&db, &["endpoints", "list"]).await;
    assert!(ok);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap(),
        serde_json::json!([])
    );
    let (ok, _) = signpost_cli(&db, &["endpoints", "enable", "provider:activelives"]).await;
    assert!(!ok, "enabling an endpoint that is not disabled fails");
    let (ok, _) = signpost_cli(&db, &["deliveries", "show", "msg_unknown"]).await;
    assert!(!ok);
}

/// Leases are timed by the database's clock: a worker whose own clock runs
/// 30 s fast does not take over a lease another worker still holds, and
/// does once it has expired.
async fn a_crashed_workers_lease_expires_and_another_worker_delivers(backend: Backend) {
    // A server that does not deliver accepts a referral...
    let fleet = Fleet::start_with(backend, |config| config.delivery.worker = false).await;
    let id = fleet.refer("activelives-weight.json").await;
    // ...a second instance, whose delivery the test steps on a clock of
    // its own, shares its database...
    let second = crate::support::helpers::TestApp::spawn_stepped_on(
        crate::support::helpers::TestDb::shared(&fleet.app.db.url),
        |config| {
            crate::support::fleet::fast_delivery(config);
            crate::support::fleet::aim(config, &fleet.providers, &fleet.referrer);
        },
    )
    .await;
    // ...a worker with a right clock leases the message for 2 s and dies
    // without a word...
    let store = signpost::store::open(&fleet.app.db.url, 2).await.unwrap();
    let now = signpost::domain::Clock::now(&signpost::domain::SystemClock).as_millis();
    let lease = Duration::from_secs(2);
    let leased = store
        .claim_due("crashed-worker", now, lease.as_millis() as i64, 10)
        .await
        .unwrap();
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].referral_id, id);
    // ...the second instance's clock runs 30 s fast: it still leaves the
    // lease alone...
    second.advance(Duration::from_secs(30));
    second.deliver_due().await;
    assert!(
        fleet.provider("activelives").received().is_empty(),
        "not while the lease holds, whatever the worker's clock says"
    );
    // ...and takes over once the lease has expired.
    tokio::time::sleep(lease + Duration::from_millis(300)).await;
    second.deliver_due().await;
    let delivered = fleet.provider("activelives").delivered();
    assert_eq!(delivered.len(), 1);
    assert_eq!(
        delivered[0].webhook_id, leased[0].id,
        "the same message, the same webhook-id"
    );
    second.stop().await;
}

async fn a_standalone_worker_delivers_for_a_server_without_one(backend: Backend) {
    let fleet = Fleet::start_with(backend, |config| config.delivery.worker = false).await;
    let id = fleet.refer("community-connect-minimal.json").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        fleet.provider("community-connect").received().is_empty(),
        "the server does not deliver"
    );

    let dir = tempfile::tempdir().unwrap();
    let config = crate::support::fleet::write_config(dir.path(), &fleet.providers, &fleet.referrer);
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .arg("worker")
        .arg("--config")
        .arg(&config)
        .env("SIGNPOST_DATABASE_URL", &fleet.app.db.url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .expect("signpost worker starts");
    let delivered = fleet
        .provider("community-connect")
        .wait_for(1, PATIENCE)
        .await;
    assert_eq!(
        delivered[0].body,
        fleet.expected_payload(&id, "community-connect").await
    );
    assert!(delivered[0].signature_valid);
    worker.start_kill().unwrap();
    worker.wait().await.unwrap();
}

/// Fault test: while referrals flow, every provider flaps at random
/// (`503`, `500`, `429`, answers slower than the request timeout, and
/// `202`) for its first 30 answers. Every referral still arrives, under one
/// webhook-id, and nothing is dead-lettered.
async fn referrals_all_arrive_while_providers_flap(backend: Backend) {
    let fleet = Fleet::start_with(backend, |config| {
        let ms = Duration::from_millis;
        config.delivery.retry_schedule = (0..14).map(|_| ms(150)).collect();
    })
    .await;
    // A fixed pseudo-random sequence (a linear congruential generator), so
    // that a failure can be replayed.
    let mut seed: u64 = 0x5eed_f1a9;
    let mut next = move || {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % 100
    };
    for provider in ["activelives", "community-connect", "grow-together"] {
        let script = (0..30)
            .map(|_| match next() {
                0..20 => Scripted::status(503),
                20..35 => Scripted::status(500),
                35..45 => Scripted::status(429).retry_after("0"),
                45..55 => Scripted::accepted().after(Duration::from_millis(1500)),
                _ => Scripted::accepted(),
            })
            .collect();
        fleet.provider(provider).script(script);
    }
    let fixtures = [
        ("activelives-exercise.json", "activelives"),
        ("activelives-weight.json", "activelives"),
        ("community-connect-loneliness.json", "community-connect"),
        ("community-connect-minimal.json", "community-connect"),
        ("grow-together-performer-ref.json", "grow-together"),
    ];
    let mut sent: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for round in 0..6 {
        for (fixture, provider) in fixtures {
            let id = fleet.refer(fixture).await;
            sent.entry(provider).or_default().push(id);
            if round % 2 == 0 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for (provider, ids) in &sent {
        let receiver = fleet.provider(provider);
        let deadline = std::time::Instant::now() + PATIENCE * 2;
        while receiver.delivered().len() < ids.len() {
            assert!(
                std::time::Instant::now() < deadline,
                "{provider}: {} of {} delivered",
                receiver.delivered().len(),
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for id in ids {
            fleet.settled(id).await;
        }
        // One webhook-id per referral, however many attempts it took, and
        // each delivered once.
        let received = receiver.received();
        let delivered = receiver.delivered();
        let ids_delivered: std::collections::BTreeSet<&str> =
            delivered.iter().map(|r| r.webhook_id.as_str()).collect();
        assert_eq!(
            ids_delivered.len(),
            ids.len(),
            "{provider}: each delivered once"
        );
        assert_eq!(delivered.len(), ids.len(), "{provider}: no duplicates");
        assert!(received.len() > delivered.len(), "{provider}: it did flap");
        assert!(received.iter().all(|r| r.signature_valid));
    }
    let dead = json(fleet.app.get("/admin/deliveries?state=dead").await).await;
    assert_eq!(
        dead["messages"].as_array().map(Vec::len),
        Some(0),
        "{dead:#}"
    );
}

on_both_backends!(
    retry_after_replaces_the_scheduled_wait,
    a_crashed_workers_lease_expires_and_another_worker_delivers,
    a_standalone_worker_delivers_for_a_server_without_one,
    operators_inspect_and_replay_from_the_command_line,
    every_accepted_referral_is_delivered_signed_with_the_mapped_body,
    referrals_all_arrive_while_providers_flap,
    a_provider_that_fails_for_a_while_receives_everything_once_it_recovers,
    messages_for_one_referral_go_in_order_while_others_pass,
    a_refusal_is_dead_lettered_shown_on_the_task_and_replay_delivers_it,
    a_notification_is_shown_and_replayed_as_the_bundle_the_referrer_received,
    retries_that_run_out_dead_letter_the_message,
    gone_disables_the_endpoint_until_an_operator_re_enables_it,
);
