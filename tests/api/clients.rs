//! Practice systems' clients just work: every FHIR path in its
//! trailing-slash form; the dry run refuses what intake refuses; a business
//! identifier reused for a different referral is a conflict, not a silent
//! "200, here is the original"; and each referrer's Subscription, with
//! `$status` and `$events`, lets it recover notifications it missed.

use reqwest::StatusCode;
use serde_json::{Value, json};
use signpost::config::Config;

use crate::{
    on_both_backends,
    support::{
        fleet::{Fleet, PATIENCE, REFERRER},
        helpers::{Backend, TestApp, TestDb, expressions, json, valid, with_new_identifier},
        receiver::Scripted,
    },
};

const OTHER: &str = "other-practice";
const OTHER_ODS: &str = "B82002";

/// A second referrer, with its own ODS code (and the same stand-in
/// endpoint; it is never sent anything here).
fn with_other_referrer(config: &mut Config) {
    let mut other = config.referrers[REFERRER].clone();
    other.id = OTHER.parse().unwrap();
    other.ods_codes = vec![OTHER_ODS.into()];
    config.referrers.insert(other.id.clone(), other);
}

/// The referral with its requester organisation's ODS code replaced.
fn from_organisation(referral: &Value, ods_code: &str) -> Value {
    serde_json::from_str(
        &referral
            .to_string()
            .replace("\"A81001\"", &format!("\"{ods_code}\"")),
    )
    .unwrap()
}

async fn every_fhir_path_answers_in_its_trailing_slash_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (bundle, _) = with_new_identifier(valid("grow-together.bundle.json"));
    let response = app.post_json("/fhir/", &bundle).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json(response).await["type"], "transaction-response");

    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    let response = app.post_json("/fhir/ServiceRequest/", &referral).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = json(response).await["id"].as_str().unwrap().to_owned();
    for path in [
        format!("/fhir/ServiceRequest/{id}/"),
        format!("/fhir/ServiceRequest/{id}/_history/1/"),
        format!("/fhir/Task/?focus=ServiceRequest/{id}"),
        format!("/fhir/Subscription/{REFERRER}/"),
        format!("/fhir/Subscription/{REFERRER}/$status/"),
    ] {
        assert_eq!(app.get(&path).await.status(), StatusCode::OK, "GET {path}");
    }
    let metadata = app
        .anonymous
        .get(app.url("/fhir/metadata/"))
        .send()
        .await
        .unwrap();
    assert_eq!(metadata.status(), StatusCode::OK);
    let translated = app
        .post_json("/fhir/ServiceRequest/$translate/", &referral)
        .await;
    assert_eq!(translated.status(), StatusCode::OK);
    // Only FHIR paths: the rest of the API keeps its exact paths.
    let admin = app.get("/admin/deliveries/").await;
    assert_eq!(admin.status(), StatusCode::NOT_FOUND);
}

