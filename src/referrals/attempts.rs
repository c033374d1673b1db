//! What a delivery attempt means for the referral. The worker sends a
//! message and reports what happened ([`AttemptOutcome`]) and what its
//! policy makes of it ([`Disposition`]); the domain records it: the attempt
//! and its audit record, the message's new state and, when a message to a
//! provider is dead-lettered, the Task's "delivery failed" (which notifies
//! the referrer), and when its replay arrives, "delivered" in its place.
//! All in one transaction, the one write delivery makes.

use std::time::Duration;

use super::{Referrals, retry_on_conflict};
use crate::{
    domain::{
        Actor, MessageKind, Timestamp,
        model::{Attempt, OutboxMessage},
    },
    store::{AttemptRecord, AuditRecord, MessageUpdate, StoreError},
};

/// What happened when a message was sent, before it is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// When the attempt began.
    pub started_at: Timestamp,
    /// From sending to the end of the answer (or the failure).
    pub latency: Duration,
    /// The endpoint's HTTP status; `None` when no answer came.
    pub status: Option<u16>,
    /// Why there was no (complete) answer.
    pub error: Option<String>,
    /// The start of the answer's body.
    pub excerpt: Option<String>,
    /// The endpoint's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

/// What follows for the message from an attempt (decided by delivery's
/// policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Delivered,
    /// Try again at this time.
    Retry {
        next_attempt_at: Timestamp,
    },
    /// No more attempts: dead letter.
    Dead,
    /// The endpoint answered `410 Gone`: disable it; its messages wait
    /// until an operator re-enables it.
    DisableEndpoint,
}

impl Disposition {
    /// The attempt's outcome as recorded, logged and counted.
    pub fn as_str(&self) -> &'static str {
        match self {
            Disposition::Delivered => "delivered",
            Disposition::Retry { .. } => "retry",
            Disposition::Dead => "dead",
            Disposition::DisableEndpoint => "disabled",
        }
    }
}

impl Referrals {
    /// Record attempt number `message.attempts + 1` at `message` by `worker`
    /// and its consequences, in one transaction: the attempt, its audit
    /// record, the message's new state, a disabled endpoint, and, when a
    /// message to a provider is dead-lettered, the Task's "delivery failed"
    /// (a dead notification to the referrer cannot show on the Task). The
    /// store wakes delivery when that queued a notification or let the
    /// referral's next message go.
    pub async fn record_attempt(
        &self,
        message: &OutboxMessage,
        worker: &str,
        outcome: &AttemptOutcome,
        disposition: &Disposition,
    ) -> Result<(), StoreError> {
        let recorded_as = disposition.as_str();
        let attempt = Attempt {
            id: 0,
            message_id: message.id.clone(),
            attempt: message.attempts + 1,
            worker: worker.to_owned(),
            started_at: outcome.started_at.to_string(),
            latency_ms: i64::try_from(outcome.latency.as_millis()).unwrap_or(i64::MAX),
            status_code: outcome.status.map(i64::from),
            error: outcome.error.clone(),
            response_excerpt: outcome.excerpt.clone(),
            outcome: recorded_as.to_owned(),
        };
        let audit = AuditRecord {
            seq: 0,
            at: outcome.started_at,
            actor: Actor::DELIVERY,
            credential: None,
            client: None,
            request_id: None,
            action: format!("deliver {} to {}", message.kind, message.endpoint),
            resource: Some(format!("outbox/{}", message.id)),
            referral_id: Some(message.referral_id.clone()),
            outcome: match outcome.status {
                Some(status) => format!("{recorded_as} ({status})"),
                None => recorded_as.to_owned(),
            },
        };
        // What the store is to write: the policy's decision, in its terms.
        let update = match disposition {
            Disposition::Delivered => MessageUpdate::Delivered,
            Disposition::Retry { next_attempt_at } => {
                MessageUpdate::PendingUntil(next_attempt_at.as_millis())
            }
            Disposition::Dead => MessageUpdate::Dead,
            Disposition::DisableEndpoint => MessageUpdate::EndpointDisabled {
                reason: format!(
                    "answered 410 Gone to message {} at {}",
                    message.id,
                    outcome
                        .started_at
                        .to_datetime()
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                ),
                pending_until: self.clock.now().as_millis(),
            },
        };
        let last_error = outcome
            .error
            .clone()
            .or_else(|| outcome.status.map(|code| format!("answered {code}")));
        let to_provider = message.kind != MessageKind::Notification;
        let shows_on_task = *disposition == Disposition::Dead && to_provider;
        // A replay that arrived mends the "delivery failed" its original
        // left on the Task.
        let mends_task =
            *disposition == Disposition::Delivered && to_provider && message.replay_of.is_some();
        let (attempt, audit, update, last_error) = (&attempt, &audit, &update, &last_error);
        retry_on_conflict(|| async move {
            // Read again on each try: a conflict means the Task moved on.
            let task_update = if shows_on_task {
                self.delivery_failed_update(&message.referral_id).await?
            } else if mends_task {
                self.delivery_recovered_update(&message.referral_id).await?
            } else {
                None
            };
            // (The store wakes delivery if this queued a notification or
            // let the referral's next message go.)
            self.store
                .record_attempt(AttemptRecord {
                    attempt: attempt.clone(),
                    audit: audit.clone(),
                    update: update.clone(),
                    last_error: last_error.clone(),
                    task_update,
                })
                .await
        })
        .await
    }
}
