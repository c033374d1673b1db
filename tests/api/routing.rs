//! Routing and mapping at intake: every referral goes to exactly one
//! provider, and one the provider could not take is refused with a 422
//! naming the provider field, before anything is stored.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::Value;

use crate::{
    on_both_backends,
    support::helpers::{
        Backend, TestApp, expressions, fixture, json, kit, valid, with_new_identifier,
    },
};

/// Each valid referral fixture, and the provider its mapping fixtures say it
/// goes to (every mapped provider's, found in `mappings/`).
fn routed_fixtures() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for provider in kit::mapped_providers() {
        let Ok(entries) = std::fs::read_dir(root.join("mappings/tests").join(&provider)) else {
            continue;
        };
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            // Expected payloads whose referral is also an intake fixture.
            if let Some(stem) = name.strip_suffix(".expected.json")
                && root
                    .join(format!("tests/fixtures/referrals/valid/{stem}.json"))
                    .exists()
            {
                found.push((format!("{stem}.json"), provider.clone()));
            }
        }
    }
    // Every valid intake fixture has an expected payload with exactly one
    // provider.
    let mut routed: Vec<&str> = found.iter().map(|(name, _)| name.as_str()).collect();
    routed.sort_unstable();
    let mut valid: Vec<String> = std::fs::read_dir(root.join("tests/fixtures/referrals/valid"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".json"))
        .collect();
    valid.sort_unstable();
    assert_eq!(routed, valid);
    assert!(found.len() >= 9, "only {} routed fixtures", found.len());
    found
}

async fn each_referral_is_owned_by_the_provider_its_code_or_performer_names(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (name, provider) in routed_fixtures() {
        let (referral, value) = with_new_identifier(valid(&name));
        let path = if referral["resourceType"] == "Bundle" {
            "/fhir"
        } else {
            "/fhir/ServiceRequest"
        };
        let response = app.post_json(path, &referral).await;
        assert!(
            response.status().is_success(),
            "{name}: {}",
            response.status()
        );
        let found = app.search_identifier(value).await;
        let id = found["entry"][0]["resource"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let tasks = json(
            app.get(&format!("/fhir/Task?focus=ServiceRequest/{id}"))
                .await,
        )
        .await;
        let owner = &tasks["entry"][0]["resource"]["owner"];
        assert_eq!(owner["identifier"]["value"], provider.as_str(), "{name}");
    }
}

async fn a_referral_no_provider_takes_is_refused_and_not_stored(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let referral = fixture("tests/fixtures/referrals/refused/no-provider-matches.json");
    let response = app.post_json("/fhir/ServiceRequest", &referral).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let outcome = json(response).await;
    assert_eq!(expressions(&outcome), ["ServiceRequest.code"]);
    assert!(
        outcome.to_string().contains("no community provider"),
        "{outcome}"
    );
    let value = referral["identifier"][0]["value"].as_str().unwrap();
    let search = app.search_identifier(value).await;
    assert_eq!(search["total"], 0);
}

async fn a_referral_the_mapping_cannot_fill_is_refused_naming_the_provider_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (name, field) in [
        ("activelives-no-consent.json", "`consent_to_share`"),
        ("activelives-consent-inactive.json", "`consent_to_share`"),
        ("grow-together-no-contact.json", "`phone`"),
    ] {
        let referral = fixture(&format!("tests/fixtures/referrals/refused/{name}"));
        let response = app.post_json("/fhir/ServiceRequest", &referral).await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}"
        );
        let outcome = json(response).await;
        let text = outcome.to_string();
        assert!(text.contains(field), "{name}: {text}");
        let value = referral["identifier"][0]["value"].as_str().unwrap();
        let search = app.search_identifier(value).await;
        assert_eq!(search["total"], 0, "{name} was stored");
    }
    // The FHIRPath a field is read from is named too, in the diagnostics
    // and as the issue's expression.
    let referral = fixture("tests/fixtures/referrals/refused/activelives-no-consent.json");
    let outcome = json(app.post_json("/fhir/ServiceRequest", &referral).await).await;
    assert!(outcome.to_string().contains("read from `"), "{outcome}");
    assert_eq!(
        expressions(&outcome),
        ["supportingInfo.resolve().ofType(Consent).where(status = 'active').exists()"],
        "{outcome:#}"
    );
    let referral = fixture("tests/fixtures/referrals/refused/grow-together-no-contact.json");
    let outcome = json(app.post_json("/fhir/ServiceRequest", &referral).await).await;
    assert!(
        outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|issue| issue["expression"][0].is_string()),
        "{outcome:#}"
    );
}

async fn translate_is_a_dry_run_returning_the_provider_payload(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for (name, provider) in routed_fixtures() {
        let referral = valid(&name);
        let response = app
            .post_json("/fhir/ServiceRequest/$translate", &referral)
            .await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        assert_eq!(response.headers()["x-signpost-provider"], provider.as_str());
        let payload = json(response).await;
        let stem = name.trim_end_matches(".json");
        let expected = fixture(&format!("mappings/tests/{provider}/{stem}.expected.json"));
        let expected: Value =
            serde_json::from_str(&expected.to_string().replace("REFERRAL-ID", "DRY-RUN")).unwrap();
        assert_eq!(payload, expected, "{name}");
    }
    // Nothing was stored.
    let referral = valid("activelives-exercise.json");
    let value = referral["identifier"][0]["value"].as_str().unwrap();
    let search = app.search_identifier(value).await;
    assert_eq!(search["total"], 0);

    // A named provider is used instead of routing.
    let response = app
        .post_json(
            "/fhir/ServiceRequest/$translate?provider=community-connect",
            &referral,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(json(response).await["case"]["external_id"] == "DRY-RUN");
    let response = app
        .post_json("/fhir/ServiceRequest/$translate?provider=nobody", &referral)
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    // Invalid referrals get the usual OperationOutcome.
    let invalid = fixture("tests/fixtures/referrals/invalid/status-draft.json");
    let response = app
        .post_json("/fhir/ServiceRequest/$translate", &invalid)
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

on_both_backends!(
    each_referral_is_owned_by_the_provider_its_code_or_performer_names,
    a_referral_no_provider_takes_is_refused_and_not_stored,
    a_referral_the_mapping_cannot_fill_is_refused_naming_the_provider_field,
    translate_is_a_dry_run_returning_the_provider_payload,
);
