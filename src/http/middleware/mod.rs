//! The layers every request passes through, outermost first: request and
//! correlation ids with the request's span ([`request_id`]), metrics
//! ([`metrics`]), the audit record ([`audit`]), admission control
//! ([`limits`]; just outside it, [`bars_answers`] gives `$process-message`'s
//! errors from these shared layers BaRS's shape), and [`identity`], which
//! carries who the authentication extractors found the caller to be out to
//! the metrics and audit layers.
//! Outside them all, [`trailing_slash`] rewrites `/fhir/…/` paths before
//! routing, and [`authority`] gives HTTP/2 requests the `Host` HTTP/1.1
//! ones have.
//! Authentication itself is not a layer: it is the extractors in
//! `http::extract`, so a handler's signature says who may call it.

pub mod audit;
pub mod authority;
pub mod bars_answers;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod request_id;
pub mod trailing_slash;

use axum::{extract::MatchedPath, http::Method};

/// The request's method as a label from a closed set: the methods the API
/// has, else `other` (any token is a valid method; a label or an audit
/// action made from it would let a client create them without bound).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route pattern the request matched, or one label for every path
/// that matched none (never the path itself).
pub fn route_label(extensions: &axum::http::Extensions) -> &str {
    extensions
        .get::<MatchedPath>()
        .map_or(UNMATCHED, MatchedPath::as_str)
}

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "(no route)";
