//! Status relay: providers' signed status callbacks move the Task through
//! the Gravity state machine as their mappings say, and every change
//! reaches the referrer as a signed Subscriptions notification. Bad
//! signatures, stale timestamps, replays, illegal transitions and unknown
//! referrals are refused and change nothing. The referrer can cancel.

use std::{path::Path, time::Duration};

use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::fleet::{Fleet, PATIENCE, REFERRER},
    support::helpers::{Backend, MANIFEST_DIR, json, test_secret},
    support::receiver::unix_now,
};

/// A referral fixture for each provider, and the callback that accepts it.
fn for_provider(provider: &str) -> (&'static str, Value) {
    match provider {
        "activelives" => (
            "activelives-exercise.json",
            json!({"referral_ref": "REFERRAL-ID", "event": "booked", "event_time": "2026-03-04T10:15:00Z"}),
        ),
        "community-connect" => (
            "community-connect-loneliness.json",
            json!({"case_id": "CC-1", "external_id": "REFERRAL-ID", "status": "OPEN", "changed_at": "2026-03-02T11:00:00Z", "closure_reason": null, "note": null}),
        ),
        "grow-together" => (
            "grow-together.bundle.json",
            json!({"ref": "REFERRAL-ID", "outcome": "contacted", "when": "14/03/2026"}),
        ),
        other => panic!("no provider {other}"),
    }
}

fn with_referral(body: &Value, id: &str) -> Value {
    serde_json::from_str(&body.to_string().replace("REFERRAL-ID", id)).unwrap()
}

