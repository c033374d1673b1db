//! The inbox: pull delivery for providers with no server to receive a
//! webhook (`[providers.<id>] delivery = "inbox"`). Their messages are
//! queued in the outbox exactly as they would be sent (same `webhook-id`,
//! same payload); the delivery worker skips them, and the provider's
//! software collects them instead:
//!
//! - [`Referrals::poll_inbox`] leases the next ready messages to a named
//!   consumer for a while, in order. A message is ready when it is not
//!   collected, not under another lease, and no earlier message for its
//!   referral is still waiting (leased or not): per-referral order holds
//!   across consumers. An expired lease makes the message ready again.
//! - [`Referrals::commit_inbox`] acknowledges everything up to an offset
//!   that the consumer holds: each message counts as delivered, recorded as
//!   an attempt (when, by which consumer) like a pushed one.
//! - [`Referrals::referral_collected`] is the same acknowledgement for a
//!   referral collected some other way (a user opening it in the portal).
//! - [`Referrals::sweep_inboxes`] holds providers to account, as NHS MESH
//!   does: a referral uncollected after `inbox_nudge_after` puts "not yet
//!   collected by provider" on its Task (the referrer is notified); a
//!   message uncollected after `inbox_expire_after` is dead-lettered, and
//!   the referral's Task says "delivery failed" (the referrer is notified).
//!   The delivery worker runs it.
//!
//! A message's offset is its outbox sequence number: increasing, global to
//! the outbox, so an inbox's offsets have gaps.

use std::{str::FromStr, time::Duration};

use serde_json::value::RawValue;

use super::{Referrals, notification, retry_on_conflict};
use crate::{
    config::ProviderDelivery,
    domain::{
        Actor, Endpoint, MessageKind, MessageState, ProviderId, ReferralId, Timestamp,
        model::{Attempt, OutboxMessage},
    },
    store::{AttemptRecord, AuditRecord, MessageFilter, MessageUpdate, StoreError},
};

/// The name a provider's software polls under (`consumer=`): 1 to 64
/// letters, digits, `.`, `_` and `-`. Each consumer holds its own leases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer(String);

impl Consumer {
    /// As the lease owner and the attempt's worker are stored.
    fn owner(&self) -> String {
        format!("consumer:{}", self.0)
    }
}

/// Why a consumer name was refused (it is not repeated: it is the
/// caller's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`consumer` must be 1 to 64 letters, digits, '.', '_' or '-'")]
pub struct BadConsumer;

impl FromStr for Consumer {
    type Err = BadConsumer;
    fn from_str(text: &str) -> Result<Self, BadConsumer> {
        let ok = (1..=64).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        ok.then(|| Consumer(text.to_owned())).ok_or(BadConsumer)
    }
}

/// One message handed out.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboxMessage {
    pub offset: i64,
    /// The `webhook-id` it would have been pushed with.
    pub message_id: String,
    #[serde(rename = "type")]
    pub kind: MessageKind,
    pub referral: String,
    pub created: String,
    /// The body it would have been pushed with (the provider's format),
    /// passed through as it is stored: a poll of 100 messages would
    /// otherwise parse and re-serialise every payload.
    pub payload: Box<RawValue>,
}

/// A poll's answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InboxPage {
    pub data: Vec<InboxMessage>,
    /// Nothing more is ready now (poll again later).
    pub done: bool,
}

/// Why a commit was refused.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// No message at this offset was handed out from this inbox.
    #[error("offset {0} was never handed out from this inbox")]
    NotHandedOut(i64),
    /// The consumer's lease lapsed and the message went to another
    /// consumer (or it was dead-lettered): this consumer no longer holds
    /// it.
    #[error(
        "offset {0} is no longer held by this consumer (its lease expired and it was handed out again, or it expired)"
    )]
    NotHeld(i64),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// JSON `null`, for a payload that is gone (erased).
fn null() -> Box<RawValue> {
    RawValue::from_string("null".to_owned()).expect("null is JSON")
}

/// Most messages one poll hands out.
pub const MAX_LIMIT: usize = 1000;
/// Shortest and longest lease a poll may ask for.
pub const LEASE_RANGE: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(3600));

impl Referrals {
    /// Lease up to `limit` ready messages of `provider`'s inbox to
    /// `consumer` for `lease`, in order.
    pub async fn poll_inbox(
        &self,
        provider: &ProviderId,
        consumer: &Consumer,
        limit: usize,
        lease: Duration,
    ) -> Result<InboxPage, StoreError> {
        let endpoint = Endpoint::Provider(provider.clone());
        let now = self.clock.now();
        let limit = limit.clamp(1, MAX_LIMIT);
        let messages = self
            .store
            .lease_inbox(
                &endpoint,
                &consumer.owner(),
                now.as_millis(),
                now.after(lease).as_millis(),
                i64::try_from(limit).unwrap_or(i64::MAX),
            )
            .await?;
        let done = messages.len() < limit
            || !self
                .store
                .inbox_has_ready(&endpoint, now.as_millis())
                .await?;
        let base = self.config.public_fhir_base();
        let data = messages
            .iter()
            .map(|m| InboxMessage {
                offset: m.seq,
                message_id: m.id.to_string(),
                kind: m.kind,
                referral: m.referral_id.to_string(),
                created: m.created_at.clone(),
                // (An erased message's payload is empty: null.)
                payload: RawValue::from_string(notification::body(m, base.as_deref()))
                    .unwrap_or_else(|_| null()),
            })
            .collect();
        Ok(InboxPage { data, done })
    }

