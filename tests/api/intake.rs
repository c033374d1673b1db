//! Accepting referrals and reading them back.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, json, valid, with_new_identifier},
};

const VALID: [&str; 9] = [
    "activelives-exercise.json",
    "activelives-falls.bundle.json",
    "activelives-fall-second-coding.json",
    "activelives-weight.json",
    "community-connect-loneliness.json",
    "community-connect-debt-housing.bundle.json",
    "community-connect-minimal.json",
    "grow-together.bundle.json",
    "grow-together-performer-ref.json",
];

async fn a_bare_referral_is_accepted_stored_and_read_back(backend: Backend) {
    // Arrange
    let app = TestApp::spawn(backend).await;
    let referral = valid("activelives-exercise.json");

    // Act
    let response = app.post_json("/fhir/ServiceRequest", &referral).await;

    // Assert
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        response.headers()["content-type"],
        "application/fhir+json; charset=utf-8"
    );
    assert_eq!(response.headers()["etag"], "W/\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let created = json(response).await;
    let id = created["id"].as_str().expect("server id").to_owned();
    assert_ne!(
        Some(id.as_str()),
        referral["id"].as_str(),
        "the server assigns the id"
    );
    assert_eq!(
        location,
        format!("{}/fhir/ServiceRequest/{id}/_history/1", app.address)
    );
    assert_eq!(created["meta"]["versionId"], "1");
    assert!(
        created["meta"]["lastUpdated"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    // Everything the practice sent is kept, the participants included.
    assert_eq!(created["identifier"], referral["identifier"]);
    assert_eq!(created["contained"], referral["contained"]);
    assert_eq!(created["subject"], referral["subject"]);

    let read = json(app.get(&format!("/fhir/ServiceRequest/{id}")).await).await;
    assert_eq!(read, created);
    let vread = app.get(&location.replace(&app.address, "")).await;
    assert_eq!(vread.status(), StatusCode::OK);
    assert_eq!(json(vread).await, created);
    let no_such_version = app
        .get(&format!("/fhir/ServiceRequest/{id}/_history/2"))
        .await;
    assert_eq!(no_such_version.status(), StatusCode::NOT_FOUND);
}

async fn every_accepted_referral_gets_a_requested_task(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let created = json(
        app.post_json(
            "/fhir/ServiceRequest",
            &valid("community-connect-loneliness.json"),
        )
        .await,
    )
    .await;
    let id = created["id"].as_str().unwrap();

    let search = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
            .await,
    )
    .await;
    assert_eq!(search["resourceType"], "Bundle");
    assert_eq!(search["type"], "searchset");
    assert_eq!(search["total"], 1);
    let task = &search["entry"][0]["resource"];
    assert_eq!(task["resourceType"], "Task");
    assert_eq!(task["status"], "requested");
    assert_eq!(task["intent"], "order");
    assert_eq!(task["code"]["coding"][0]["code"], "fulfill");
    assert_eq!(task["focus"]["reference"], format!("ServiceRequest/{id}"));
    assert_eq!(
        task["for"]["identifier"]["system"],
        "https://fhir.nhs.uk/Id/nhs-number"
    );
    let patient = created["contained"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    let nhs_number = patient["identifier"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number")
        .unwrap()["value"]
        .clone();
    assert_eq!(task["for"]["identifier"]["value"], nhs_number);
    assert_eq!(task["owner"]["identifier"]["value"], "community-connect");
    assert_eq!(task["owner"]["display"], "Community Connect");
    assert_eq!(
        search["entry"][0]["fullUrl"],
        format!("{}/fhir/Task/{}", app.address, task["id"].as_str().unwrap())
    );

    let read = json(
        app.get(&format!("/fhir/Task/{}", task["id"].as_str().unwrap()))
            .await,
    )
    .await;
    assert_eq!(&read, task);
    // A bare id works as focus too.
    let by_id = json(app.get(&format!("/fhir/Task?focus={id}")).await).await;
    assert_eq!(by_id["total"], 1);
}

async fn a_transaction_bundle_is_stored_as_one_service_request_with_contained_participants(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    for name in [
        "activelives-falls.bundle.json",
        "community-connect-debt-housing.bundle.json",
    ] {
        let bundle = valid(name);
        let response = app.post_json("/fhir", &bundle).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let reply = json(response).await;
        assert_eq!(reply["type"], "transaction-response");
        let entries = reply["entry"].as_array().unwrap();
        assert_eq!(entries.len(), bundle["entry"].as_array().unwrap().len());
        assert_eq!(entries[0]["response"]["status"], "201 Created");
        assert_eq!(entries[0]["response"]["location"], location);
        assert_eq!(entries[1]["response"]["status"], "200 OK");

        let stored = json(app.get(&location.replace(&app.address, "")).await).await;
        let contained = stored["contained"].as_array().unwrap();
        let types: Vec<&str> = contained
            .iter()
            .map(|r| r["resourceType"].as_str().unwrap())
            .collect();
        for wanted in [
            "Patient",
            "PractitionerRole",
            "Practitioner",
            "Organization",
        ] {
            assert!(types.contains(&wanted), "{name}: {types:?}");
        }
        // Every reference now points inside the resource.
        let subject = stored["subject"]["reference"].as_str().unwrap();
        let patient_id = subject.strip_prefix('#').expect("subject is contained");
        assert!(
            contained
                .iter()
                .any(|r| r["id"] == patient_id && r["resourceType"] == "Patient")
        );
        let role = contained
            .iter()
            .find(|r| r["resourceType"] == "PractitionerRole")
            .unwrap();
        assert!(
            role["practitioner"]["reference"]
                .as_str()
                .unwrap()
                .starts_with('#')
        );
        assert!(
            role["organization"]["reference"]
                .as_str()
                .unwrap()
                .starts_with('#')
        );
        let text = stored.to_string();
        assert!(
            !text.contains("urn:uuid:"),
            "{name}: a bundle reference survived"
        );
        // The stored form is itself a valid referral: posting it again as a
        // bare ServiceRequest under a new identifier is accepted.
        let (mut again, _) = with_new_identifier(stored.clone());
        again.as_object_mut().unwrap().remove("meta");
        let repost = app.post_json("/fhir/ServiceRequest", &again).await;
        assert_eq!(
            repost.status(),
            StatusCode::CREATED,
            "{name}: canonical form re-validates"
        );
    }
}

async fn every_valid_fixture_for_the_three_providers_is_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for name in VALID {
        let referral = valid(name);
        let path = if referral["resourceType"] == "Bundle" {
            "/fhir"
        } else {
            "/fhir/ServiceRequest"
        };
        let response = app.post_json(path, &referral).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(
            status == StatusCode::CREATED || (path == "/fhir" && status == StatusCode::OK),
            "{name}: {status} {body}"
        );
    }
}

async fn a_referral_can_be_found_by_its_business_identifier(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (referral, value) = with_new_identifier(valid("activelives-weight.json"));
    let created = json(app.post_json("/fhir/ServiceRequest", &referral).await).await;
    let system = "https://fhir.riverside-surgery.example/Id/referral";

    for query in [
        format!("{system}|{value}"),
        value.clone(),
        format!("|{value}"),
    ] {
        let encoded: String = url::form_urlencoded::byte_serialize(query.as_bytes()).collect();
        let found = json(
            app.get(&format!("/fhir/ServiceRequest?identifier={encoded}"))
                .await,
        )
        .await;
        assert_eq!(found["type"], "searchset", "{query}");
        assert_eq!(found["total"], 1, "{query}");
        assert_eq!(found["entry"][0]["resource"], created, "{query}");
    }
    let other_system = json(
        app.get(&format!(
            "/fhir/ServiceRequest?identifier=https://elsewhere.example|{value}"
        ))
        .await,
    )
    .await;
    assert_eq!(other_system["total"], 0);
    assert_eq!(other_system["entry"], Value::Array(vec![]));
}

async fn the_capability_statement_lists_exactly_what_is_supported(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.get("/fhir/metadata").await;
    assert_eq!(response.status(), StatusCode::OK);
    let statement = json(response).await;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    let resources = statement["rest"][0]["resource"].as_array().unwrap();
    let types: Vec<&str> = resources
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "ServiceRequest",
            "Task",
            "Communication",
            "Flag",
            "MessageDefinition",
            "Subscription"
        ]
    );
    let task_interactions: Vec<&str> = resources[1]["interaction"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["code"].as_str().unwrap())
        .collect();
    // (patch: an escalation's child Task, by its referrer.)
    assert_eq!(task_interactions, ["read", "patch", "search-type"]);
    let operations: Vec<&str> = resources[5]["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(operations, ["status", "events"]);
    // What it does not claim, it does not do.
    let create_task = app
        .post_json("/fhir/Task", &serde_json::json!({"resourceType": "Task"}))
        .await;
    assert_eq!(create_task.status(), StatusCode::METHOD_NOT_ALLOWED);
}

async fn request_and_correlation_ids_are_echoed_or_generated_on_every_response(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let echoed = app
        .client
        .post(app.url("/fhir/ServiceRequest"))
        .header("content-type", "text/plain")
        .header("x-request-id", "req-123")
        .header("x-correlation-id", "corr-456")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(echoed.headers()["x-request-id"], "req-123");
    assert_eq!(echoed.headers()["x-correlation-id"], "corr-456");

    for path in ["/fhir/metadata", "/fhir/ServiceRequest/nope", "/nowhere"] {
        let generated = app.get(path).await;
        let request_id = generated.headers()["x-request-id"].to_str().unwrap();
        let correlation_id = generated.headers()["x-correlation-id"].to_str().unwrap();
        assert_eq!(request_id.len(), 36, "{path}");
        assert_eq!(correlation_id.len(), 36, "{path}");
        assert_ne!(request_id, correlation_id);
    }
    // An id that could forge log lines is replaced.
    let forged = app
        .client
        .get(app.url("/fhir/metadata"))
        .header("x-request-id", "a b\tc")
        .send()
        .await
        .unwrap();
    assert_ne!(forged.headers()["x-request-id"], "a b\tc");
}

on_both_backends!(
    a_bare_referral_is_accepted_stored_and_read_back,
    every_accepted_referral_gets_a_requested_task,
    a_transaction_bundle_is_stored_as_one_service_request_with_contained_participants,
    every_valid_fixture_for_the_three_providers_is_accepted,
    a_referral_can_be_found_by_its_business_identifier,
    the_capability_statement_lists_exactly_what_is_supported,
    request_and_correlation_ids_are_echoed_or_generated_on_every_response,
);
