//! Who a request proved to be, carried from the authentication extractors
//! (`http::extract`) out to the metrics and audit layers, which run
//! outside the router and see only the answer.
//!
//! [`carry`] puts an empty [`Identified`] slot in the request's extensions;
//! an extractor that authenticates the caller fills it (whether or not the
//! caller is then let through, so a `403` or `429` is recorded against
//! it); and once the answer is ready, [`carry`] copies it onto the
//! response as the [`Caller`] (or [`AuditActor`]) those layers read. It
//! runs outside admission control, so an answer that admission replaced
//! (a `408` timeout) carries the identity proved before the deadline: an
//! admin's erasure cut off by it is audited as that admin's.

use std::sync::{Arc, OnceLock};

use axum::{extract::Request, http::Extensions, middleware::Next, response::Response};

use super::audit::AuditActor;
use crate::{
    domain::{Actor, ProviderId},
    security::tokens::Caller,
};

/// Who a request proved to be.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A token holder, or a referrer's client certificate.
    Caller(Caller),
    /// A provider, by its webhook signature (the provider id).
    Provider(ProviderId),
}

/// The slot an extractor fills (a request extension).
#[derive(Debug, Clone, Default)]
pub struct Identified(Arc<OnceLock<Identity>>);

/// Note who the request is from in `extensions` (the first note stands).
pub fn record(extensions: &Extensions, identity: Identity) {
    if let Some(slot) = extensions.get::<Identified>() {
        let _ = slot.0.set(identity);
    }
}

/// Middleware: give the request an empty slot, and copy what the
/// extractors noted in it onto the answer.
pub async fn carry(mut request: Request, next: Next) -> Response {
    let slot = Identified::default();
    request.extensions_mut().insert(slot.clone());
    let mut response = next.run(request).await;
    match slot.0.get() {
        Some(Identity::Caller(caller)) => {
            response.extensions_mut().insert(caller.clone());
        }
        Some(Identity::Provider(id)) => {
            response
                .extensions_mut()
                .insert(AuditActor(Actor::Provider(id.clone())));
        }
        None => {}
    }
    response
}
