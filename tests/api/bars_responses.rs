//! NHS BaRS, the way back: a referrer configured with `notify = "bars"` is
//! told of each Task change of a referral it sent by BaRS as a
//! `servicerequest-response` message, posted (signed, through the same
//! outbox) to its `$process-message`, its `callback_url`.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use signpost::config::{Config, Notify};

use crate::{
    bars::{Ids, bars_referral, fresh, process, referral_id},
    on_both_backends,
    support::{
        fleet::{Fleet, PATIENCE, REFERRER},
        helpers::{Backend, MANIFEST_DIR, json},
        receiver::{Received, Scripted},
    },
};

/// Riverside is told the BaRS way.
fn told_by_bars(config: &mut Config) {
    config.referrers.get_mut(REFERRER).unwrap().notify = Notify::Bars;
}

/// Send a BaRS referral; its Signpost id once delivered to the provider.
async fn refer_by_bars(fleet: &Fleet, message: &Value, ids: &Ids) -> String {
    let response = process(&fleet.app, message, ids).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = referral_id(&response);
    fleet.settled(&id).await;
    id
}

/// ActiveLives reports `event` (with `detail`) about the referral.
async fn provider_reports(fleet: &Fleet, id: &str, event: &str, detail: Option<&str>) {
    let mut body =
        json!({"referral_ref": id, "event": event, "event_time": "2026-06-02T11:00:00Z"});
    if let Some(detail) = detail {
        body["detail"] = json!(detail);
    }
    let webhook_id = format!("{event}-{}", uuid::Uuid::new_v4());
    let response = fleet.callback("activelives", &webhook_id, &body).await;
    assert_eq!(response.status(), 200, "{event}");
}

/// The resource of the message's first entry of this type.
fn entry<'a>(bundle: &'a Value, resource_type: &str) -> &'a Value {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == resource_type)
        .unwrap_or_else(|| panic!("no {resource_type} in {bundle}"))
}

/// What every BaRS response must be: signed, valid FHIR R4, a
/// `servicerequest-response` answering `request` (its Bundle id, its source
/// endpoint) under its correlation id, with a request id of its own that is
/// the Bundle's id.
fn assert_is_response_to(received: &Received, request: &Value, ids: &Ids) {
    assert!(received.signature_valid, "signed as every message");
    assert_eq!(
        received.header("content-type"),
        Some("application/fhir+json")
    );
    let bundle = &received.body;
    let issues = signpost::validation::Validator::load(&Path::new(MANIFEST_DIR).join("schemas"))
        .unwrap()
        .check_structure(bundle);
    assert!(issues.is_empty(), "not valid FHIR R4: {issues:?}\n{bundle}");
    assert_eq!(
        received.header("x-correlation-id"),
        Some(ids.correlation.as_str()),
        "the original correlation id"
    );
    let request_id = received.header("x-request-id").expect("X-Request-Id");
    assert!(uuid::Uuid::try_parse(request_id).is_ok(), "{request_id}");
    assert_ne!(request_id, ids.request, "a request id of its own");
    assert_eq!(bundle["id"], request_id);
    assert_eq!(bundle["type"], "message");
    assert!(bundle["meta"]["versionId"].is_string());
    let header = &bundle["entry"][0]["resource"];
    assert_eq!(header["resourceType"], "MessageHeader");
    assert_eq!(
        header["eventCoding"],
        json!({"system": "https://fhir.nhs.uk/CodeSystem/message-events-bars", "code": "servicerequest-response"})
    );
    assert_eq!(header["response"]["identifier"], request["id"]);
    assert_eq!(header["response"]["code"], "ok");
    assert_eq!(
        header["destination"][0]["endpoint"],
        request["entry"][0]["resource"]["source"]["endpoint"]
    );
    assert_eq!(
        header["definition"],
        "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-response-referral"
    );
    // Every reference of the header resolves inside the message.
    let urls: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["fullUrl"])
        .collect();
    for focus in header["focus"].as_array().unwrap() {
        assert!(urls.contains(&&focus["reference"]), "{focus}");
    }
    assert!(urls.contains(&&header["sender"]["reference"]));
}

