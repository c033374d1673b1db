//! Escalation (issue 18), over real HTTP on both backends with real signed
//! receivers: a provider asks for a clinician (`POST
//! /providers/{id}/escalations`, Standard Webhooks signature); the
//! referral's Task goes on hold; the referrer receives the child Task, the
//! Communication and (safeguarding) the Flag in one signed notification,
//! reads them back, and acknowledges (`PATCH /fhir/Task/{child}`), which
//! resumes or closes the referral; a missed deadline sends it again,
//! counted and audited. Every refusal changes nothing. Every FHIR resource
//! produced passes the official R4 schema.

use std::{path::Path, sync::LazyLock, time::Duration};

use serde_json::{Value, json};
use signpost::security::tokens::Role;

use crate::{
    on_both_backends,
    support::fleet::Fleet,
    support::helpers::{
        Backend, MANIFEST_DIR, client_with, expressions, issue_token, json, test_secret,
    },
    support::receiver::Received,
};

const DECISION_SYSTEM: &str = "https://signpost.example/CodeSystem/escalation-decision";
const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

static VALIDATOR: LazyLock<signpost::validation::Validator> = LazyLock::new(|| {
    signpost::validation::Validator::load(&Path::new(MANIFEST_DIR).join("schemas")).unwrap()
});

/// Valid FHIR R4 by the official schema (offline).
fn assert_r4(resource: &Value) {
    let issues = VALIDATOR.check_structure(resource);
    assert!(
        issues.is_empty(),
        "not valid FHIR R4 ({}): {issues:?}",
        resource["resourceType"]
    );
}

/// POST an escalation as `provider`, signed with its secret.
async fn escalate(fleet: &Fleet, provider: &str, body: &Value) -> reqwest::Response {
    escalate_signed(
        fleet,
        provider,
        body,
        &test_secret(&format!("provider:{provider}")),
    )
    .await
}

async fn escalate_signed(
    fleet: &Fleet,
    provider: &str,
    body: &Value,
    secret: &str,
) -> reqwest::Response {
    let webhook_id = format!("esc-{}", uuid::Uuid::new_v4());
    escalate_as(fleet, provider, body, secret, &webhook_id).await
}