async fn a_business_identifier_reused_for_a_different_referral_is_a_conflict(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (referral, value) = with_new_identifier(valid("activelives-exercise.json"));
    let first = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first = json(first).await;
    let id = first["id"].as_str().unwrap();

    // The same referral with other narrative, profile tags and key order:
    // not material, so the original is answered.
    let mut same = referral.clone();
    same["text"] = json!({"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Referral</div>"});
    same["meta"] = json!({"tag": [{"system": "https://example.org/tags", "code": "resent"}]});
    let reordered: serde_json::Map<String, Value> = same
        .as_object()
        .unwrap()
        .iter()
        .rev()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let resent = app
        .post_json("/fhir/ServiceRequest", &Value::Object(reordered))
        .await;
    assert_eq!(resent.status(), StatusCode::OK);
    assert_eq!(json(resent).await, first);

    // A different patient birth date, or a note added: another referral.
    let mut other_note = referral.clone();
    other_note["note"] = json!([{"text": "Prefers mornings."}]);
    let mut other_patient = referral.clone();
    let patient = other_patient["contained"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap();
    patient["birthDate"] = json!("1961-02-03");
    for different in [other_note, other_patient] {
        let response = app.post_json("/fhir/ServiceRequest", &different).await;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let outcome = json(response).await;
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["code"], "duplicate");
        let text = outcome["issue"][0]["diagnostics"].as_str().unwrap();
        assert!(text.contains("already used"), "{text}");
        assert!(text.contains(&format!("ServiceRequest/{id}")), "{text}");
        assert!(text.contains("cancel"), "{text}");
        assert!(text.contains("new identifier"), "{text}");
        // Nothing submitted is quoted back.
        assert!(!text.contains(&value) && !text.contains("1961"), "{text}");
    }
    assert_eq!(app.search_identifier(&value).await["total"], 1);

    // Once cancelled, the identical referral resent is still the original.
    let cancel = app
        .client
        .patch(app.url(&format!("/fhir/ServiceRequest/{id}")))
        .header("content-type", "application/json-patch+json")
        .body(r#"[{"op":"replace","path":"/status","value":"revoked"}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(cancel.status(), StatusCode::OK);
    let resent = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(resent.status(), StatusCode::OK);
    assert_eq!(json(resent).await["status"], "revoked");
}

/// The dry run makes intake's attribution check when a referrer sends it:
/// what intake refuses, `$translate` refuses with the same answer.
async fn translate_refuses_what_intake_refuses(backend: Backend) {
    let app = TestApp::spawn_on(TestDb::fresh(backend).await, with_other_referrer).await;
    let (referral, _) = with_new_identifier(valid("activelives-exercise.json"));
    for (ods_code, status) in [
        ("Y99999", StatusCode::UNPROCESSABLE_ENTITY),
        (OTHER_ODS, StatusCode::FORBIDDEN),
    ] {
        let referral = from_organisation(&referral, ods_code);
        let dry = app
            .post_json("/fhir/ServiceRequest/$translate", &referral)
            .await;
        assert_eq!(dry.status(), status, "$translate, ODS {ods_code}");
        let dry = json(dry).await;
        let intake = app.post_json("/fhir/ServiceRequest", &referral).await;
        assert_eq!(intake.status(), status, "intake, ODS {ods_code}");
        let intake = json(intake).await;
        assert_eq!(dry["issue"], intake["issue"], "ODS {ods_code}");
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(
                expressions(&dry),
                ["ServiceRequest.contained[3].identifier"]
            );
        }
    }
    // An admin's dry run names no referrer: attribution is not checked.
    let admin = app
        .admin
        .post(app.url("/fhir/ServiceRequest/$translate"))
        .header("content-type", "application/fhir+json")
        .body(from_organisation(&referral, OTHER_ODS).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
}

/// The parameter list of a Bundle's first entry (a subscription status).
fn status_of(bundle: &Value) -> &Vec<Value> {
    bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
}

fn parameter<'a>(status: &'a [Value], name: &str) -> &'a Value {
    status.iter().find(|p| p["name"] == name).unwrap()
}