async fn a_bars_referrer_is_told_each_task_change_as_a_bars_response(backend: Backend) {
    // Arrange
    let fleet = Fleet::start_with(backend, told_by_bars).await;
    let (message, sr_url) = fresh(bars_referral());
    let ids = Ids::new();
    let id = refer_by_bars(&fleet, &message, &ids).await;

    // Act: the provider books, then completes.
    provider_reports(&fleet, &id, "booked", None).await;
    let first = fleet.referrer.wait_for(1, PATIENCE).await;
    provider_reports(&fleet, &id, "completed", None).await;
    let both = fleet.referrer.wait_for(2, PATIENCE).await;

    // Assert
    assert_eq!(both.len(), 2, "one message per Task change");
    assert_eq!(first[0].body, both[0].body);
    for received in &both {
        assert_is_response_to(received, &message, &ids);
        // The sender's own ServiceRequest, by the urn:uuid it sent.
        assert_eq!(received.body["entry"][1]["fullUrl"], sr_url.as_str());
    }
    assert_ne!(
        both[0].header("x-request-id"),
        both[1].header("x-request-id"),
        "a new request id per message"
    );
    let (accepted, completed) = (&both[0].body, &both[1].body);
    assert_eq!(entry(accepted, "Task")["status"], "accepted");
    assert_eq!(entry(accepted, "ServiceRequest")["status"], "active");
    assert_eq!(entry(accepted, "Encounter")["status"], "planned");
    assert_eq!(entry(completed, "Task")["status"], "completed");
    assert_eq!(entry(completed, "ServiceRequest")["status"], "completed");
    assert_eq!(entry(completed, "Encounter")["status"], "finished");
    // The Task sent is the Task as it is now.
    let task = fleet.task(&id).await;
    assert_eq!(entry(completed, "Task")["id"], task["id"]);
    assert_eq!(
        entry(completed, "Task")["meta"]["versionId"],
        task["meta"]["versionId"]
    );
}

async fn a_rejection_is_a_cancelled_encounter_with_a_bars_reason(backend: Backend) {
    // Arrange
    let fleet = Fleet::start_with(backend, told_by_bars).await;
    let (message, _) = fresh(bars_referral());
    let ids = Ids::new();
    let id = refer_by_bars(&fleet, &message, &ids).await;

    // Act: ActiveLives declines, for want of places.
    provider_reports(&fleet, &id, "declined", Some("no capacity until next term")).await;
    let received = fleet.referrer.wait_for(1, PATIENCE).await;

    // Assert: as the IG's REFRESP02, an Encounter cancelled with a reason
    // from rejected-reasons-bars; the referral will not go ahead.
    assert_is_response_to(&received[0], &message, &ids);
    let bundle = &received[0].body;
    assert_eq!(entry(bundle, "Task")["status"], "rejected");
    assert_eq!(entry(bundle, "ServiceRequest")["status"], "revoked");
    let encounter = entry(bundle, "Encounter");
    assert_eq!(encounter["status"], "cancelled");
    assert_eq!(
        encounter["reasonCode"][0]["coding"][0],
        json!({
            "system": "https://fhir.nhs.uk/CodeSystem/rejected-reasons-bars",
            "code": "RRNA",
            "display": "Requested resource not available within timescale"
        })
    );
    assert_eq!(
        encounter["reasonCode"][0]["text"],
        "no capacity until next term"
    );
}

async fn a_withdrawal_after_acceptance_revokes_the_referral_the_bars_way(backend: Backend) {
    // Arrange: ActiveLives took the referral on.
    let fleet = Fleet::start_with(backend, told_by_bars).await;
    let (message, _) = fresh(bars_referral());
    let ids = Ids::new();
    let id = refer_by_bars(&fleet, &message, &ids).await;
    provider_reports(&fleet, &id, "booked", None).await;
    fleet.referrer.wait_for(1, PATIENCE).await;

    // Act: the person stops coming and ActiveLives withdraws them.
    provider_reports(&fleet, &id, "withdrawn", Some("did not attend sessions")).await;
    let received = fleet.referrer.wait_for(2, PATIENCE).await;

    // Assert: an update (not the first answer) whose Encounter is cancelled
    // and whose ServiceRequest is revoked: the referral ended unfulfilled.
    // A cancellation is not a rejection, so no rejected-reasons-bars code.
    let response = &received[1];
    assert_is_response_to(response, &message, &ids);
    let bundle = &response.body;
    assert_eq!(
        entry(bundle, "MessageHeader")["reason"]["coding"][0]["code"],
        "update"
    );
    assert_eq!(entry(bundle, "Task")["status"], "cancelled");
    assert_eq!(entry(bundle, "ServiceRequest")["status"], "revoked");
    let encounter = entry(bundle, "Encounter");
    assert_eq!(encounter["status"], "cancelled");
    assert!(encounter.get("reasonCode").is_none(), "{encounter}");
    // A different request id from the first response's, the same correlation.
    assert_ne!(
        received[0].headers.get("x-request-id"),
        response.headers.get("x-request-id")
    );
}

