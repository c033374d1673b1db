//! The FHIR R4 REST surface under `/fhir`: `ServiceRequest`, `Task`,
//! `Subscription` (each referrer's, with `$status` and `$events`),
//! transaction Bundles and the CapabilityStatement, with the helpers
//! their handlers share (base URL, stored-resource answers, searchsets,
//! resource ids from the path).

mod escalation;
mod message_definition;
mod metadata;
mod process_message;
mod service_request;
mod subscription;
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
        .route("/Subscription/{id}", get(subscription::read))
        .route(
            "/Subscription/{id}/$status",
            get(subscription::status).post(subscription::status),
        )
        .route(
            "/Subscription/{id}/$events",
            get(subscription::events_get).post(subscription::events_post),
        )
        .route("/Task", get(task::search))
        .route("/Task/{id}", get(task::read).patch(escalation::acknowledge))
        .route("/Communication", get(escalation::search_communications))
        .route("/Flag", get(escalation::search_flags))
        .route("/metadata", get(metadata::capability_statement))
        .route("/$process-message", post(process_message::process_message))
        .route("/MessageDefinition", get(message_definition::search))
        .route("/MessageDefinition/{id}", get(message_definition::read))
}

/// The absolute base of this server's FHIR endpoint: `public_base_url` when
/// configured; else from the request's `Host`, but only a host this server
/// is known by (see [`served_host`]); else from the listen address. An
/// arbitrary `Host` is never reflected into `Location` or a search's links
/// (a forged one would make them point elsewhere).
pub fn base_url(config: &Config, headers: &HeaderMap) -> String {
    if let Some(base) = &config.public_base_url {
        return format!("{base}/fhir");
    }
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| served_host(config, h))
        .map_or_else(|| listen_host(config), str::to_owned);
    format!("{scheme}://{host}/fhir")
}

/// Whether `host` (a `Host` header: a name or address and an optional
/// port) names this server without configuration: `localhost`, a loopback
/// address, or the address it listens on (when that is not the wildcard).
/// Any other name needs `public_base_url`.
fn served_host(config: &Config, host: &str) -> bool {
    let Ok(authority) = host.parse::<axum::http::uri::Authority>() else {
        return false;
    };
    if host.contains('@') {
        return false;
    }
    let name = authority.host();
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let address = name.trim_start_matches('[').trim_end_matches(']');
    match address.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback() || (ip == config.listen.ip() && !ip.is_unspecified()),
        Err(_) => false,
    }
}

/// The listen address as a host (`localhost` for the wildcard).
fn listen_host(config: &Config) -> String {
    let ip = config.listen.ip();
    if ip.is_unspecified() {
        format!("localhost:{}", config.listen.port())
    } else {
        config.listen.to_string()
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
