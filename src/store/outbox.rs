//! The outbox, as the delivery worker sees it: messages are added in the
//! transaction that caused them (and, on PostgreSQL, announced to other
//! processes on commit), claimed under a lease (`SKIP LOCKED` on
//! PostgreSQL, so concurrent workers pass each other's rows), one at a time
//! per referral and endpoint, and finished with the attempt's record, the
//! message's new state and its audit record in one transaction
//! (group-committed on SQLite).

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use sqlx::Transaction;
use tokio::sync::Notify;

use super::{
    Attempt, AttemptRecord, AuditRecord, MessageId, MessageUpdate, NewMessage, Outbox,
    OutboxMessage, SqlStore, StoreError,
    backend::{Backend, keep_prepared, rows_per_statement},
    group::Write,
    rows::MessageRow,
};

const INSERT_MESSAGES: &str = "INSERT INTO outbox \
    (id, referral_id, endpoint, kind, payload, state, attempts, next_attempt_at, created_at, replay_of, event_number, priority) ";
const INSERT_ATTEMPTS: &str = "INSERT INTO delivery_attempts \
    (message_id, attempt, worker, started_at, latency_ms, status_code, error, response_excerpt, outcome) ";
/// Messages delivered: followed by `WHEN id THEN delivered_at` for each,
/// [`MESSAGES_DELIVERED_WHERE`] and their ids.
const MESSAGES_DELIVERED: &str = "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, \
    last_error = NULL, lease_owner = NULL, lease_until = NULL, delivered_at = CASE id";
const MESSAGES_DELIVERED_WHERE: &str = " END WHERE id IN (";
/// The messages that may be sent now (see [`Outbox::claim_due`]), urgent
/// ones first (`priority`, migration 0020); the
/// backend's [`Backend::CLAIM_LOCK`] follows it. Leases are timed by the
/// database's clock (`{now}`, [`Backend::NOW_MS`]), not the worker's: a
/// worker whose clock runs fast must not take a lease still held.
const DUE: &str = "SELECT o.seq FROM outbox o \
    WHERE o.state = 'pending' AND o.next_attempt_at <= $3 \
      AND (o.lease_until IS NULL OR o.lease_until < {now}) \
      AND o.endpoint NOT IN (SELECT endpoint FROM disabled_endpoints) \
      AND o.endpoint NOT IN (SELECT endpoint FROM inbox_endpoints) \
      AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.referral_id = o.referral_id \
          AND e.endpoint = o.endpoint AND e.state = 'pending' AND e.seq < o.seq) \
    ORDER BY o.priority DESC, o.next_attempt_at, o.seq LIMIT $4";
const CLAIM: &str = "UPDATE outbox SET lease_owner = $1, lease_until = {now} + $2 \
    WHERE seq IN ({due}) RETURNING *";
const NEXT_DUE: &str = "SELECT MIN(CASE WHEN o.lease_until IS NOT NULL AND o.lease_until > o.next_attempt_at \
        THEN o.lease_until ELSE o.next_attempt_at END) FROM outbox o \
    WHERE o.state = 'pending' \
      AND o.endpoint NOT IN (SELECT endpoint FROM disabled_endpoints) \
      AND o.endpoint NOT IN (SELECT endpoint FROM inbox_endpoints) \
      AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.referral_id = o.referral_id \
          AND e.endpoint = o.endpoint AND e.state = 'pending' AND e.seq < o.seq)";
const MESSAGE_RETRY: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, \
    last_error = $3, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'pending'";
const MESSAGE_DEAD: &str = "UPDATE outbox SET state = 'dead', attempts = attempts + 1, \
    last_error = $2, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'pending'";
const DISABLE_ENDPOINT: &str = "INSERT INTO disabled_endpoints (endpoint, disabled_at, reason) \
    VALUES ($1, $2, $3) ON CONFLICT (endpoint) DO NOTHING";
/// An inbox message's nudge: counted, its lease kept.
const MESSAGE_WAITING: &str = "UPDATE outbox SET attempts = attempts + 1, last_error = $2 \
    WHERE id = $1 AND state = 'pending'";
const RELEASE_LEASES: &str = "UPDATE outbox SET lease_owner = NULL, lease_until = NULL \
    WHERE lease_owner = $1 AND state = 'pending'";

