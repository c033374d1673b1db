//! Tasks, their events and provider callbacks. A Task changes only from the
//! version it was read at (optimistic concurrency: otherwise
//! [`StoreError::Conflict`]), and the change, its event, a new referral
//! version and the messages it causes are written in one transaction. A
//! provider callback is recorded once per webhook-id, with its change.

use async_trait::async_trait;
use sqlx::Transaction;

use super::{
    CallbackApplied, Escalation, InboundCallback, SqlStore, StoreError, Task, TaskEvents,
    TaskUpdate,
    rows::{InboundRow, TaskRow},
};
use crate::domain::{ProviderId, ReferralId, ReferrerId, TaskId};

const UPDATE_REFERRAL: &str = "UPDATE referrals SET version_id = $1, last_updated = $2, resource = $3 \
    WHERE id = $4 AND version_id = $5";
const UPDATE_TASK: &str = "UPDATE tasks SET status = $1, version_id = $2, last_updated = $3, resource = $4 \
    WHERE id = $5 AND version_id = $6";
const INSERT_TASK_EVENT: &str = "INSERT INTO task_events \
    (task_id, from_status, to_status, actor, reason, at) VALUES ($1, $2, $3, $4, $5, $6)";
const NEXT_EVENT_NUMBER: &str = "INSERT INTO notification_counters (referrer_id, events) VALUES ($1, 1) \
    ON CONFLICT (referrer_id) DO UPDATE SET events = notification_counters.events + 1 \
    RETURNING events";
const SELECT_TASK: &str = "SELECT * FROM tasks WHERE id = $1";
const SELECT_TASKS_FOR_REFERRAL: &str = "SELECT * FROM tasks WHERE referral_id = $1 ORDER BY id";
const SELECT_TASKS_UPDATED_SINCE: &str = "SELECT t.* FROM tasks t \
    JOIN referrals r ON r.id = t.referral_id \
    WHERE t.last_updated >= $1 AND (CAST($2 AS TEXT) IS NULL OR r.referrer_id = $2) \
    ORDER BY t.last_updated, t.id LIMIT $3";
const INSERT_INBOUND: &str = "INSERT INTO inbound_events \
    (provider_id, webhook_id, received_at, referral_id, body, response_status, outcome) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (provider_id, webhook_id) DO NOTHING";
const SELECT_INBOUND: &str =
    "SELECT * FROM inbound_events WHERE provider_id = $1 AND webhook_id = $2";
const SELECT_INBOUND_EVENTS: &str = "SELECT * FROM inbound_events \
    WHERE (CAST($1 AS TEXT) IS NULL OR provider_id = $1) \
      AND (CAST($2 AS TEXT) IS NULL OR referral_id = $2) \
    ORDER BY received_at DESC, webhook_id LIMIT $3";

