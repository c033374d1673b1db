//! Request limits that protect the service and its database: a token
//! bucket per caller, a cap on requests handled at once, and a deadline
//! for each request (slow senders included). Body size, JSON nesting depth
//! and array length are checked where the body is read
//! (`fhir::request`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tokio::sync::Semaphore;

use crate::{
    config::Limits,
    fhir::{AppState, FhirError},
};

/// Token buckets by caller (token id).
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
