//! `POST /fhir` with a transaction Bundle: one referral with the Patient,
//! PractitionerRole, Practitioner and Organization entries it references.
//! The referral is stored as one ServiceRequest with those resources
//! contained (see `referrals::canonical`), so the response says so for each
//! entry that is not the ServiceRequest.

use axum::{
    Extension,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    AppState, FHIR_JSON, FhirError, FhirJson, about_referral, base_url, referral_location,
    sending_referrer,
};
use crate::auth::Caller;

/// Answer a transaction with a `transaction-response` Bundle.
pub async fn create(
    State(app): State<AppState>,
    Extension(caller): Extension<Caller>,
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
                    "lastModified": referral.last_updated,
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
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        bundle.to_string(),
    )
        .into_response();
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(about_referral(response, &receipt.referral.id))
}
