//! `ServiceRequest`: create (with `If-None-Exist`), read, vread, and search
//! by `identifier`.

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::{
    AppState, FhirError, FhirJson, base_url, referral_location, resource_id, resource_response,
    search_value, searchset,
};
use crate::outcome::{Issue, IssueCode};

/// `POST /fhir/ServiceRequest`: `201` with the stored referral, or `200`
/// with the one already accepted under the same business identifier.
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    FhirJson(body): FhirJson,
) -> Result<Response, FhirError> {
    let if_none_exist = headers
        .get("if-none-exist")
        .map(|v| v.to_str().unwrap_or_default());
    let receipt = app
        .referrals
        .submit_service_request(&body, if_none_exist)
        .await?;
    tracing::info!(
        referral_id = %receipt.referral.id,
        referrer_id = %receipt.referral.referrer_id,
        created = receipt.created,
        "referral accepted"
    );
    let status = if receipt.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let location = referral_location(&base_url(&app.config, &headers), &receipt.referral);
    let mut response = resource_response(
        status,
        receipt.referral.version_id,
        receipt.referral.resource,
    );
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// `GET /fhir/ServiceRequest/{id}`.
pub async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let referral = app
        .referrals
        .referral(resource_id("ServiceRequest", &id)?)
        .await?
        .ok_or_else(|| FhirError::NotFound(format!("ServiceRequest/{id} is not known")))?;
    Ok(resource_response(
        StatusCode::OK,
        referral.version_id,
        referral.resource,
    ))
}

/// `GET /fhir/ServiceRequest/{id}/_history/{version}`: only the current
/// version is kept.
pub async fn vread(
    State(app): State<AppState>,
    Path((id, version)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    let referral = app
        .referrals
        .referral(resource_id("ServiceRequest", &id)?)
        .await?
        .filter(|r| r.version_id.to_string() == version)
        .ok_or_else(|| {
            FhirError::NotFound(format!("ServiceRequest/{id} has no version {version}"))
        })?;
    Ok(resource_response(
        StatusCode::OK,
        referral.version_id,
        referral.resource,
    ))
}

/// `GET /fhir/ServiceRequest?identifier=system|value`.
pub async fn search(
    State(app): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, FhirError> {
    let Some(identifier) = params.get("identifier").filter(|v| !v.is_empty()) else {
        return Err(FhirError::BadRequest(vec![Issue::error(
            IssueCode::NotSupported,
            "search ServiceRequests by identifier=system|value",
        )]));
    };
    let base = base_url(&app.config, &headers);
    let found = app
        .referrals
        .search_by_identifier(search_value("identifier", identifier)?)
        .await?;
    let self_link = format!(
        "{base}/ServiceRequest?identifier={}",
        url::form_urlencoded::byte_serialize(identifier.as_bytes()).collect::<String>()
    );
    Ok(searchset(
        &base,
        self_link,
        "ServiceRequest",
        found.into_iter().map(|r| (r.id, r.resource)).collect(),
    ))
}

/// Query of `$translate`.
#[derive(serde::Deserialize)]
pub struct TranslateParams {
    provider: Option<String>,
}

/// `POST /fhir/ServiceRequest/$translate[?provider=ID]`: the payload the
/// referral would be delivered as (`200`, the provider's own JSON, with the
/// provider in `X-Signpost-Provider`), or the OperationOutcome refusing it.
/// Nothing is stored or sent.
pub async fn translate(
    State(app): State<AppState>,
    Query(params): Query<TranslateParams>,
    FhirJson(body): FhirJson,
) -> Result<Response, FhirError> {
    let (provider, payload) = app.referrals.translate(&body, params.provider.as_deref())?;
    let mut response = (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        payload.to_string(),
    )
        .into_response();
    if let Ok(provider) = HeaderValue::from_str(&provider) {
        response
            .headers_mut()
            .insert("x-signpost-provider", provider);
    }
    Ok(response)
}
