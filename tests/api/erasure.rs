//! Retention and erasure: delivered payloads are purged after the
//! retention period, and erasing a patient leaves nothing of them in the
//! database files, only tombstones and an audit record.

use std::path::Path;

use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::fleet::{Fleet, PATIENCE},
    support::helpers::{Backend, MANIFEST_DIR, json},
};

/// Patient A (erased) and patient B (kept), as in the fixtures.
const A_NHS: &str = "9990124833";
const A_NAME: &str = "Fairbrother";
const B_NHS: &str = "9993270415";
const B_NAME: &str = "Marsden";

/// Every file under `dir`, read whole.
fn file_contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(file_contents(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            found.push((path.display().to_string(), bytes));
        }
    }
    found
}

fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
}

async fn an_erased_patient_leaves_no_trace_in_the_database_files(backend: Backend) {
    let fleet = Fleet::start(backend).await;
    let a = fleet.refer("activelives-exercise.json").await;
    let b = fleet.refer("community-connect-loneliness.json").await;
    fleet.provider("activelives").wait_for(1, PATIENCE).await;
    fleet
        .provider("community-connect")
        .wait_for(1, PATIENCE)
        .await;
    let declined = json!({"referral_ref": a, "event": "declined", "event_time": "2026-03-04T11:40:00Z",
                          "detail": "Fairbrother declined: resting BP too high"});
    assert_eq!(
        fleet
            .callback("activelives", "e1", &declined)
            .await
            .status(),
        200
    );
    fleet.referrer.wait_for(1, PATIENCE).await;

    // A's number with a wrong check digit is no NHS number: refused, and
    // nothing is erased.
    for bad in [
        json!({"nhs_number": "9990124832"}),
        json!({"nhs_number": "999012483"}),
        json!({}),
    ] {
        let response = fleet
            .app
            .admin
            .post(fleet.app.url("/admin/erase"))
            .body(bad.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{bad}");
        let outcome = json(response).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{bad}");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .is_some_and(|d| d.contains("nhs_number")),
            "{outcome}"
        );
    }
    let kept = json(fleet.app.get(&format!("/fhir/ServiceRequest/{a}")).await).await;
    assert!(kept.to_string().contains(A_NAME), "{kept}");

    let response = fleet
        .app
        .admin
        .post(fleet.app.url("/admin/erase"))
        .body(json!({"nhs_number": A_NHS}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        json(response).await["erased"],
        json!([format!("ServiceRequest/{a}")])
    );

    // What is served is a tombstone; the other patient is untouched.
    let tombstone = json(fleet.app.get(&format!("/fhir/ServiceRequest/{a}")).await).await;
    assert_eq!(tombstone["status"], "entered-in-error");
    assert_eq!(tombstone["meta"]["tag"][0]["code"], "erased");
    let task = fleet.task(&a).await;
    assert_eq!(task["meta"]["tag"][0]["code"], "erased");
    assert!(!task.to_string().contains(A_NAME));
    let kept = json(fleet.app.get(&format!("/fhir/ServiceRequest/{b}")).await).await;
    assert!(kept.to_string().contains(B_NAME));
    // The erasure is on the audit trail, without the NHS number.
    let trail = json(fleet.app.get("/admin/audit?limit=1000").await).await;
    let erase = trail["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "erase patient")
        .expect("the erasure is audited")
        .clone();
    assert!(erase["outcome"].as_str().unwrap().contains(&a));
    assert!(!trail.to_string().contains(A_NHS));

    // Nothing of patient A is left in the database's files.
    let Fleet { app, .. } = fleet;
    let url = app.db.url.clone();
    match backend {
        Backend::Sqlite => {
            let db = app.stop().await;
            let file = db.url.trim_start_matches("sqlite://").to_owned();
            let files = file_contents(Path::new(&file).parent().unwrap());
            assert!(
                files.iter().any(|(_, bytes)| holds(bytes, B_NHS)),
                "the scan sees data"
            );
            for (path, bytes) in &files {
                for needle in [A_NHS, A_NAME, "resting BP too high"] {
                    assert!(!holds(bytes, needle), "{needle} is still in {path}");
                }
            }
        }
        Backend::Postgres => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query("CHECKPOINT").execute(&mut conn).await.unwrap();
            let (data_dir,): (String,) = sqlx::query_as("SHOW data_directory")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            let (oid,): (sqlx::postgres::types::Oid,) =
                sqlx::query_as("SELECT oid FROM pg_database WHERE datname = current_database()")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            let dir = Path::new(&data_dir).join("base").join(oid.0.to_string());
            let files = file_contents(&dir);
            assert!(
                files.iter().any(|(_, bytes)| holds(bytes, B_NHS)),
                "the scan sees data in {}",
                dir.display()
            );
            for (path, bytes) in &files {
                for needle in [A_NHS, A_NAME, "resting BP too high"] {
                    if holds(bytes, needle) {
                        // Name the relation (table, index or TOAST) the file
                        // belongs to: `<relfilenode>[.<segment>|_fsm|_vm]`.
                        let node: i64 = Path::new(path)
                            .file_name()
                            .and_then(|n| n.to_str())
                            .and_then(|n| n.split(['.', '_']).next())
                            .and_then(|n| n.parse().ok())
                            .unwrap_or(-1);
                        let relation: Option<(String,)> = sqlx::query_as(
                            "SELECT relname::text FROM pg_class WHERE relfilenode = $1::oid",
                        )
                        .bind(node)
                        .fetch_optional(&mut conn)
                        .await
                        .unwrap();
                        panic!(
                            "{needle} is still in {path} (relation {})",
                            relation
                                .map_or("unknown: an old file not yet unlinked".into(), |r| r.0)
                        );
                    }
                }
            }
            drop(app);
        }
    }
}

async fn delivered_payloads_are_purged_after_the_retention_period(backend: Backend) {
    let fleet = Fleet::start(backend).await;
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.provider("activelives").wait_for(1, PATIENCE).await;
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet.callback("activelives", "r1", &booked).await.status(),
        200
    );
    fleet.referrer.wait_for(1, PATIENCE).await;
    fleet.settled(&id).await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["purge", "--days", "0"])
        .current_dir(MANIFEST_DIR)
        .env("SIGNPOST_DATABASE_URL", &fleet.app.db.url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed}");

    let listed = json(
        fleet
            .app
            .get(&format!("/admin/deliveries?referral={id}"))
            .await,
    )
    .await;
    for message in listed["messages"].as_array().unwrap() {
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
        assert_eq!(shown["state"], "delivered", "ids and states stay");
        assert_eq!(
            shown["payload"],
            Value::String(String::new()),
            "the payload is purged: {shown}"
        );
        assert!(
            shown["attempt_log"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["response_excerpt"].is_null())
        );
    }
    let callbacks = json(fleet.app.get("/admin/callbacks").await).await;
    assert_eq!(callbacks["callbacks"][0]["body"], "");
    // The referral itself is kept (it is the clinical record of the referral).
    let referral = json(fleet.app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert!(referral.to_string().contains(A_NAME));
}

on_both_backends!(
    an_erased_patient_leaves_no_trace_in_the_database_files,
    delivered_payloads_are_purged_after_the_retention_period,
);