/// The claim statement for backend `B`: the due messages, locked as `B`
/// locks them, leased.
fn claim_sql<B: Backend>() -> String {
    CLAIM
        .replace("{due}", &format!("{DUE} {}", B::CLAIM_LOCK))
        .replace("{now}", B::NOW_MS)
}

macro_rules! impl_outbox {
    ($db:ty) => {
        #[async_trait]
        impl Outbox for SqlStore<$db> {
            async fn claim_due(
                &self,
                worker: &str,
                now: i64,
                lease_ms: i64,
                limit: i64,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                static CLAIM_SQL: LazyLock<String> = LazyLock::new(claim_sql::<$db>);
                let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(CLAIM_SQL.as_str()))
                    .bind(worker)
                    .bind(lease_ms)
                    .bind(now)
                    .bind(limit)
                    .fetch_all(&self.writer)
                    .await?;
                let mut messages: Vec<OutboxMessage> =
                    rows.into_iter().map(OutboxMessage::from).collect();
                messages.sort_by_key(|m| m.seq);
                Ok(messages)
            }

            async fn next_due(&self) -> Result<Option<i64>, StoreError> {
                let (at,): (Option<i64>,) =
                    sqlx::query_as(NEXT_DUE).fetch_one(&self.reader).await?;
                Ok(at)
            }

            async fn record_attempt(&self, record: AttemptRecord) -> Result<(), StoreError> {
                // A notification was queued, or the next message for this
                // referral and endpoint may now go.
                let wake =
                    record.task_update.is_some() || record.update == MessageUpdate::Delivered;
                self.commit(|reply| Write::Finish(Box::new(record), reply))
                    .await?;
                if wake {
                    self.wake_workers();
                }
                Ok(())
            }

            async fn release_leases(&self, worker: &str) -> Result<(), StoreError> {
                sqlx::query(RELEASE_LEASES)
                    .bind(worker)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            fn wakeups(&self) -> Arc<Notify> {
                self.wake.clone()
            }

            fn watch_outbox(&self) -> Option<tokio::task::JoinHandle<()>> {
                <$db as Backend>::watch(&self.writer, self.wake.clone())
            }
        }

        impl SqlStore<$db> {
            /// Add messages inside `tx`, announced to other processes
            /// (where the backend can) when it commits; whoever commits
            /// `tx` then wakes this process's workers
            /// ([`SqlStore::wake_workers`]).
            pub(super) async fn insert_messages(
                tx: &mut Transaction<'static, $db>,
                messages: &[&NewMessage],
            ) -> Result<(), StoreError> {
                if messages.is_empty() {
                    return Ok(());
                }
                Self::insert_rows(tx, INSERT_MESSAGES, 10, messages, |mut row, m| {
                    row.push_bind(&m.id)
                        .push_bind(&m.referral_id)
                        .push_bind(&m.endpoint)
                        .push_bind(&m.kind)
                        .push_bind(&m.payload)
                        .push_unseparated(", 'pending', 0")
                        .push_bind(m.next_attempt_at)
                        .push_bind(&m.created_at)
                        .push_bind(&m.replay_of)
                        .push_bind(m.event_number)
                        .push_bind(m.priority);
                })
                .await?;
                if let Some(announce) = <$db as Backend>::ANNOUNCE {
                    sqlx::query(announce).execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Attempts' outcomes: each attempt's record, its message's new
            /// state (delivered ones in one statement), its Task update if
            /// it has one, and its audit record.
            pub(super) async fn finishes_in(
                tx: &mut Transaction<'static, $db>,
                finished: Vec<AttemptRecord>,
            ) -> Result<(), StoreError> {
                if finished.is_empty() {
                    return Ok(());
                }
                // An answer to a message whose referral was erased while it
                // was in flight may echo the patient's data: keep only
                // that it came (see `retention.rs`).
                let ids: Vec<&MessageId> = finished.iter().map(|f| &f.attempt.message_id).collect();
                let erased = Self::messages_erased(tx, &ids).await?;
                let mut finished = finished;
                for f in finished
                    .iter_mut()
                    .filter(|f| erased.contains(&f.attempt.message_id))
                {
                    f.attempt.error = None;
                    f.attempt.response_excerpt = None;
                    f.last_error = None;
                }
                let attempts: Vec<&Attempt> = finished.iter().map(|f| &f.attempt).collect();
                Self::insert_rows(tx, INSERT_ATTEMPTS, 9, &attempts, |mut row, a| {
                    row.push_bind(&a.message_id)
                        .push_bind(a.attempt)
                        .push_bind(&a.worker)
                        .push_bind(&a.started_at)
                        .push_bind(a.latency_ms)
                        .push_bind(a.status_code)
                        .push_bind(&a.error)
                        .push_bind(&a.response_excerpt)
                        .push_bind(&a.outcome);
                })
                .await?;
                let delivered: Vec<&Attempt> = finished
                    .iter()
                    .filter(|f| f.update == MessageUpdate::Delivered)
                    .map(|f| &f.attempt)
                    .collect();
                for chunk in delivered.chunks(rows_per_statement(3)) {
                    // delivered_at = CASE id WHEN … THEN started_at … END
                    let mut update = sqlx::QueryBuilder::<$db>::new(MESSAGES_DELIVERED);
                    for a in chunk {
                        update.push(" WHEN ").push_bind(&a.message_id);
                        update.push(" THEN ").push_bind(&a.started_at);
                    }
                    update.push(MESSAGES_DELIVERED_WHERE);
                    let mut ids = update.separated(", ");
                    for a in chunk {
                        ids.push_bind(&a.message_id);
                    }
                    update.push(") AND state = 'pending'");
                    update
                        .build()
                        .persistent(keep_prepared(chunk.len()))
                        .execute(&mut **tx)
                        .await?;
                }
                for a in &delivered {
                    let at = a.started_at.parse::<crate::domain::Timestamp>().ok();
                    if let Some(at) = at {
                        Self::record_delivered(tx, &a.message_id, at.as_millis()).await?;
                    }
                }
                let audits: Vec<&AuditRecord> = finished.iter().map(|f| &f.audit).collect();
                Self::insert_audit(tx, &audits).await?;
                for f in finished {
                    let a = &f.attempt;
                    let error = &f.last_error;
                    match &f.update {
                        MessageUpdate::Delivered => {}
                        MessageUpdate::PendingUntil(next_attempt_at) => {
                            sqlx::query(MESSAGE_RETRY)
                                .bind(&a.message_id)
                                .bind(next_attempt_at)
                                .bind(error)
                                .execute(&mut **tx)
                                .await?;
                        }
                        MessageUpdate::StillWaiting => {
                            sqlx::query(MESSAGE_WAITING)
                                .bind(&a.message_id)
                                .bind(error)
                                .execute(&mut **tx)
                                .await?;
                        }
                        MessageUpdate::Dead => {
                            sqlx::query(MESSAGE_DEAD)
                                .bind(&a.message_id)
                                .bind(error)
                                .execute(&mut **tx)
                                .await?;
                        }
                        MessageUpdate::EndpointDisabled {
                            reason,
                            pending_until,
                        } => {
                            sqlx::query(MESSAGE_RETRY)
                                .bind(&a.message_id)
                                .bind(pending_until)
                                .bind(error)
                                .execute(&mut **tx)
                                .await?;
                            let endpoint: (String,) =
                                sqlx::query_as("SELECT endpoint FROM outbox WHERE id = $1")
                                    .bind(&a.message_id)
                                    .fetch_one(&mut **tx)
                                    .await?;
                            sqlx::query(DISABLE_ENDPOINT)
                                .bind(&endpoint.0)
                                .bind(&a.started_at)
                                .bind(reason)
                                .execute(&mut **tx)
                                .await?;
                        }
                    }
                    if let Some(update) = f.task_update {
                        Self::apply_update(tx, update).await?;
                    }
                }
                Ok(())
            }
        }
    };
}

impl<B: Backend> SqlStore<B> {
    /// Wake this process's delivery workers: called once a transaction that
    /// added messages (or freed one to go) has committed, and only then, so
    /// that a woken worker finds them. (Other processes hear of it from
    /// [`Backend::ANNOUNCE`], sent with the transaction.)
    pub(super) fn wake_workers(&self) {
        self.wake.notify_one();
    }
}

impl_outbox!(sqlx::Sqlite);
impl_outbox!(sqlx::Postgres);
