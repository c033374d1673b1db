//! Client mistakes get 4xx OperationOutcomes, never a 500 or a panic;
//! storage failures get 503.

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    on_both_backends,
    support::helpers::{Backend, TestApp, json, valid},
};

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

async fn assert_outcome(response: reqwest::Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/fhir+json; charset=utf-8"
    );
    let outcome = json(response).await;
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    outcome
}

async fn malformed_oversized_deep_and_mistyped_bodies_get_400_413_415(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let referral = valid("activelives-exercise.json").to_string().into_bytes();

    // Both JSON media types are accepted, with parameters.
    for content_type in [
        "application/json",
        "application/fhir+json; charset=utf-8",
        "APPLICATION/FHIR+JSON",
    ] {
        let response = post_raw(&app, "/fhir/ServiceRequest", content_type, referral.clone()).await;
        assert!(
            response.status().is_success(),
            "{content_type}: {}",
            response.status()
        );
    }
    for content_type in ["text/plain", "application/xml", "application/fhir+xml"] {
        let response = post_raw(&app, "/fhir/ServiceRequest", content_type, referral.clone()).await;
        assert_outcome(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
    }
    let response = app
        .client
        .post(app.url("/fhir/ServiceRequest"))
        .body(referral.clone())
        .send()
        .await
        .unwrap();
    assert_outcome(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;

    let outcome = assert_outcome(
        post_raw(
            &app,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            b"{\"resourceType\": ".to_vec(),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(outcome.to_string().contains("malformed JSON"));

    let mut huge = b"{\"resourceType\":\"ServiceRequest\",\"note\":[{\"text\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 1024 * 1024 + 1));
    huge.extend(b"\"}]}");
    assert_outcome(
        post_raw(&app, "/fhir/ServiceRequest", "application/fhir+json", huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
    )
    .await;

    let deep = format!("{}1{}", "[".repeat(100), "]".repeat(100));
    let deep = format!("{{\"resourceType\":\"ServiceRequest\",\"x\":{deep}}}");
    let outcome = assert_outcome(
        post_raw(
            &app,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            deep.into_bytes(),
        )
        .await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(outcome.to_string().contains("nested deeper"));
}

async fn hostile_inputs_never_produce_a_500(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bodies: Vec<&[u8]> = vec![
        b"",
        b"null",
        b"[]",
        b"42",
        b"\"ServiceRequest\"",
        b"{}",
        b"{\"resourceType\": 7}",
        b"{\"resourceType\": \"Bundle\", \"type\": \"transaction\"}",
        b"{\"resourceType\": \"Bundle\", \"type\": \"transaction\", \"entry\": [{}]}",
        b"{\"resourceType\": \"Bundle\", \"type\": \"transaction\", \"entry\": [{\"resource\": {\"resourceType\": \"ServiceRequest\"}}]}",
        b"{\"resourceType\": \"ServiceRequest\", \"contained\": [{\"resourceType\": \"NoSuchType\"}]}",
        b"{\"resourceType\": \"ServiceRequest\", \"contained\": [{}]}",
        b"{\"resourceType\": \"ServiceRequest\", \"status\": \"active\", \"intent\": \"order\", \"subject\": {\"reference\": \"#x\"}, \"contained\": [{\"resourceType\": \"Patient\", \"id\": \"x\", \"identifier\": [{\"system\": \"https://fhir.nhs.uk/Id/nhs-number\", \"value\": \"\\u0663\\u0663\\u0663\\u0663\\u0663\\u0663\\u0663\\u0663\\u0663\\u0663\"}]}]}",
        b"{\"resourceType\": \"ServiceRequest\", \"subject\": {\"reference\": \"#\"}, \"requester\": {\"reference\": \"#\"}}",
        b"{\"resourceType\": \"ServiceRequest\", \"authoredOn\": 1e999}",
        b"\xff\xfe{}",
        b"{\"resourceType\": \"ServiceRequest\", \"identifier\": [{\"system\": \"s\", \"value\": \"a\\u0000b\"}]}",
        b"{\"a\": \"\\ud800\"}",
    ];
    for body in bodies {
        for path in ["/fhir/ServiceRequest", "/fhir"] {
            let response = post_raw(&app, path, "application/fhir+json", body.to_vec()).await;
            let status = response.status();
            assert!(
                status.is_client_error(),
                "{path} {:?}: {status}",
                String::from_utf8_lossy(body)
            );
            let outcome = json(response).await;
            assert_eq!(outcome["resourceType"], "OperationOutcome");
        }
    }
    for path in [
        "/fhir/ServiceRequest?identifier=",
        "/fhir/ServiceRequest",
        "/fhir/Task",
        "/fhir/Task?focus=",
        "/fhir/Task/%00",
        "/fhir/ServiceRequest/%00",
        "/fhir/ServiceRequest?identifier=a%00b",
        "/fhir/Task?focus=ServiceRequest/a%00b",
        "/fhir/ServiceRequest/..%2F..%2Fetc",
        "/fhir/ServiceRequest?identifier=%ff%fe",
    ] {
        let response = app.get(path).await;
        let status = response.status();
        assert!(!status.is_server_error(), "{path}: {status}");
        let body = json(response).await;
        let expected = if status.is_success() {
            "Bundle"
        } else {
            "OperationOutcome"
        };
        assert_eq!(body["resourceType"], expected, "{path}");
    }
    // A control character inside an otherwise valid referral is the
    // client's mistake (400), not a database failure.
    let (mut referral, _) =
        crate::support::helpers::with_new_identifier(valid("activelives-exercise.json"));
    referral["identifier"][0]["value"] = serde_json::json!("a\u{0}b");
    let outcome = assert_outcome(
        app.post_json("/fhir/ServiceRequest", &referral).await,
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert_eq!(
        crate::support::helpers::expressions(&outcome),
        ["ServiceRequest.identifier[0].value"]
    );

    let unsupported = app
        .client
        .post(app.url("/fhir/ServiceRequest"))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", "_id=1")
        .body(valid("activelives-exercise.json").to_string())
        .send()
        .await
        .unwrap();
    assert_outcome(unsupported, StatusCode::BAD_REQUEST).await;
}

async fn unknown_routes_and_methods_get_operation_outcomes(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    assert_outcome(app.get("/nowhere").await, StatusCode::NOT_FOUND).await;
    assert_outcome(app.get("/fhir/Patient/1").await, StatusCode::NOT_FOUND).await;
    assert_outcome(
        app.get("/fhir/ServiceRequest/does-not-exist").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_outcome(
        app.get("/fhir/Task/does-not-exist").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    let delete = app
        .client
        .delete(app.url("/fhir/ServiceRequest/x"))
        .send()
        .await
        .unwrap();
    assert_outcome(delete, StatusCode::METHOD_NOT_ALLOWED).await;
}

async fn a_storage_failure_is_a_503_that_stores_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    // Break the database under the running server.
    sabotage(&app.db.url).await;

    let referral = valid("activelives-exercise.json");
    let response = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(response.headers()["retry-after"], "5");
    let outcome = assert_outcome(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(outcome["issue"][0]["code"], "transient");
    let text = outcome.to_string();
    assert!(
        !text.contains("task_events") && !text.contains("sqlx"),
        "internals leaked: {text}"
    );
    // The transaction was rolled back: no half-stored referral.
    let value = referral["identifier"][0]["value"].as_str().unwrap();
    let search = app.search_identifier(value).await;
    assert_eq!(search["total"], 0);
}

async fn sabotage(url: &str) {
    sabotage_table(url, "task_events").await;
}

/// Break the database under a running server: rename `table` away.
pub async fn sabotage_table(url: &str, table: &str) {
    use sqlx::Connection;
    let statement = format!("ALTER TABLE {table} RENAME TO {table}_gone");
    if url.starts_with("sqlite:") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut conn)
            .await
            .unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

on_both_backends!(
    malformed_oversized_deep_and_mistyped_bodies_get_400_413_415,
    hostile_inputs_never_produce_a_500,
    unknown_routes_and_methods_get_operation_outcomes,
    a_storage_failure_is_a_503_that_stores_nothing,
);
