//! What a client got a 2xx for survives a restart and a `kill -9`, and is
//! delivered afterwards; several instances share one PostgreSQL outbox.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use reqwest::StatusCode;
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

use crate::{
    on_both_backends,
    support::fleet::{Fleet, PATIENCE, aim, fast_delivery, receivers, write_config},
    support::helpers::{
        Backend, MANIFEST_DIR, TestApp, TestDb, client_with, issue_token, json, valid,
        with_new_identifier,
    },
};

async fn referrals_survive_a_restart(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (referral, value) = with_new_identifier(valid("activelives-falls.bundle.json"));
    let reply = json(app.post_json("/fhir", &referral).await).await;
    let location = reply["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = location.replace(&app.address, "");
    let before = json(app.get(&path).await).await;

    let db = app.stop().await;
    let app = TestApp::spawn_on(db, |_| {}).await;

    let after = app.get(&path).await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(json(after).await, before);
    let search = app.search_identifier(value).await;
    assert_eq!(search["total"], 1);
    // And the restarted server still recognises the referral as a retry.
    let again = json(app.post_json("/fhir", &referral).await).await;
    assert_eq!(again["entry"][0]["response"]["status"], "200 OK");
}

/// Start the real `signpost` binary on `db`, returning it and its address.
pub async fn start_binary(db: &TestDb, config_path: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["serve", "--config"])
        .arg(config_path)
        .current_dir(MANIFEST_DIR)
        .env("SIGNPOST_LISTEN", "127.0.0.1:0")
        .env("SIGNPOST_DATABASE_URL", &db.url)
        .env("SIGNPOST_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("signpost binary starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["message"] == "signpost listening"
            {
                return event["address"].as_str().unwrap().to_owned();
            }
        }
        panic!("signpost exited before listening");
    })
    .await
    .expect("signpost starts listening within 60 s");
    // Keep draining stderr so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, format!("http://{address}"))
}

async fn nothing_acknowledged_is_lost_when_the_process_is_killed(backend: Backend) {
    // Arrange: the real binary, under load from four clients, delivering
    // to a real ActiveLives receiver.
    let db = TestDb::fresh(backend).await;
    let (providers, referrer) = receivers().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &providers, &referrer);
    let (mut child, address) = start_binary(&db, &config).await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = client_with(
        &issue_token(
            &db.url,
            signpost::security::tokens::Role::Referrer("riverside-surgery".parse().unwrap()),
        )
        .await,
    );
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, address, acknowledged) =
            (client.clone(), address.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..500 {
                let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
                let sent = client
                    .post(format!("{address}/fhir/ServiceRequest"))
                    .header("content-type", "application/fhir+json")
                    .body(referral.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == StatusCode::CREATED => {
                        let id = response
                            .json::<serde_json::Value>()
                            .await
                            .map(|b| b["id"].as_str().unwrap_or_default().to_owned());
                        match id {
                            Ok(id) => acknowledged.lock().unwrap().push(id),
                            Err(_) => return, // killed while answering
                        }
                    }
                    Ok(response) => panic!("unexpected {}", response.status()),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }

    // Act: SIGKILL once a good number of referrals were acknowledged.
    tokio::time::timeout(Duration::from_secs(60), async {
        while acknowledged.lock().unwrap().len() < 40 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("referrals are acknowledged");
    child.start_kill().expect("SIGKILL");
    child.wait().await.unwrap();
    for client in clients {
        client.await.unwrap();
    }

    // Assert: after a restart, every acknowledged referral is there with
    // its Task, and reaches ActiveLives; a referral delivered twice (sent
    // just before the kill, not yet marked) keeps its webhook-id.
    let (_child, address) = start_binary(&db, &config).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    let get = |path: String| {
        let (client, address) = (client.clone(), address.clone());
        async move {
            let response = client.get(format!("{address}{path}")).send().await.unwrap();
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    for id in &acknowledged {
        let tasks = get(format!("/fhir/Task?focus=ServiceRequest/{id}")).await;
        assert_eq!(tasks["total"], 1, "the Task of {id} was lost");
    }
    let provider = &providers["activelives"];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let delivered = provider.delivered();
        let mut ids: std::collections::HashMap<String, std::collections::HashSet<String>> =
            std::collections::HashMap::new();
        for r in &delivered {
            assert!(r.signature_valid);
            ids.entry(r.body["referral_ref"].as_str().unwrap().to_owned())
                .or_default()
                .insert(r.webhook_id.clone());
        }
        if acknowledged.iter().all(|id| ids.contains_key(id)) {
            for (referral, webhook_ids) in &ids {
                assert_eq!(
                    webhook_ids.len(),
                    1,
                    "{referral} was sent under several webhook-ids"
                );
            }
            break;
        }
        let missing = acknowledged
            .iter()
            .filter(|id| !ids.contains_key(*id))
            .count();
        assert!(
            std::time::Instant::now() < deadline,
            "{missing} of {} acknowledged referrals never reached the provider",
            acknowledged.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two Signpost instances on one PostgreSQL database share the outbox:
/// every referral is delivered, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_postgres_never_deliver_a_message_twice() {
    if crate::support::kit::postgres_server().is_none() {
        return;
    }
    let fleet = Fleet::start(Backend::Postgres).await;
    let url = fleet.app.db.url.clone();
    let second = TestApp::spawn_on(TestDb::shared(&url), |config| {
        fast_delivery(config);
        aim(config, &fleet.providers, &fleet.referrer);
    })
    .await;
    let n = 60;
    let mut sent = Vec::new();
    for i in 0..n {
        let (referral, _) = with_new_identifier(valid("community-connect-loneliness.json"));
        let app = if i % 2 == 0 { &fleet.app } else { &second };
        let response = app.post_json("/fhir/ServiceRequest", &referral).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        sent.push(json(response).await["id"].as_str().unwrap().to_owned());
    }
    let delivered = fleet
        .provider("community-connect")
        .wait_for(n, PATIENCE)
        .await;
    // Let any double delivery show itself.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let delivered_now = fleet.provider("community-connect").received();
    assert_eq!(delivered_now.len(), n, "each message sent exactly once");
    let mut refs: Vec<&str> = delivered
        .iter()
        .map(|r| r.body["case"]["external_id"].as_str().unwrap())
        .collect();
    refs.sort_unstable();
    let mut want: Vec<&str> = sent.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(refs, want);
    let mut ids: Vec<&str> = delivered.iter().map(|r| r.webhook_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), n);
    second.stop().await;
}

on_both_backends!(
    referrals_survive_a_restart,
    nothing_acknowledged_is_lost_when_the_process_is_killed,
);
