//! The types that cross the store's API, and the private rows the outbox
//! is read into. Outbox messages and attempts cross as the domain's own
//! types (`referrals::model`); referrals, Tasks, callbacks, tokens and audit
//! records still cross as the `*Row` types here (see the report of the
//! store branch for what remains). Resources are stored as the JSON text
//! that is served, so reads need no re-serialisation.

use crate::{
    domain::{Actor, Endpoint, MessageId, MessageKind, MessageState, ReferralId},
    referrals::model::{Attempt, NewMessage, OutboxMessage},
};

/// A referral as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReferralRow {
    pub id: String,
    pub referrer_id: String,
    pub identifier_system: String,
    pub identifier_value: String,
    pub provider_id: Option<String>,
    pub version_id: i64,
    pub last_updated: String,
    /// The ServiceRequest JSON, with `id` and `meta` set.
    pub resource: String,
    /// The patient's NHS number, to find their referrals for erasure
    /// (`None` once erased).
    pub nhs_number: Option<String>,
}

/// A Task as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TaskRow {
    pub id: String,
    pub referral_id: String,
    pub status: String,
    pub version_id: i64,
    pub last_updated: String,
    /// The Task JSON, with `id` and `meta` set.
    pub resource: String,
}

/// Everything written when a referral is accepted, in one transaction.
#[derive(Debug, Clone)]
pub struct NewIntake {
    pub referral: ReferralRow,
    pub task: TaskRow,
    /// Who caused the Task's first state (recorded in `task_events`).
    pub actor: Actor,
    /// The mapped payload for the provider (the transactional outbox).
    pub messages: Vec<NewMessage>,
}

/// What [`ReferralStore::record_intake`](super::ReferralStore::record_intake) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new referral and its Task were stored.
    Created(ReferralRow),
    /// The referrer had already sent this business identifier: nothing was
    /// written, and this is the referral stored the first time.
    Existing(ReferralRow),
}

/// An outbox message as stored (see [`OutboxMessage`]).
#[derive(sqlx::FromRow)]
pub(super) struct MessageRow {
    seq: i64,
    id: MessageId,
    referral_id: ReferralId,
    endpoint: Endpoint,
    kind: MessageKind,
    payload: String,
    state: MessageState,
    attempts: i64,
    next_attempt_at: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    created_at: String,
    delivered_at: Option<String>,
    last_error: Option<String>,
    replay_of: Option<MessageId>,
    event_number: Option<i64>,
}

impl From<MessageRow> for OutboxMessage {
    fn from(r: MessageRow) -> Self {
        OutboxMessage {
            seq: r.seq,
            id: r.id,
            referral_id: r.referral_id,
            endpoint: r.endpoint,
            kind: r.kind,
            payload: r.payload,
            state: r.state,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at,
            lease_owner: r.lease_owner,
            lease_until: r.lease_until,
            created_at: r.created_at,
            delivered_at: r.delivered_at,
            last_error: r.last_error,
            replay_of: r.replay_of,
            event_number: r.event_number,
        }
    }
}

/// A delivery attempt as stored (see [`Attempt`]).
#[derive(sqlx::FromRow)]
pub(super) struct AttemptRow {
    id: i64,
    message_id: MessageId,
    attempt: i64,
    worker: String,
    started_at: String,
    latency_ms: i64,
    status_code: Option<i64>,
    error: Option<String>,
    response_excerpt: Option<String>,
    outcome: String,
}

impl From<AttemptRow> for Attempt {
    fn from(r: AttemptRow) -> Self {
        Attempt {
            id: r.id,
            message_id: r.message_id,
            attempt: r.attempt,
            worker: r.worker,
            started_at: r.started_at,
            latency_ms: r.latency_ms,
            status_code: r.status_code,
            error: r.error,
            response_excerpt: r.response_excerpt,
            outcome: r.outcome,
        }
    }
}

/// What an attempt leaves the message as: decided by delivery (its
/// policy), written by the store as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageUpdate {
    /// Delivered: the next message for its referral and endpoint may go.
    Delivered,
    /// Still pending, not to be sent before this Unix millisecond.
    PendingUntil(i64),
    /// No more attempts: dead letter.
    Dead,
    /// Still pending (from this Unix millisecond), and its endpoint
    /// disabled, for `reason`, until an operator re-enables it.
    EndpointDisabled { reason: String, pending_until: i64 },
}

/// An attempt's record and what follows from it, stored in one transaction.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    /// The attempt's audit record, written with it.
    pub audit: AuditRow,
    pub update: MessageUpdate,
    /// The message's `last_error` unless delivered.
    pub last_error: Option<String>,
    /// A Task change caused by this attempt (a dead-lettered referral shows
    /// "delivery failed").
    pub task_update: Option<TaskUpdate>,
}

