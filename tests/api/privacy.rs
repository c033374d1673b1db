//! No patient data in the logs: the real binary, logging JSON at `debug`
//! for Signpost (more than production's `info`), is driven through the
//! whole flow with distinctive patient values (intake, a refused referral,
//! delivery, a provider's status callback, the referrer's notification and
//! a cancellation); none of those values, no token and no webhook secret
//! appears anywhere in what it logged.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::{
    on_both_backends,
    support::fleet::{PATIENCE, receivers, write_config},
    support::helpers::{
        Backend, MANIFEST_DIR, TestDb, client_with, issue_token, test_secret, valid,
        with_new_identifier,
    },
    support::receiver::{sign, unix_now},
};

/// Values that appear nowhere else, so that finding one in a log line can
/// only mean it was copied from the referral.
const PATIENT_VALUES: [&str; 7] = [
    "Quistwhistle",
    "Zebediah",
    "1931-02-03",
    "07700 900777",
    "zebediah.q@example.com",
    "77 Xylophone Row",
    "unmistakable-clinical-note",
];
const NHS_NUMBER: &str = "9990124833";

fn distinctive_referral() -> Value {
    let (mut referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let text = referral
        .to_string()
        .replace("Fairbrother", "Quistwhistle")
        .replace("Maureen", "Zebediah")
        .replace("1958-06-14", "1931-02-03")
        .replace("07700 900101", "07700 900777")
        .replace("maureen.fairbrother@example.com", "zebediah.q@example.com")
        .replace("14 Orchard Close", "77 Xylophone Row")
        .replace("prefers morning sessions", "unmistakable-clinical-note");
    referral = serde_json::from_str(&text).unwrap();
    referral
}

async fn nothing_identifying_is_logged_through_the_whole_flow(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let (providers, referrer) = receivers().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &providers, &referrer);
    let token = issue_token(
        &db.url,
        signpost::security::tokens::Role::Referrer("riverside-surgery".parse().unwrap()),
    )
    .await;

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["serve", "--config"])
        .arg(&config)
        .current_dir(MANIFEST_DIR)
        .env("SIGNPOST_LISTEN", "127.0.0.1:0")
        .env("SIGNPOST_DATABASE_URL", &db.url)
        .env("SIGNPOST_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,signpost=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::<String>::new()));
    for stream in [
        Box::new(child.stderr.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
        Box::new(child.stdout.take().unwrap()),
    ] {
        let log = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log.lock().unwrap().push(line);
            }
        });
    }
    let address = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let found = log.lock().unwrap().iter().find_map(|line| {
                serde_json::from_str::<Value>(line)
                    .ok()
                    .filter(|e| {
                        e["fields"]["message"] == "signpost listening"
                            || e["message"] == "signpost listening"
                    })
                    .map(|e| {
                        e["fields"]["address"]
                            .as_str()
                            .or(e["address"].as_str())
                            .unwrap()
                            .to_owned()
                    })
            });
            if let Some(address) = found {
                return format!("http://{address}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("signpost listens");
    let client = client_with(&token);

    // Intake, and a refused copy with the same patient.
    let referral = distinctive_referral();
    let created: Value = client
        .post(format!("{address}/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .body(referral.to_string())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let mut broken = distinctive_referral();
    broken["status"] = json!("draft");
    broken["subject"] = json!({"reference": "#nobody-Quistwhistle"});
    let refused = client
        .post(format!("{address}/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .body(broken.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);

    // Delivery, a status callback (with free text), the notification.
    let delivered = providers["activelives"].wait_for(1, PATIENCE).await;
    assert_eq!(
        delivered[0].body["participant"]["family_name"],
        "Quistwhistle"
    );
    let callback =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z",
                          "detail": "unmistakable-clinical-note booked for Zebediah"})
        .to_string();
    let secret = test_secret("provider:activelives");
    let ts = unix_now();
    let answered = reqwest::Client::new()
        .post(format!("{address}/providers/activelives/status"))
        .header("content-type", "application/json")
        .header("webhook-id", "priv-1")
        .header("webhook-timestamp", ts.to_string())
        .header(
            "webhook-signature",
            sign(&secret, "priv-1", ts, callback.as_bytes()),
        )
        .body(callback)
        .send()
        .await
        .unwrap();
    assert_eq!(answered.status(), 200);
    referrer.wait_for(1, PATIENCE).await;

    // Cancellation.
    let patch = json!([{"op": "replace", "path": "/status", "value": "revoked"}]);
    let cancelled = client
        .patch(format!("{address}/fhir/ServiceRequest/{id}"))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    referrer.wait_for(2, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let log = log.lock().unwrap().join("\n");
    assert!(log.contains(&id), "the log does carry ids");
    let secrets: Vec<String> = ["activelives", "community-connect", "grow-together"]
        .iter()
        .map(|p| test_secret(&format!("provider:{p}")))
        .chain([test_secret("referrer:riverside-surgery"), token.clone()])
        .collect();
    // `sp_<hex id>_<secret>`: the id has no `_`, the base64url secret may.
    let token_secret = token["sp_".len()..].split_once('_').unwrap().1.to_owned();
    for value in PATIENT_VALUES
        .iter()
        .map(|v| v.to_string())
        .chain([NHS_NUMBER.to_owned(), token_secret])
        .chain(secrets)
    {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(&value)).collect();
        assert!(
            leaks.is_empty(),
            "{value:?} was logged:\n{}",
            leaks.join("\n")
        );
    }
}

on_both_backends!(nothing_identifying_is_logged_through_the_whole_flow);