async fn escalate_as(
    fleet: &Fleet,
    provider: &str,
    body: &Value,
    secret: &str,
    webhook_id: &str,
) -> reqwest::Response {
    let raw = body.to_string();
    let timestamp = fleet.app.now().as_secs();
    fleet
        .app
        .anonymous
        .post(fleet.app.url(&format!("/providers/{provider}/escalations")))
        .header("content-type", "application/json")
        .header("webhook-id", webhook_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header(
            "webhook-signature",
            crate::support::receiver::sign(secret, webhook_id, timestamp, raw.as_bytes()),
        )
        .body(raw)
        .send()
        .await
        .expect("escalation sent")
}

/// PATCH a child Task with `client`.
async fn acknowledge(
    fleet: &Fleet,
    client: &reqwest::Client,
    id: &str,
    patch: &Value,
) -> reqwest::Response {
    client
        .patch(fleet.app.url(&format!("/fhir/Task/{id}")))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .expect("acknowledgement sent")
}

/// A referral to Active Lives, delivered and accepted by the provider
/// (its "booked" callback).
async fn accepted_referral(fleet: &Fleet) -> String {
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.app.deliver_due().await;
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    let response = fleet
        .callback("activelives", &format!("booked-{id}"), &booked)
        .await;
    assert_eq!(response.status(), 200);
    fleet.app.deliver_due().await;
    id
}

fn raise(referral: &str, reason: &str, urgency: &str) -> Value {
    json!({"referral": referral, "reason": reason, "urgency": urgency,
           "note": "Says she has been thinking about ending her life; no plan disclosed."})
}

/// The notifications the referrer has received that carry a child Task of
/// `referral`'s Task (an escalation), oldest first.
fn escalation_notifications(fleet: &Fleet, parent_task_id: &str) -> Vec<Received> {
    let mut seen = std::collections::HashSet::new();
    fleet
        .referrer
        .received()
        .into_iter()
        .filter(|r| seen.insert(r.webhook_id.clone()))
        .filter(|r| {
            r.body["entry"].as_array().is_some_and(|entries| {
                entries.iter().any(|e| {
                    e["resource"]["partOf"][0]["reference"] == format!("Task/{parent_task_id}")
                })
            })
        })
        .collect()
}

async fn a_safeguarding_escalation_reaches_the_referrer_signed_with_its_task_communication_and_flag(
    backend: Backend,
) {
    let fleet = Fleet::start_stepped(backend, crate::security::with_hilltop).await;
    let id = accepted_referral(&fleet).await;
    let parent = fleet.task(&id).await;
    let parent_id = parent["id"].as_str().unwrap().to_owned();

    let mut body = raise(&id, "safeguarding", "urgent");
    body["safeguarding"] = json!("761571000000106");
    let response = escalate(&fleet, "activelives", &body).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let child = json(response).await;
    assert!(location.ends_with(&format!("/Task/{}", child["id"].as_str().unwrap())));
    let child_id = child["id"].as_str().unwrap().to_owned();

    // The child Task: Gravity's sub-task shape.
    assert_eq!(child["resourceType"], "Task");
    assert_eq!(child["status"], "requested");
    assert_eq!(child["intent"], "order");
    assert_eq!(child["priority"], "urgent");
    assert_eq!(child["code"]["coding"][0]["code"], "fulfill");
    assert_eq!(child["partOf"][0]["reference"], format!("Task/{parent_id}"));
    assert_eq!(
        child["basedOn"][0]["reference"],
        format!("ServiceRequest/{id}")
    );
    assert_eq!(child["requester"]["identifier"]["value"], "activelives");
    assert_eq!(
        child["owner"]["identifier"],
        parent["requester"]["identifier"]
    );
    assert!(child["restriction"]["period"]["end"].is_string());
    assert_eq!(child["reasonCode"]["coding"][0]["code"], "safeguarding");
    let inputs: Vec<&str> = child["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["valueReference"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(inputs.len(), 2);
    assert!(inputs[0].starts_with("Communication/"));
    assert!(inputs[1].starts_with("Flag/"));
    assert_r4(&child);

    // The referral's Task is on hold, saying why.
    let held = fleet.task(&id).await;
    assert_eq!(held["status"], "on-hold");
    assert_eq!(
        held["statusReason"]["text"],
        "needs beyond provider's competence"
    );
    assert_eq!(held["businessStatus"]["text"], "escalated to clinician");
    assert_r4(&held);

    // The referrer receives one signed notification carrying all four.
    fleet.app.deliver_due().await;
    let sent = escalation_notifications(&fleet, &parent_id);
    assert_eq!(sent.len(), 1);
    let bundle = &sent[0].body;
    assert!(sent[0].signature_valid);
    assert_r4(bundle);
    let types: Vec<&str> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["Parameters", "Task", "Task", "Communication", "Flag"]
    );
    assert_eq!(bundle["entry"][1]["resource"], held);
    assert_eq!(bundle["entry"][2]["resource"], child);
    let event = &bundle["entry"][0]["resource"]["parameter"][5]["part"];
    let context: Vec<&str> = event
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "additional-context")
        .map(|p| p["valueReference"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(context.len(), 3, "{event}");
    assert_eq!(context[0], format!("Task/{child_id}"));
    let communication = bundle["entry"][3]["resource"].clone();
    let flag = bundle["entry"][4]["resource"].clone();
    for resource in [&communication, &flag] {
        assert_r4(resource);
    }
    assert_eq!(
        communication["about"][0]["reference"],
        format!("ServiceRequest/{id}")
    );
    assert_eq!(
        communication["payload"][0]["contentString"],
        body["note"].as_str().unwrap()
    );
    assert_eq!(flag["code"]["coding"][0]["code"], "761571000000106");
    assert_eq!(flag["category"][0]["coding"][0]["code"], "SG");

    // Read back by the referrer.
    let found = json(
        fleet
            .app
            .get(&format!("/fhir/Task?part-of=Task/{parent_id}"))
            .await,
    )
    .await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"], child);
    assert_r4(&found);
    let read = json(fleet.app.get(&format!("/fhir/Task/{child_id}")).await).await;
    assert_eq!(read, child);
    for search in ["based-on", "about"] {
        let found = json(
            fleet
                .app
                .get(&format!("/fhir/Communication?{search}=ServiceRequest/{id}"))
                .await,
        )
        .await;
        assert_eq!(found["total"], 1, "{search}");
        assert_eq!(found["entry"][0]["resource"], communication);
        assert_r4(&found);
    }
    let nhs = flag["subject"]["identifier"]["value"].as_str().unwrap();
    let found = json(
        fleet
            .app
            .get(&format!(
                "/fhir/Flag?subject:identifier={NHS_NUMBER_SYSTEM}|{nhs}"
            ))
            .await,
    )
    .await;
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"], flag);

    // Another referrer sees none of it.
    let other = client_with(
        &issue_token(
            &fleet.app.db.url,
            Role::Referrer("hilltop".parse().unwrap()),
        )
        .await,
    );
    let response = other
        .get(fleet.app.url(&format!("/fhir/Task/{child_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let found = json(
        other
            .get(fleet.app.url(&format!(
                "/fhir/Flag?subject:identifier={NHS_NUMBER_SYSTEM}|{nhs}"
            )))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(found["total"], 0);

    // Counted.
    let metrics = fleet.app.get_text("/metrics").await;
    assert!(
        metrics.contains(
            "signpost_escalations_raised_total{provider=\"activelives\",urgency=\"urgent\"} 1"
        ),
        "{metrics}"
    );
}

async fn acknowledgement_resumes_or_closes_the_referral_and_someone_elses_is_not_found(
    backend: Backend,
) {
    let fleet = Fleet::start_stepped(backend, crate::security::with_hilltop).await;

    // Rejected with a reason: the referral resumes.
    let id = accepted_referral(&fleet).await;
    let response = escalate(
        &fleet,
        "activelives",
        &raise(&id, "mental-health-risk", "routine"),
    )
    .await;
    assert_eq!(response.status(), 201);
    let child = json(response).await;
    let child_id = child["id"].as_str().unwrap().to_owned();
    fleet.app.deliver_due().await;

    // Someone else's escalation: not found, and nothing changes.
    let other = client_with(
        &issue_token(
            &fleet.app.db.url,
            Role::Referrer("hilltop".parse().unwrap()),
        )
        .await,
    );
    let accept = json!([{"op": "replace", "path": "/status", "value": "accepted"}]);
    assert_eq!(
        acknowledge(&fleet, &other, &child_id, &accept)
            .await
            .status(),
        404
    );
    let provider = client_with(
        &issue_token(
            &fleet.app.db.url,
            Role::Provider("activelives".parse().unwrap()),
        )
        .await,
    );
    // (A provider's token has no access to the FHIR surface at all.)
    assert_eq!(
        acknowledge(&fleet, &provider, &child_id, &accept)
            .await
            .status(),
        403
    );
    // A referral's own Task is not an escalation.
    let parent_id = fleet.task(&id).await["id"].as_str().unwrap().to_owned();
    assert_eq!(
        acknowledge(&fleet, &fleet.app.client, &parent_id, &accept)
            .await
            .status(),
        404
    );
    // A rejection without a reason: 422 naming it.
    let reject = json!([{"op": "replace", "path": "/status", "value": "rejected"}]);
    let response = acknowledge(&fleet, &fleet.app.client, &child_id, &reject).await;
    assert_eq!(response.status(), 422);
    assert_eq!(expressions(&json(response).await), ["statusReason"]);
    let unchanged = json(fleet.app.get(&format!("/fhir/Task/{child_id}")).await).await;
    assert_eq!(unchanged, child);

    let response = acknowledge(&fleet, &fleet.app.client, &child_id, &accept).await;
    assert_eq!(response.status(), 200);
    let accepted = json(response).await;
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["meta"]["versionId"], "2");
    assert_r4(&accepted);
    assert_eq!(fleet.task(&id).await["status"], "on-hold");
    let reject = json!([
        {"op": "test", "path": "/status", "value": "accepted"},
        {"op": "replace", "path": "/status", "value": "rejected"},
        {"op": "add", "path": "/statusReason", "value": {"text": "Not for OT: refer to the crisis team"}}
    ]);
    let response = acknowledge(&fleet, &fleet.app.client, &child_id, &reject).await;
    assert_eq!(response.status(), 200);
    let rejected = json(response).await;
    assert_eq!(rejected["status"], "rejected");
    assert_r4(&rejected);
    let resumed = fleet.task(&id).await;
    assert_eq!(resumed["status"], "in-progress");
    assert_eq!(
        resumed["businessStatus"]["text"],
        "escalation answered: provider continues"
    );
    assert_r4(&resumed);
    // Finished: no further answer.
    assert_eq!(
        acknowledge(&fleet, &fleet.app.client, &child_id, &accept)
            .await
            .status(),
        409
    );
    // The referrer is told, the answered child Task beside the Task.
    fleet.app.deliver_due().await;
    let sent = escalation_notifications(&fleet, &parent_id);
    let last = &sent.last().unwrap().body;
    assert!(sent.last().unwrap().signature_valid);
    assert_eq!(last["entry"][1]["resource"], resumed);
    assert_eq!(last["entry"][2]["resource"], rejected);
    assert_r4(last);
    // The provider sees the escalation answered (portal-facing read).
    let answered = json(
        fleet
            .app
            .get(&format!("/fhir/Task?part-of=Task/{parent_id}"))
            .await,
    )
    .await;
    assert_eq!(answered["entry"][0]["resource"]["status"], "rejected");

    // Completed with the decision to close: the referral is cancelled.
    let id = accepted_referral(&fleet).await;
    let response = escalate(
        &fleet,
        "activelives",
        &raise(&id, "functional-decline", "routine"),
    )
    .await;
    assert_eq!(response.status(), 201);
    let child_id = json(response).await["id"].as_str().unwrap().to_owned();
    let no_decision = json!([{"op": "replace", "path": "/status", "value": "completed"}]);
    let response = acknowledge(&fleet, &fleet.app.client, &child_id, &no_decision).await;
    assert_eq!(response.status(), 422);
    assert_eq!(expressions(&json(response).await), ["output"]);
    let complete = json!([
        {"op": "replace", "path": "/status", "value": "completed"},
        {"op": "add", "path": "/output", "value": [
            {"type": {"text": "decision"},
             "valueCodeableConcept": {"coding": [{"system": DECISION_SYSTEM, "code": "close"}], "text": "OT takes over"}},
            {"type": {"text": "note"}, "valueString": "Home assessment booked by the PCN OT team"}
        ]},
        {"op": "add", "path": "/note", "value": [{"text": "Discussed with the GP"}]}
    ]);
    let response = acknowledge(&fleet, &fleet.app.client, &child_id, &complete).await;
    assert_eq!(response.status(), 200);
    let completed = json(response).await;
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"].as_array().unwrap().len(), 2);
    assert_eq!(completed["note"][0]["text"], "Discussed with the GP");
    assert_r4(&completed);
    let closed = fleet.task(&id).await;
    assert_eq!(closed["status"], "cancelled");
    assert_eq!(
        closed["statusReason"]["text"],
        "closed after escalation: the clinician's decision"
    );
    assert_r4(&closed);
}

async fn a_missed_deadline_sends_the_escalation_again_counted_and_audited(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = accepted_referral(&fleet).await;
    let parent_id = fleet.task(&id).await["id"].as_str().unwrap().to_owned();
    // Raised four days ago (and not delivered then): the referrer's
    // receiver checks that a signature's timestamp is now, so what is
    // sent must be sent at the present time.
    let present = fleet.app.now();
    fleet
        .app
        .set_now(present.before(Duration::from_secs(4 * 24 * 3600 + 3600)));
    let response = escalate(
        &fleet,
        "activelives",
        &raise(&id, "physical-deterioration", "urgent"),
    )
    .await;
    assert_eq!(response.status(), 201);
    let child_id = json(response).await["id"].as_str().unwrap().to_owned();

    // One working day (and any weekend) later, at the present: sent
    // again, once, with the first send.
    fleet.app.set_now(present);
    fleet.app.deliver_due().await;
    fleet.app.deliver_due().await;
    let sent = escalation_notifications(&fleet, &parent_id);
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|r| r.signature_valid));
    let again = &sent[1].body;
    assert_r4(again);
    let child = &again["entry"][2]["resource"];
    assert_eq!(child["id"], child_id.as_str());
    assert_eq!(
        child["businessStatus"]["text"],
        "not acknowledged by its deadline; sent again (2 sends)"
    );
    let metrics = fleet.app.get_text("/metrics").await;
    assert!(
        metrics.contains("signpost_escalations_resent_total{urgency=\"urgent\"} 1"),
        "{metrics}"
    );
    let audit = json(fleet.app.get(&format!("/admin/audit?referral={id}")).await).await;
    assert!(audit.to_string().contains("resend escalation"), "{audit}");

    // Its new deadline is a working day on: not sent again yet.
    fleet.app.advance(Duration::from_secs(3600));
    fleet.app.deliver_due().await;
    assert_eq!(escalation_notifications(&fleet, &parent_id).len(), 2);

    // Acknowledged: never sent again.
    let accept = json!([{"op": "replace", "path": "/status", "value": "accepted"}]);
    assert_eq!(
        acknowledge(&fleet, &fleet.app.client, &child_id, &accept)
            .await
            .status(),
        200
    );
    fleet.app.advance(Duration::from_secs(10 * 24 * 3600));
    fleet.app.deliver_due().await;
    assert_eq!(escalation_notifications(&fleet, &parent_id).len(), 2);
}

/// An urgent escalation is sent ahead of routine traffic already waiting:
/// the delivery worker's next claim takes it first.
async fn an_urgent_escalation_is_sent_ahead_of_routine_traffic(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = accepted_referral(&fleet).await;
    // Routine referrals wait in the outbox (the worker is stepped).
    for _ in 0..3 {
        fleet.refer("activelives-exercise.json").await;
    }
    let response = escalate(
        &fleet,
        "activelives",
        &raise(&id, "mental-health-risk", "urgent"),
    )
    .await;
    assert_eq!(response.status(), 201);
    let child_id = json(response).await["id"].as_str().unwrap().to_owned();

    // The worker's next claim of one message: the escalation's.
    let store = signpost::store::open(&fleet.app.db.url, 2).await.unwrap();
    let now = fleet.app.now().as_millis();
    let first = store.claim_due("test", now, 60_000, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert!(
        first[0].payload.contains(&child_id),
        "the routine referrals went first: {:?}",
        first[0].kind
    );
}

/// An escalation nobody answered before its referral ended is closed at
/// its deadline, not sent again at every deadline for ever.
async fn an_unanswered_escalation_of_an_ended_referral_is_closed_not_resent(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = accepted_referral(&fleet).await;
    let parent_id = fleet.task(&id).await["id"].as_str().unwrap().to_owned();
    let present = fleet.app.now();
    fleet
        .app
        .set_now(present.before(Duration::from_secs(4 * 24 * 3600 + 3600)));
    let response = escalate(
        &fleet,
        "activelives",
        &raise(&id, "physical-deterioration", "urgent"),
    )
    .await;
    assert_eq!(response.status(), 201);
    let child_id = json(response).await["id"].as_str().unwrap().to_owned();
    // The practice withdraws the referral (its ServiceRequest revoked).
    let revoke = json!([{"op": "replace", "path": "/status", "value": "revoked"}]);
    let response = fleet
        .app
        .client
        .patch(fleet.app.url(&format!("/fhir/ServiceRequest/{id}")))
        .header("content-type", "application/json-patch+json")
        .body(revoke.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(fleet.task(&id).await["status"], "cancelled");

    fleet.app.set_now(present);
    fleet.app.deliver_due().await;
    fleet.app.deliver_due().await;
    // Sent once (when raised), never again; closed and counted as no re-send.
    let sent = escalation_notifications(&fleet, &parent_id);
    assert_eq!(sent.len(), 1, "sent again after the referral ended");
    let child = json(fleet.app.get(&format!("/fhir/Task/{child_id}")).await).await;
    assert_eq!(child["status"], "cancelled", "{child}");
    let metrics = fleet.app.get_text("/metrics").await;
    assert!(
        !metrics.contains("signpost_escalations_resent_total{urgency=\"urgent\"} 1"),
        "{metrics}"
    );
    let audit = json(fleet.app.get(&format!("/admin/audit?referral={id}")).await).await;
    assert!(audit.to_string().contains("close escalation"), "{audit}");
}

/// How many child Tasks (escalations) the referral's Task has.
async fn children(fleet: &Fleet, parent_id: &str) -> u64 {
    let found = json(
        fleet
            .app
            .get(&format!("/fhir/Task?part-of=Task/{parent_id}"))
            .await,
    )
    .await;
    found["total"].as_u64().unwrap()
}

async fn every_refusal_changes_nothing(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = accepted_referral(&fleet).await;
    let before = fleet.task(&id).await;
    let parent_id = before["id"].as_str().unwrap().to_owned();

    // Not sent to this provider, or no such referral: 404.
    let response = escalate(&fleet, "community-connect", &raise(&id, "other", "routine")).await;
    assert_eq!(response.status(), 404);
    let response = escalate(
        &fleet,
        "activelives",
        &raise("no-such-referral", "other", "routine"),
    )
    .await;
    assert_eq!(response.status(), 404);
    // A bad signature: 401.
    let response = escalate_signed(
        &fleet,
        "activelives",
        &raise(&id, "other", "routine"),
        &test_secret("provider:community-connect"),
    )
    .await;
    assert_eq!(response.status(), 401);
    // Unknown reason or urgency, or no note: 422 naming the field, never
    // quoting it.
    for (field, value) in [
        ("reason", json!("SECRET-reason")),
        ("urgency", json!("SECRET-whenever")),
        ("note", json!(null)),
    ] {
        let mut body = raise(&id, "other", "routine");
        body[field] = value;
        let response = escalate(&fleet, "activelives", &body).await;
        assert_eq!(response.status(), 422, "{field}");
        let outcome = json(response).await;
        assert_eq!(expressions(&outcome), [field]);
        assert!(!outcome.to_string().contains("SECRET"), "{outcome}");
    }
    assert_eq!(fleet.task(&id).await, before);
    assert_eq!(children(&fleet, &parent_id).await, 0);

    // The same request again (a retry after a lost answer): the same
    // escalation, 200, nothing new.
    let secret = test_secret("provider:activelives");
    let body = raise(&id, "mental-health-risk", "routine");
    let first = escalate_as(&fleet, "activelives", &body, &secret, "retry-1").await;
    assert_eq!(first.status(), 201);
    let first = json(first).await;
    let held = fleet.task(&id).await;
    let again = escalate_as(&fleet, "activelives", &body, &secret, "retry-1").await;
    assert_eq!(again.status(), 200);
    assert_eq!(json(again).await, first);
    assert_eq!(fleet.task(&id).await, held);
    assert_eq!(children(&fleet, &parent_id).await, 1);
    let first_child = first["id"].as_str().unwrap().to_owned();
    let reject = json!([{"op": "replace", "path": "/status", "value": "rejected"},
                        {"op": "add", "path": "/statusReason", "value": {"text": "not needed"}}]);
    assert_eq!(
        acknowledge(&fleet, &fleet.app.client, &first_child, &reject)
            .await
            .status(),
        200
    );

    // A second open escalation only with a different reason.
    let first = escalate(
        &fleet,
        "activelives",
        &raise(&id, "medication-concern", "routine"),
    )
    .await;
    assert_eq!(first.status(), 201);
    let held = fleet.task(&id).await;
    let again = escalate(
        &fleet,
        "activelives",
        &raise(&id, "medication-concern", "urgent"),
    )
    .await;
    assert_eq!(again.status(), 409);
    assert_eq!(fleet.task(&id).await, held);
    assert_eq!(children(&fleet, &parent_id).await, 2);
    let other = escalate(
        &fleet,
        "activelives",
        &raise(&id, "functional-decline", "routine"),
    )
    .await;
    assert_eq!(other.status(), 201);
    assert_eq!(children(&fleet, &parent_id).await, 3);

    // A finished referral: 409.
    let done = accepted_referral(&fleet).await;
    let completed =
        json!({"referral_ref": done, "event": "completed", "event_time": "2026-06-02T11:00:00Z"});
    assert_eq!(
        fleet
            .callback("activelives", &format!("done-{done}"), &completed)
            .await
            .status(),
        200
    );
    let finished = fleet.task(&done).await;
    let response = escalate(&fleet, "activelives", &raise(&done, "other", "routine")).await;
    assert_eq!(response.status(), 409);
    assert_eq!(fleet.task(&done).await, finished);
    fleet.app.deliver_due().await;
    // The referrer heard of the three escalations and the answer to the
    // first, not of the refusals.
    assert_eq!(escalation_notifications(&fleet, &parent_id).len(), 4);
}

async fn an_erased_patients_escalations_keep_nothing_of_them(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |_| {}).await;
    let id = accepted_referral(&fleet).await;
    let parent = fleet.task(&id).await;
    let parent_id = parent["id"].as_str().unwrap().to_owned();
    let nhs = parent["for"]["identifier"]["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut body = raise(&id, "safeguarding", "routine");
    body["note"] = json!("MARKER-words-about-the-patient");
    let response = escalate(&fleet, "activelives", &body).await;
    assert_eq!(response.status(), 201);
    let child_id = json(response).await["id"].as_str().unwrap().to_owned();

    let response = fleet
        .app
        .admin
        .post(fleet.app.url("/admin/erase"))
        .body(json!({"nhs_number": nhs}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    assert_eq!(children(&fleet, &parent_id).await, 0);
    assert_eq!(
        fleet
            .app
            .get(&format!("/fhir/Task/{child_id}"))
            .await
            .status(),
        404
    );
    let found = json(
        fleet
            .app
            .get(&format!("/fhir/Communication?about=ServiceRequest/{id}"))
            .await,
    )
    .await;
    assert_eq!(found["total"], 0);
    let found = json(
        fleet
            .app
            .get(&format!("/fhir/Flag?subject:identifier={nhs}"))
            .await,
    )
    .await;
    assert_eq!(found["total"], 0);
    // Never sent again, and no longer answerable.
    fleet.app.advance(Duration::from_secs(10 * 24 * 3600));
    fleet.app.deliver_due().await;
    let accept = json!([{"op": "replace", "path": "/status", "value": "accepted"}]);
    assert_eq!(
        acknowledge(&fleet, &fleet.app.client, &child_id, &accept)
            .await
            .status(),
        404
    );
    let metrics = fleet.app.get_text("/metrics").await;
    assert!(
        !metrics.contains("signpost_escalations_resent_total{"),
        "{metrics}"
    );
}

/// ActiveLives' mapping with an `inbound.escalation`: a callback carrying
/// `concern` (and `urgent`) asks for an escalation beside its change. A
/// copy in a temporary folder (the shipped mapping has none).
fn mappings_with_escalation() -> tempfile::TempDir {
    fn copy_dir(from: &Path, to: &Path) {
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                std::fs::create_dir_all(&target).unwrap();
                copy_dir(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&Path::new(MANIFEST_DIR).join("mappings"), dir.path());
    let yaml = dir.path().join("activelives.yaml");
    let mut text = std::fs::read_to_string(&yaml).unwrap();
    text.push_str(
        "  escalation:\n    \"{% if concern.exists() %}\":\n      reason: \"{{ concern }}\"\n      urgency: \"{{ iif(urgent = true, 'urgent', 'routine') }}\"\n      note: \"{{ detail }}\"\n\
         escalation_outcome:\n  referral_ref: \"{{ basedOn.reference.substring(15) }}\"\n  escalation: \"{{ id }}\"\n  answer: \"{{ status }}\"\n  why: \"{{ statusReason.text }}\"\n",
    );
    std::fs::write(&yaml, text).unwrap();
    dir
}

async fn a_status_callback_whose_mapping_emits_an_escalation_raises_it_with_its_change(
    backend: Backend,
) {
    let mappings = mappings_with_escalation();
    let dir = mappings.path().to_owned();
    let fleet = Fleet::start_stepped(backend, move |config| config.mappings_dir = dir).await;
    let id = accepted_referral(&fleet).await;
    let before = fleet.task(&id).await;
    let parent_id = before["id"].as_str().unwrap().to_owned();
    let callback = |concern: &str| {
        json!({"referral_ref": id, "event": "did_not_attend", "event_time": "2026-03-17T10:30:00Z",
               "detail": "Fell twice at the class", "concern": concern, "urgent": true})
    };

    // An escalation Signpost would refuse: the whole callback is refused,
    // its change too.
    let response = fleet
        .callback("activelives", "c-bad", &callback("falls"))
        .await;
    assert_eq!(response.status(), 422);
    let outcome = json(response).await;
    assert!(
        outcome.to_string().contains("inbound.escalation"),
        "{outcome}"
    );
    assert_eq!(fleet.task(&id).await, before);
    assert_eq!(children(&fleet, &parent_id).await, 0);

    // Beside its change ("did not attend"), in one transaction.
    let response = fleet
        .callback("activelives", "c-1", &callback("functional-decline"))
        .await;
    assert_eq!(response.status(), 200);
    let held = fleet.task(&id).await;
    assert_eq!(held["status"], "on-hold");
    assert_eq!(held["businessStatus"]["text"], "escalated to clinician");
    assert_eq!(
        held["meta"]["versionId"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap(),
        before["meta"]["versionId"]
            .as_str()
            .unwrap()
            .parse::<u32>()
            .unwrap()
            + 2,
        "the change, then the escalation"
    );
    let found = json(
        fleet
            .app
            .get(&format!("/fhir/Task?part-of=Task/{parent_id}"))
            .await,
    )
    .await;
    assert_eq!(found["total"], 1);
    let child = &found["entry"][0]["resource"];
    assert_eq!(child["priority"], "urgent");
    assert_eq!(
        child["reasonCode"]["coding"][0]["code"],
        "functional-decline"
    );
    assert_r4(child);

    // The same webhook-id again: nothing more; the same reason again: 409.
    let response = fleet
        .callback("activelives", "c-1", &callback("functional-decline"))
        .await;
    assert_eq!(response.status(), 200);
    let response = fleet
        .callback("activelives", "c-2", &callback("functional-decline"))
        .await;
    assert_eq!(response.status(), 409);
    assert_eq!(fleet.task(&id).await, held);
    assert_eq!(children(&fleet, &parent_id).await, 1);

    // The referrer hears of both, the escalation with its resources.
    fleet.app.deliver_due().await;
    let sent = escalation_notifications(&fleet, &parent_id);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].signature_valid);
    assert_eq!(sent[0].body["entry"][1]["resource"], held);
    assert_r4(&sent[0].body);

    // Answered: the provider's system is told through its mapping's
    // `escalation_outcome`, signed.
    let child_id = child["id"].as_str().unwrap().to_owned();
    let reject = json!([{"op": "replace", "path": "/status", "value": "rejected"},
                        {"op": "add", "path": "/statusReason", "value": {"text": "Refer to the falls clinic instead"}}]);
    assert_eq!(
        acknowledge(&fleet, &fleet.app.client, &child_id, &reject)
            .await
            .status(),
        200
    );
    fleet.app.deliver_due().await;
    let told = fleet.provider("activelives").delivered();
    let last = told.last().unwrap();
    assert!(last.signature_valid);
    assert_eq!(
        last.body,
        json!({"referral_ref": id, "escalation": child_id, "answer": "rejected",
               "why": "Refer to the falls clinic instead"})
    );
}

async fn a_referrers_clinical_service_receives_the_escalation_signed_and_answers_it_with_its_own_token(
    backend: Backend,
) {
    use base64::Engine as _;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode([7u8; 32])
    );
    let service = crate::support::receiver::Receiver::start(&secret).await;
    let url = service.url_for("/escalations");
    let inline = secret.clone();
    let fleet = Fleet::start_stepped(backend, move |config| {
        let id: signpost::domain::ClinicalServiceId = "pcn-ot".parse().unwrap();
        config.clinical_services.insert(
            id.clone(),
            signpost::config::ClinicalService {
                id: id.clone(),
                name: Some("Riverside PCN occupational therapy".into()),
                ods_code: "U12345".into(),
                callback_url: url.parse().unwrap(),
                secret: signpost::config::SecretSource::Inline(
                    signpost::webhooks::Secret::parse(&inline).unwrap(),
                ),
                previous_secret: None,
                previous_secret_until: None,
                allow_private_network: true,
            },
        );
        config
            .referrers
            .get_mut(
                &"riverside-surgery"
                    .parse::<signpost::domain::ReferrerId>()
                    .unwrap(),
            )
            .unwrap()
            .escalate_to = Some(id);
    })
    .await;
    let id = accepted_referral(&fleet).await;
    let parent_id = fleet.task(&id).await["id"].as_str().unwrap().to_owned();
    let response = escalate(
        &fleet,
        "activelives",
        &raise(&id, "functional-decline", "urgent"),
    )
    .await;
    assert_eq!(response.status(), 201);
    let child = json(response).await;
    let child_id = child["id"].as_str().unwrap().to_owned();
    assert_eq!(child["owner"]["identifier"]["value"], "U12345");
    fleet.app.deliver_due().await;

    // The service receives it, signed: its ServiceRequest (a proposal from
    // the provider, based on the referral), the child Task, the
    // Communication.
    let got = service.delivered();
    assert_eq!(got.len(), 1);
    assert!(got[0].signature_valid);
    let bundle = &got[0].body;
    assert_r4(bundle);
    let proposal = &bundle["entry"][0]["resource"];
    assert_eq!(proposal["resourceType"], "ServiceRequest");
    assert_eq!(proposal["intent"], "proposal");
    assert_eq!(
        proposal["basedOn"][0]["reference"],
        format!("ServiceRequest/{id}")
    );
    assert_eq!(proposal["requester"]["identifier"]["value"], "activelives");
    assert_eq!(proposal["priority"], "urgent");
    assert_eq!(bundle["entry"][1]["resource"], child);
    assert_eq!(
        bundle["entry"][2]["resource"]["resourceType"],
        "Communication"
    );
    // The referrer is told of its referral's Task, as always.
    assert_eq!(escalation_notifications(&fleet, &parent_id).len(), 1);

    // The service answers with its own token, which reads nothing else.
    let token = issue_token(
        &fleet.app.db.url,
        Role::ClinicalService("pcn-ot".parse().unwrap()),
    )
    .await;
    let ot = client_with(&token);
    let read = ot
        .get(fleet.app.url(&format!("/fhir/Task/{child_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    // The referral's own Task is not its to read (as if it did not
    // exist); the ServiceRequest route refuses its token outright.
    let parent = ot
        .get(fleet.app.url(&format!("/fhir/Task/{parent_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(parent.status(), 404, "the referral's Task");
    let request = ot
        .get(fleet.app.url(&format!("/fhir/ServiceRequest/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(request.status(), 403, "the ServiceRequest");
    // Routes that serve no escalation refuse its token outright: no
    // referrer's notifications, no translation.
    let events = ot
        .get(
            fleet
                .app
                .url("/fhir/Subscription/riverside-surgery/$events?content=full-resource"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(events.status(), 403, "a referrer's notifications");
    let translate = ot
        .post(fleet.app.url("/fhir/ServiceRequest/$translate"))
        .header("content-type", "application/fhir+json")
        .body(
            fleet
                .app
                .get(&format!("/fhir/ServiceRequest/{id}"))
                .await
                .text()
                .await
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(translate.status(), 403, "$translate");
    let complete = json!([
        {"op": "replace", "path": "/status", "value": "completed"},
        {"op": "add", "path": "/output", "value": [{"type": {"text": "decision"},
          "valueCodeableConcept": {"coding": [{"system": DECISION_SYSTEM, "code": "resume"}]}}]}
    ]);
    let response = acknowledge(&fleet, &ot, &child_id, &complete).await;
    assert_eq!(response.status(), 200);
    assert_eq!(fleet.task(&id).await["status"], "in-progress");
    let trail = json(fleet.app.get(&format!("/admin/audit?referral={id}")).await).await;
    assert!(
        trail.to_string().contains("clinical-service:pcn-ot"),
        "{trail}"
    );
}

async fn an_inbox_provider_escalates_with_its_own_token(backend: Backend) {
    let fleet = Fleet::start_stepped(backend, |config| {
        config
            .providers
            .get_mut(
                &"grow-together"
                    .parse::<signpost::domain::ProviderId>()
                    .unwrap(),
            )
            .unwrap()
            .delivery = signpost::config::ProviderDelivery::Inbox {
            nudge_after: Duration::from_secs(3600),
            expire_after: Duration::from_secs(5 * 3600),
        };
    })
    .await;
    let id = fleet.refer("grow-together.bundle.json").await;
    let post = |token: String, body: Value| {
        let app = &fleet.app;
        async move {
            client_with(&token)
                .post(app.url("/providers/grow-together/escalations"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap()
        }
    };
    let own = issue_token(
        &fleet.app.db.url,
        Role::Provider("grow-together".parse().unwrap()),
    )
    .await;
    let other = issue_token(
        &fleet.app.db.url,
        Role::Provider("activelives".parse().unwrap()),
    )
    .await;
    let before = fleet.task(&id).await;
    let response = post(other, raise(&id, "other", "routine")).await;
    assert_eq!(response.status(), 403);
    assert_eq!(fleet.task(&id).await, before);

    // Not yet accepted: the Task keeps its status, and says it is escalated.
    let response = post(own, raise(&id, "mental-health-risk", "urgent")).await;
    assert_eq!(response.status(), 201);
    let child = json(response).await;
    assert_r4(&child);
    let task = fleet.task(&id).await;
    assert_eq!(task["status"], "requested");
    assert_eq!(task["businessStatus"]["text"], "escalated to clinician");
    assert_r4(&task);
}

on_both_backends!(
    a_safeguarding_escalation_reaches_the_referrer_signed_with_its_task_communication_and_flag,
    acknowledgement_resumes_or_closes_the_referral_and_someone_elses_is_not_found,
    a_missed_deadline_sends_the_escalation_again_counted_and_audited,
    an_unanswered_escalation_of_an_ended_referral_is_closed_not_resent,
    an_urgent_escalation_is_sent_ahead_of_routine_traffic,
    every_refusal_changes_nothing,
    an_erased_patients_escalations_keep_nothing_of_them,
    a_status_callback_whose_mapping_emits_an_escalation_raises_it_with_its_change,
    a_referrers_clinical_service_receives_the_escalation_signed_and_answers_it_with_its_own_token,
    an_inbox_provider_escalates_with_its_own_token,
);