    /// Acknowledge every message of `provider`'s inbox that `consumer`
    /// holds up to `offset`, which it must hold (or have committed: then
    /// nothing more happens). Returns how many messages were committed.
    pub async fn commit_inbox(
        &self,
        provider: &ProviderId,
        consumer: &Consumer,
        offset: i64,
    ) -> Result<usize, CommitError> {
        let endpoint = Endpoint::Provider(provider.clone());
        let owner = consumer.owner();
        let message = self
            .store
            .inbox_message(&endpoint, offset)
            .await?
            .ok_or(CommitError::NotHandedOut(offset))?;
        match message.state {
            // Committed already (by this consumer or another way).
            MessageState::Delivered => return Ok(0),
            MessageState::Dead => return Err(CommitError::NotHeld(offset)),
            MessageState::Pending => match &message.lease_owner {
                Some(holder) if *holder == owner => {}
                Some(_) => return Err(CommitError::NotHeld(offset)),
                None => return Err(CommitError::NotHandedOut(offset)),
            },
        }
        let held = self.store.leased_to(&endpoint, &owner, offset).await?;
        let count = self
            .collect(&held, &owner, Actor::Provider(provider.clone()))
            .await?;
        tracing::info!(provider_id = %provider, offset, messages = count, "inbox committed");
        Ok(count)
    }

    /// **For the portal**: referral `referral_id` was collected by
    /// `collector` (e.g. `portal:<user id>`), another way than through the
    /// inbox API (a user opened it). Every message of the referral still
    /// waiting in its provider's inbox (leased or not) counts as delivered,
    /// recorded as a commit is: an attempt at the present time by
    /// `collector`, in `/admin/deliveries`; a Task that said "not yet
    /// collected by provider" (or "delivery failed") is mended and the
    /// referrer told. Returns how many messages were collected: 0 when
    /// nothing was waiting or the provider is not an inbox provider.
    /// Idempotent: calling it again collects nothing more.
    pub async fn referral_collected(
        &self,
        referral_id: &ReferralId,
        collector: &str,
    ) -> Result<usize, StoreError> {
        let Some(provider) = self
            .store
            .referral(referral_id)
            .await?
            .and_then(|r| r.provider_id)
        else {
            return Ok(0);
        };
        self.collected_from(&provider, referral_id, collector).await
    }

    /// [`Self::referral_collected`] when the caller already knows the
    /// referral went to `provider` (the portal, which showed it to one of
    /// the provider's users): one read fewer per page view.
    pub async fn collected_from(
        &self,
        provider: &ProviderId,
        referral_id: &ReferralId,
        collector: &str,
    ) -> Result<usize, StoreError> {
        if !self
            .config
            .providers
            .get(provider)
            .is_some_and(|p| p.delivery.is_inbox())
        {
            return Ok(0);
        }
        let mut waiting = self
            .store
            .messages(&MessageFilter {
                state: Some(MessageState::Pending),
                endpoint: Some(Endpoint::Provider(provider.clone()).to_string()),
                referral_id: Some(referral_id.to_string()),
                limit: 1000,
            })
            .await?;
        waiting.sort_by_key(|m| m.seq);
        self.collect(&waiting, collector, Actor::Provider(provider.clone()))
            .await
    }

    /// Record `messages` as collected by `collector` now, in one
    /// transaction, mending their Tasks' "not yet collected".
    async fn collect(
        &self,
        messages: &[OutboxMessage],
        collector: &str,
        actor: Actor,
    ) -> Result<usize, StoreError> {
        if messages.is_empty() {
            return Ok(0);
        }
        let provider = match messages[0].endpoint.clone() {
            Endpoint::Provider(id) => id,
            Endpoint::Referrer(_) | Endpoint::ClinicalService(_) => return Ok(0),
        };
        retry_on_conflict(|| {
            let actor = actor.clone();
            async move {
                let now = self.clock.now();
                let mut records = Vec::with_capacity(messages.len());
                for m in messages {
                    // Only a message that was nudged (or replays a dead one)
                    // can have left a status to mend.
                    let task_update = if m.kind != MessageKind::Notification
                        && (m.attempts > 0 || m.replay_of.is_some())
                    {
                        self.delivery_recovered_update(&m.referral_id).await?
                    } else {
                        None
                    };
                    records.push(record(
                        m,
                        collector,
                        now,
                        actor.clone(),
                        "delivered",
                        MessageUpdate::Delivered,
                        None,
                        task_update,
                    ));
                }
                self.store.record_inbox(records).await
            }
        })
        .await?;
        self.metrics
            .inbox_event(provider.as_str(), "collected", messages.len());
        Ok(messages.len())
    }

