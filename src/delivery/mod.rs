//! The delivery worker: claims due outbox messages and POSTs them, signed
//! (Standard Webhooks), to the provider or referrer they are for; records
//! every attempt; retries with back-off; dead-letters; disables an endpoint
//! that answers `410 Gone`.
//!
//! Delivery is at least once: a message is marked delivered only after the
//! endpoint's `2xx`, so a crash between the two sends it again, with the
//! same `webhook-id`, which receivers use to drop duplicates. Messages are
//! leased, not locked: a worker that dies holding a lease loses it when the
//! lease expires, and another worker (or instance) takes over. Messages for
//! one referral and one endpoint go in order (the store hands out only the
//! earliest pending one).
//!
//! Inbox providers' messages are not sent: they are collected
//! ([`crate::referrals::inbox`]). The worker holds those providers to
//! account instead, every minute ([`Worker::sweep_inboxes`]).
//!
//! - [`Worker::tick`] (`tick.rs`) is one round: claim what is due, send it,
//!   have the domain record each outcome, and say whether work remains.
//!   Tests step delivery with it on a [`crate::domain::ManualClock`].
//! - [`Worker::run_until_stopped`] (here) goes round for a server or
//!   `signpost worker`: rounds within a bound on requests in flight, woken
//!   by new messages or the next due time, draining at shutdown.
//! - `send.rs` makes one attempt (target, sign, post) and reports an
//!   [`AttemptOutcome`](crate::referrals::attempts::AttemptOutcome).
//! - `policy.rs` judges it: delivered, retry when (back-off with jitter,
//!   or the endpoint's `Retry-After`), dead letter, or disable the endpoint.

mod heartbeat;
mod policy;
mod send;
mod tick;

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use tokio::{
    sync::{Notify, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};

pub use self::{heartbeat::WorkerHeartbeat, tick::Tick};
use crate::{
    config::{Config, DeliveryConfig},
    domain::{Clock, Endpoint, Timestamp},
    referrals::Referrals,
    store::Outbox,
    webhooks::SigningKeys,
};

/// How often a running worker checks the inboxes for messages left
/// uncollected (the `inbox_*_after` clocks are hours and days).
const INBOX_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// A delivery worker. Cheap to clone: clones share everything.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    /// This worker's lease owner name, unique per process.
    id: String,
    config: Arc<Config>,
    keys: Arc<BTreeMap<Endpoint, Arc<SigningKeys>>>,
    referrals: Arc<Referrals>,
    /// The outbox slice of the store: claims, leases, wake-ups.
    outbox: Arc<dyn Outbox>,
    client: reqwest::Client,
    heartbeat: Arc<crate::delivery::WorkerHeartbeat>,
    clock: Arc<dyn Clock>,
}

/// A request slot, held from the claim until the answer is in.
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Given back before the worker loop is told, so that it sees it.
        drop(self.permit.take());
        self.freed.notify_one();
    }
}

impl Worker {
    /// A worker for `config`'s endpoints, signing with `keys` (by
    /// `provider:<id>` / `referrer:<id>`), on `clock`'s time.
    pub fn new(
        config: Arc<Config>,
        keys: Arc<BTreeMap<Endpoint, Arc<SigningKeys>>>,
        referrals: Arc<Referrals>,
        outbox: Arc<dyn Outbox>,
        heartbeat: Arc<crate::delivery::WorkerHeartbeat>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Worker> {
        let delivery = &config.delivery;
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Targets are reached directly, through the address guard
            // (a proxy would resolve names beyond its reach).
            .no_proxy()
            .dns_resolver(crate::security::egress::resolver(&config))
            .connect_timeout(delivery.connect_timeout)
            .timeout(delivery.request_timeout)
            .user_agent(concat!("Signpost/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let id = format!(
            "{}-{}",
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Ok(Worker {
            inner: Arc::new(Inner {
                id,
                config,
                keys,
                referrals,
                outbox,
                client,
                heartbeat,
                clock,
            }),
        })
    }

    fn store(&self) -> &Arc<dyn Outbox> {
        &self.inner.outbox
    }

    fn settings(&self) -> &DeliveryConfig {
        &self.inner.config.delivery
    }

    fn now(&self) -> Timestamp {
        self.inner.clock.now()
    }

    /// Deliver until `shutdown` completes; then finish the attempts in
    /// flight (within the request timeout) and give back any lease left.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send) {
        let wake = self.store().wakeups();
        let listener = self.store().watch_outbox();
        let poll = self.settings().poll_interval;
        // `concurrency` bounds the requests in flight. An attempt gives its
        // slot back as soon as it has its answer, not after recording it:
        // under load the record waits its turn for the database, and
        // holding slots meanwhile starved delivery while intake ran.
        let slots = Arc::new(Semaphore::new(self.settings().concurrency));
        let freed = Arc::new(Notify::new());
        let slot = || {
            Some(Slot {
                permit: slots.clone().try_acquire_owned().ok(),
                freed: freed.clone(),
            })
        };
        let mut in_flight = JoinSet::new();
        let mut shutdown = std::pin::pin!(shutdown);
        let mut next_sweep = tokio::time::Instant::now();
        tracing::info!(worker = %self.inner.id, "delivery worker started");
        loop {
            self.inner.heartbeat.beat();
            if tokio::time::Instant::now() >= next_sweep {
                if let Err(e) = self.sweep_inboxes().await {
                    tracing::warn!(error = %e, "cannot check the inboxes for messages not collected");
                }
                if let Err(e) = self.sweep_escalations().await {
                    tracing::warn!(error = %e, "cannot check escalations for missed deadlines");
                }
                next_sweep = tokio::time::Instant::now() + INBOX_SWEEP_INTERVAL;
            }
            while in_flight.try_join_next().is_some() {}
            let free = slots.available_permits();
            let wait = if free == 0 {
                poll
            } else {
                match self
                    .start_round(self.now(), free, &mut in_flight, slot)
                    .await
                {
                    // More may be due: claim again while there is room.
                    Ok(Tick::Busy { .. }) if slots.available_permits() > 0 => continue,
                    Ok(Tick::Busy { .. }) => poll,
                    Ok(Tick::Idle { next_due }) => self.until(next_due, poll),
                    Err(e) => {
                        tracing::warn!(error = %e, "delivery round failed: cannot claim outbox messages");
                        poll
                    }
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = wake.notified() => {},
                () = freed.notified() => {},
                () = tokio::time::sleep(wait) => {},
            }
        }
        let grace = self.settings().request_timeout + Duration::from_secs(1);
        let _ = tokio::time::timeout(grace, async {
            while in_flight.join_next().await.is_some() {}
        })
        .await;
        in_flight.abort_all();
        if let Some(listener) = listener {
            listener.abort();
        }
        self.inner.heartbeat.stopped();
        if let Err(e) = self.store().release_leases(&self.inner.id).await {
            tracing::warn!(error = %e, "cannot release leases; they expire on their own");
        }
        tracing::info!(worker = %self.inner.id, "delivery worker stopped");
    }

    /// How long to sleep until `next_due` (at most `poll`, at least a few
    /// milliseconds so that a due-but-blocked message cannot make the loop
    /// spin).
    fn until(&self, next_due: Option<Timestamp>, poll: Duration) -> Duration {
        let floor = Duration::from_millis(5);
        match next_due {
            Some(at) => at.since(self.now()).clamp(floor, poll),
            None => poll,
        }
    }
}
