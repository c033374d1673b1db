//! One audit record per request, written after the answer (by the
//! background writer, [`crate::audit::AuditLog`]): when, who, from where,
//! the action (method and route pattern, from closed sets), the resource,
//! the referral it concerned, and the status. Only ids: the query string
//! and the body are never recorded.
//!
//! Who: the [`Caller`] or [`AuditActor`] found on the answer (see
//! `super::identity`), else `unauthenticated`; and what authenticated the
//! caller: the token's id, the client certificate's name, or both. The resource (the path, or
//! the `Location` of what a create made) is recorded for callers who
//! proved who they are; never for anonymous requests, whose records the
//! writer samples and counts ([`crate::audit::anonymous`]) and whose path
//! (an unmatched one above all) is whatever the client chose to send.

use std::net::SocketAddr;

use axum::{
    extract::{ConnectInfo, Request, State},
    http::header,
    middleware::Next,
    response::Response,
};

use super::{method_label, request_id::RequestId, route_label};
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

/// Middleware: one record per request, after the answer (sampled and
/// counted by the writer when anonymous).
pub async fn record_requests(
    State(audit): State<AuditLog>,
    request: Request,
    next: Next,
) -> Response {
    let action = format!(
        "{} {}",
        method_label(request.method()),
        route_label(request.extensions())
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
    let caller = extensions.get::<Caller>();
    let credential = caller.map(Caller::credentials);
    let actor = caller
        .map(Caller::actor)
        .or_else(|| extensions.get::<AuditActor>().map(|a| a.0.clone()))
        .unwrap_or(Actor::Unauthenticated);
    // A create names its new resource in Location.
    let resource = (actor != Actor::Unauthenticated).then(|| {
        response
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.find("/fhir/").map(|at| l[at..].to_owned()))
            .unwrap_or(path)
    });
    audit
        .record(AuditRecord {
            seq: 0,
            at: crate::audit::now(),
            actor,
            credential,
            client,
            request_id,
            action,
            resource,
            referral_id: extensions.get::<AuditReferral>().map(|r| r.0.clone()),
            outcome: response.status().as_u16().to_string(),
        })
        .await;
    response
}
