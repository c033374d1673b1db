//! Who is calling, as extractors: a handler's signature says who may call
//! it (after Svix's `permissions.rs`). Each rejects with [`FhirError`]:
//!
//! - [`FhirCaller`]: a referrer or an admin (the FHIR API);
//! - [`Admin`]: an admin (the `/admin` API);
//! - [`Monitor`]: a metrics scraper or an admin (`GET /metrics`);
//! - [`ReportReader`]: an analyst or an admin (`/reports`, the funnel
//!   `Measure` and its `MeasureReport`s);
//! - [`SignedProvider`]: a provider, by the Standard Webhooks signature of
//!   its status callback (which needs the body, so it is read here, after
//!   every check the headers allow and within a budget of its own).
//!
//! A token holder presents `Authorization: Bearer <token>`; without that
//! header, a referrer may present a client certificate over mutual TLS (a
//! bearer token, when sent, takes precedence). The checks run in a fixed
//! order: who (`401`; or `429` once the client's address has failed too
//! often), then the role (`403`), then the caller's rate (`429`). Which
//! referrals a caller may then see or change is
//! [`crate::security::authz`]'s business.

use std::sync::Arc;

use axum::{
    extract::{FromRequest, FromRequestParts, Path, Request},
    http::{header, request::Parts},
};

use super::{
    AppState, FhirError,
    middleware::{
        identity::{self, Identity},
        limits::{charge_client, too_many},
    },
    request::read_limited,
};
use crate::{
    domain::{Actor, Endpoint, ProviderId},
    security::tokens::{AuthError, Caller, Role, authenticate},
    webhooks::{SignedHeaders, VerifyError},
};

/// A caller of the FHIR API: a referrer or an admin.
pub struct FhirCaller(pub Caller);

impl FromRequestParts<AppState> for FhirCaller {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, FhirError> {
        let allowed = |role: &Role| matches!(role, Role::Referrer(_) | Role::Admin);
        authorised(parts, app, allowed, "a referrer's or an admin's token")
            .await
            .map(FhirCaller)
    }
}

/// An operator (an admin token).
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, FhirError> {
        let allowed = |role: &Role| role == &Role::Admin;
        authorised(parts, app, allowed, "an admin token")
            .await
            .map(Admin)
    }
}

/// A metrics scraper (a monitor token), or an operator.
pub struct Monitor(pub Caller);

impl FromRequestParts<AppState> for Monitor {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, FhirError> {
        let allowed = |role: &Role| matches!(role, Role::Monitor | Role::Admin);
        authorised(parts, app, allowed, "a monitor or an admin token")
            .await
            .map(Monitor)
    }
}

/// A reader of reports: an analyst or an admin.
pub struct ReportReader(pub Caller);

impl FromRequestParts<AppState> for ReportReader {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, FhirError> {
        let allowed = |role: &Role| matches!(role, Role::Analyst | Role::Admin);
        authorised(parts, app, allowed, "an analyst or an admin token")
            .await
            .map(ReportReader)
    }
}

/// Authenticate, note the caller for the audit trail and metrics, then let
/// through the roles `allowed` accepts (`403` for the others, saying what
/// `needed`) within the caller's rate.
async fn authorised(
    parts: &Parts,
    app: &AppState,
    allowed: impl Fn(&Role) -> bool,
    needed: &str,
) -> Result<Caller, FhirError> {
    let caller = match identify(parts, app).await {
        Ok(caller) => caller,
        Err(error) => return Err(unauthenticated(app, parts, error)),
    };
    identity::record(&parts.extensions, Identity::Caller(caller.clone()));
    if !allowed(&caller.role) {
        tracing::info!(credential = %caller.credential, "endpoint refused to this role");
        return Err(FhirError::Forbidden(format!(
            "this endpoint needs {needed}"
        )));
    }
    if let Err(wait) = app.limiter.check(&caller.credential) {
        tracing::info!(credential = %caller.credential, "rate limited");
        return Err(too_many(wait));
    }
    Ok(caller)
}