/// A new version of a Task, applied only if the stored Task is still at
/// `expected_version` (otherwise [`StoreError::Conflict`](super::StoreError::Conflict)).
#[derive(Debug, Clone)]
pub struct TaskUpdate {
    pub task: TaskRow,
    pub expected_version: i64,
    pub from_status: String,
    pub actor: Actor,
    pub reason: Option<String>,
    /// The notification to the referrer: the store numbers it (the
    /// referrer's next event number, allocated in the same transaction).
    pub notification: Option<Notification>,
    /// A new version of the referral (a cancellation), applied only if the
    /// stored one is at `version_id - 1`.
    pub referral: Option<ReferralRow>,
    /// Further messages (e.g. a cancellation to the provider).
    pub messages: Vec<NewMessage>,
}

impl TaskUpdate {
    /// Whether applying it queues messages.
    pub(super) fn adds_messages(&self) -> bool {
        self.notification.is_some() || !self.messages.is_empty()
    }
}

/// A Subscriptions notification to a referrer, waiting for its event
/// number: the message's payload is the Task it carries; the Bundle is
/// built from it and the number when it is sent
/// ([`crate::referrals::notification::body`]).
#[derive(Debug, Clone)]
pub struct Notification {
    pub referrer_id: String,
    pub message: NewMessage,
}

/// A provider status callback, as received.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct InboundRow {
    pub provider_id: String,
    pub webhook_id: String,
    pub received_at: String,
    pub referral_id: Option<String>,
    pub body: String,
    /// The HTTP status Signpost answered.
    pub response_status: i64,
    /// `applied`, `ignored` or `refused: <why>`.
    pub outcome: String,
}

/// What [`TaskEvents::apply_callback`](super::TaskEvents::apply_callback) did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackApplied {
    Applied,
    /// The webhook-id had been received before; nothing changed. The first
    /// reception is returned.
    Duplicate(InboundRow),
}

/// Which messages to list.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub state: Option<MessageState>,
    /// As an operator typed it (`provider:<id>`, `referrer:<id>`): text
    /// that names no endpoint matches no message.
    pub endpoint: Option<String>,
    pub referral_id: Option<String>,
    pub limit: i64,
}

/// A bearer token as stored: never the token itself, only a salted hash of
/// its secret part.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TokenRow {
    /// The public part of the token (`sp_<id>_…`), used to find this row.
    pub id: String,
    /// `referrer` or `admin`.
    pub role: String,
    pub referrer_id: Option<String>,
    pub salt: String,
    pub hash: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

impl std::fmt::Debug for TokenRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenRow")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("referrer_id", &self.referrer_id)
            .field("revoked_at", &self.revoked_at)
            .finish_non_exhaustive()
    }
}

/// What is left of an erased referral.
#[derive(Debug, Clone)]
pub struct Tombstone {
    pub referral_id: String,
    pub referral_resource: String,
    pub task_resource: String,
}

/// One audit record (see [`crate::audit`]).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRow {
    /// Assigned by the database; 0 before.
    pub seq: i64,
    pub at: String,
    /// `referrer:<id>`, `admin:<token id>`, `provider:<id>`, `cli:<user>`,
    /// `signpost:delivery` or `unauthenticated`.
    pub actor: Actor,
    /// The client's address, for requests.
    pub client: Option<String>,
    pub request_id: Option<String>,
    /// What was done: `GET /fhir/ServiceRequest/{id}`, `deliver referral`, …
    pub action: String,
    /// What it was done to: `/fhir/ServiceRequest/<id>`, `outbox/<msg>`, …
    pub resource: Option<String>,
    pub referral_id: Option<String>,
    /// The HTTP status, or the delivery outcome.
    pub outcome: String,
}

/// Which audit records to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub referral_id: Option<String>,
    /// Exactly this actor.
    pub actor: Option<Actor>,
    /// RFC 3339 UTC, compared as stored text.
    pub since: Option<String>,
    pub limit: i64,
}

/// An endpoint that is not sent to until re-enabled.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DisabledEndpoint {
    pub endpoint: Endpoint,
    pub disabled_at: String,
    pub reason: String,
}

/// The outbox of one endpoint, for `GET /metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    pub endpoint: Endpoint,
    /// Messages not yet delivered (nor dead).
    pub pending: i64,
    /// When the oldest of them was queued (RFC 3339).
    pub oldest_pending_at: Option<String>,
    /// Messages dead-lettered (a replay is a new message; the original
    /// stays dead).
    pub dead: i64,
}

impl OutboxStats {
    pub(super) fn combine(
        pending: Vec<(Endpoint, i64, String)>,
        dead: Vec<(Endpoint, i64)>,
    ) -> Vec<OutboxStats> {
        let mut by_endpoint: std::collections::BTreeMap<Endpoint, OutboxStats> = Default::default();
        for (endpoint, count, oldest) in pending {
            let entry = by_endpoint.entry(endpoint.clone()).or_insert(OutboxStats {
                endpoint,
                pending: 0,
                oldest_pending_at: None,
                dead: 0,
            });
            entry.pending = count;
            entry.oldest_pending_at = Some(oldest);
        }
        for (endpoint, count) in dead {
            by_endpoint
                .entry(endpoint.clone())
                .or_insert(OutboxStats {
                    endpoint,
                    pending: 0,
                    oldest_pending_at: None,
                    dead: 0,
                })
                .dead = count;
        }
        by_endpoint.into_values().collect()
    }
}
