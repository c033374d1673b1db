//! `ServiceRequest`: create (with `If-None-Exist`), read, vread, search by
//! `identifier`, and the referrer's cancellation (`PUT`/`PATCH` to
//! `revoked`).

use std::collections::HashMap;

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::Value;

use super::{
    base_url, path_id, referral_location, resource_response, search_value, searchset,
    visible_referral,
};
use crate::{
    domain::ReferralId,
    http::{
        AppState, FhirCaller, FhirError, FhirJson,
        middleware::audit::about_referral,
        request::{LimitedBody, bad_request, json_patch, require_json_patch},
    },
    outcome::{Issue, IssueCode},
    security::{
        authz::{self, sending_referrer},
        tokens::Caller,
    },
};

/// `POST /fhir/ServiceRequest`: `201` with the stored referral, or `200`
/// with the one already accepted under the same business identifier.
pub(super) async fn create(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    headers: HeaderMap,
    FhirJson(body): FhirJson,
) -> Result<Response, FhirError> {
    let referrer = sending_referrer(&caller)?;
    let if_none_exist = headers
        .get("if-none-exist")
        .map(|v| v.to_str().unwrap_or_default());
    let receipt = app
        .referrals
        .submit_service_request(referrer, body, if_none_exist)
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
    Ok(about_referral(response, &receipt.referral.id))
}

/// `GET /fhir/ServiceRequest/{id}`.
pub(super) async fn read(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    let id: ReferralId = path_id("ServiceRequest", &id)?;
    let referral = visible_referral(&app, &caller, &id).await?;
    let response = resource_response(StatusCode::OK, referral.version_id, referral.resource);
    Ok(about_referral(response, &referral.id))
}

