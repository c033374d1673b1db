//! The audit trail: who did what to which referral, when, from where, and
//! how it ended; readable by operators, never changed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    on_both_backends,
    support::fleet::{Fleet, PATIENCE},
    support::helpers::{Backend, json},
};

/// The first audit record matching `query` by `actor` (a prefix) doing
/// `action`, waiting for it (request records are written a moment after
/// the answer).
pub(crate) async fn record(fleet: &Fleet, query: &str, actor: &str, action: &str) -> Value {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let found = json(fleet.app.get(&format!("/admin/audit?{query}")).await).await;
        if let Some(record) = found["records"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["actor"].as_str().unwrap().starts_with(actor) && r["action"] == action)
        {
            return record.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record of {actor} {action} for {query}: {found:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn every_read_write_callback_delivery_and_refusal_is_recorded(backend: Backend) {
    let fleet = Fleet::start(backend).await;
    let before = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = fleet.refer("activelives-exercise.json").await;
    fleet.provider("activelives").wait_for(1, PATIENCE).await;
    let read = fleet.app.get(&format!("/fhir/ServiceRequest/{id}")).await;
    assert_eq!(read.status(), 200);
    let booked =
        json!({"referral_ref": id, "event": "booked", "event_time": "2026-03-04T10:15:00Z"});
    assert_eq!(
        fleet.callback("activelives", "a1", &booked).await.status(),
        200
    );
    let anonymous = fleet
        .app
        .anonymous
        .get(fleet.app.url(&format!("/fhir/ServiceRequest/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    fleet.app.get("/admin/deliveries").await;

    // Create, read, status callback, delivery: all on the referral's record.
    let of_referral = format!("referral={id}");
    let referrer = "referrer:riverside-surgery";
    let created = record(&fleet, &of_referral, referrer, "POST /fhir/ServiceRequest").await;
    assert_eq!(created["outcome"], "201");
    assert_eq!(
        created["resource"],
        format!("/fhir/ServiceRequest/{id}/_history/1")
    );
    assert_eq!(created["client"], "127.0.0.1");
    assert!(
        created["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    let read = record(
        &fleet,
        &of_referral,
        referrer,
        "GET /fhir/ServiceRequest/{id}",
    )
    .await;
    assert_eq!(read["outcome"], "200");
    let callback = record(
        &fleet,
        &of_referral,
        "provider:activelives",
        "POST /providers/{provider_id}/status",
    )
    .await;
    assert_eq!(callback["outcome"], "200");
    let delivery = record(
        &fleet,
        &of_referral,
        "signpost:delivery",
        "deliver referral to provider:activelives",
    )
    .await;
    assert_eq!(delivery["outcome"], "delivered (202)");

    // The refused request (as a sample: anonymous requests are sampled
    // and counted, see attacks_http) and the admin's own action are there
    // too.
    let refused = record(
        &fleet,
        "actor=unauthenticated",
        "unauthenticated",
        "GET /fhir/ServiceRequest/{id}",
    )
    .await;
    assert_eq!(refused["outcome"], "401");
    // Sampled: the route and the client, never the path it asked for.
    assert_eq!(refused["resource"], Value::Null);
    assert_eq!(refused["client"], "127.0.0.1");
    // The actor filter is exact; text that names no actor matches nothing
    // (it is not refused).
    let by_provider = record(
        &fleet,
        "actor=provider:activelives",
        "provider:activelives",
        "POST /providers/{provider_id}/status",
    )
    .await;
    assert_eq!(by_provider["outcome"], "200");
    for nobody in ["nobody", "provider:Active%20Lives", "provider:activelive"] {
        let answer = fleet.app.get(&format!("/admin/audit?actor={nobody}")).await;
        assert_eq!(answer.status(), 200, "{nobody}");
        assert_eq!(json(answer).await["records"], json!([]), "{nobody}");
    }
    let since = format!("since={before}&limit=1000");
    let admin = record(&fleet, &since, "admin:", "GET /admin/deliveries").await;
    assert_eq!(admin["outcome"], "200");

    // Ids only: nothing about the patient.
    let all = json(fleet.app.get(&format!("/admin/audit?{since}")).await).await;
    let text = all.to_string();
    for personal in ["Fairbrother", "9990124833", "1958-06-14"] {
        assert!(!text.contains(personal), "{personal} in the audit trail");
    }

    // Append-only: there is no way to change or delete a record.
    for method in [
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
        reqwest::Method::POST,
    ] {
        let response = fleet
            .app
            .admin
            .request(method.clone(), fleet.app.url("/admin/audit"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
    }
    // And referrers cannot read it.
    let response = fleet
        .app
        .client
        .get(fleet.app.url("/admin/audit"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

on_both_backends!(every_read_write_callback_delivery_and_refusal_is_recorded);
