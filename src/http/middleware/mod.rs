//! The layers every request passes through, outermost first: request and
//! correlation ids with the request's span ([`request_id`]), metrics
//! ([`metrics`]), the audit record ([`audit`]), admission control
//! ([`limits`]), and [`identity`], which carries who the authentication
//! extractors found the caller to be out to the metrics and audit layers.
//! Outside them all, [`trailing_slash`] rewrites `/fhir/…/` paths before
//! routing.
//! Authentication itself is not a layer: it is the extractors in
//! `http::extract`, so a handler's signature says who may call it.

pub mod audit;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod request_id;
pub mod trailing_slash;
