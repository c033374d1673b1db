//! Validation in layers, over HTTP: the official FHIR R4 schema (400), the
//! referral profile (422), every problem reported at once and located by
//! FHIRPath.

use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, expressions, fixture, json, real, valid},
};

#[derive(Deserialize)]
struct Case {
    file: String,
    status: u16,
    expressions: Vec<String>,
    why: String,
}

async fn every_invalid_fixture_is_refused_with_its_problems_located(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let cases: Vec<Case> =
        serde_json::from_value(fixture("tests/fixtures/referrals/invalid/cases.json")).unwrap();
    assert!(cases.len() >= 20);
    for case in cases {
        let body = fixture(&format!("tests/fixtures/referrals/invalid/{}", case.file));
        let path = if body["resourceType"] == "Bundle" {
            "/fhir"
        } else {
            "/fhir/ServiceRequest"
        };
        let response = app.post_json(path, &body).await;
        let status = response.status().as_u16();
        let outcome = json(response).await;
        assert_eq!(
            status, case.status,
            "{} ({}): {outcome}",
            case.file, case.why
        );
        let found = expressions(&outcome);
        for wanted in &case.expressions {
            assert!(
                found.contains(wanted),
                "{}: {wanted} not in {found:?}",
                case.file
            );
        }
        for issue in outcome["issue"].as_array().unwrap() {
            assert_eq!(issue["severity"], "error", "{}", case.file);
            assert!(
                issue["code"].is_string() && issue["diagnostics"].is_string(),
                "{}",
                case.file
            );
        }
        // Nothing was stored: the business identifier is unknown.
        if let Some(value) = body["identifier"][0]["value"].as_str() {
            let search = app.search_identifier(value).await;
            assert_eq!(search["total"], 0, "{} was stored", case.file);
        }
    }
}

async fn several_problems_are_reported_in_one_outcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let body = fixture("tests/fixtures/referrals/invalid/several-problems.json");
    let response = app.post_json("/fhir/ServiceRequest", &body).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let outcome = json(response).await;
    assert!(outcome["issue"].as_array().unwrap().len() >= 4, "{outcome}");
}

async fn the_bars_read_example_fails_the_structural_layer_at_based_on_and_patient_instruction(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    let bars = real("bars/api-1.4.0-servicerequest-read-success.json");
    let response = app.post_json("/fhir/ServiceRequest", &bars).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let outcome = json(response).await;
    let found = expressions(&outcome);
    assert!(
        found.contains(&"ServiceRequest.basedOn".to_owned()),
        "{found:?}"
    );
    assert!(
        found.contains(&"ServiceRequest.PatientInstruction".to_owned()),
        "{found:?}"
    );
    let text = outcome.to_string();
    assert!(
        text.contains("unknown element 'PatientInstruction'"),
        "{text}"
    );
}

async fn official_hl7_service_requests_pass_the_structure_and_meet_the_profile_layer(
    backend: Backend,
) {
    // They are valid FHIR but not social-prescribing referrals: 422, never 400.
    let app = TestApp::spawn(backend).await;
    for name in [
        "servicerequest-example.json",
        "servicerequest-example2.json",
        "servicerequest-example3.json",
        "servicerequest-example-pt.json",
        "servicerequest-example-subrequest.json",
    ] {
        let resource = real(&format!("hl7-r4/{name}"));
        let response = app.post_json("/fhir/ServiceRequest", &resource).await;
        let status = response.status();
        let outcome = json(response).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {outcome}"
        );
    }
}

async fn the_wrong_resource_type_is_refused_with_a_clear_diagnostic(backend: Backend) {
    let app = TestApp::spawn(backend).await;

    let patient = real("hl7-r4/patient-example.json");
    let response = app.post_json("/fhir/ServiceRequest", &patient).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let outcome = json(response).await;
    // The type sent is not quoted (issue 14, finding 8).
    assert!(
        outcome.to_string().contains("not another resource type"),
        "{outcome}"
    );

    let response = app.post_json("/fhir", &patient).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let bundle = valid("activelives-falls.bundle.json");
    let response = app.post_json("/fhir/ServiceRequest", &bundle).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        json(response)
            .await
            .to_string()
            .contains("transaction Bundle")
    );

    let mut searchset = bundle.clone();
    searchset["type"] = json!("searchset");
    for entry in searchset["entry"].as_array_mut().unwrap() {
        entry.as_object_mut().unwrap().remove("request");
    }
    let response = app.post_json("/fhir", &searchset).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(expressions(&json(response).await), ["Bundle.type"]);

    let mut two = bundle.clone();
    let first = two["entry"][0].clone();
    two["entry"].as_array_mut().unwrap().push(first);
    let response = app.post_json("/fhir", &two).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        json(response)
            .await
            .to_string()
            .contains("several ServiceRequests")
    );
}

async fn a_referral_from_an_unregistered_organisation_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut referral = valid("activelives-exercise.json");
    let organization = referral["contained"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["resourceType"] == "Organization")
        .unwrap();
    organization["identifier"] = json!([{
        "system": "https://fhir.nhs.uk/Id/ods-organization-code",
        "value": "Z99999"
    }]);
    let response = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let outcome = json(response).await;
    assert_eq!(
        expressions(&outcome),
        ["ServiceRequest.contained[3].identifier"]
    );
    // The code is named by its place, never quoted (issue 14, finding 8).
    assert!(outcome.to_string().contains("ODS code"), "{outcome}");
    assert!(!outcome.to_string().contains("Z99999"), "{outcome}");
}

on_both_backends!(
    every_invalid_fixture_is_refused_with_its_problems_located,
    several_problems_are_reported_in_one_outcome,
    the_bars_read_example_fails_the_structural_layer_at_based_on_and_patient_instruction,
    official_hl7_service_requests_pass_the_structure_and_meet_the_profile_layer,
    the_wrong_resource_type_is_refused_with_a_clear_diagnostic,
    a_referral_from_an_unregistered_organisation_is_refused,
);
