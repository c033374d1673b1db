//! The FHIR R4 REST surface under `/fhir`: `ServiceRequest`, `Task`,
//! transaction Bundles and the CapabilityStatement, with the helpers
//! their handlers share (base URL, stored-resource answers, searchsets,
//! resource ids from the path).

mod metadata;
mod service_request;
mod task;
mod transaction;

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use super::{AppState, FhirError, FhirResponse};
use crate::{
    config::Config,
    domain::ReferralId,
    domain::model::Referral,
    outcome::{Issue, IssueCode},
    security::{authz, tokens::Caller},
};

/// The routes under `/fhir`. Every one but `metadata` takes a
/// [`super::FhirCaller`]: a referrer's or an admin's token.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", post(transaction::create))
        .route(
            "/ServiceRequest",
            get(service_request::search).post(service_request::create),
        )
        .route(
            "/ServiceRequest/$translate",
            post(service_request::translate),
        )
        .route(
            "/ServiceRequest/{id}",
            get(service_request::read)
                .put(service_request::update)
                .patch(service_request::patch),
        )
        .route(
            "/ServiceRequest/{id}/_history/{version}",
            get(service_request::vread),
        )
        .route("/Task", get(task::search))
        .route("/Task/{id}", get(task::read))
        .route("/metadata", get(metadata::capability_statement))
}

/// The absolute base of this server's FHIR endpoint: `public_base_url` when
/// configured, else from the request's `Host`.
pub fn base_url(config: &Config, headers: &HeaderMap) -> String {
    match &config.public_base_url {
        Some(base) => format!("{base}/fhir"),
        None => {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
                .unwrap_or("localhost");
            let scheme = if config.tls.is_some() {
                "https"
            } else {
                "http"
            };
            format!("{scheme}://{host}/fhir")
        }
    }
}

/// A `200`/`201` answer carrying a stored resource's JSON as is.
pub fn resource_response(status: StatusCode, version_id: i64, json: String) -> Response {
    let mut response = FhirResponse::new(status, json).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("W/\"{version_id}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

/// A `searchset` Bundle of stored resources.
pub fn searchset(
    base: &str,
    self_link: String,
    resource_type: &str,
    resources: Vec<(String, String)>,
) -> Response {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|(id, json)| {
            json!({
                "fullUrl": format!("{base}/{resource_type}/{id}"),
                "resource": serde_json::from_str::<Value>(&json).unwrap_or(Value::Null),
                "search": { "mode": "match" }
            })
        })
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "type": "searchset",
        "total": entries.len(),
        "link": [{ "relation": "self", "url": self_link }],
        "entry": entries,
    });
    FhirResponse::new(StatusCode::OK, bundle.to_string()).into_response()
}

/// A FHIR resource id from the URL path. Anything else cannot name a stored
/// resource, so it is simply not found (and never reaches the database).
pub fn resource_id<'a>(resource_type: &str, id: &'a str) -> Result<&'a str, FhirError> {
    let valid = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(id)
    } else {
        // The id is the client's: not quoted.
        Err(FhirError::NotFound(format!(
            "no {resource_type} has this id"
        )))
    }
}

/// A typed id from the URL path (or a reference in a search): what cannot
/// be one cannot name a stored resource, so it is not found, exactly as
/// [`resource_id`] answers.
pub fn path_id<T: std::str::FromStr>(resource_type: &str, id: &str) -> Result<T, FhirError> {
    resource_id(resource_type, id)?
        .parse()
        .map_err(|_| FhirError::NotFound(format!("no {resource_type} has this id")))
}

/// A search parameter value: no control characters.
pub fn search_value<'a>(name: &str, value: &'a str) -> Result<&'a str, FhirError> {
    if value.chars().any(char::is_control) {
        return Err(FhirError::BadRequest(vec![Issue::error(
            IssueCode::Value,
            format!("the {name} search value holds control characters"),
        )]));
    }
    Ok(value)
}

/// The referral with the id from the path if the caller may see it (see
/// [`authz::visible_referral`]); otherwise not found.
pub async fn visible_referral(
    app: &AppState,
    caller: &Caller,
    id: &ReferralId,
) -> Result<Referral, FhirError> {
    Ok(authz::visible_referral(&app.referrals, caller, id).await?)
}

/// `Location` of a referral's current version.
pub fn referral_location(base: &str, referral: &Referral) -> String {
    format!(
        "{base}/ServiceRequest/{}/_history/{}",
        referral.id, referral.version_id
    )
}
