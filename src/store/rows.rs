//! The private rows the store reads into, and the few types of its API
//! that are its own (which messages to list, outbox statistics). Referrals,
//! Tasks, their changes, provider callbacks, tombstones, outbox messages
//! and attempts, audit records and bearer tokens all cross as the domain's
//! own types (`domain::model`), read from the private rows here: no row
//! leaves the store. Resources are stored as the JSON text that is served,
//! so reads need no re-serialisation.

use super::StoreError;
use crate::domain::{
    Actor, Endpoint, MessageId, MessageKind, MessageState, NhsNumber, ProviderId, ReferralId,
    ReferrerId, TaskId, TaskStatus, Timestamp,
    model::{
        Attempt, AuditRecord, DisabledEndpoint, InboundCallback, OutboxMessage, Referral, Task,
        Token,
    },
};

/// A referral as stored (see [`Referral`]).
#[derive(sqlx::FromRow)]
pub(super) struct ReferralRow {
    id: ReferralId,
    referrer_id: ReferrerId,
    identifier_system: String,
    identifier_value: String,
    provider_id: Option<ProviderId>,
    version_id: i64,
    last_updated: Timestamp,
    resource: String,
    nhs_number: Option<String>,
    erased_at: Option<Timestamp>,
}

impl TryFrom<ReferralRow> for Referral {
    type Error = StoreError;
    fn try_from(r: ReferralRow) -> Result<Self, StoreError> {
        let nhs_number = r
            .nhs_number
            .map(|n| NhsNumber::parse(&n))
            .transpose()
            .map_err(|e| StoreError::Database(sqlx::Error::Decode(Box::new(e))))?;
        Ok(Referral {
            id: r.id,
            referrer_id: r.referrer_id,
            identifier_system: r.identifier_system,
            identifier_value: r.identifier_value,
            provider_id: r.provider_id,
            version_id: r.version_id,
            last_updated: r.last_updated,
            resource: r.resource,
            nhs_number,
            erased_at: r.erased_at,
        })
    }
}

/// Referrals read back from rows.
pub(super) fn referrals(rows: Vec<ReferralRow>) -> Result<Vec<Referral>, StoreError> {
    rows.into_iter().map(Referral::try_from).collect()
}

/// A Task as stored (see [`Task`]).
#[derive(sqlx::FromRow)]
pub(super) struct TaskRow {
    id: TaskId,
    referral_id: ReferralId,
    status: TaskStatus,
    version_id: i64,
    last_updated: Timestamp,
    resource: String,
}

impl From<TaskRow> for Task {
    fn from(r: TaskRow) -> Self {
        Task {
            id: r.id,
            referral_id: r.referral_id,
            status: r.status,
            version_id: r.version_id,
            last_updated: r.last_updated,
            resource: r.resource,
        }
    }
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

/// A provider status callback as stored (see [`InboundCallback`]).
#[derive(sqlx::FromRow)]
pub(super) struct InboundRow {
    provider_id: ProviderId,
    webhook_id: String,
    received_at: String,
    referral_id: Option<ReferralId>,
    body: String,
    response_status: i64,
    outcome: String,
}

impl From<InboundRow> for InboundCallback {
    fn from(r: InboundRow) -> Self {
        InboundCallback {
            provider_id: r.provider_id,
            webhook_id: r.webhook_id,
            received_at: r.received_at,
            referral_id: r.referral_id,
            body: r.body,
            response_status: r.response_status,
            outcome: r.outcome,
        }
    }
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

/// A bearer token as stored (see [`Token`]).
#[derive(sqlx::FromRow)]
pub(super) struct TokenRow {
    id: String,
    role: String,
    referrer_id: Option<ReferrerId>,
    salt: String,
    hash: String,
    created_at: String,
    revoked_at: Option<String>,
    provider_id: Option<ProviderId>,
    clinical_service_id: Option<crate::domain::ClinicalServiceId>,
}

impl From<TokenRow> for Token {
    fn from(r: TokenRow) -> Self {
        Token {
            id: r.id,
            role: r.role,
            referrer_id: r.referrer_id,
            provider_id: r.provider_id,
            clinical_service_id: r.clinical_service_id,
            salt: r.salt,
            hash: r.hash,
            created_at: r.created_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// An audit record as stored (see [`AuditRecord`]).
#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    seq: i64,
    at: Timestamp,
    actor: Actor,
    credential: Option<String>,
    client: Option<String>,
    request_id: Option<String>,
    action: String,
    resource: Option<String>,
    referral_id: Option<ReferralId>,
    outcome: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        AuditRecord {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            credential: r.credential,
            client: r.client,
            request_id: r.request_id,
            action: r.action,
            resource: r.resource,
            referral_id: r.referral_id,
            outcome: r.outcome,
        }
    }
}

/// A disabled endpoint as stored (see [`DisabledEndpoint`]).
#[derive(sqlx::FromRow)]
pub(super) struct DisabledEndpointRow {
    endpoint: Endpoint,
    disabled_at: String,
    reason: String,
}

impl From<DisabledEndpointRow> for DisabledEndpoint {
    fn from(r: DisabledEndpointRow) -> Self {
        DisabledEndpoint {
            endpoint: r.endpoint,
            disabled_at: r.disabled_at,
            reason: r.reason,
        }
    }
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