fn status_fixtures(provider: &str) -> Vec<(String, Value)> {
    let dir = Path::new(MANIFEST_DIR).join(format!("mappings/tests/{provider}/status"));
    let mut found: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

async fn each_documented_callback_moves_the_task_and_reaches_the_referrer(backend: Backend) {
    let fleet = Fleet::start(backend).await;
    let mut notifications = 0;
    let mut event = 0;
    for provider in ["activelives", "community-connect", "grow-together"] {
        let (fixture, accept) = for_provider(provider);
        for (name, case) in status_fixtures(provider) {
            let id = fleet.refer(fixture).await;
            let expected = &case["expected_task_change"];
            let target = expected["status"].as_str();
            if matches!(
                target,
                Some("in-progress" | "on-hold" | "completed" | "failed")
            ) {
                event += 1;
                let response = fleet
                    .callback(provider, &format!("e{event}"), &with_referral(&accept, &id))
                    .await;
                assert_eq!(response.status(), 200, "{provider}/{name}: accepting first");
                notifications += 1;
            }
            let before = fleet.task(&id).await;
            event += 1;
            let response = fleet
                .callback(
                    provider,
                    &format!("e{event}"),
                    &with_referral(&case["callback"], &id),
                )
                .await;
            assert_eq!(
                response.status(),
                200,
                "{provider}/{name}: {}",
                response.text().await.unwrap()
            );
            notifications += 1;

            let task = fleet.task(&id).await;
            let want_status = target.unwrap_or(before["status"].as_str().unwrap());
            assert_eq!(task["status"], want_status, "{provider}/{name}");
            assert_eq!(
                task["businessStatus"]["text"].as_str(),
                expected["businessStatus"].as_str(),
                "{provider}/{name}: businessStatus"
            );
            if matches!(target, Some("rejected" | "cancelled" | "failed")) {
                let reason = task["statusReason"]["text"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{provider}/{name}: statusReason is filled"));
                if let Some(want) = expected["statusReason"].as_str() {
                    assert_eq!(reason, want, "{provider}/{name}: statusReason");
                }
            }
            if let Some(note) = expected["note"].as_str() {
                assert_eq!(
                    task["note"].as_array().unwrap().last().unwrap()["text"],
                    note,
                    "{provider}/{name}: note"
                );
            }
            let version: u32 = task["meta"]["versionId"].as_str().unwrap().parse().unwrap();
            let previous: u32 = before["meta"]["versionId"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(version, previous + 1, "{provider}/{name}: one new version");

            // The referrer receives this very Task version, signed.
            let delivered = fleet.referrer.wait_for(notifications, PATIENCE).await;
            let carried = delivered
                .iter()
                .find(|r| r.body["entry"][1]["resource"] == task)
                .unwrap_or_else(|| {
                    panic!("{provider}/{name}: the referrer was not sent Task version {version}")
                });
            assert!(carried.signature_valid);
            assert_eq!(
                carried.header("content-type"),
                Some("application/fhir+json")
            );
            let bundle = &carried.body;
            assert_eq!(bundle["resourceType"], "Bundle");
            assert_eq!(bundle["type"], "history");
            let status = &bundle["entry"][0]["resource"];
            assert_eq!(status["resourceType"], "Parameters");
            assert_eq!(status["parameter"][3]["valueCode"], "event-notification");
            assert_eq!(
                status["parameter"][5]["part"][2]["valueReference"]["reference"],
                format!("Task/{}", task["id"].as_str().unwrap())
            );
        }
    }
    // Every notification is valid FHIR R4 (the official schema, offline).
    let delivered = fleet.referrer.delivered();
    assert_eq!(delivered.len(), notifications);
    let validator =
        signpost::validation::Validator::load(&Path::new(MANIFEST_DIR).join("schemas")).unwrap();
    for r in &delivered {
        let issues = validator.check_structure(&r.body);
        assert!(
            issues.is_empty(),
            "notification is not valid FHIR R4: {issues:?}"
        );
    }
    let numbers: Vec<u64> = delivered
        .iter()
        .map(|r| {
            r.body["entry"][0]["resource"]["parameter"][4]["valueString"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let mut sorted = numbers.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=notifications as u64).collect::<Vec<_>>(),
        "event numbers 1..n, each once"
    );
}

async fn forged_stale_replayed_illegal_and_unknown_callbacks_change_nothing(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("activelives-exercise.json").await;
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    let secret = test_secret("provider:activelives");
    let now = fleet.app.now().as_secs();

    // Wrong secret (another provider's), stale, future, missing signature.
    let other = test_secret("provider:community-connect");
    for (what, secret, timestamp) in [
        ("wrong secret", other.as_str(), now),
        ("stale", secret.as_str(), now - 6 * 60),
        ("future", secret.as_str(), now + 6 * 60),
    ] {
        let response = fleet
            .callback_signed("activelives", "w1", &booked, secret, timestamp)
            .await;
        assert_eq!(response.status(), 401, "{what}");
        let outcome = json(response).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{what}");
    }
    let unsigned = fleet
        .app
        .client
        .post(fleet.app.url("/providers/activelives/status"))
        .header("content-type", "application/json")
        .body(booked.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status(), 401);
    assert_eq!(
        fleet.task(&id).await["meta"]["versionId"],
        "1",
        "nothing changed"
    );

    // The refused attempts did not burn the webhook-id: the genuine one applies.
    assert_eq!(
        fleet.callback("activelives", "w1", &booked).await.status(),
        200
    );
    let accepted = fleet.task(&id).await;
    assert_eq!(accepted["status"], "accepted");

    // A replay (same webhook-id, whatever the body) is acknowledged and ignored.
    let completed =
        json!({"referral_ref": id, "event": "completed", "event_time": "2026-06-02T11:00:00Z"});
    assert_eq!(
        fleet
            .callback("activelives", "w1", &completed)
            .await
            .status(),
        200
    );
    assert_eq!(fleet.task(&id).await, accepted, "a replay changes nothing");

    // An illegal transition: completed, then booked again.
    assert_eq!(
        fleet
            .callback("activelives", "w2", &completed)
            .await
            .status(),
        200
    );
    let done = fleet.task(&id).await;
    let illegal = fleet.callback("activelives", "w3", &booked).await;
    assert_eq!(illegal.status(), 409);
    assert_eq!(json(illegal).await["issue"][0]["code"], "conflict");
    assert_eq!(fleet.task(&id).await, done);
    // Resent, it gets the same answer.
    assert_eq!(
        fleet.callback("activelives", "w3", &booked).await.status(),
        409
    );

    // Unknown referral; a referral sent to another provider; an unknown provider.
    let unknown = json!({"referral_ref": "0199aaaa-0000-7000-8000-000000000000", "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet.callback("activelives", "w4", &unknown).await.status(),
        404
    );
    let someone_elses = json!({"case_id": "CC-9", "external_id": id, "status": "OPEN", "changed_at": "2026-03-02T11:00:00Z", "closure_reason": null, "note": null});
    let response = fleet
        .callback("community-connect", "w5", &someone_elses)
        .await;
    assert_eq!(response.status(), 404);
    let response = fleet.callback("nobody", "w6", &booked).await;
    assert_eq!(response.status(), 404);
    // A body that breaks the provider's documented callback format.
    let malformed = json!({"referral_ref": id, "event": "teleported"});
    assert_eq!(
        fleet
            .callback("activelives", "w7", &malformed)
            .await
            .status(),
        422
    );
    assert_eq!(
        fleet.task(&id).await,
        done,
        "none of these changed the Task"
    );

    // Every verified callback is on record with its answer; forged ones are not.
    let recorded = json(fleet.app.get("/admin/callbacks?provider=activelives").await).await;
    let answers: std::collections::BTreeMap<&str, i64> = recorded["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["webhook_id"].as_str().unwrap(),
                c["answered"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        answers,
        [
            ("w1", 200),
            ("w2", 200),
            ("w3", 409),
            ("w4", 404),
            ("w7", 422)
        ]
        .into(),
        "{recorded}"
    );
    let illegal = recorded["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["webhook_id"] == "w3")
        .unwrap();
    assert!(
        illegal["outcome"]
            .as_str()
            .unwrap()
            .starts_with("refused: "),
        "{illegal}"
    );

    // The referrer heard of exactly the two changes.
    fleet.app.deliver_due().await;
    assert_eq!(fleet.referrer.received().len(), 2);
    assert_eq!(fleet.referrer.delivered().len(), 2);
}

async fn pollers_find_changed_tasks_by_last_updated(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = fleet.refer("activelives-exercise.json").await;
    let unchanged = fleet.refer("activelives-weight.json").await;
    fleet.app.advance(Duration::from_millis(1));
    let since = fleet.app.now().to_string();
    fleet.app.advance(Duration::from_millis(1));
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet.callback("activelives", "p1", &booked).await.status(),
        200
    );

    let encoded: String =
        url::form_urlencoded::byte_serialize(format!("gt{since}").as_bytes()).collect();
    let found = json(
        fleet
            .app
            .get(&format!("/fhir/Task?_lastUpdated={encoded}"))
            .await,
    )
    .await;
    let focuses: Vec<&str> = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["focus"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        focuses,
        [format!("ServiceRequest/{id}")],
        "only the changed Task, not {unchanged}"
    );
    let with_focus = json(
        fleet
            .app
            .get(&format!(
                "/fhir/Task?focus=ServiceRequest/{unchanged}&_lastUpdated={encoded}"
            ))
            .await,
    )
    .await;
    assert_eq!(with_focus["total"], 0);
    let bad = fleet.app.get("/fhir/Task?_lastUpdated=yesterday").await;
    assert_eq!(bad.status(), 400);
}

/// A copy of the mappings in which ActiveLives has a cancellation message.
pub fn mappings_with_cancel() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(MANIFEST_DIR).join("mappings"), dir.path());
    let file = dir.path().join("activelives.yaml");
    let mut text = std::fs::read_to_string(&file).unwrap();
    text.push_str(
        "\ncancel:\n  referral_ref: \"{{ id }}\"\n  cancelled: true\n  reason: \"{{ status }}\"\n",
    );
    std::fs::write(file, text).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn the_referrer_cancels_and_the_provider_is_told_through_its_mapping(backend: Backend) {
    let mappings = mappings_with_cancel();
    let dir = mappings.path().to_owned();
    let fleet = Fleet::start_stepped(backend, move |config| config.mappings_dir = dir).await;

    // PUT with status revoked.
    let id = fleet.refer("activelives-exercise.json").await;
    let mut referral = json(fleet.app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    referral["status"] = json!("revoked");
    let response = fleet
        .app
        .client
        .put(fleet.app.url(&format!("/fhir/ServiceRequest/{id}")))
        .header("content-type", "application/fhir+json")
        .header("if-match", "W/\"1\"")
        .body(referral.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let revised = json(response).await;
    assert_eq!(revised["status"], "revoked");
    assert_eq!(revised["meta"]["versionId"], "2");
    let task = fleet.task(&id).await;
    assert_eq!(task["status"], "cancelled");
    assert_eq!(task["statusReason"]["text"], "cancelled by the referrer");

    // The provider gets the referral, then the cancellation, in that order.
    fleet.app.deliver_due().await;
    let delivered = fleet.provider("activelives").delivered();
    assert_eq!(delivered.len(), 2);
    assert_eq!(delivered[0].body["referral_ref"], id.as_str());
    assert!(delivered[0].body.get("cancelled").is_none());
    assert_eq!(
        delivered[1].body,
        json!({"referral_ref": id, "cancelled": true, "reason": "revoked"})
    );
    assert!(delivered[1].signature_valid);
    // And the referrer is notified of the cancelled Task.
    let notified = fleet.referrer.delivered();
    assert_eq!(notified.len(), 1);
    assert_eq!(
        notified[0].body["entry"][1]["resource"]["status"],
        "cancelled"
    );

    // A stale If-Match, another field changed, or a cancelled Task cancelled
    // again in another way are refused.
    let mut stale = revised.clone();
    stale["status"] = json!("entered-in-error");
    let put = |body: Value, if_match: &'static str| {
        let client = fleet.app.client.clone();
        let url = fleet.app.url(&format!("/fhir/ServiceRequest/{id}"));
        async move {
            client
                .put(url)
                .header("content-type", "application/fhir+json")
                .header("if-match", if_match)
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    assert_eq!(put(stale.clone(), "W/\"1\"").await.status(), 412);
    let mut edited = revised.clone();
    edited["priority"] = json!("stat");
    assert_eq!(put(edited, "W/\"2\"").await.status(), 422);
    // The referrer may still mark it entered-in-error.
    assert_eq!(put(stale, "W/\"2\"").await.status(), 200);
    assert_eq!(fleet.task(&id).await["status"], "entered-in-error");

    // PATCH: a provider without a cancel message (Community Connect) gets
    // none, and the Task still shows cancelled.
    let other = fleet.refer("community-connect-loneliness.json").await;
    fleet.app.deliver_due().await;
    assert_eq!(fleet.provider("community-connect").delivered().len(), 1);
    let patch = |body: Value| {
        let client = fleet.app.client.clone();
        let url = fleet.app.url(&format!("/fhir/ServiceRequest/{other}"));
        async move {
            client
                .patch(url)
                .header("content-type", "application/json-patch+json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let refused = patch(json!([{"op": "replace", "path": "/priority", "value": "stat"}])).await;
    assert_eq!(refused.status(), 422);
    let ok = patch(json!([
        {"op": "test", "path": "/status", "value": "active"},
        {"op": "replace", "path": "/status", "value": "revoked"}
    ]))
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(fleet.task(&other).await["status"], "cancelled");
    fleet.app.deliver_due().await;
    assert_eq!(
        fleet.provider("community-connect").received().len(),
        1,
        "no cancel message"
    );

    // A completed referral cannot be cancelled.
    let done = fleet.refer("activelives-weight.json").await;
    for (n, event) in ["booked", "completed"].iter().enumerate() {
        let body =
            json!({"referral_ref": done, "event": event, "event_time": "2026-03-04T10:15:00Z"});
        assert_eq!(
            fleet
                .callback("activelives", &format!("d{n}"), &body)
                .await
                .status(),
            200
        );
    }
    let mut finished = json(fleet.app.get(&format!("/fhir/ServiceRequest/{done}")).await).await;
    finished["status"] = json!("revoked");
    let response = fleet
        .app
        .client
        .put(fleet.app.url(&format!("/fhir/ServiceRequest/{done}")))
        .header("content-type", "application/fhir+json")
        .body(finished.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(fleet.task(&done).await["status"], "completed");
    let _ = REFERRER;
}

/// ActiveLives rotates its secret: Signpost signs with the new and the old
/// one during the grace period (so ActiveLives, still on the old one, can
/// verify), accepts callbacks signed with either, and only the new one after.
async fn secrets_rotate_with_a_grace_period(backend: Backend) {
    use signpost::{config::SecretSource, webhooks::Secret};
    let old = test_secret("provider:activelives");
    let new = Secret::generate();
    let new_text = new.to_whsec();
    let rotate = |until: chrono::DateTime<chrono::Utc>| {
        let new = new.clone();
        let old = old.clone();
        move |config: &mut signpost::config::Config| {
            let provider = config.providers.get_mut("activelives").unwrap();
            provider.secret = SecretSource::Inline(new);
            provider.previous_secret = Some(SecretSource::Inline(Secret::parse(&old).unwrap()));
            provider.previous_secret_until = Some(until);
        }
    };

    // During the grace period.
    let fleet = Fleet::start_with(
        backend,
        rotate(chrono::Utc::now() + chrono::Duration::hours(1)),
    )
    .await;
    let id = fleet.refer("activelives-exercise.json").await;
    let delivered = fleet.provider("activelives").wait_for(1, PATIENCE).await;
    assert!(
        delivered[0].signature_valid,
        "verifiable with the old secret"
    );
    let signatures = delivered[0].header("webhook-signature").unwrap().to_owned();
    assert_eq!(signatures.split(' ').count(), 2, "{signatures}");
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    let response = fleet
        .callback_signed("activelives", "r1", &booked, &old, unix_now())
        .await;
    assert_eq!(response.status(), 200, "the old secret is still accepted");
    let attended = json!({"referral_ref": id, "event": "first_session_attended", "event_time": "2026-03-05T10:15:00Z"});
    let response = fleet
        .callback_signed("activelives", "r2", &attended, &new_text, unix_now())
        .await;
    assert_eq!(response.status(), 200, "the new secret is accepted");
    drop(fleet);

    // After it.
    let fleet = Fleet::start_stepped(
        backend,
        rotate(chrono::Utc::now() - chrono::Duration::seconds(1)),
    )
    .await;
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_due().await;
    let received = fleet.provider("activelives").received();
    assert!(!received.is_empty());
    assert!(
        !received[0].signature_valid,
        "the old secret no longer verifies"
    );
    assert_eq!(
        received[0]
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        1
    );
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    let response = fleet
        .callback_signed("activelives", "r1", &booked, &old, unix_now())
        .await;
    assert_eq!(response.status(), 401, "the old secret is refused");
    let response = fleet
        .callback_signed("activelives", "r1", &booked, &new_text, unix_now())
        .await;
    assert_eq!(response.status(), 200);
}

on_both_backends!(
    secrets_rotate_with_a_grace_period,
    each_documented_callback_moves_the_task_and_reaches_the_referrer,
    forged_stale_replayed_illegal_and_unknown_callbacks_change_nothing,
    pollers_find_changed_tasks_by_last_updated,
    the_referrer_cancels_and_the_provider_is_told_through_its_mapping,
);