/// The caller: its bearer token, else the referrer its verified client
/// certificate names.
async fn identify(parts: &Parts, app: &AppState) -> Result<Caller, AuthError> {
    let Some(authorization) = parts.headers.get(header::AUTHORIZATION) else {
        return certificate_caller(parts, app).ok_or(AuthError::Missing);
    };
    let token = authorization
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or(AuthError::Invalid)?;
    let caller = authenticate(app.tokens.as_ref(), token).await?;
    // A token outlives nothing it was issued to: once its referrer is gone
    // from the configuration it is refused as a revoked token is.
    if let Role::Referrer(referrer) = &caller.role
        && !app.config.referrers.contains_key(referrer)
    {
        tracing::info!(credential = %caller.credential, "token refused: its referrer is no longer configured");
        return Err(AuthError::Invalid);
    }
    Ok(caller)
}

fn certificate_caller(parts: &Parts, app: &AppState) -> Option<Caller> {
    let tls = parts.extensions.get::<Arc<axum_server::tls::TlsInfo>>()?;
    let (referrer, name) = app
        .client_identities
        .referrer(tls.peer_certificates.first()?)?;
    Some(Caller {
        credential: format!("certificate:{name}"),
        role: Role::Referrer(referrer.clone()),
    })
}

/// `401`; or `429` once the client's address has failed too often (token
/// guessing is throttled by address, since there is no token to charge).
fn unauthenticated(app: &AppState, parts: &Parts, error: AuthError) -> FhirError {
    if let Err(limited) = charge_client(&app.limiter, &parts.extensions) {
        return limited;
    }
    tracing::info!(reason = ?error, "request refused: not authenticated");
    FhirError::Unauthenticated {
        token_sent: error == AuthError::Invalid,
    }
}

/// A provider's status callback whose Standard Webhooks signature verified
/// with that provider's secret, within the provider's rate.
pub struct SignedProvider {
    /// The provider, from the path.
    pub id: ProviderId,
    /// The callback's `webhook-id` (for deduplication).
    pub webhook_id: String,
    /// The body, as signed.
    pub body: Vec<u8>,
}

impl FromRequest<AppState> for SignedProvider {
    type Rejection = FhirError;

    /// Everything the headers can tell is checked before the body is read
    /// (the provider, and the signature headers present, well-formed and
    /// dated now), so a request that cannot verify is refused at once.
    /// The body is then received within a short deadline and within the
    /// budget for senders not yet known
    /// ([`crate::security::rate_limit::Admission::try_unverified`]),
    /// so slow uploads cannot hold the slots authenticated callers need.
    async fn from_request(request: Request, app: &AppState) -> Result<Self, FhirError> {
        let (mut parts, body) = request.into_parts();
        // The handler has taken the path already (so a malformed one is
        // refused as before); this cannot fail after that.
        let Path(id) = Path::<String>::from_request_parts(&mut parts, app)
            .await
            .map_err(|_| FhirError::Internal)?;
        let unknown = || FhirError::NotFound("no provider has this id".into());
        let id = match app.config.providers.get(id.as_str()) {
            Some(provider) => provider.id.clone(),
            None => return Err(unknown()),
        };
        let keys = app
            .keys
            .get(&Endpoint::Provider(id.clone()))
            .ok_or_else(unknown)?;
        let now = app.referrals.clock().now().to_datetime();
        let refused = |e: VerifyError| -> FhirError {
            // Guessing is throttled by address, as for bearer tokens.
            if let Err(limited) = charge_client(&app.limiter, &parts.extensions) {
                return limited;
            }
            tracing::warn!(provider_id = %id, reason = %e, "status callback refused: bad signature");
            FhirError::Unauthorized(format!(
                "the Standard Webhooks signature was not accepted: {e}"
            ))
        };
        let signed = SignedHeaders::check(&parts.headers, now).map_err(refused)?;
        let Some(_receiving) = app.admission.try_unverified() else {
            tracing::warn!(provider_id = %id, "too many callback bodies being received; answering 503");
            return Err(FhirError::Busy);
        };
        let body = tokio::time::timeout(
            app.admission.unverified_timeout(),
            read_limited(&parts.headers, body, app.config.max_body_bytes),
        )
        .await
        .map_err(|_| {
            tracing::info!(provider_id = %id, "status callback body not received in time");
            FhirError::Timeout
        })??;
        let webhook_id = keys.verify_body(&signed, &body, now).map_err(refused)?;
        if let Err(wait) = app.limiter.check(&Actor::Provider(id.clone()).to_string()) {
            tracing::info!(provider_id = %id, "status callbacks rate limited");
            identity::record(&parts.extensions, Identity::Provider(id));
            return Err(too_many(wait));
        }
        Ok(SignedProvider {
            id,
            webhook_id,
            body,
        })
    }
}
