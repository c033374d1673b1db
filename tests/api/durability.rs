//! What a client got a 2xx for survives a restart and a `kill -9`.

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
    helpers::{Backend, MANIFEST_DIR, TestApp, TestDb, json, valid, with_new_identifier},
    on_both_backends,
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
async fn start_binary(db: &TestDb, config_path: &std::path::Path) -> (Child, String) {
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
    // Arrange: the real binary, under load from four clients.
    let db = TestDb::fresh(backend).await;
    let config = std::path::Path::new(MANIFEST_DIR).join("config/signpost.toml");
    let (mut child, address) = start_binary(&db, &config).await;
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let client = reqwest::Client::new();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, address, acknowledged) =
            (client.clone(), address.clone(), acknowledged.clone());
        clients.push(tokio::spawn(async move {
            for _ in 0..500 {
                let (referral, value) = with_new_identifier(valid("activelives-exercise.json"));
                let sent = client
                    .post(format!("{address}/fhir/ServiceRequest"))
                    .header("content-type", "application/fhir+json")
                    .body(referral.to_string())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status() == StatusCode::CREATED => {
                        acknowledged.lock().unwrap().push(value)
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

    // Assert: every acknowledged referral is there after a restart.
    let (_child, address) = start_binary(&db, &config).await;
    let acknowledged = acknowledged.lock().unwrap().clone();
    let get = |path: String| {
        let (client, address) = (client.clone(), address.clone());
        async move {
            let response = client.get(format!("{address}{path}")).send().await.unwrap();
            response.json::<serde_json::Value>().await.unwrap()
        }
    };
    for value in &acknowledged {
        let search = get(format!("/fhir/ServiceRequest?identifier={value}")).await;
        assert_eq!(search["total"], 1, "acknowledged referral {value} was lost");
        let id = search["entry"][0]["resource"]["id"].as_str().unwrap();
        let tasks = get(format!("/fhir/Task?focus=ServiceRequest/{id}")).await;
        assert_eq!(tasks["total"], 1, "the Task of {value} was lost");
    }
}

on_both_backends!(
    referrals_survive_a_restart,
    nothing_acknowledged_is_lost_when_the_process_is_killed,
);
