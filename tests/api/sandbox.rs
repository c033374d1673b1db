//! The newcomer's loop: `signpost sandbox` as the real binary, with its
//! stand-ins on free ports, takes a posted referral to `completed` with
//! the referrer notified of every step; `signpost simulate status` sends
//! one signed status fixture to a running Signpost.

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
    support::fleet::{Fleet, PATIENCE, REFERRER, write_config},
    support::helpers::{
        Backend, MANIFEST_DIR, TestDb, client_with, json, valid, with_new_identifier,
    },
    support::receiver::Receiver,
};

/// A configuration for the sandbox: the repository's mappings and schemas,
/// Signpost on port 0, and the providers and referrer on free loopback
/// ports (where the sandbox's stand-ins listen), their secrets in files
/// the sandbox creates in `dir`.
fn sandbox_config(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\nschemas_dir = \"{MANIFEST_DIR}/schemas\"\n\
         mappings_dir = \"{MANIFEST_DIR}/mappings\"\n"
    );
    for (id, path) in [
        ("activelives", "/referrals"),
        ("community-connect", "/cases"),
        ("grow-together", "/intake"),
    ] {
        text.push_str(&format!(
            "[providers.{id}]\nintake_url = \"http://{}{path}\"\nallow_insecure_http = true\n\
             allow_private_network = true\n\
             secret_file = \"{}\"\n",
            Receiver::unused_addr(),
            dir.join(format!("{id}.whsec")).display()
        ));
    }
    text.push_str(&format!(
        "[referrers.{REFERRER}]\nods_codes = [\"A81001\"]\ncallback_url = \"http://{}/notifications\"\n\
         allow_insecure_http = true\nallow_private_network = true\nsecret_file = \"{}\"\n",
        Receiver::unused_addr(),
        dir.join("referrer.whsec").display()
    ));
    let path = dir.join("sandbox.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The sandbox's stdout, line by line, as it comes.
#[derive(Clone, Default)]
struct Output(Arc<Mutex<Vec<String>>>);

impl Output {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// The first line satisfying `wanted`, waiting up to `PATIENCE`.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            if let Some(line) = self.lines().into_iter().find(|l| wanted(l)) {
                return line;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the sandbox never printed {what}; it printed:\n{}",
                self.lines().join("\n")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `signpost sandbox` on `db` with `config`, a short step between status
/// callbacks.
fn start_sandbox(db: &TestDb, config: &std::path::Path) -> (Child, Output) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["sandbox", "--step-ms", "200", "--config"])
        .arg(config)
        .current_dir(MANIFEST_DIR)
        .env("SIGNPOST_DATABASE_URL", &db.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("signpost binary starts");
    let output = Output::default();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let collected = output.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            collected.0.lock().unwrap().push(line);
        }
    });
    (child, output)
}

