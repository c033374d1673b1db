//! A referral is accepted once per business identifier per referrer, however
//! often and however concurrently it is sent.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, fixture, json, valid, with_new_identifier},
};

async fn task_count(app: &TestApp, referral_id: &str) -> u64 {
    let search = json(
        app.get(&format!("/fhir/Task?focus=ServiceRequest/{referral_id}"))
            .await,
    )
    .await;
    search["total"].as_u64().unwrap()
}

async fn a_resent_referral_returns_200_with_the_original_and_no_second_task(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (referral, value) = with_new_identifier(valid("community-connect-minimal.json"));

    let first = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_location = first.headers()["location"].clone();
    let first = json(first).await;

    let second = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(second.headers()["location"], first_location);
    assert_eq!(json(second).await, first);

    // The same referral sent as a transaction Bundle is the same referral.
    let search = app.search_identifier(value).await;
    assert_eq!(search["total"], 1);
    assert_eq!(task_count(&app, first["id"].as_str().unwrap()).await, 1);
}

async fn a_resent_transaction_bundle_is_recognised(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (bundle, value) = with_new_identifier(valid("grow-together.bundle.json"));
    let first = json(app.post_json("/fhir", &bundle).await).await;
    assert_eq!(first["entry"][0]["response"]["status"], "201 Created");
    let second = json(app.post_json("/fhir", &bundle).await).await;
    assert_eq!(second["entry"][0]["response"]["status"], "200 OK");
    assert_eq!(
        first["entry"][0]["response"]["location"],
        second["entry"][0]["response"]["location"]
    );
    let search = app.search_identifier(value).await;
    assert_eq!(search["total"], 1);
}

async fn if_none_exist_returns_the_existing_referral(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (referral, value) = with_new_identifier(valid("activelives-weight.json"));
    let created = json(app.post_json("/fhir/ServiceRequest", &referral).await).await;

    // A different body, but the criteria match the stored referral.
    let (other, _) = with_new_identifier(valid("activelives-weight.json"));
    let response = app
        .client
        .post(app.url("/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .header(
            "if-none-exist",
            format!("identifier=https://fhir.riverside-surgery.example/Id/referral|{value}"),
        )
        .body(other.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await, created);

    // Criteria that match nothing: created as usual.
    let response = app
        .client
        .post(app.url("/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .header(
            "if-none-exist",
            "identifier=https://fhir.riverside-surgery.example/Id/referral|nothing-like-it",
        )
        .body(other.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
}

async fn fifty_concurrent_identical_posts_create_exactly_one_referral(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (referral, value) = with_new_identifier(valid("activelives-exercise.json"));
    let body = referral.to_string();

    let requests = (0..50).map(|_| {
        app.client
            .post(app.url("/fhir/ServiceRequest"))
            .header("content-type", "application/fhir+json")
            .body(body.clone())
            .send()
    });
    let responses = futures_util::future::join_all(requests).await;

    let mut created = 0;
    let mut ids = std::collections::HashSet::new();
    for response in responses {
        let response = response.unwrap();
        match response.status() {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            other => panic!("unexpected {other}"),
        }
        let resource: Value = json(response).await;
        ids.insert(resource["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(created, 1, "exactly one 201");
    assert_eq!(ids.len(), 1, "every answer names the same referral");
    let search = app.search_identifier(value).await;
    assert_eq!(search["total"], 1);
    assert_eq!(task_count(&app, ids.iter().next().unwrap()).await, 1);
}

/// A used business identifier on a referral no provider would take is
/// answered as what it is, a reused identifier (`409`), not with the
/// routing refusal (`422`): resending under a new identifier would not help.
async fn a_used_identifier_on_an_unroutable_referral_is_a_conflict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (referral, value) = with_new_identifier(valid("community-connect-minimal.json"));
    let first = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = json(first).await;

    let mut unroutable = fixture("tests/fixtures/referrals/refused/no-provider-matches.json");
    let refused = app.post_json("/fhir/ServiceRequest", &unroutable).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    unroutable["identifier"] = referral["identifier"].clone();
    let resent = app.post_json("/fhir/ServiceRequest", &unroutable).await;
    assert_eq!(resent.status(), StatusCode::CONFLICT);
    let outcome = json(resent).await;
    let text = outcome["issue"][0]["diagnostics"].as_str().unwrap();
    assert!(text.contains(first["id"].as_str().unwrap()), "{text}");
    assert_eq!(app.search_identifier(value).await["total"], 1);
}

on_both_backends!(
    a_used_identifier_on_an_unroutable_referral_is_a_conflict,
    a_resent_referral_returns_200_with_the_original_and_no_second_task,
    a_resent_transaction_bundle_is_recognised,
    if_none_exist_returns_the_existing_referral,
    fifty_concurrent_identical_posts_create_exactly_one_referral,
);
