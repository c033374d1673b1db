//! Request limits that protect the service and its database: a token
//! bucket per caller ([`RateLimiter`]), and a cap on requests handled at
//! once with a deadline for each (slow senders included; [`Admission`]).
//! The HTTP layer applies them (`http::middleware::limits` and the
//! authentication extractors); body size, JSON nesting depth and array
//! length are checked where the body is read (`http::request`).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Limits;

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
    /// is available. Keys are `token:<id>`, `certificate:<name>`,
    /// `provider:<id>` and, for requests that proved no identity,
    /// `client:<address>`.
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

/// Admission control for every request: at most `max_concurrent_requests`
/// at once (`503` beyond, rather than queueing without bound), each within
/// `request_timeout` (`408`).
///
/// Within that, a smaller budget for work done before the sender is known
/// ([`Admission::try_unverified`]): receiving the body of a provider
/// callback, whose signature covers the body. Everything else learns who
/// is calling from the headers alone and answers at once when it cannot,
/// so unauthenticated requests hold at most `max_unverified_uploads` slots
/// for longer than that, and the rest stay for authenticated callers.
///
/// Each client address has a share of both: of the slots at most
/// `max_requests_per_client` (over HTTP/2 a client opens many requests on
/// one connection, so without this a few connections could hold every
/// slot; over HTTP/1.1 it takes a connection per slot, bounded by
/// `max_connections_per_client`), and of the unverified slots an eighth (at
/// least one), so a single client sending forged signatures cannot take
/// every slot from the providers.
pub struct Admission {
    slots: Arc<Semaphore>,
    unverified: Arc<Semaphore>,
    slots_by_client: ClientShares,
    unverified_by_client: ClientShares,
    timeout: Duration,
    unverified_timeout: Duration,
}

/// A request's admission: its slot, and its place in its client's share;
/// both given back when dropped.
pub struct Admitted {
    _slot: OwnedSemaphorePermit,
    _client: Option<ClientShare>,
}

/// A slot of the unverified budget, given back (with its client's share)
/// when dropped.
pub struct UnverifiedSlot {
    _permit: OwnedSemaphorePermit,
    _client: Option<ClientShare>,
}

/// How many of a budget's slots each client address holds, and at most.
struct ClientShares {
    max: usize,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ClientShares {
    fn new(max: usize) -> ClientShares {
        ClientShares {
            max,
            counts: Arc::default(),
        }
    }

    /// One more for `address`, or `None` when it holds its share.
    fn take(&self, address: IpAddr) -> Option<ClientShare> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = counts.entry(address).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientShare {
            address,
            counts: Arc::clone(&self.counts),
        })
    }
}

/// One slot counted against a client address, given back when dropped.
struct ClientShare {
    address: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.address);
            }
        }
    }
}

impl Admission {
    pub fn new(limits: &Limits) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(limits.max_concurrent_requests)),
            unverified: Arc::new(Semaphore::new(limits.max_unverified_uploads)),
            slots_by_client: ClientShares::new(limits.max_requests_per_client),
            unverified_by_client: ClientShares::new((limits.max_unverified_uploads / 8).max(1)),
            timeout: limits.request_timeout,
            unverified_timeout: limits.unverified_body_timeout.min(limits.request_timeout),
        }
    }

    /// A slot for one more request from `client`, held until the request
    /// is answered; `None` when every slot is taken, or the client holds
    /// its share.
    pub fn try_admit(&self, client: Option<IpAddr>) -> Option<Admitted> {
        let share = match client {
            Some(address) => Some(self.slots_by_client.take(address)?),
            None => None,
        };
        // (Without a slot, `share` is dropped here and the count undone.)
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        Some(Admitted {
            _slot: slot,
            _client: share,
        })
    }

    /// How long a request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A slot for receiving one body from a sender not yet known, calling
    /// from `client`, held until the body is checked; `None` when every
    /// such slot is taken, or that address holds its share of them.
    pub fn try_unverified(&self, client: Option<IpAddr>) -> Option<UnverifiedSlot> {
        let share = match client {
            Some(address) => Some(self.unverified_by_client.take(address)?),
            None => None,
        };
        // (Without a slot, `share` is dropped here and the count undone.)
        let permit = self.unverified.clone().try_acquire_owned().ok()?;
        Some(UnverifiedSlot {
            _permit: permit,
            _client: share,
        })
    }

    /// How long receiving a body from a sender not yet known may take.
    pub fn unverified_timeout(&self) -> Duration {
        self.unverified_timeout
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
