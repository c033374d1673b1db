//! Who is calling, as extractors: a handler's signature says who may call
//! it (after Svix's `permissions.rs`). Each rejects with [`FhirError`]:
//!
//! - [`FhirCaller`]: a referrer or an admin (the FHIR API);
//! - [`Admin`]: an admin (the `/admin` API);
//! - [`Monitor`]: a metrics scraper or an admin (`GET /metrics`);
//! - [`ReportReader`]: an analyst or an admin (`/reports`, the funnel
//!   `Measure` and its `MeasureReport`s);
//! - [`InboxProvider`]: an inbox provider's own token, on that provider's
//!   inbox (`/providers/{id}/inbox`);
//! - [`ProviderCallback`]: a provider's status callback, by its Standard
//!   Webhooks signature (which needs the body, so it is read here, after
//!   every check the headers allow and within a budget of its own), or, for
//!   an inbox provider only, by its own token.
//!
//! A token holder presents `Authorization: Bearer <token>`; without that
//! header, a referrer may present a client certificate over mutual TLS.
//! A certificate presented with a token must name the token's holder
//! (`403` otherwise; the rule is [`crate::security::client_certs`]'). The
//! checks run in a fixed order: who (`401`; or `429` once the client's
//! address has failed too often), then whether the certificate agrees
//! (`403`), then the role (`403`), then the caller's rate (`429`). Which
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
        limits::{charge_client, client_address, too_many},
    },
    request::read_limited,
};
use crate::{
    domain::{Actor, Endpoint, ProviderId},
    security::{
        client_certs::{self, Mismatch, Presented},
        tokens::{AuthError, Caller, Role, authenticate},
    },
    store::StoreError,
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

/// A caller of the FHIR routes that serve escalations (Task reads and
/// searches, Communication, Flag, acknowledging a child Task): a referrer,
/// an admin, or a clinical service, whose token reaches its own
/// escalations only (every other read there finds nothing, as for a
/// stranger). Kept apart from [`FhirCaller`] so that no other route
/// admits a clinical service.
pub struct EscalationCaller(pub Caller);

impl FromRequestParts<AppState> for EscalationCaller {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, FhirError> {
        let allowed = |role: &Role| {
            matches!(
                role,
                Role::Referrer(_) | Role::Admin | Role::ClinicalService(_)
            )
        };
        authorised(
            parts,
            app,
            allowed,
            "a referrer's, an admin's or a clinical service's token",
        )
        .await
        .map(EscalationCaller)
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
    // A token was sent (else the certificate alone named the caller): the
    // certificate, if any, must name the token's holder.
    let token_sent = parts.headers.contains_key(header::AUTHORIZATION);
    let caller = match presented_certificate(parts, app).filter(|_| token_sent) {
        None => caller,
        Some(presented) => match client_certs::check_pair(caller.clone(), &presented) {
            Ok(caller) => caller,
            Err(Mismatch) => {
                identity::record(&parts.extensions, Identity::Caller(caller.clone()));
                tracing::warn!(
                    credential = %caller.credential,
                    "client certificate does not name the token's holder; refused"
                );
                return Err(FhirError::Forbidden(
                    "the client certificate does not name the holder of this token".into(),
                ));
            }
        },
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
        return match presented_certificate(parts, app) {
            Some(Presented::Referrer(referrer, name)) => Ok(Caller {
                credential: format!("certificate:{name}"),
                certificate: None,
                role: Role::Referrer(referrer),
            }),
            _ => Err(AuthError::Missing),
        };
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
    // A token outlives nothing it was issued to: once its referrer (or
    // provider) is gone from the configuration it is refused as a revoked
    // token is.
    let configured = match &caller.role {
        Role::Referrer(referrer) => app.config.referrers.contains_key(referrer),
        Role::Provider(provider) => app.config.providers.contains_key(provider),
        Role::ClinicalService(service) => app.config.clinical_services.contains_key(service),
        Role::Admin | Role::Monitor | Role::Analyst => true,
    };
    if !configured {
        tracing::info!(credential = %caller.credential, "token refused: its referrer or provider is no longer configured");
        return Err(AuthError::Invalid);
    }
    Ok(caller)
}

/// Whom the connection's verified client certificate names, if it
/// presented one.
fn presented_certificate(parts: &Parts, app: &AppState) -> Option<Presented> {
    let tls = parts.extensions.get::<Arc<axum_server::tls::TlsInfo>>()?;
    Some(
        app.client_identities
            .presented(tls.peer_certificates.first()?),
    )
}

/// `401`; or `429` once the client's address has failed too often (token
/// guessing is throttled by address, since there is no token to charge).
/// A token that could not be looked up is neither: `503` with
/// `Retry-After`, uncharged (a client must not take an outage for a
/// revoked credential).
fn unauthenticated(app: &AppState, parts: &Parts, error: AuthError) -> FhirError {
    if error == AuthError::Unavailable {
        return FhirError::Unavailable(StoreError::NotCommitted(
            "the token could not be looked up".into(),
        ));
    }
    if let Err(limited) = charge_client(&app.limiter, &parts.extensions) {
        return limited;
    }
    tracing::info!(reason = ?error, "request refused: not authenticated");
    FhirError::Unauthenticated {
        token_sent: error == AuthError::Invalid,
    }
}

/// An inbox provider collecting from its own inbox: the provider named in
/// the path (`/providers/{id}/…`), authenticated by a token issued to it.
/// Any other caller is refused `403`; a provider that is not configured,
/// or is not an inbox provider, is `404`.
pub struct InboxProvider(pub ProviderId);

impl FromRequestParts<AppState> for InboxProvider {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, FhirError> {
        let Path(id) = Path::<String>::from_request_parts(parts, app)
            .await
            .map_err(|_| FhirError::NotFound("no provider has this id".into()))?;
        let caller = authorised(
            parts,
            app,
            |role| matches!(role, Role::Provider(p) if p.as_str() == id),
            "this provider's own token (signpost tokens create --provider ID)",
        )
        .await?;
        let Role::Provider(provider) = caller.role else {
            return Err(FhirError::Internal);
        };
        match app.config.providers.get(&provider) {
            Some(p) if p.delivery.is_inbox() => Ok(InboxProvider(provider)),
            _ => Err(FhirError::NotFound(
                "this provider does not collect from an inbox (its delivery is \"webhook\")".into(),
            )),
        }
    }
}

/// A provider's status callback, authenticated: its Standard Webhooks
/// signature verified with that provider's secret, or (inbox providers
/// only, which may have no server to sign from) the provider's own bearer
/// token; within the provider's rate.
pub struct ProviderCallback {
    /// The provider, from the path.
    pub id: ProviderId,
    /// The callback's `webhook-id` (for deduplication). A token-authenticated
    /// callback may send one; without it, it gets a new one (`tok_…`) and is
    /// never taken for a resend.
    pub webhook_id: String,
    /// The body, as sent.
    pub body: Vec<u8>,
}

impl FromRequest<AppState> for ProviderCallback {
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
        let (id, inbox) = match app.config.providers.get(id.as_str()) {
            Some(provider) => (provider.id.clone(), provider.delivery.is_inbox()),
            None => return Err(unknown()),
        };
        if inbox && parts.headers.contains_key(header::AUTHORIZATION) {
            return token_callback(parts, body, app, id).await;
        }
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
        let client = client_address(&parts.extensions);
        let Some(_receiving) = app.admission.try_unverified(client) else {
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
            // A slow upload from a sender not yet known counts against its
            // address like a bad signature.
            charge_client(&app.limiter, &parts.extensions)
                .err()
                .unwrap_or(FhirError::BodyTimeout)
        })??;
        let webhook_id = keys.verify_body(&signed, &body, now).map_err(refused)?;
        if let Err(wait) = app.limiter.check(&Actor::Provider(id.clone()).to_string()) {
            tracing::info!(provider_id = %id, "status callbacks rate limited");
            identity::record(&parts.extensions, Identity::Provider(id));
            return Err(too_many(wait));
        }
        Ok(ProviderCallback {
            id,
            webhook_id,
            body,
        })
    }
}

/// An inbox provider's status callback with its own token in place of a
/// signature: the token first (`401`/`403`, and its rate), then the body.
async fn token_callback(
    parts: Parts,
    body: axum::body::Body,
    app: &AppState,
    id: ProviderId,
) -> Result<ProviderCallback, FhirError> {
    authorised(
        &parts,
        app,
        |role| role == &Role::Provider(id.clone()),
        "this provider's own token or a Standard Webhooks signature",
    )
    .await?;
    let webhook_id = match parts.headers.get("webhook-id") {
        None => format!("tok_{}", uuid::Uuid::now_v7().simple()),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= 256 && v.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                FhirError::BadRequest(vec![crate::outcome::Issue::error(
                    crate::outcome::IssueCode::Value,
                    "the webhook-id header must be 1 to 256 printable ASCII characters",
                )])
            })?
            .to_owned(),
    };
    let body = read_limited(&parts.headers, body, app.config.max_body_bytes).await?;
    Ok(ProviderCallback {
        id,
        webhook_id,
        body,
    })
}