/// `GET /fhir/ServiceRequest/{id}/_history/{version}`: only the current
/// version is kept.
pub(super) async fn vread(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    Path((id, version)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    let referral_id: ReferralId = path_id("ServiceRequest", &id)?;
    let referral = Some(visible_referral(&app, &caller, &referral_id).await?)
        .filter(|r| r.version_id.to_string() == version)
        .ok_or_else(|| FhirError::NotFound("the ServiceRequest has no such version".into()))?;
    let response = resource_response(StatusCode::OK, referral.version_id, referral.resource);
    Ok(about_referral(response, &referral.id))
}

/// `GET /fhir/ServiceRequest?identifier=system|value`.
pub(super) async fn search(
    FhirCaller(caller): FhirCaller,
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
        .await?
        .into_iter()
        .filter(|r| authz::visible(&caller).includes(r.referrer_id.as_str()))
        .collect::<Vec<_>>();
    let self_link = format!(
        "{base}/ServiceRequest?identifier={}",
        url::form_urlencoded::byte_serialize(identifier.as_bytes()).collect::<String>()
    );
    Ok(searchset(
        &base,
        self_link,
        "ServiceRequest",
        found
            .into_iter()
            .map(|r| (r.id.into(), r.resource))
            .collect(),
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
pub(super) async fn translate(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    Query(params): Query<TranslateParams>,
    FhirJson(body): FhirJson,
) -> Result<Response, FhirError> {
    let (provider, payload) =
        app.referrals
            .translate(caller.referrer(), body, params.provider.as_deref())?;
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

/// `PUT /fhir/ServiceRequest/{id}`: the referrer cancels its referral by
/// sending it back with `status` `revoked` (or `entered-in-error`). Nothing
/// else may change after acceptance; `If-Match` is honoured.
pub(super) async fn update(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    FhirJson(body): FhirJson,
) -> Result<Response, FhirError> {
    let id: ReferralId = path_id("ServiceRequest", &id)?;
    let stored = current(&app, &caller, &id, &headers).await?;
    if body.get("resourceType").and_then(|t| t.as_str()) != Some("ServiceRequest")
        || body.get("id").and_then(|t| t.as_str()) != Some(id.as_str())
    {
        return Err(FhirError::BadRequest(vec![
            Issue::error(
                IssueCode::Invalid,
                "the body must be the ServiceRequest with the id in the URL",
            )
            .at("ServiceRequest.id"),
        ]));
    }
    let status = status_change_only(&stored, &body)?;
    withdraw(&app, &headers, &id, &stored, &status).await
}

/// `PATCH /fhir/ServiceRequest/{id}` with a JSON Patch
/// (`application/json-patch+json`) that replaces `/status` with `revoked`
/// (or `entered-in-error`); `test` operations are checked. Nothing else may
/// change after acceptance.
pub(super) async fn patch(
    FhirCaller(caller): FhirCaller,
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    LimitedBody(body): LimitedBody,
) -> Result<Response, FhirError> {
    require_json_patch(&headers)?;
    let id: ReferralId = path_id("ServiceRequest", &id)?;
    let stored = current(&app, &caller, &id, &headers).await?;
    let operations: Vec<Value> = json_patch(&body)?;
    let mut patched = stored.clone();
    for (index, operation) in operations.iter().enumerate() {
        let op = operation.get("op").and_then(Value::as_str);
        let path = operation
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let value = operation.get("value");
        match (op, value) {
            (Some("test"), Some(expected)) => {
                if patched.pointer(path) != Some(expected) {
                    return Err(FhirError::Conflict(format!(
                        "JSON Patch operation {index}: test of {path} failed"
                    )));
                }
            }
            (Some("replace" | "add"), Some(value)) if path == "/status" => {
                patched["status"] = value.clone();
            }
            _ => {
                return Err(FhirError::Unprocessable(vec![Issue::error(
                    IssueCode::NotSupported,
                    format!(
                        "JSON Patch operation {index}: only replacing /status (to cancel) is supported after acceptance"
                    ),
                )]));
            }
        }
    }
    let status = status_change_only(&stored, &patched)?;
    withdraw(&app, &headers, &id, &stored, &status).await
}

/// The stored ServiceRequest, if it is the caller's own (only the referrer
/// withdraws its referral), after checking `If-Match` (`W/"n"`).
async fn current(
    app: &AppState,
    caller: &Caller,
    id: &ReferralId,
    headers: &HeaderMap,
) -> Result<Value, FhirError> {
    let referral = authz::withdrawable_referral(&app.referrals, caller, id).await?;
    if let Some(expected) = if_match(headers)?
        && expected != referral.version_id.to_string()
    {
        return Err(FhirError::PreconditionFailed(format!(
            "If-Match does not match the current version {}",
            referral.version_id
        )));
    }
    serde_json::from_str(&referral.resource).map_err(|_| FhirError::Internal)
}

/// The version an `If-Match` header asks for (`W/"3"`, `"3"` or `3`), if
/// one was sent. A header that cannot be read (not visible ASCII, or not a
/// version) is refused: ignoring it would apply the change unconditionally,
/// the opposite of what the client asked. The value is never quoted.
fn if_match(headers: &HeaderMap) -> Result<Option<String>, FhirError> {
    let mut values = headers.get_all(header::IF_MATCH).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let unreadable =
        || bad_request("If-Match must be one entity tag such as W/\"1\" (visible ASCII)".into());
    if values.next().is_some() {
        return Err(unreadable());
    }
    let text = value.to_str().map_err(|_| unreadable())?.trim();
    if text == "*" {
        return Ok(None); // any current version
    }
    let tag = text.strip_prefix("W/").unwrap_or(text);
    let version = tag
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(tag);
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unreadable());
    }
    let version: u64 = version.parse().map_err(|_| unreadable())?;
    Ok(Some(version.to_string()))
}

/// The new `status`, if that is all `revised` changes (server-managed
/// `meta` aside).
fn status_change_only(stored: &Value, revised: &Value) -> Result<String, FhirError> {
    let without = |resource: &Value| {
        let mut copy = resource.clone();
        if let Some(fields) = copy.as_object_mut() {
            fields.shift_remove("meta");
            fields.shift_remove("status");
            fields.shift_remove("text");
        }
        copy
    };
    if without(stored) != without(revised) {
        return Err(FhirError::Unprocessable(vec![Issue::error(
            IssueCode::NotSupported,
            "only the status can change after a referral is accepted (to revoked, to cancel it, or entered-in-error)",
        )]));
    }
    revised
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            FhirError::BadRequest(vec![
                Issue::error(IssueCode::Required, "status is required").at("ServiceRequest.status"),
            ])
        })
}

async fn withdraw(
    app: &AppState,
    headers: &HeaderMap,
    id: &ReferralId,
    stored: &Value,
    status: &str,
) -> Result<Response, FhirError> {
    if stored.get("status").and_then(Value::as_str) == Some(status) {
        // Nothing to change: answer with the current version.
        let referral = app
            .referrals
            .referral(id)
            .await?
            .ok_or_else(|| FhirError::NotFound("no ServiceRequest has this id".into()))?;
        return Ok(resource_response(
            StatusCode::OK,
            referral.version_id,
            referral.resource,
        ));
    }
    let revised = app.referrals.withdraw(id, status, None).await?;
    tracing::info!(referral_id = %id, status, "referral withdrawn by the referrer");
    let location = referral_location(&base_url(&app.config, headers), &revised);
    let mut response = resource_response(StatusCode::OK, revised.version_id, revised.resource);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response
            .headers_mut()
            .insert(header::CONTENT_LOCATION, location);
    }
    Ok(response)
}
