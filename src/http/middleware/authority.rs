//! The host a request was sent to, whatever the protocol. HTTP/1.1 names
//! it in the `Host` header; HTTP/2 in the `:authority` pseudo-header,
//! which hyper puts in the request's URI and not in `Host` (RFC 9113
//! §8.3.1). Without this, everything that reads `Host` (the base of
//! `Location` and `fullUrl` when `public_base_url` is unset, see
//! `http::fhir::base_url`) would find none over HTTP/2 and fall back to
//! the listen address. The `Host` so made is checked as any other.

use axum::{
    extract::Request,
    http::{HeaderValue, header},
};

/// The request with `Host` set from `:authority` when it has none.
pub async fn host_from_authority(mut request: Request) -> Request {
    if !request.headers().contains_key(header::HOST)
        && let Some(host) = request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        request.headers_mut().insert(header::HOST, host);
    }
    request
}