fn event_numbers(bundle: &Value) -> Vec<String> {
    status_of(bundle)
        .iter()
        .filter(|p| p["name"] == "notification-event")
        .map(|p| p["part"][0]["valueString"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_subscription_serves_its_status_and_recovers_events(backend: Backend) {
    let fleet = Fleet::start_with(backend, with_other_referrer).await;
    let app = &fleet.app;

    let subscription = json(app.get(&format!("/fhir/Subscription/{REFERRER}")).await).await;
    assert_eq!(subscription["resourceType"], "Subscription");
    assert_eq!(subscription["status"], "active");
    assert_eq!(
        subscription["criteria"],
        "https://signpost.example/SubscriptionTopic/referral-task-status"
    );
    assert_eq!(subscription["channel"]["type"], "rest-hook");
    assert_eq!(
        subscription["channel"]["endpoint"],
        fleet.referrer.url_for("/notifications")
    );
    // Another referrer's subscription is not the caller's to see.
    for path in [
        format!("/fhir/Subscription/{OTHER}"),
        format!("/fhir/Subscription/{OTHER}/$status"),
        format!("/fhir/Subscription/{OTHER}/$events"),
        "/fhir/Subscription/nobody".to_owned(),
    ] {
        assert_eq!(
            app.get(&path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let as_admin = app
        .admin
        .get(app.url(&format!("/fhir/Subscription/{OTHER}")))
        .send()
        .await
        .unwrap();
    assert_eq!(as_admin.status(), StatusCode::OK);

    // Three events: accepted, in progress, completed.
    let referral = fleet.refer("activelives-exercise.json").await;
    for (n, event) in ["booked", "first_session_attended", "completed"]
        .iter()
        .enumerate()
    {
        let body =
            json!({"referral_ref": referral, "event": event, "event_time": "2026-03-04T10:15:00Z"});
        let response = fleet.callback("activelives", &format!("e{n}"), &body).await;
        assert_eq!(response.status(), 200, "{event}");
    }
    let sent = fleet.referrer.wait_for(3, PATIENCE).await;

    let status = json(
        app.get(&format!("/fhir/Subscription/{REFERRER}/$status"))
            .await,
    )
    .await;
    assert_eq!(status["type"], "searchset");
    let parameters = status_of(&status);
    assert_eq!(parameter(parameters, "type")["valueCode"], "query-status");
    assert_eq!(parameter(parameters, "status")["valueCode"], "active");
    assert_eq!(
        parameter(parameters, "events-since-subscription-start")["valueString"],
        "3"
    );

    // Events 2 and 3, as they were sent.
    let events = json(
        app.get(&format!(
            "/fhir/Subscription/{REFERRER}/$events?eventsSinceNumber=2&eventsUntilNumber=3"
        ))
        .await,
    )
    .await;
    assert_eq!(events["type"], "history");
    assert_eq!(
        parameter(status_of(&events), "type")["valueCode"],
        "query-event"
    );
    assert_eq!(event_numbers(&events), ["2", "3"]);
    let sent_tasks: Vec<&Value> = sent
        .iter()
        .filter(|r| ["2", "3"].contains(&event_numbers(&r.body)[0].as_str()))
        .map(|r| &r.body["entry"][1]["resource"])
        .collect();
    let got_tasks: Vec<&Value> = events["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(got_tasks, sent_tasks);
    assert_eq!(got_tasks[1]["status"], "completed");

    // Id-only: references, no Tasks; empty: numbers alone.
    let id_only = json(
        app.get(&format!(
            "/fhir/Subscription/{REFERRER}/$events?eventsSinceNumber=1&content=id-only"
        ))
        .await,
    )
    .await;
    assert_eq!(event_numbers(&id_only), ["1", "2", "3"]);
    assert_eq!(id_only["entry"].as_array().unwrap().len(), 1);
    let focus = &status_of(&id_only)[5]["part"][2];
    assert_eq!(focus["name"], "focus");
    assert_eq!(
        focus["valueReference"]["reference"],
        format!("Task/{}", got_tasks[0]["id"].as_str().unwrap())
    );
    let empty = json(
        app.get(&format!(
            "/fhir/Subscription/{REFERRER}/$events?content=empty"
        ))
        .await,
    )
    .await;
    assert_eq!(event_numbers(&empty), ["1", "2", "3"]);
    assert!(status_of(&empty)[5]["part"].as_array().unwrap().len() == 2);

    // The same with a Parameters body.
    let posted = app
        .client
        .post(app.url(&format!("/fhir/Subscription/{REFERRER}/$events")))
        .header("content-type", "application/fhir+json")
        .body(
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "eventsSinceNumber", "valueString": "3"},
                {"name": "content", "valueCode": "full-resource"}
            ]})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    let posted = json(posted).await;
    assert_eq!(event_numbers(&posted), ["3"]);
    assert_eq!(posted["entry"][1]["resource"], *got_tasks[1]);

    for bad in [
        "eventsSinceNumber=two",
        "eventsUntilNumber=0",
        "content=all",
        "since=1",
    ] {
        let response = app
            .get(&format!("/fhir/Subscription/{REFERRER}/$events?{bad}"))
            .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

/// A referrer answering `410 Gone` disables its endpoint: its Subscription
/// shows `error` until an operator enables it again, and then `active`.
async fn a_gone_referrer_shows_as_an_errored_subscription_until_enabled(backend: Backend) {
    let fleet = Fleet::start(backend).await;
    let app = &fleet.app;
    fleet.referrer.script(vec![Scripted::status(410)]);
    let referral = fleet.refer("activelives-exercise.json").await;
    let body =
        json!({"referral_ref": referral, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet.callback("activelives", "e1", &body).await.status(),
        200
    );
    // Until the 410 is recorded, the subscription is still active.
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let subscription = json(app.get(&format!("/fhir/Subscription/{REFERRER}")).await).await;
        if subscription["status"] == "error" {
            break;
        }
        assert_eq!(subscription["status"], "active");
        assert!(std::time::Instant::now() < deadline, "never disabled");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(fleet.referrer.received()[0].answered, 410);
    let status = json(
        app.get(&format!("/fhir/Subscription/{REFERRER}/$status"))
            .await,
    )
    .await;
    assert_eq!(
        parameter(status_of(&status), "status")["valueCode"],
        "error"
    );

    let enabled = app
        .admin
        .post(app.url(&format!("/admin/endpoints/referrer:{REFERRER}/enable")))
        .send()
        .await
        .unwrap();
    assert_eq!(enabled.status(), 200);
    let subscription = json(app.get(&format!("/fhir/Subscription/{REFERRER}")).await).await;
    assert_eq!(subscription["status"], "active");
    // The notification that met the 410 waited, and now arrives.
    fleet.referrer.wait_for(1, PATIENCE).await;
}

on_both_backends!(
    every_fhir_path_answers_in_its_trailing_slash_form,
    a_business_identifier_reused_for_a_different_referral_is_a_conflict,
    translate_refuses_what_intake_refuses,
    the_subscription_serves_its_status_and_recovers_events,
    a_gone_referrer_shows_as_an_errored_subscription_until_enabled,
);
