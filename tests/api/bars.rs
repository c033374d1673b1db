//! NHS BaRS: Signpost as a BaRS receiver (`POST /fhir/$process-message`).
//! The decision-table matrix and the conformance kit over the official
//! examples are in `bars_conformance.rs`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use signpost::security::tokens::Role;

use crate::{
    on_both_backends,
    support::{
        fleet::Fleet,
        helpers::{Backend, TestApp, TestDb, client_with, fixture, issue_token, json},
    },
};

/// Signpost's own BaRS message: the `activelives-exercise.json` referral
/// sent as a BaRS social-prescribing referral.
pub fn bars_referral() -> Value {
    fixture("tests/fixtures/bars/social-prescribing-referral.json")
}

/// The message with a new Bundle id and a new ServiceRequest `fullUrl`
/// (which identifies it): a new referral.
pub fn fresh(mut message: Value) -> (Value, String) {
    let sr_url = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let old = message["entry"][1]["fullUrl"].as_str().unwrap().to_owned();
    message["id"] = json!(uuid::Uuid::new_v4().to_string());
    let text = message.to_string().replace(&old, &sr_url);
    (serde_json::from_str(&text).unwrap(), sr_url)
}

/// BaRS request headers.
pub struct Ids {
    pub request: String,
    pub correlation: String,
}