    /// Hold every inbox provider to account at the present time: nudge the
    /// referrals waiting longer than `inbox_nudge_after`, dead-letter the
    /// messages waiting longer than `inbox_expire_after` (see the module's
    /// documentation). Returns how many messages were nudged and expired.
    pub async fn sweep_inboxes(&self) -> Result<(usize, usize), StoreError> {
        /// Messages read per batch, and batches per provider per sweep (the
        /// rest wait for the next sweep).
        const BATCH: i64 = 100;
        const BATCHES: usize = 10;
        let (mut nudged, mut expired) = (0, 0);
        for provider in self.config.providers.values() {
            let ProviderDelivery::Inbox {
                nudge_after,
                expire_after,
            } = provider.delivery
            else {
                continue;
            };
            let endpoint = Endpoint::Provider(provider.id.clone());
            let mut expired_here = 0;
            for _ in 0..BATCHES {
                let now = self.clock.now();
                let due = self
                    .store
                    .inbox_waiting(&endpoint, now.before(expire_after).as_millis(), None, BATCH)
                    .await?;
                for m in &due {
                    self.account(m, now, expire_after, true).await?;
                }
                expired_here += due.len();
                if due.len() < BATCH as usize {
                    break;
                }
            }
            let mut nudged_here = 0;
            for _ in 0..BATCHES {
                let now = self.clock.now();
                let due = self
                    .store
                    .inbox_waiting(
                        &endpoint,
                        now.before(nudge_after).as_millis(),
                        Some(MessageKind::Referral),
                        BATCH,
                    )
                    .await?;
                for m in &due {
                    self.account(m, now, nudge_after, false).await?;
                }
                nudged_here += due.len();
                if due.len() < BATCH as usize {
                    break;
                }
            }
            let id = provider.id.as_str();
            if nudged_here > 0 {
                self.metrics.inbox_event(id, "not_collected", nudged_here);
                tracing::warn!(provider_id = %id, referrals = nudged_here, "inbox: referrals not yet collected by the provider; the referrers were told");
            }
            if expired_here > 0 {
                self.metrics.inbox_event(id, "expired", expired_here);
                tracing::warn!(provider_id = %id, messages = expired_here, "inbox: messages never collected were dead-lettered; the referrers were told; `signpost deliveries replay` queues them again");
            }
            nudged += nudged_here;
            expired += expired_here;
        }
        Ok((nudged, expired))
    }

    /// Record that `m` has waited `waited` uncollected: dead-letter it
    /// (`expire`) or nudge it, with its Task's change.
    async fn account(
        &self,
        m: &OutboxMessage,
        now: Timestamp,
        waited: Duration,
        expire: bool,
    ) -> Result<(), StoreError> {
        let (outcome, update) = if expire {
            ("dead", MessageUpdate::Dead)
        } else {
            ("not collected", MessageUpdate::StillWaiting)
        };
        let why = format!("not collected within {}", short_duration(waited));
        retry_on_conflict(|| async {
            let task_update = match (m.kind, expire) {
                (MessageKind::Notification, _) => None,
                (_, true) => self.delivery_failed_update(&m.referral_id).await?,
                (_, false) => self.not_collected_update(&m.referral_id).await?,
            };
            self.store
                .record_inbox(vec![record(
                    m,
                    "inbox",
                    now,
                    Actor::DELIVERY,
                    outcome,
                    update.clone(),
                    Some(why.clone()),
                    task_update,
                )])
                .await
        })
        .await?;
        tracing::info!(message_id = %m.id, referral_id = %m.referral_id, endpoint = %m.endpoint, outcome, "inbox message not collected in time");
        Ok(())
    }
}

/// `d` in the largest whole unit of the configuration's syntax (`24h`,
/// `5d`, `90s`).
fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (value, unit) = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")]
        .into_iter()
        .find(|&(per, _)| secs > 0 && secs.is_multiple_of(per))
        .map_or((d.as_millis() as u64, "ms"), |(per, unit)| {
            (secs / per, unit)
        });
    format!("{value}{unit}")
}

/// An inbox message's outcome as an attempt record.
#[allow(clippy::too_many_arguments)]
fn record(
    m: &OutboxMessage,
    worker: &str,
    now: Timestamp,
    actor: Actor,
    outcome: &str,
    update: MessageUpdate,
    error: Option<String>,
    task_update: Option<crate::store::TaskUpdate>,
) -> AttemptRecord {
    AttemptRecord {
        attempt: Attempt {
            id: 0,
            message_id: m.id.clone(),
            attempt: m.attempts + 1,
            worker: worker.to_owned(),
            started_at: now.to_string(),
            latency_ms: 0,
            status_code: None,
            error: error.clone(),
            response_excerpt: None,
            outcome: outcome.to_owned(),
        },
        audit: AuditRecord {
            seq: 0,
            at: now,
            actor,
            client: None,
            credential: None,
            request_id: None,
            action: format!("deliver {} to {} inbox", m.kind, m.endpoint),
            resource: Some(format!("outbox/{}", m.id)),
            referral_id: Some(m.referral_id.clone()),
            outcome: format!("{outcome} ({worker})"),
        },
        update,
        last_error: error,
        task_update,
    }
}
