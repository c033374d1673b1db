//! One audit record per request, written after the answer (by the
//! background writer, [`crate::audit::AuditLog`]): when, who, from where,
//! the action (method and route pattern), the resource, the referral it
//! concerned, and the status. Only ids: the query string and the body are
//! never recorded.
//!
//! Who: the [`Caller`] or [`AuditActor`] found on the answer (see
//! `super::identity`), else `unauthenticated`.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::Response,
};

use super::request_id::RequestId;
use crate::{
    audit::AuditLog,
    domain::{Actor, ReferralId},
    security::tokens::Caller,
    store::AuditRecord,
};

/// Who acted, when it was not a token holder (a provider's callback).
#[derive(Debug, Clone)]
pub struct AuditActor(pub Actor);

/// The referral a request concerned (set by handlers on the response).
#[derive(Debug, Clone)]
pub struct AuditReferral(pub ReferralId);

/// `response`, noting for the audit trail which referral it concerned.
pub fn about_referral(mut response: Response, referral_id: &ReferralId) -> Response {
    response
        .extensions_mut()
        .insert(AuditReferral(referral_id.clone()));
    response
}

/// `response`, noting for the audit trail who acted (when not a
/// [`Caller`]).
pub fn acted_by(mut response: Response, actor: Actor) -> Response {
    response.extensions_mut().insert(AuditActor(actor));
    response
}

/// Middleware: one record per request, after the answer.
pub async fn record_requests(
    State(audit): State<AuditLog>,
    request: Request,
    next: Next,
) -> Response {
    let action = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("(no route)", MatchedPath::as_str)
    );
    // The path names the resource; the query is left out (it may hold
    // identifiers of people).
    let path = request.uri().path().to_owned();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
    let response = next.run(request).await;
    let extensions = response.extensions();
    let actor = extensions
        .get::<Caller>()
        .map(Caller::actor)
        .or_else(|| extensions.get::<AuditActor>().map(|a| a.0.clone()))
        .unwrap_or(Actor::Unauthenticated);
    // A create names its new resource in Location.
    let resource = response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.find("/fhir/").map(|at| l[at..].to_owned()))
        .unwrap_or(path);
    audit
        .record(AuditRecord {
            seq: 0,
            at: crate::audit::now(),
            actor,
            client,
            request_id,
            action,
            resource: Some(resource),
            referral_id: extensions.get::<AuditReferral>().map(|r| r.0.clone()),
            outcome: response.status().as_u16().to_string(),
        })
        .await;
    response
}
