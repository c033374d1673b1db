//! Admission control for every request (at most `max_concurrent_requests`
//! at once, and `max_requests_per_client` from one address, `503` beyond
//! rather than queueing without bound; each within
//! `request_timeout`, `408` after), and the rate limit's answers: `429`
//! with `Retry-After`, for a caller over its rate or for an address that
//! keeps failing to prove who it is. The limiters themselves are
//! [`crate::security::rate_limit`].

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::Extensions,
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::{
    http::FhirError,
    security::rate_limit::{Admission, RateLimiter},
};

/// Middleware applying [`Admission`].
pub async fn admit(
    State(admission): State<Arc<Admission>>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(_admitted) = admission.try_admit(client) else {
        tracing::warn!(client = ?client, "too many requests in flight (in all, or from this client); answering 503");
        return FhirError::Busy.into_response();
    };
    match tokio::time::timeout(admission.timeout(), next.run(request)).await {
        Ok(response) => response,
        Err(_) => FhirError::Timeout.into_response(),
    }
}

/// The address the request came from (when served over TCP).
pub fn client_address(extensions: &Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
}

/// `429 Too Many Requests` with `Retry-After` for a wait of `wait`.
pub fn too_many(wait: Duration) -> FhirError {
    FhirError::TooManyRequests {
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// Charge a request that proved no identity (no or a wrong token, a bad
/// webhook signature) to its client address: `Err(429)` once that
/// address's bucket is empty. This throttles guessing without letting
/// anyone drain a real caller's bucket.
pub fn charge_client(limiter: &RateLimiter, extensions: &Extensions) -> Result<(), FhirError> {
    let Some(address) = client_address(extensions) else {
        return Ok(());
    };
    limiter
        .check(&format!("client:{address}"))
        .map_err(|wait| {
            tracing::info!(client = %address, "unauthenticated requests from this address rate limited");
            too_many(wait)
        })
}