async fn a_409_duplicate_from_the_bars_receiver_counts_as_delivered(backend: Backend) {
    // Arrange: the referrer's first answer is lost (503), then our retry is
    // answered as BaRS answers a message it has already processed.
    let fleet = Fleet::start_stepped(backend, told_by_bars).await;
    let (message, _) = fresh(bars_referral());
    let ids = Ids::new();
    let response = process(&fleet.app, &message, &ids).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = referral_id(&response);
    fleet.app.deliver_all().await;
    let duplicate = std::fs::read_to_string(
        Path::new(MANIFEST_DIR)
            .join("tests/fixtures/real/bars/oo-rec/409-REC_CONFLICT-duplicate.json"),
    )
    .unwrap();
    fleet.referrer.script(vec![
        Scripted::status(503),
        Scripted::status(409).body(duplicate),
    ]);

    // Act
    provider_reports(&fleet, &id, "booked", None).await;
    fleet.app.deliver_all().await;

    // Assert: tried twice with the same request id and bytes, then
    // delivered, not dead-lettered.
    let received = fleet.referrer.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[0].header("x-request-id"),
        received[1].header("x-request-id")
    );
    assert_eq!(received[0].raw_body, received[1].raw_body);
    let listed = json(
        fleet
            .app
            .get(&format!("/admin/deliveries?referral={id}"))
            .await,
    )
    .await;
    let notification = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "notification")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(notification["state"], "delivered", "{notification}");
    assert_eq!(notification["attempts"], 2);
    // Operators see it as it was sent.
    let shown = json(
        fleet
            .app
            .get(&format!(
                "/admin/deliveries/{}",
                notification["id"].as_str().unwrap()
            ))
            .await,
    )
    .await;
    assert_eq!(shown["payload"], received[1].body);
}

async fn a_409_that_is_not_a_duplicate_is_not_delivered(backend: Backend) {
    // Arrange
    let fleet = Fleet::start_stepped(backend, told_by_bars).await;
    let (message, _) = fresh(bars_referral());
    let response = process(&fleet.app, &message, &Ids::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let id = referral_id(&response);
    fleet.app.deliver_all().await;
    let conflict = std::fs::read_to_string(
        Path::new(MANIFEST_DIR)
            .join("tests/fixtures/real/bars/oo-rec/409-REC_CONFLICT-conflict.json"),
    )
    .unwrap();
    fleet
        .referrer
        .script(vec![Scripted::status(409).body(conflict)]);

    // Act
    provider_reports(&fleet, &id, "booked", None).await;
    fleet.app.deliver_all().await;

    // Assert
    let listed = json(
        fleet
            .app
            .get(&format!("/admin/deliveries?referral={id}"))
            .await,
    )
    .await;
    let notification = listed["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "notification")
        .unwrap_or_else(|| panic!("{listed}"));
    assert_eq!(notification["state"], "dead", "{notification}");
}

async fn a_subscription_referrer_is_told_as_before_even_of_a_bars_referral(backend: Backend) {
    // Arrange: the default, notify = "subscription".
    let fleet = Fleet::start(backend).await;
    let (message, _) = fresh(bars_referral());
    let id = refer_by_bars(&fleet, &message, &Ids::new()).await;

    // Act
    provider_reports(&fleet, &id, "booked", None).await;
    let received = fleet.referrer.wait_for(1, PATIENCE).await;

    // Assert: a Subscriptions notification, without BaRS headers.
    let bundle = &received[0].body;
    assert_eq!(bundle["type"], "history", "{bundle}");
    assert_eq!(bundle["entry"][0]["resource"]["resourceType"], "Parameters");
    assert_eq!(bundle["entry"][1]["resource"]["status"], "accepted");
    assert_eq!(received[0].header("x-correlation-id"), None);
}

async fn a_bars_referrer_is_not_sent_bars_responses_about_other_referrals(backend: Backend) {
    // Arrange: Riverside, told the BaRS way, also posts a plain
    // ServiceRequest: there is no BaRS message to answer.
    let fleet = Fleet::start_with(backend, told_by_bars).await;
    let plain = fleet.refer("activelives-exercise.json").await;
    let (message, _) = fresh(bars_referral());
    let ids = Ids::new();
    let by_bars = refer_by_bars(&fleet, &message, &ids).await;

    // Act
    provider_reports(&fleet, &plain, "booked", None).await;
    provider_reports(&fleet, &by_bars, "booked", None).await;
    let received = fleet.referrer.wait_for(1, PATIENCE).await;

    // Assert: only the BaRS referral's change is sent; the other's Task
    // changed all the same (the referrer polls it).
    assert_eq!(received.len(), 1);
    assert_is_response_to(&received[0], &message, &ids);
    assert_eq!(fleet.task(&plain).await["status"], "accepted");
    let listed = json(
        fleet
            .app
            .get(&format!("/admin/deliveries?referral={plain}"))
            .await,
    )
    .await;
    assert!(
        listed["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["kind"] != "notification"),
        "{listed}"
    );
}

on_both_backends!(
    a_bars_referrer_is_told_each_task_change_as_a_bars_response,
    a_rejection_is_a_cancelled_encounter_with_a_bars_reason,
    a_withdrawal_after_acceptance_revokes_the_referral_the_bars_way,
    a_409_duplicate_from_the_bars_receiver_counts_as_delivered,
    a_409_that_is_not_a_duplicate_is_not_delivered,
    a_subscription_referrer_is_told_as_before_even_of_a_bars_referral,
    a_bars_referrer_is_not_sent_bars_responses_about_other_referrals,
);