impl Ids {
    pub fn new() -> Ids {
        Ids {
            request: uuid::Uuid::new_v4().to_string(),
            correlation: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// POST a message to `$process-message` with these ids and extra headers.
pub async fn process_with(
    app: &TestApp,
    message: &Value,
    ids: &Ids,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url("/fhir/$process-message"))
        .header("content-type", "application/fhir+json")
        .header("x-request-id", &ids.request)
        .header("x-correlation-id", &ids.correlation);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request
        .body(message.to_string())
        .send()
        .await
        .expect("request sent")
}

pub async fn process(app: &TestApp, message: &Value, ids: &Ids) -> reqwest::Response {
    process_with(app, message, ids, &[]).await
}

/// The `(status, issue code, REC code)` of a BaRS answer, after checking
/// that it has the shape of the official receiver OperationOutcomes.
pub async fn rec_answer(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let outcome = json(response).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    let issue = &outcome["issue"][0];
    assert_eq!(issue["severity"], "error", "{outcome}");
    let coding = &issue["details"]["coding"][0];
    assert_eq!(
        coding["system"], "https://fhir.nhs.uk/CodeSystem/http-error-codes",
        "{outcome}"
    );
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .starts_with("X9S1P was unable to process the request: "),
        "{outcome}"
    );
    (
        status,
        issue["code"].as_str().unwrap().to_owned(),
        coding["code"].as_str().unwrap().to_owned(),
    )
}

/// Signpost's id of a referral from the `Location` of a BaRS success.
pub fn referral_id(response: &reqwest::Response) -> String {
    let location = response.headers()["location"].to_str().unwrap();
    location
        .split("ServiceRequest/")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

async fn a_bars_referral_is_accepted_with_its_reference_and_the_ids_echoed(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let (message, sr_url) = fresh(bars_referral());
    let ids = Ids::new();

    // Act
    let response = process(&app, &message, &ids).await;

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["x-request-id"], ids.request.as_str());
    assert_eq!(
        response.headers()["x-correlation-id"],
        ids.correlation.as_str()
    );
    let id = referral_id(&response);
    let outcome = json(response).await;
    let reference = outcome["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reference.starts_with("SP-"), "{outcome}");
    assert!(
        outcome["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains(&reference)
    );
    // Stored as every referral is: one ServiceRequest with what it
    // references contained, found by its BaRS identity, with a Task.
    let stored = json(app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert_eq!(
        stored["identifier"],
        json!([{ "system": "urn:ietf:rfc:3986", "value": sr_url }])
    );
    let contained: Vec<&str> = stored["contained"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["resourceType"].as_str().unwrap())
        .collect();
    for part in [
        "Patient",
        "PractitionerRole",
        "Practitioner",
        "Organization",
        "Encounter",
        "CarePlan",
    ] {
        assert!(contained.contains(&part), "{part} in {contained:?}");
    }
    assert!(
        !contained.contains(&"MessageHeader"),
        "the envelope is not part of the referral"
    );
    let tasks = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
            .await,
    )
    .await;
    assert_eq!(tasks["entry"][0]["resource"]["status"], "requested");
}

async fn a_retried_request_id_is_a_duplicate_even_after_a_restart(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let (message, _) = fresh(bars_referral());
    let ids = Ids::new();
    let first = process(&app, &message, &ids).await;
    assert_eq!(first.status(), StatusCode::OK);
    let id = referral_id(&first);
    // The record is in the database, not in this process.
    let app = TestApp::spawn_on(app.stop().await, |_| {}).await;

    // Act
    let again = process(&app, &message, &ids).await;

    // Assert
    assert_eq!(again.headers()["x-request-id"], ids.request.as_str());
    assert_eq!(
        rec_answer(again).await,
        (409, "duplicate".into(), "REC_CONFLICT".into())
    );
    let tasks = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
            .await,
    )
    .await;
    assert_eq!(tasks["total"], 1, "no second referral: {tasks}");
}

async fn concurrent_retries_store_one_referral_and_answer_one_success(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let (message, sr_url) = fresh(bars_referral());
    let ids = Ids::new();

    // Act: the same request five times at once.
    let answers =
        futures_util::future::join_all((0..5).map(|_| process(&app, &message, &ids))).await;

    // Assert
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        4,
        "{statuses:?}"
    );
    let found = app
        .search_identifier(format!("urn:ietf:rfc:3986|{sr_url}"))
        .await;
    assert_eq!(found["total"], 1, "{found}");
}

async fn a_bars_referral_reaches_the_provider_as_the_same_service_request_would(backend: Backend) {
    // Arrange: the same referral, once as a ServiceRequest and once as a
    // BaRS message.
    let fleet = Fleet::start(backend).await;
    let bare = crate::support::helpers::valid("activelives-exercise.json");
    let (message, sr_url) = fresh(bars_referral());

    // Act
    let bare_id = fleet.refer_body(&bare).await;
    let response = process(&fleet.app, &message, &Ids::new()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let bars_id = referral_id(&response);
    assert_ne!(bars_id, bare_id, "two referrals");
    fleet.settled(&bare_id).await;
    fleet.settled(&bars_id).await;

    // Assert: the provider got the same payload, but for Signpost's id and
    // the referral's identifier.
    let received = fleet.provider("activelives").received();
    let payload_of = |id: &str| {
        received
            .iter()
            .map(|r| String::from_utf8_lossy(&r.raw_body).into_owned())
            .find(|body| body.contains(id))
            .unwrap_or_else(|| panic!("no delivery of {id}"))
    };
    let bare_identifier = bare["identifier"][0]["value"].as_str().unwrap();
    let normalised = |text: String, id: &str, identifier: &str| -> Value {
        serde_json::from_str(
            &text
                .replace(id, "REFERRAL-ID")
                .replace(identifier, "IDENTIFIER")
                .replace(
                    "https://fhir.riverside-surgery.example/Id/referral",
                    "SYSTEM",
                )
                .replace("urn:ietf:rfc:3986", "SYSTEM"),
        )
        .unwrap()
    };
    assert_eq!(
        normalised(payload_of(&bars_id), &bars_id, &sr_url),
        normalised(payload_of(&bare_id), &bare_id, bare_identifier),
    );
}

async fn bars_is_answered_not_implemented_when_not_configured(backend: Backend) {
    // Arrange
    let db = crate::support::helpers::TestDb::fresh(backend).await;
    let app = TestApp::spawn_on(db, |config| config.bars = None).await;

    // Act
    let response = process(&app, &bars_referral(), &Ids::new()).await;

    // Assert
    assert_eq!(response.status(), 501);
    let outcome = json(response).await;
    assert_eq!(
        outcome["issue"][0]["details"]["coding"][0]["code"],
        "REC_NOT_IMPLEMENTED"
    );
}

async fn a_caller_without_credentials_gets_a_receiver_error(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let response = app
        .anonymous
        .post(app.url("/fhir/$process-message"))
        .header("content-type", "application/fhir+json")
        .body(bars_referral().to_string())
        .send()
        .await
        .unwrap();

    // Assert
    assert_eq!(
        rec_answer(response).await,
        (401, "login".into(), "REC_UNAUTHORIZED".into())
    );
}

async fn the_message_definitions_are_listed(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;

    // Act
    let found = json(
        app.anonymous
            .get(app.url("/fhir/MessageDefinition"))
            .send()
            .await
            .unwrap(),
    )
    .await;

    // Assert
    let urls: Vec<&str> = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-referral",
            "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-cancelled",
            "https://signpost.example/MessageDefinition/bars-message-servicerequest-request-social-prescribing",
        ]
    );
    // The CapabilityStatement declares the same, as messaging.
    let statement = json(
        app.anonymous
            .get(app.url("/fhir/metadata"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let messaging = &statement["messaging"][0];
    assert_eq!(
        messaging["endpoint"][0]["address"],
        format!("{}/fhir/$process-message", app.address)
    );
    let supported = |mode: &str| -> Vec<&str> {
        messaging["supportedMessage"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["mode"] == mode)
            .map(|m| m["definition"].as_str().unwrap())
            .collect()
    };
    assert_eq!(supported("receiver"), urls);
    // And the responses it sends to a referrer told the BaRS way.
    assert_eq!(
        supported("sender"),
        ["https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-response-referral"]
    );
    // Both pass the official R4 schema.
    let validator = signpost::validation::Validator::load(
        &std::path::Path::new(crate::support::helpers::MANIFEST_DIR).join("schemas"),
    )
    .unwrap();
    for resource in found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .chain([&statement])
    {
        let issues = validator.check_structure(resource);
        assert!(
            issues.is_empty(),
            "{}: {issues:?}",
            resource["resourceType"]
        );
    }
    let proposal = &found["entry"][2]["resource"];
    assert_eq!(proposal["status"], "draft");
    assert_eq!(
        proposal["useContext"][0]["valueCodeableConcept"]["coding"][0]["code"],
        "a5t4"
    );
}

/// The cancellation of the referral `message` carries: the same
/// ServiceRequest (same `fullUrl`), `update` and the new status, in a new
/// Bundle.
pub fn cancellation(message: &Value, status: &str) -> Value {
    let mut cancel = message.clone();
    cancel["id"] = json!(uuid::Uuid::new_v4().to_string());
    let header = &mut cancel["entry"][0]["resource"];
    header["reason"]["coding"][0]["code"] = json!("update");
    header["definition"] = json!(
        "https://fhir.nhs.uk/MessageDefinition/bars-message-servicerequest-request-cancelled"
    );
    cancel["entry"][1]["resource"]["status"] = json!(status);
    cancel
}

async fn a_bars_cancellation_withdraws_the_referral_only_while_it_is_active(backend: Backend) {
    // Arrange: ActiveLives' mapping with a cancellation template.
    let mappings = crate::status::mappings_with_cancel();
    let dir = mappings.path().to_owned();
    let fleet = Fleet::start_with(backend, move |config| config.mappings_dir = dir).await;
    let (message, _) = fresh(bars_referral());
    let accepted = process(&fleet.app, &message, &Ids::new()).await;
    assert_eq!(accepted.status(), StatusCode::OK);
    let id = referral_id(&accepted);
    fleet.settled(&id).await;

    // Act
    let ids = Ids::new();
    let response = process(&fleet.app, &cancellation(&message, "revoked"), &ids).await;

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-correlation-id"],
        ids.correlation.as_str()
    );
    assert_eq!(referral_id(&response), id);
    let stored = json(fleet.app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert_eq!(stored["status"], "revoked");
    assert_eq!(stored["meta"]["versionId"], "2");
    let task = fleet.task(&id).await;
    assert_eq!(task["status"], "cancelled");
    // The provider is told through its mapping, after the referral.
    let deadline = std::time::Instant::now() + crate::support::fleet::PATIENCE;
    let delivered = loop {
        let delivered = fleet.provider("activelives").delivered();
        if delivered.len() >= 2 || std::time::Instant::now() > deadline {
            break delivered;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(delivered.len(), 2);
    assert_eq!(
        delivered[1].body,
        json!({"referral_ref": id, "cancelled": true, "reason": "revoked"})
    );
    // The referral is no longer active: a second cancellation (a new
    // request) is a conflict, not a success; entered-in-error too.
    for (status, reason) in [("revoked", None), ("entered-in-error", Some("delete"))] {
        let mut again = cancellation(&message, status);
        if let Some(reason) = reason {
            again["entry"][0]["resource"]["reason"]["coding"][0]["code"] = json!(reason);
        }
        assert_eq!(
            rec_answer(process(&fleet.app, &again, &Ids::new()).await).await,
            (409, "conflict".into(), "REC_CONFLICT".into()),
            "{status}"
        );
    }
}

async fn a_referral_can_be_marked_entered_in_error_the_bars_way(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let (message, _) = fresh(bars_referral());
    let accepted = process(&app, &message, &Ids::new()).await;
    let id = referral_id(&accepted);

    // Act: SERVREQ02's spelling (quirk Q4): reason delete, no definition.
    let mut cancel = cancellation(&message, "entered-in-error");
    cancel["entry"][0]["resource"]["reason"]["coding"][0]["code"] = json!("delete");
    cancel["entry"][0]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("definition");
    let response = process(&app, &cancel, &Ids::new()).await;

    // Assert
    assert_eq!(response.status(), StatusCode::OK);
    let tasks = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
            .await,
    )
    .await;
    assert_eq!(tasks["entry"][0]["resource"]["status"], "entered-in-error");
}

async fn another_referrer_cannot_cancel_by_naming_the_same_service_request(backend: Backend) {
    // Arrange: the referral exists; a message naming it comes from a
    // sender the caller does not own.
    let app = TestApp::spawn(backend).await;
    let (message, _) = fresh(bars_referral());
    let id = referral_id(&process(&app, &message, &Ids::new()).await);
    let mut cancel = cancellation(&message, "revoked");
    cancel["entry"][5]["resource"]["identifier"][0]["value"] = json!("Z99999");

    // Act
    let answer = rec_answer(process(&app, &cancel, &Ids::new()).await).await;

    // Assert
    assert_eq!(answer, (403, "forbidden".into(), "REC_FORBIDDEN".into()));
    let tasks = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
            .await,
    )
    .await;
    assert_eq!(tasks["entry"][0]["resource"]["status"], "requested");
}

async fn another_referrers_message_with_the_same_request_id_is_processed(backend: Backend) {
    // Arrange: Riverside's message is processed; Hilltop sends its own
    // referral under the same request id (a request id is its sender's).
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, crate::security::with_hilltop).await;
    let (message, _) = fresh(bars_referral());
    let ids = Ids::new();
    let first = process(&app, &message, &ids).await;
    assert_eq!(first.status(), StatusCode::OK);
    let riversides = referral_id(&first);
    let (mut hilltops, _) = fresh(bars_referral());
    hilltops["entry"][5]["resource"]["identifier"][0]["value"] = json!("B82002");
    let hilltop =
        client_with(&issue_token(&app.db.url, Role::Referrer("hilltop".parse().unwrap())).await);
    let send = || {
        hilltop
            .post(app.url("/fhir/$process-message"))
            .header("content-type", "application/fhir+json")
            .header("x-request-id", &ids.request)
            .header("x-correlation-id", &ids.correlation)
            .body(hilltops.to_string())
            .send()
    };

    // Act
    let processed = send().await.unwrap();
    let retried = send().await.unwrap();

    // Assert: processed as a new referral of Hilltop's; its own retry is
    // its duplicate.
    assert_eq!(processed.status(), StatusCode::OK);
    let hilltops_id = referral_id(&processed);
    assert_ne!(hilltops_id, riversides);
    assert_eq!(
        rec_answer(retried).await,
        (409, "duplicate".into(), "REC_CONFLICT".into())
    );
    let tasks = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{riversides}"))
            .await,
    )
    .await;
    assert_eq!(tasks["entry"][0]["resource"]["status"], "requested");
}

async fn concurrent_cancellations_with_one_request_id_answer_one_success(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let (message, _) = fresh(bars_referral());
    let id = referral_id(&process(&app, &message, &Ids::new()).await);
    let cancel = cancellation(&message, "revoked");
    let ids = Ids::new();

    // Act: the sender's cancellation, retried at once on its own timeout.
    let answers =
        futures_util::future::join_all((0..4).map(|_| process(&app, &cancel, &ids))).await;

    // Assert: one success; every other answer is the duplicate (which the
    // sender takes as success), never a conflict.
    let mut successes = 0;
    for answer in answers {
        if answer.status() == StatusCode::OK {
            assert_eq!(referral_id(&answer), id);
            successes += 1;
        } else {
            assert_eq!(
                rec_answer(answer).await,
                (409, "duplicate".into(), "REC_CONFLICT".into())
            );
        }
    }
    assert_eq!(successes, 1);
    let stored = json(app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert_eq!(stored["status"], "revoked");
    assert_eq!(stored["meta"]["versionId"], "2", "cancelled once: {stored}");
}

async fn a_retried_cancellation_is_a_duplicate(backend: Backend) {
    // Arrange: the cancellation was processed.
    let app = TestApp::spawn(backend).await;
    let (message, _) = fresh(bars_referral());
    let id = referral_id(&process(&app, &message, &Ids::new()).await);
    let cancel = cancellation(&message, "revoked");
    let ids = Ids::new();
    assert_eq!(process(&app, &cancel, &ids).await.status(), StatusCode::OK);

    // Act
    let again = process(&app, &cancel, &ids).await;

    // Assert
    assert_eq!(
        rec_answer(again).await,
        (409, "duplicate".into(), "REC_CONFLICT".into())
    );
    let stored = json(app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert_eq!(stored["meta"]["versionId"], "2", "{stored}");
}

async fn a_finished_referral_cannot_be_cancelled(backend: Backend) {
    // Arrange: the provider has completed the referral.
    let fleet = Fleet::start(backend).await;
    let (message, _) = fresh(bars_referral());
    let id = referral_id(&process(&fleet.app, &message, &Ids::new()).await);
    fleet.settled(&id).await;
    for (n, event) in ["booked", "completed"].iter().enumerate() {
        let body =
            json!({"referral_ref": id, "event": event, "event_time": "2026-06-02T11:00:00Z"});
        let response = fleet
            .callback("activelives", &format!("done-{n}"), &body)
            .await;
        assert_eq!(response.status(), 200, "{event}");
    }

    // Act
    let answer =
        rec_answer(process(&fleet.app, &cancellation(&message, "revoked"), &Ids::new()).await)
            .await;

    // Assert
    assert_eq!(answer, (409, "conflict".into(), "REC_CONFLICT".into()));
    assert_eq!(fleet.task(&id).await["status"], "completed");
}

on_both_backends!(
    a_finished_referral_cannot_be_cancelled,
    a_bars_cancellation_withdraws_the_referral_only_while_it_is_active,
    a_referral_can_be_marked_entered_in_error_the_bars_way,
    another_referrer_cannot_cancel_by_naming_the_same_service_request,
    a_bars_referral_is_accepted_with_its_reference_and_the_ids_echoed,
    a_retried_request_id_is_a_duplicate_even_after_a_restart,
    another_referrers_message_with_the_same_request_id_is_processed,
    concurrent_cancellations_with_one_request_id_answer_one_success,
    a_retried_cancellation_is_a_duplicate,
    concurrent_retries_store_one_referral_and_answer_one_success,
    a_bars_referral_reaches_the_provider_as_the_same_service_request_would,
    bars_is_answered_not_implemented_when_not_configured,
    a_caller_without_credentials_gets_a_receiver_error,
    the_message_definitions_are_listed,
);
