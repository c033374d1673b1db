//! Echo probes in bodies: a valid referral with each string and each
//! object's keys replaced in turn, to every endpoint that takes one, and
//! whole bodies that are wrong in themselves.

use reqwest::Method;
use serde_json::json;

use crate::{
    on_both_backends,
    support::{
        helpers::{Backend, valid, with_new_identifier},
        probes::{
            Markers, Probe, Targets, Who, assert_no_echo, echo_app, fhir, leaf_mutations, probe,
        },
    },
};

fn probes(targets: &Targets, markers: &mut Markers) -> Vec<Probe> {
    use Who::*;
    let id = targets.referral.as_str();
    let mut all = Vec::new();
    let referral = with_new_identifier(valid("activelives-exercise.json")).0;
    for (mutated, marker) in leaf_mutations(&referral, markers) {
        for path in ["/fhir/ServiceRequest", "/fhir/ServiceRequest/$translate"] {
            let renamed = if mutated["identifier"].to_string().contains(&marker) {
                mutated.clone()
            } else {
                with_new_identifier(mutated.clone()).0
            };
            let mut p = probe(Referrer, Method::POST, path.into(), marker.clone());
            p.body = fhir(&renamed);
            p.stores = true;
            all.push(p);
        }
        let mut withdrawal = mutated.clone();
        withdrawal["id"] = json!(id);
        let mut p = probe(
            Referrer,
            Method::PUT,
            format!("/fhir/ServiceRequest/{id}"),
            marker.clone(),
        );
        p.body = fhir(&withdrawal);
        all.push(p);
        let bundle = json!({
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [{
                "fullUrl": "urn:uuid:0d9c4ad8-1b1e-4a57-9e43-2c2f5d1b9a11",
                "resource": mutated,
                "request": {"method": "POST", "url": "ServiceRequest"}
            }]
        });
        let mut p = probe(Referrer, Method::POST, "/fhir".into(), marker);
        p.body = fhir(&bundle);
        p.stores = true;
        all.push(p);
    }
    // A transaction with its own parts marked.
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{
            "fullUrl": "urn:uuid:0d9c4ad8-1b1e-4a57-9e43-2c2f5d1b9a11",
            "resource": with_new_identifier(valid("activelives-exercise.json")).0,
            "request": {"method": "POST", "url": "ServiceRequest"}
        }]
    });
    for (mutated, marker) in leaf_mutations(&bundle, markers)
        .into_iter()
        .filter(|(v, _)| v["entry"][0]["resource"]["resourceType"] == "ServiceRequest")
        .take(12)
    {
        let mut p = probe(Referrer, Method::POST, "/fhir".into(), marker);
        p.body = fhir(&mutated);
        p.stores = true;
        all.push(p);
    }

    // Whole bodies that are wrong in themselves.
    let events = format!("/fhir/Subscription/{}/$events", targets.subscription);
    for (who, method, path, content_type, template) in [
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            r#"{"resourceType": "{m}"}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir",
            "application/fhir+json",
            r#"{"resourceType": "{m}"}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest/$translate",
            "application/fhir+json",
            r#"{"resourceType": "{m}"}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            r#"{"resourceType": "ServiceRequest", "{m}": "{m}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            r#"["{m}"]"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/{m}",
            r#"{"resourceType": "ServiceRequest"}"#,
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            "{m}",
        ),
        (
            Referrer,
            Method::POST,
            "/fhir/ServiceRequest",
            "application/fhir+json",
            r#"{"resourceType": "ServiceRequest", "status": {m}}"#,
        ),
        (
            Referrer,
            Method::PUT,
            "/fhir/ServiceRequest/{id}",
            "application/fhir+json",
            r#"{"resourceType": "{m}", "id": "{m}"}"#,
        ),
        (
            Referrer,
            Method::PUT,
            "/fhir/ServiceRequest/{id}",
            "application/fhir+json",
            r#"{"resourceType": "ServiceRequest", "id": "{m}", "status": "{m}"}"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "{m}", "path": "/status", "value": "revoked"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "replace", "path": "/{m}", "value": "revoked"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "replace", "path": "/status", "value": "{m}"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "add", "path": "/note", "value": [{"text": "{m}"}]}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "test", "path": "/status", "value": "{m}"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "move", "from": "/{m}", "path": "/status"}]"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"{"{m}": "{m}"}"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/json-patch+json",
            r#"[{"op": "replace", "path": "/status", "value": "{m}"#,
        ),
        (
            Referrer,
            Method::PATCH,
            "/fhir/ServiceRequest/{id}",
            "application/{m}",
            "[]",
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhsNumber": "{m}"}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhs_number": "{m}"}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhs_number": 1, "{m}": "{m}"}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"{m}": "{m}"}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhsNumber": {m}"#,
        ),
        (
            Admin,
            Method::POST,
            "/admin/erase",
            "application/json",
            r#"{"nhsNumber": ["{m}"]}"#,
        ),
        (
            Referrer,
            Method::POST,
            events.as_str(),
            "application/fhir+json",
            r#"{"resourceType": "Parameters", "parameter": [{"name": "{m}", "valueString": "1"}]}"#,
        ),
        (
            Referrer,
            Method::POST,
            events.as_str(),
            "application/fhir+json",
            r#"{"resourceType": "Parameters", "parameter": [{"name": "{m}", "valueBoolean": true}]}"#,
        ),
        (
            Referrer,
            Method::POST,
            events.as_str(),
            "application/fhir+json",
            r#"{"resourceType": "Parameters", "parameter": [{"name": "eventsSinceNumber", "valueString": "{m}"}]}"#,
        ),
    ] {
        let marker = markers.next();
        let mut p = probe(who, method, path.replace("{id}", id), marker.clone());
        let body = template.replace("{m}", &marker).replace("{id}", id);
        p.body = Some((content_type, body.into_bytes()));
        all.push(p);
    }
    all
}

async fn no_answer_quotes_a_body(backend: Backend) {
    let (app, targets) = echo_app(backend).await;
    let probes = probes(&targets, &mut Markers::default());
    assert!(probes.len() > 100, "{} probes", probes.len());
    assert_no_echo(&app, &probes).await;
}

on_both_backends!(no_answer_quotes_a_body);