async fn the_sandbox_takes_a_referral_to_completed_and_notifies_the_referrer(backend: Backend) {
    let db = TestDb::fresh(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let config = sandbox_config(dir.path());
    let (mut child, output) = start_sandbox(&db, &config);

    // The welcome names Signpost's address and a referrer token.
    let listening = output
        .wait_for("Signpost's address", |l| {
            l.contains("Signpost is listening on ")
        })
        .await;
    let address = listening
        .split("listening on ")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .to_owned();
    let token = output
        .wait_for("a token", |l| l.starts_with("TOKEN="))
        .await
        .trim_start_matches("TOKEN=")
        .to_owned();
    let client = client_with(&token);

    let (referral, _) = with_new_identifier(valid("grow-together-performer-ref.json"));
    let created = client
        .post(format!("{address}/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = json(created).await["id"].as_str().unwrap().to_owned();

    // The provider's stand-in got it, signed, and shows its own payload.
    output
        .wait_for("the delivery", |l| {
            l.starts_with("[grow-together stand-in] delivered: msg_")
                && l.contains("signature verified")
        })
        .await;
    assert!(
        output
            .lines()
            .iter()
            .any(|l| l.contains(&format!("\"{id}\""))),
        "the payload, with the referral's id, is printed"
    );
    // Every step reaches the referrer as a signed notification, in order.
    let mut seen = Vec::new();
    for status in ["accepted", "in-progress", "completed"] {
        let line = output
            .wait_for(&format!("the {status} notification"), |l| {
                l.starts_with(&format!("[{REFERRER} stand-in] notified"))
                    && l.contains("signature verified")
                    && l.contains(&format!("ServiceRequest/{id} is now {status}"))
            })
            .await;
        seen.push(
            output
                .lines()
                .iter()
                .position(|l| *l == line)
                .expect("seen"),
        );
    }
    assert!(seen.is_sorted(), "notified in order: {seen:?}");
    // And Signpost agrees.
    let task = json(
        client
            .get(format!("{address}/fhir/Task?focus=ServiceRequest/{id}"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(task["entry"][0]["resource"]["status"], "completed");

    // The stand-ins refuse what is not signed with the endpoint's secret.
    let referrer_url = std::fs::read_to_string(&config)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("callback_url = "))
        .unwrap()
        .trim_matches('"')
        .to_owned();
    let forged = reqwest::Client::new()
        .post(&referrer_url)
        .header("webhook-id", "msg_forged")
        .header(
            "webhook-timestamp",
            chrono::Utc::now().timestamp().to_string(),
        )
        .header("webhook-signature", "v1,bm90IGEgc2lnbmF0dXJl")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    output
        .wait_for("the refusal", |l| {
            l.starts_with(&format!("[{REFERRER} stand-in] REFUSED"))
        })
        .await;

    // Stopped as Ctrl-C stops it, the sandbox revokes the token it issued
    // (review finding 16: it stayed live in the configured database).
    let pid = child.id().expect("running").to_string();
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let stopped = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("the sandbox stops on SIGINT")
        .unwrap();
    assert!(stopped.success(), "{stopped:?}");
    let listed = Command::new(env!("CARGO_BIN_EXE_signpost"))
        .args(["tokens", "list", "--config"])
        .arg(&config)
        .current_dir(MANIFEST_DIR)
        .env("SIGNPOST_DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    let tokens: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let tokens = tokens.as_array().unwrap();
    assert!(!tokens.is_empty());
    assert!(
        tokens.iter().all(|t| !t["revoked_at"].is_null()),
        "{tokens:?}"
    );
    assert!(
        client
            .get(format!("{address}/fhir/metadata"))
            .send()
            .await
            .is_err(),
        "the sandbox's Signpost has stopped"
    );
}

/// `simulate status` signs a provider's fixture with the provider's
/// configured secret and posts it for a real referral: the Task moves and
/// the referrer is told.
async fn simulate_status_sends_a_signed_fixture_to_a_running_server(backend: Backend) {
    let fleet = Fleet::start(backend).await;
    let dir = tempfile::tempdir().unwrap();
    // The same endpoints and secrets as the running server, in a file.
    let config = write_config(dir.path(), &fleet.providers, &fleet.referrer);
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.settled(&id).await;

    let simulate = |fixture: &'static str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_signpost"))
            .args([
                "simulate",
                "status",
                "--provider",
                "activelives",
                "--fixture",
                fixture,
            ])
            .args(["--referral", &id, "--url", &fleet.app.address, "--config"])
            .arg(&config)
            .current_dir(MANIFEST_DIR)
            .output()
            .unwrap()
    };
    let booked = simulate("booked");
    assert!(
        booked.status.success(),
        "{}",
        String::from_utf8_lossy(&booked.stderr)
    );
    assert!(String::from_utf8_lossy(&booked.stderr).contains("Signpost answered 200"));
    let task = fleet.task(&id).await;
    assert_eq!(task["status"], "accepted");
    assert_eq!(task["businessStatus"]["text"], "booked");
    let notified = fleet.referrer.wait_for(1, PATIENCE).await;
    assert!(
        notified
            .iter()
            .any(|n| n.signature_valid && n.body.to_string().contains("\"accepted\""))
    );

    // A change the state machine forbids is Signpost's 409, and a failure.
    let again = simulate("declined");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("Signpost answered 409"));
    // An unknown fixture is named with the ones there are.
    let unknown = simulate("joined");
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        said.contains("no status fixture") && said.contains("booked"),
        "{said}"
    );
}

on_both_backends!(
    the_sandbox_takes_a_referral_to_completed_and_notifies_the_referrer,
    simulate_status_sends_a_signed_fixture_to_a_running_server,
);