macro_rules! impl_task_events {
    ($db:ty) => {
        #[async_trait]
        impl TaskEvents for SqlStore<$db> {
            async fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError> {
                let row: Option<TaskRow> = sqlx::query_as(SELECT_TASK)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(row.map(Task::from))
            }

            async fn tasks_for_referral(
                &self,
                referral_id: &ReferralId,
            ) -> Result<Vec<Task>, StoreError> {
                let rows: Vec<TaskRow> = sqlx::query_as(SELECT_TASKS_FOR_REFERRAL)
                    .bind(referral_id)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows.into_iter().map(Task::from).collect())
            }

            async fn tasks_updated_since(
                &self,
                since: &str,
                referrer_id: Option<&ReferrerId>,
                limit: i64,
            ) -> Result<Vec<Task>, StoreError> {
                let rows: Vec<TaskRow> = sqlx::query_as(SELECT_TASKS_UPDATED_SINCE)
                    .bind(since)
                    .bind(referrer_id.map(ReferrerId::as_str))
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows.into_iter().map(Task::from).collect())
            }

            async fn update_task(&self, update: TaskUpdate) -> Result<(), StoreError> {
                let adds = update.adds_messages();
                let mut tx = self.writer.begin().await?;
                Self::apply_update(&mut tx, update).await?;
                tx.commit().await?;
                if adds {
                    self.wake_workers();
                }
                Ok(())
            }

            async fn apply_callback(
                &self,
                inbound: InboundCallback,
                update: Option<TaskUpdate>,
                escalation: Option<(Escalation, TaskUpdate)>,
            ) -> Result<CallbackApplied, StoreError> {
                let mut tx = self.writer.begin().await?;
                // A callback about an erased referral keeps no body (it may
                // carry the patient's data): see `retention.rs`.
                let mut inbound = inbound;
                if let Some(referral_id) = &inbound.referral_id
                    && Self::referral_erased(&mut tx, referral_id).await?
                {
                    inbound.body = String::new();
                }
                let inserted = sqlx::query(INSERT_INBOUND)
                    .bind(&inbound.provider_id)
                    .bind(&inbound.webhook_id)
                    .bind(&inbound.received_at)
                    .bind(&inbound.referral_id)
                    .bind(&inbound.body)
                    .bind(inbound.response_status)
                    .bind(&inbound.outcome)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    let first: InboundRow = sqlx::query_as(SELECT_INBOUND)
                        .bind(&inbound.provider_id)
                        .bind(&inbound.webhook_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(CallbackApplied::Duplicate(first.into()));
                }
                let adds = update.as_ref().is_some_and(TaskUpdate::adds_messages)
                    || escalation.as_ref().is_some_and(|(_, u)| u.adds_messages());
                if let Some(update) = update {
                    Self::apply_update(&mut tx, update).await?;
                }
                // The escalation the callback also asks for, on the Task as
                // the change left it. An open one with its reason appeared
                // since the callback was read: a conflict (the caller
                // reads again and refuses it).
                if let Some((escalation, parent)) = escalation {
                    if !Self::insert_escalation(&mut tx, &escalation).await? {
                        return Err(StoreError::Conflict);
                    }
                    Self::apply_update(&mut tx, parent).await?;
                }
                tx.commit().await?;
                if adds {
                    self.wake_workers();
                }
                Ok(CallbackApplied::Applied)
            }

            async fn inbound(
                &self,
                provider_id: &ProviderId,
                webhook_id: &str,
            ) -> Result<Option<InboundCallback>, StoreError> {
                let row: Option<InboundRow> = sqlx::query_as(SELECT_INBOUND)
                    .bind(provider_id)
                    .bind(webhook_id)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(row.map(InboundCallback::from))
            }

            async fn inbound_events(
                &self,
                provider_id: Option<&ProviderId>,
                referral_id: Option<&ReferralId>,
                limit: i64,
            ) -> Result<Vec<InboundCallback>, StoreError> {
                let rows: Vec<InboundRow> = sqlx::query_as(SELECT_INBOUND_EVENTS)
                    .bind(provider_id.map(ProviderId::as_str))
                    .bind(referral_id.map(ReferralId::as_str))
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows.into_iter().map(InboundCallback::from).collect())
            }
        }

        impl SqlStore<$db> {
            /// Apply a Task update inside `tx`: the Task first (its row lock
            /// orders concurrent changes to one referral), then its event,
            /// the referral, and the messages.
            pub(super) async fn apply_update(
                tx: &mut Transaction<'static, $db>,
                mut update: TaskUpdate,
            ) -> Result<(), StoreError> {
                // First, the referral's row (see `retention.rs`): the
                // reason given for a change to an erased referral's Task
                // is not kept.
                if Self::referral_erased(tx, &update.task.referral_id).await? {
                    update.reason = None;
                    // Nor its wellbeing scores (health data) in the facts.
                    update.step.outcomes = Default::default();
                }
                // The BaRS message asking for the change, before the change:
                // a sender's second message with its request id (a retry,
                // concurrent or not) changes nothing.
                if let Some(bars) = &update.bars
                    && Self::record_bars_in(tx, bars).await?.is_some()
                {
                    return Err(StoreError::Conflict);
                }
                let t = &update.task;
                let changed = sqlx::query(UPDATE_TASK)
                    .bind(&t.status)
                    .bind(t.version_id)
                    .bind(&t.last_updated)
                    .bind(&t.resource)
                    .bind(&t.id)
                    .bind(update.expected_version)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                if changed == 0 {
                    return Err(StoreError::Conflict);
                }
                sqlx::query(INSERT_TASK_EVENT)
                    .bind(&t.id)
                    .bind(&update.from_status)
                    .bind(&t.status)
                    .bind(&update.actor)
                    .bind(&update.reason)
                    .bind(&t.last_updated)
                    .execute(&mut **tx)
                    .await?;
                Self::apply_step(tx, &t.id, &update.step).await?;
                if let Some(r) = &update.referral {
                    let changed = sqlx::query(UPDATE_REFERRAL)
                        .bind(r.version_id)
                        .bind(&r.last_updated)
                        .bind(&r.resource)
                        .bind(&r.id)
                        .bind(r.version_id - 1)
                        .execute(&mut **tx)
                        .await?
                        .rows_affected();
                    if changed == 0 {
                        return Err(StoreError::Conflict);
                    }
                }
                Self::insert_messages(tx, &update.messages.iter().collect::<Vec<_>>()).await?;
                if let Some(notification) = update.notification {
                    Self::insert_notification(tx, notification).await?;
                }
                Ok(())
            }

            /// Queue a notification to a referrer inside `tx`, numbered
            /// with the referrer's next event number (allocated in `tx`).
            pub(super) async fn insert_notification(
                tx: &mut Transaction<'static, $db>,
                notification: crate::domain::model::Notification,
            ) -> Result<(), StoreError> {
                let (number,): (i64,) = sqlx::query_as(NEXT_EVENT_NUMBER)
                    .bind(&notification.referrer_id)
                    .fetch_one(&mut **tx)
                    .await?;
                let mut message = notification.message;
                message.event_number = Some(number);
                Self::insert_messages(tx, &[&message]).await
            }
        }
    };
}

impl_task_events!(sqlx::Sqlite);
impl_task_events!(sqlx::Postgres);
