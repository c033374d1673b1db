//! The HTTP surface: the FHIR R4 REST API under `/fhir`, providers' status
//! callbacks under `/providers`, and the operators' API under `/admin`.
//! Thin handlers that parse, call the referral domain and render. JSON
//! only: FHIR requests as `application/fhir+json` or `application/json`,
//! answers as `application/fhir+json`; every failure is an
//! `OperationOutcome`.

mod admin;
mod callbacks;
mod error;
mod metadata;
mod request;
mod service_request;
mod task;
mod transaction;

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Router,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::{Value, json};

pub use self::{
    admin::message_filter,
    error::FhirError,
    request::{FhirJson, X_CORRELATION_ID, X_REQUEST_ID, nesting_depth},
};
use crate::{
    config::Config, mapping::reload::Mappings, referrals::Referrals, store::ReferralRow,
    webhooks::SigningKeys,
};

/// The media type of every answer.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub referrals: Arc<Referrals>,
    pub mappings: Arc<Mappings>,
    /// Signing keys by endpoint (`provider:<id>`, `referrer:<id>`).
    pub keys: Arc<BTreeMap<String, Arc<SigningKeys>>>,
    pub audit: crate::audit::AuditLog,
    /// API tokens, for authentication.
    pub tokens: Arc<dyn crate::store::TokenStore>,
    pub limiter: Arc<crate::limits::RateLimiter>,
    /// The delivery worker's heartbeat, for `GET /health/ready`.
    pub worker_heartbeat: Arc<crate::health::WorkerHeartbeat>,
    /// Referrers by client certificate name (mutual TLS).
    pub client_identities: Arc<crate::tls::ClientIdentities>,
    pub admission: Arc<crate::limits::Admission>,
}

/// The whole HTTP application.
///
/// Who may call what: `/fhir/metadata` is open; the rest of `/fhir` needs a
/// referrer's or an admin's bearer token (a referrer sees only its own
/// referrals); `/admin` needs an admin token; `/providers/{id}/status` is
/// authenticated by the provider's webhook signature instead.
pub fn router(state: AppState) -> Router {
    let open = Router::new().route("/metadata", get(metadata::capability_statement));
    let fhir = Router::new()
        .route("/", axum::routing::post(transaction::create))
        .route(
            "/ServiceRequest",
            get(service_request::search).post(service_request::create),
        )
        .route(
            "/ServiceRequest/$translate",
            axum::routing::post(service_request::translate),
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
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::any_caller,
        ))
        .merge(open);
    let admin = Router::new()
        .route("/mappings", get(admin::mappings))
        .route("/deliveries", get(admin::list))
        .route("/deliveries/{id}", get(admin::show))
        .route(
            "/deliveries/{id}/replay",
            axum::routing::post(admin::replay),
        )
        .route("/callbacks", get(admin::callbacks))
        .route("/audit", get(admin::audit))
        .route("/erase", axum::routing::post(admin::erase))
        .route("/endpoints", get(admin::endpoints))
        .route(
            "/endpoints/{endpoint}/enable",
            axum::routing::post(admin::enable),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::admin_only,
        ));
    let metrics = Router::new()
        .route("/metrics", get(crate::metrics::scrape))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::monitor,
        ));
    Router::new()
        .nest("/fhir", fhir)
        .nest("/admin", admin)
        .merge(metrics)
        .route("/health/live", get(crate::health::live))
        .route("/health/ready", get(crate::health::ready))
        .route(
            "/providers/{provider_id}/status",
            axum::routing::post(callbacks::status),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::limits::admit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::audit::record_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::record,
        ))
        .layer(axum::middleware::from_fn(request::request_ids))
        // Outermost: a panic in any handler becomes a bare 500
        // OperationOutcome; the request id layer still sees and echoes it.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("handler panicked; answering 500");
                FhirError::Internal.into_response()
            },
        ))
        .with_state(state)
}

async fn not_found() -> FhirError {
    FhirError::NotFound("no such endpoint; see GET /fhir/metadata".into())
}

async fn method_not_allowed() -> FhirError {
    FhirError::MethodNotAllowed
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
    let mut response = (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        json,
    )
        .into_response();
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
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        bundle.to_string(),
    )
        .into_response()
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
        Err(FhirError::NotFound(format!(
            "{resource_type}/{id} is not known"
        )))
    }
}

/// A search parameter value: no control characters.
pub fn search_value<'a>(name: &str, value: &'a str) -> Result<&'a str, FhirError> {
    if value.chars().any(char::is_control) {
        return Err(FhirError::BadRequest(vec![crate::outcome::Issue::error(
            crate::outcome::IssueCode::Value,
            format!("the {name} search value holds control characters"),
        )]));
    }
    Ok(value)
}

/// The referrer a caller sends referrals as: only referrers' tokens may.
pub fn sending_referrer(caller: &crate::auth::Caller) -> Result<&str, FhirError> {
    caller.referrer().ok_or_else(|| {
        FhirError::Forbidden("referrals are sent with a referrer's token, not an admin's".into())
    })
}

/// The referral `id` if the caller may see it; otherwise not found, exactly
/// as if it did not exist (nothing about other referrers' data leaks).
pub async fn visible_referral(
    app: &AppState,
    caller: &crate::auth::Caller,
    id: &str,
) -> Result<ReferralRow, FhirError> {
    app.referrals
        .referral(resource_id("ServiceRequest", id)?)
        .await?
        .filter(|r| caller.may_see(&r.referrer_id))
        .ok_or_else(|| FhirError::NotFound(format!("ServiceRequest/{id} is not known")))
}

/// `response`, noting for the audit trail which referral it concerned.
pub fn about_referral(mut response: Response, referral_id: &str) -> Response {
    response
        .extensions_mut()
        .insert(crate::audit::AuditReferral(referral_id.to_owned()));
    response
}

/// `Location` of a referral's current version.
pub fn referral_location(base: &str, referral: &ReferralRow) -> String {
    format!(
        "{base}/ServiceRequest/{}/_history/{}",
        referral.id, referral.version_id
    )
}
