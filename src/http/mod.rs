//! The HTTP boundary: the router, the state handlers share, the layers
//! every request passes through, the extractors that say who is calling,
//! and every handler: the FHIR R4 REST API under `/fhir` (`fhir`), the
//! operators' API under `/admin` (`admin`), providers' status callbacks
//! and inboxes under `/providers` (`callbacks`, `inbox`), `/metrics`,
//! `/health`, and the providers' web portal under `/portal` (`portal`, HTML).
//!
//! Handlers are thin: they parse, call the referral domain and render.
//! Nothing outside this module depends on axum; the domain, the store and
//! the delivery worker never see HTTP types. JSON only: FHIR requests as
//! `application/fhir+json` or `application/json`, answers as
//! `application/fhir+json`; every failure is an `OperationOutcome`
//! ([`FhirError`]).

mod admin;
mod callbacks;
mod connections;
mod error;
mod extract;
mod fhir;
mod health;
mod inbox;
mod metrics;
mod middleware;
mod portal;
mod reports;
mod request;
mod response;
mod serve;

use std::{collections::BTreeMap, sync::Arc};

use axum::{Router, extract::FromRef, response::IntoResponse};

pub use self::{
    error::FhirError,
    extract::{Admin, EscalationCaller, FhirCaller, InboxProvider, Monitor, ProviderCallback},
    middleware::request_id::{X_CORRELATION_ID, X_REQUEST_ID},
    portal::NHSUK_FRONTEND_VERSION,
    request::FhirJson,
    response::{FHIR_JSON, FhirResponse},
    serve::Server,
};
use crate::{
    audit::AuditLog,
    config::Config,
    delivery::WorkerHeartbeat,
    domain::Endpoint,
    mapping::reload::Mappings,
    metrics::Metrics,
    referrals::Referrals,
    security::{
        client_certs::ClientIdentities,
        rate_limit::{Admission, RateLimiter},
    },
    store::TokenStore,
    webhooks::SigningKeys,
};

/// What the handlers, extractors and middleware share. Each part is also
/// a sub-state ([`FromRef`]), so a middleware or handler that needs one
/// thing takes `State<Arc<Admission>>`, `State<AuditLog>` and so on.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub referrals: Arc<Referrals>,
    /// The BaRS receiver (`$process-message`).
    pub bars: Arc<crate::bars::Bars>,
    pub mappings: Arc<Mappings>,
    /// Signing keys by endpoint (`provider:<id>`, `referrer:<id>`).
    pub keys: Arc<BTreeMap<Endpoint, Arc<SigningKeys>>>,
    pub audit: AuditLog,
    /// API tokens, for authentication.
    pub tokens: Arc<dyn TokenStore>,
    pub limiter: Arc<RateLimiter>,
    /// The delivery worker's heartbeat, for `GET /health/ready`.
    pub worker_heartbeat: Arc<WorkerHeartbeat>,
    /// Referrers by client certificate name (mutual TLS).
    pub client_identities: Arc<ClientIdentities>,
    pub admission: Arc<Admission>,
    /// The instances sharing the database (`GET /admin/instances`).
    pub instances: Arc<crate::instances::Registry>,
    /// The providers' web portal: accounts, sessions, referral pages.
    pub portal: Arc<crate::portal::Portal>,
    /// The funnel and its publications (`/reports`, `Measure`).
    pub reports: Arc<crate::reports::Reports>,
}

/// `impl FromRef<AppState> for` each of its parts.
macro_rules! sub_states {
    ($($field:ident: $type:ty),* $(,)?) => {$(
        impl FromRef<AppState> for $type {
            fn from_ref(app: &AppState) -> $type {
                app.$field.clone()
            }
        }
    )*};
}

sub_states! {
    config: Arc<Config>,
    referrals: Arc<Referrals>,
    mappings: Arc<Mappings>,
    audit: AuditLog,
    tokens: Arc<dyn TokenStore>,
    limiter: Arc<RateLimiter>,
    worker_heartbeat: Arc<WorkerHeartbeat>,
    admission: Arc<Admission>,
    instances: Arc<crate::instances::Registry>,
    reports: Arc<crate::reports::Reports>,
}

/// The registry lives with the domain, which records into it too.
impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(app: &AppState) -> Arc<Metrics> {
        app.referrals.metrics()
    }
}

/// The whole HTTP application.
///
/// Who may call what is in each handler's signature (see `extract`):
/// `/fhir/metadata` and `/health` are open; the rest of `/fhir` needs a
/// referrer's or an admin's bearer token (a referrer sees only its own
/// referrals); `/admin` needs an admin token; `/metrics` a monitor or an
/// admin token; `/providers/{id}/status` is authenticated by the
/// provider's webhook signature instead (or an inbox provider's own token),
/// and `/providers/{id}/inbox` by that provider's own token. Every FHIR path also answers in
/// its trailing-slash form (`POST /fhir/`), which is rewritten before
/// routing.
pub fn router(state: AppState) -> Router {
    Router::new()
        .fallback_service(routes(state))
        .layer(axum::middleware::map_request(
            middleware::trailing_slash::trim,
        ))
        .layer(axum::middleware::map_request(
            middleware::authority::host_from_authority,
        ))
}

/// The routes and the layers every request passes through.
fn routes(state: AppState) -> Router {
    Router::new()
        .nest("/fhir", fhir::router().merge(reports::fhir_router()))
        .merge(reports::router())
        .nest("/admin", admin::router())
        .merge(metrics::router())
        .merge(health::router())
        .merge(callbacks::router())
        .merge(inbox::router())
        .merge(portal::router(state.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Layers run outermost last-added. Innermost: admission control.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::limits::admit,
        ))
        // Outside admission control, so that an answer admission replaced
        // (a `408` timeout) still carries the caller the extractors found
        // out to the metrics and audit layers.
        .layer(axum::middleware::from_fn(middleware::identity::carry))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::bars_answers::shape,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::audit::record_requests,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            middleware::metrics::record,
        ))
        .layer(axum::middleware::from_fn(
            middleware::request_id::request_ids,
        ))
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
