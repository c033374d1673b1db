//! Escalations (issue 18): a child Task with its Communication and Flag,
//! written with the change to the referral's Task and the referrer's
//! notification in one transaction. At most one open escalation per
//! referral and reason, by a partial unique index (`0018_escalations.sql`),
//! never by search-then-insert; an escalation changes only from the version
//! it was read at.

use async_trait::async_trait;

use super::{SqlStore, StoreError, TaskUpdate};
use crate::domain::{
    ProviderId, ReferralId, ReferrerId, TaskId, Timestamp,
    model::{AuditRecord, Escalation, NewMessage, Notification},
};

const INSERT_ESCALATION: &str = "INSERT INTO escalations \
    (id, referral_id, referrer_id, provider_id, reason, urgency, state, version_id, deadline, \
     created_at, last_updated, acknowledged_at, sends, task, communication_id, communication, \
     flag_id, flag, request_id, target, service_request) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
     $20, $21) \
    ON CONFLICT DO NOTHING";
const UPDATE_ESCALATION: &str = "UPDATE escalations SET state = $1, version_id = $2, \
    deadline = $3, last_updated = $4, acknowledged_at = $5, sends = $6, task = $7 \
    WHERE id = $8 AND version_id = $9";
const SELECT_ESCALATION: &str = "SELECT * FROM escalations WHERE id = $1";
const SELECT_BY_REQUEST: &str =
    "SELECT * FROM escalations WHERE provider_id = $1 AND request_id = $2";
const SELECT_FOR_REFERRAL: &str =
    "SELECT * FROM escalations WHERE referral_id = $1 ORDER BY created_at, id";
/// (Erased escalations have no Flag left, so they take no place.)
const SELECT_OF_REFERRER: &str = "SELECT * FROM escalations WHERE referrer_id = $1 \
    AND flag IS NOT NULL ORDER BY created_at DESC, id DESC LIMIT $2";
const SELECT_DUE: &str = "SELECT * FROM escalations WHERE state = 'requested' AND deadline <= $1 \
    ORDER BY deadline, id LIMIT $2";

/// Escalations (`escalations.rs`).
#[async_trait]
pub trait EscalationStore: Send + Sync + 'static {
    /// Store a new escalation with the change to its referral's Task (and
    /// the referrer's notification it carries), atomically. `false`: the
    /// referral already has an open escalation with this reason, or the
    /// provider's request id was used, and nothing was written.
    async fn record_escalation(
        &self,
        escalation: Escalation,
        parent: TaskUpdate,
    ) -> Result<bool, StoreError>;

    /// One escalation by its child Task's id.
    async fn escalation(&self, id: &TaskId) -> Result<Option<Escalation>, StoreError>;

    /// The escalation a provider's request (its `webhook-id`) raised.
    async fn escalation_by_request(
        &self,
        provider_id: &ProviderId,
        request_id: &str,
    ) -> Result<Option<Escalation>, StoreError>;

    /// A referral's escalations, oldest first.
    async fn escalations_for_referral(
        &self,
        referral_id: &ReferralId,
    ) -> Result<Vec<Escalation>, StoreError>;

    /// A referrer's escalations that raised a Flag, newest first, at most
    /// `limit`.
    async fn escalations_of_referrer(
        &self,
        referrer_id: &ReferrerId,
        limit: i64,
    ) -> Result<Vec<Escalation>, StoreError>;

    /// The unacknowledged escalations whose deadline is at or before
    /// `now`, soonest first, at most `limit`.
    async fn escalations_due(
        &self,
        now: Timestamp,
        limit: i64,
    ) -> Result<Vec<Escalation>, StoreError>;

    /// Write a new version of an escalation, if the stored one is still at
    /// `expected_version` (else [`StoreError::Conflict`]), with the change
    /// to its referral's Task, a notification of its own (a re-send, which
    /// changes no Task), further messages (the provider's
    /// `escalation_outcome`) and audit records, in one transaction.
    async fn update_escalation(
        &self,
        escalation: Escalation,
        expected_version: i64,
        parent: Option<TaskUpdate>,
        notification: Option<Notification>,
        messages: Vec<NewMessage>,
        audit: Vec<AuditRecord>,
    ) -> Result<(), StoreError>;
}

