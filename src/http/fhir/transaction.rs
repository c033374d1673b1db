//! `POST /fhir` with a transaction Bundle: one referral with the Patient,
//! PractitionerRole, Practitioner and Organization entries it references.
//! The referral is stored as one ServiceRequest with those resources
//! contained (see `referrals::canonical`), so the response says so for each
//! entry that is not the ServiceRequest.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{base_url, referral_location};
use crate::{
    http::{
        AppState, FhirCaller, FhirError, FhirJson, FhirResponse, middleware::audit::about_referral,
    },
    security::authz::sending_referrer,
};

/// Answer a transaction with a `transaction-response` Bundle.
pub(super) async fn create(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    headers: HeaderMap,
    FhirJson(body): FhirJson,
) -> Result<Response, FhirError> {
    let referrer = sending_referrer(&caller)?;
    // The response answers each entry; intake consumes the Bundle.
    let service_requests: Vec<bool> = body["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|entry| entry.pointer("/resource/resourceType") == Some(&json!("ServiceRequest")))
        .collect();
    let receipt = app.referrals.submit_transaction(referrer, body).await?;
    tracing::info!(
        referral_id = %receipt.referral.id,
        referrer_id = %receipt.referral.referrer_id,
        created = receipt.created,
        "referral accepted from a transaction"
    );
    let referral = &receipt.referral;
    let location = referral_location(&base_url(&app.config, &headers), referral);
    let entries: Vec<Value> = service_requests
        .into_iter()
        .map(|is_service_request| {
            if is_service_request {
                json!({ "response": {
                    "status": if receipt.created { "201 Created" } else { "200 OK" },
                    "location": location,
                    "etag": format!("W/\"{}\"", referral.version_id),
                    "lastModified": referral.last_updated.to_string(),
                }})
            } else {
                json!({ "response": {
                    "status": "200 OK",
                    "outcome": {
                        "resourceType": "OperationOutcome",
                        "issue": [{
                            "severity": "information",
                            "code": "informational",
                            "diagnostics": format!(
                                "kept as a contained resource of ServiceRequest/{}, not as a resource of its own",
                                referral.id
                            )
                        }]
                    }
                }})
            }
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "transaction-response",
        "entry": entries,
    });
    let mut response = FhirResponse::new(StatusCode::OK, bundle.to_string()).into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(about_referral(response, &receipt.referral.id))
}
