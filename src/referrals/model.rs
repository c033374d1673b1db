//! The outbox as the domain speaks of it: messages to providers and
//! referrers, and the attempts to deliver them. These cross the boundary to
//! the store (which keeps its own row types private); they use the typed
//! vocabulary of [`crate::domain`], so an endpoint is an [`Endpoint`], never
//! a `"provider:<id>"` string built or split by hand.

use crate::domain::{Endpoint, MessageId, MessageKind, MessageState, ReferralId};

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The `webhook-id`: the same on every attempt.
    pub id: MessageId,
    pub referral_id: ReferralId,
    pub endpoint: Endpoint,
    pub kind: MessageKind,
    pub payload: String,
    pub created_at: String,
    /// Unix milliseconds.
    pub next_attempt_at: i64,
    /// The message this one replays, if it is a replay.
    pub replay_of: Option<MessageId>,
    /// A notification's event number (set by the store for a new one; kept
    /// by a replay).
    pub event_number: Option<i64>,
}

/// An outbox message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    /// Order of messages for one referral and endpoint.
    pub seq: i64,
    pub id: MessageId,
    pub referral_id: ReferralId,
    pub endpoint: Endpoint,
    pub kind: MessageKind,
    /// What is sent (for a numbered notification, the Task it carries: see
    /// [`super::notification::body`]).
    pub payload: String,
    pub state: MessageState,
    pub attempts: i64,
    /// Unix milliseconds.
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
    pub replay_of: Option<MessageId>,
    /// A notification's number among its referrer's events.
    pub event_number: Option<i64>,
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Assigned by the database; 0 before.
    pub id: i64,
    pub message_id: MessageId,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub worker: String,
    pub started_at: String,
    pub latency_ms: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    /// The first 4 KiB of the response body.
    pub response_excerpt: Option<String>,
    /// `delivered`, `retry`, `dead` or `disabled`.
    pub outcome: String,
}
