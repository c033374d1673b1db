//! One round of delivery: claim the messages due, send each, have the
//! domain record each outcome, and say whether work remains. The worker's
//! loop goes round on it; tests step it on a manual clock, as zero2prod's
//! `try_execute_task` is stepped.

use tokio::task::JoinSet;

use super::{Slot, Worker, policy};
use crate::{
    domain::Timestamp, domain::model::OutboxMessage, referrals::attempts::Disposition,
    store::StoreError,
};

/// What a round found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Messages were due and claimed; more may be due now (what they were
    /// waiting behind, or a notification they caused).
    Busy { claimed: usize },
    /// Nothing was due. The next message falls due at `next_due` (`None`:
    /// nothing is waiting, or only behind a disabled endpoint).
    Idle { next_due: Option<Timestamp> },
}

impl Worker {
    /// One round at `now`: hold the inbox providers to account (see
    /// [`Worker::sweep_inboxes`]), send overdue escalations again
    /// ([`Worker::sweep_escalations`]), claim up to `[delivery] concurrency` due
    /// messages, send them all, record every outcome, then return. Call it
    /// until it says [`Tick::Idle`] to deliver everything due at `now`.
    pub async fn tick(&self, now: Timestamp) -> Result<Tick, StoreError> {
        self.sweep_inboxes().await?;
        self.sweep_escalations().await?;
        let mut attempts = JoinSet::new();
        let tick = self
            .start_round(now, self.settings().concurrency, &mut attempts, || None)
            .await?;
        while attempts.join_next().await.is_some() {}
        Ok(tick)
    }

    /// Nudge the referrals that inbox providers have left uncollected too
    /// long and dead-letter the messages left longer still, telling their
    /// referrers (the notifications are queued, for the next round).
    pub async fn sweep_inboxes(&self) -> Result<(), StoreError> {
        self.inner.referrals.sweep_inboxes().await.map(|_| ())
    }

    /// Send again the escalations not acknowledged by their deadline (the
    /// notifications are queued, for the next round).
    pub async fn sweep_escalations(&self) -> Result<(), StoreError> {
        self.inner.referrals.sweep_escalations().await.map(|_| ())
    }

    /// Claim up to `limit` messages due at `now` and start an attempt at
    /// each on `attempts`, holding the request slot `slot` gives it; or, if
    /// none is due, find when the next one will be.
    pub(super) async fn start_round(
        &self,
        now: Timestamp,
        limit: usize,
        attempts: &mut JoinSet<()>,
        mut slot: impl FnMut() -> Option<Slot>,
    ) -> Result<Tick, StoreError> {
        let lease = i64::try_from(self.settings().lease.as_millis()).unwrap_or(i64::MAX);
        let messages = self
            .store()
            .claim_due(
                &self.inner.id,
                now.as_millis(),
                lease,
                i64::try_from(limit).unwrap_or(i64::MAX),
            )
            .await?;
        if messages.is_empty() {
            let next_due = self.store().next_due().await?;
            return Ok(Tick::Idle {
                next_due: next_due.map(Timestamp::from_millis),
            });
        }
        let claimed = messages.len();
        for message in messages {
            let worker = self.clone();
            let slot = slot();
            attempts.spawn(async move { worker.attempt(message, slot).await });
        }
        Ok(Tick::Busy { claimed })
    }

    /// One attempt at one message: send it, judge the answer, and have the
    /// domain record it with its consequences. The slot goes back as soon
    /// as the answer is in.
    async fn attempt(&self, message: OutboxMessage, slot: Option<Slot>) {
        let outcome = self.send(&message).await;
        drop(slot);
        let attempt_number = message.attempts + 1;
        let disposition =
            policy::disposition(self.settings(), attempt_number, &outcome, self.now());
        let recorded_as = disposition.as_str();
        self.inner.referrals.metrics().attempt(
            &message.endpoint.to_string(),
            recorded_as,
            outcome.latency,
        );
        tracing::info!(
            message_id = %message.id,
            referral_id = %message.referral_id,
            endpoint = %message.endpoint,
            kind = %message.kind,
            attempt = attempt_number,
            status = outcome.status,
            latency_ms = i64::try_from(outcome.latency.as_millis()).unwrap_or(i64::MAX),
            outcome = recorded_as,
            error = outcome.error.as_deref(),
            "delivery attempt"
        );
        if let Err(e) = self
            .inner
            .referrals
            .record_attempt(&message, &self.inner.id, &outcome, &disposition)
            .await
        {
            tracing::warn!(error = %e, message_id = %message.id, "cannot record the attempt; the lease will expire and it will be retried");
            return;
        }
        // What an operator must act on (counted in /metrics as
        // `signpost_dead_letters` and `signpost_endpoint_disabled`).
        match disposition {
            Disposition::Dead => tracing::warn!(
                message_id = %message.id,
                referral_id = %message.referral_id,
                endpoint = %message.endpoint,
                kind = %message.kind,
                status = outcome.status,
                "message dead-lettered: no more attempts; `signpost deliveries replay` sends it again"
            ),
            Disposition::DisableEndpoint => tracing::warn!(
                endpoint = %message.endpoint,
                message_id = %message.id,
                referral_id = %message.referral_id,
                "endpoint disabled: it answered 410 Gone; its messages wait until `signpost endpoints enable`"
            ),
            _ => {}
        }
    }
}