macro_rules! impl_escalation_insert {
    ($db:ty) => {
        impl SqlStore<$db> {
            /// Insert an escalation inside `tx`; `false` when the referral
            /// has an open escalation with its reason already (nothing
            /// inserted).
            pub(super) async fn insert_escalation(
                tx: &mut sqlx::Transaction<'static, $db>,
                e: &Escalation,
            ) -> Result<bool, StoreError> {
                let inserted = sqlx::query(INSERT_ESCALATION)
                    .bind(&e.id)
                    .bind(&e.referral_id)
                    .bind(&e.referrer_id)
                    .bind(&e.provider_id)
                    .bind(&e.reason)
                    .bind(&e.urgency)
                    .bind(e.state)
                    .bind(e.version_id)
                    .bind(e.deadline)
                    .bind(e.created_at)
                    .bind(e.last_updated)
                    .bind(e.acknowledged_at)
                    .bind(e.sends)
                    .bind(&e.task)
                    .bind(&e.communication_id)
                    .bind(&e.communication)
                    .bind(&e.flag_id)
                    .bind(&e.flag)
                    .bind(&e.request_id)
                    .bind(&e.target)
                    .bind(&e.service_request)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                Ok(inserted == 1)
            }
        }
    };
}

macro_rules! impl_escalations {
    ($db:ty) => {
        #[async_trait]
        impl EscalationStore for SqlStore<$db> {
            async fn record_escalation(
                &self,
                e: Escalation,
                parent: TaskUpdate,
            ) -> Result<bool, StoreError> {
                let adds = parent.adds_messages();
                let mut tx = self.writer.begin().await?;
                if !Self::insert_escalation(&mut tx, &e).await? {
                    // (Dropping `tx` rolls it back: nothing was written.)
                    return Ok(false);
                }
                Self::apply_update(&mut tx, parent).await?;
                tx.commit().await?;
                if adds {
                    self.wake_workers();
                }
                Ok(true)
            }

            async fn escalation(&self, id: &TaskId) -> Result<Option<Escalation>, StoreError> {
                Ok(sqlx::query_as(SELECT_ESCALATION)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn escalation_by_request(
                &self,
                provider_id: &ProviderId,
                request_id: &str,
            ) -> Result<Option<Escalation>, StoreError> {
                Ok(sqlx::query_as(SELECT_BY_REQUEST)
                    .bind(provider_id)
                    .bind(request_id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn escalations_for_referral(
                &self,
                referral_id: &ReferralId,
            ) -> Result<Vec<Escalation>, StoreError> {
                Ok(sqlx::query_as(SELECT_FOR_REFERRAL)
                    .bind(referral_id)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn escalations_of_referrer(
                &self,
                referrer_id: &ReferrerId,
                limit: i64,
            ) -> Result<Vec<Escalation>, StoreError> {
                Ok(sqlx::query_as(SELECT_OF_REFERRER)
                    .bind(referrer_id)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn escalations_due(
                &self,
                now: Timestamp,
                limit: i64,
            ) -> Result<Vec<Escalation>, StoreError> {
                Ok(sqlx::query_as(SELECT_DUE)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn update_escalation(
                &self,
                e: Escalation,
                expected_version: i64,
                parent: Option<TaskUpdate>,
                notification: Option<Notification>,
                messages: Vec<NewMessage>,
                audit: Vec<AuditRecord>,
            ) -> Result<(), StoreError> {
                let adds = notification.is_some()
                    || !messages.is_empty()
                    || parent.as_ref().is_some_and(TaskUpdate::adds_messages);
                let mut tx = self.writer.begin().await?;
                let changed = sqlx::query(UPDATE_ESCALATION)
                    .bind(e.state)
                    .bind(e.version_id)
                    .bind(e.deadline)
                    .bind(e.last_updated)
                    .bind(e.acknowledged_at)
                    .bind(e.sends)
                    .bind(&e.task)
                    .bind(&e.id)
                    .bind(expected_version)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    return Err(StoreError::Conflict);
                }
                if let Some(parent) = parent {
                    Self::apply_update(&mut tx, parent).await?;
                }
                if let Some(notification) = notification {
                    Self::insert_notification(&mut tx, notification).await?;
                }
                Self::insert_messages(&mut tx, &messages.iter().collect::<Vec<_>>()).await?;
                if !audit.is_empty() {
                    Self::insert_audit(&mut tx, &audit.iter().collect::<Vec<_>>()).await?;
                }
                tx.commit().await?;
                if adds {
                    self.wake_workers();
                }
                Ok(())
            }
        }
    };
}

impl_escalation_insert!(sqlx::Sqlite);
impl_escalation_insert!(sqlx::Postgres);
impl_escalations!(sqlx::Sqlite);
impl_escalations!(sqlx::Postgres);
