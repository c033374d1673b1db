//! Request limits that protect the service and its database: a token
//! bucket per caller, a cap on requests handled at once, and a deadline
//! for each request (slow senders included). Body size, JSON nesting depth
//! and array length are checked where the body is read
//! (`fhir::request`).

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::Semaphore;

use crate::{
    config::Limits,
    fhir::{AppState, FhirError},
};

/// Buckets kept before full ones are forgotten (client addresses are
/// many; memory must not grow with them).
const MAX_BUCKETS: usize = 10_000;

/// Token buckets by key: a caller's credential, a provider, or the address
/// of a client that has not authenticated.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(limits: &Limits) -> RateLimiter {
        RateLimiter {
            rate: limits.requests_per_second,
            burst: f64::from(limits.burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Take one request from `caller`'s bucket, or say how long until one
    /// is available.
    pub fn check(&self, caller: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_BUCKETS {
            // Forget buckets that have refilled: they are the same as new.
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.rate;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

/// `429 Too Many Requests` with `Retry-After` for a wait of `wait`.
pub fn too_many(wait: Duration) -> Response {
    FhirError::TooManyRequests {
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
    .into_response()
}

/// Charge a request that proved no identity (no or a wrong token, a bad
/// webhook signature) to its client address: `Some(429)` once that
/// address's bucket is empty. This throttles guessing without letting
/// anyone drain a real caller's bucket.
pub fn charge_client(app: &AppState, request: &Request) -> Option<Response> {
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())?;
    charge_address(app, address)
}

/// [`charge_client`] for a known address.
pub fn charge_address(app: &AppState, address: IpAddr) -> Option<Response> {
    app.limiter.check(&format!("client:{address}")).err().map(|wait| {
        tracing::info!(client = %address, "unauthenticated requests from this address rate limited");
        too_many(wait)
    })
}

/// Admission control for every request: at most `max_concurrent_requests`
/// at once (`503` beyond, rather than queueing without bound), each within
/// `request_timeout` (`408`).
pub struct Admission {
    slots: Arc<Semaphore>,
    timeout: Duration,
}

impl Admission {
    pub fn new(limits: &Limits) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            timeout: limits.request_timeout,
        }
    }
}

/// Middleware applying [`Admission`].
pub async fn admit(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let Ok(_slot) = app.admission.slots.clone().try_acquire_owned() else {
        tracing::warn!("too many requests in flight; answering 503");
        return FhirError::Busy.into_response();
    };
    match tokio::time::timeout(app.admission.timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => FhirError::Timeout.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_the_burst_then_the_rate() {
        let limiter = RateLimiter::new(&Limits {
            requests_per_second: 10.0,
            burst: 3,
            ..Limits::default()
        });
        for _ in 0..3 {
            assert!(limiter.check("a").is_ok());
        }
        let wait = limiter.check("a").unwrap_err();
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        // Another caller has its own bucket.
        assert!(limiter.check("b").is_ok());
        std::thread::sleep(Duration::from_millis(120));
        assert!(limiter.check("a").is_ok());
    }
}
