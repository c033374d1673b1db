//! Durable storage behind one trait, with two backends: embedded SQLite (the
//! default, so `signpost serve` needs no setup) and PostgreSQL (for several
//! instances sharing one database).
//!
//! Every method is one whole transaction, so no transaction type leaks out of
//! a backend. Idempotency is enforced by unique constraints
//! (`referrals (referrer_id, identifier_system, identifier_value)`), never by
//! search-then-insert. Resources are stored as the JSON text that is served,
//! so reads need no re-serialisation.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

pub use self::{postgres::PostgresStore, sqlite::SqliteStore};

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
    pub actor: String,
    /// The mapped payload for the provider (the transactional outbox).
    pub messages: Vec<NewMessage>,
}

/// What [`Store::record_intake`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// A new referral and its Task were stored.
    Created(ReferralRow),
    /// The referrer had already sent this business identifier: nothing was
    /// written, and this is the referral stored the first time.
    Existing(ReferralRow),
}

/// A message to put in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The `webhook-id`: the same on every attempt.
    pub id: String,
    pub referral_id: String,
    /// `provider:<id>` or `referrer:<id>`.
    pub endpoint: String,
    /// `referral`, `cancel` or `notification`.
    pub kind: String,
    pub payload: String,
    pub created_at: String,
    /// Unix milliseconds.
    pub next_attempt_at: i64,
    /// The message this one replays, if it is a replay.
    pub replay_of: Option<String>,
}

/// An outbox message as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MessageRow {
    /// Order of messages for one referral and endpoint.
    pub seq: i64,
    pub id: String,
    pub referral_id: String,
    pub endpoint: String,
    pub kind: String,
    pub payload: String,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: i64,
    /// Unix milliseconds.
    pub next_attempt_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub last_error: Option<String>,
    pub replay_of: Option<String>,
}

/// One delivery attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub message_id: String,
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

/// What to do with a message after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Delivered,
    /// Try again at this Unix millisecond.
    Retry {
        next_attempt_at: i64,
    },
    /// No more attempts: dead letter.
    Dead,
    /// The endpoint answered 410 Gone: disable it; the message waits (from
    /// `next_attempt_at`) until an operator re-enables the endpoint.
    DisableEndpoint {
        reason: String,
        next_attempt_at: i64,
    },
}

/// An attempt's record and its consequence, stored in one transaction.
pub struct FinishedAttempt {
    pub attempt: AttemptRow,
    /// The attempt's audit record, written with it.
    pub audit: AuditRow,
    pub disposition: Disposition,
    /// A Task change caused by this attempt (a dead-lettered referral shows
    /// "delivery failed").
    pub task_update: Option<TaskUpdate>,
}

/// A new version of a Task, applied only if the stored Task is still at
/// `expected_version` (otherwise [`StoreError::Conflict`]).
pub struct TaskUpdate {
    pub task: TaskRow,
    pub expected_version: i64,
    pub from_status: String,
    pub actor: String,
    pub reason: Option<String>,
    /// The notification to the referrer, built once its event number is
    /// known (numbers are allocated inside the transaction).
    pub notification: Option<Notification>,
    /// A new version of the referral (a cancellation), applied only if the
    /// stored one is at `version_id - 1`.
    pub referral: Option<ReferralRow>,
    /// Further messages (e.g. a cancellation to the provider).
    pub messages: Vec<NewMessage>,
}

/// A Subscriptions notification to a referrer, waiting for its event number.
pub struct Notification {
    pub referrer_id: String,
    /// Everything but the payload.
    pub message: NewMessage,
    /// Builds the payload from the event number.
    pub payload: Box<dyn FnOnce(i64) -> String + Send>,
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

/// What [`Store::apply_callback`] did.
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
    pub state: Option<String>,
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
    pub actor: String,
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
    pub actor: Option<String>,
    /// RFC 3339 UTC, compared as stored text.
    pub since: Option<String>,
    pub limit: i64,
}

/// An endpoint that is not sent to until re-enabled.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DisabledEndpoint {
    pub endpoint: String,
    pub disabled_at: String,
    pub reason: String,
}

/// Storage failures. Except [`StoreError::Conflict`], all of them are the
/// server's problem, never the client's; the HTTP layer answers `503`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable or refused the operation")]
    Database(#[from] sqlx::Error),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The Task or referral changed since it was read: read again and retry.
    #[error("the resource changed concurrently")]
    Conflict,
    /// The group commit a write was part of failed (or the writer is gone):
    /// nothing of it was stored.
    #[error("the database did not commit the write: {0}")]
    NotCommitted(String),
}

/// Group commit: the writes that must be durable before they are
/// acknowledged (a referral's intake, a delivery attempt's outcome) queue
/// for the one writer task, which runs every write that arrived while the
/// previous commit was being flushed in one transaction, with one
/// multi-row statement per table, commits once, and only then answers each.
/// If anything in the group fails, the group is rolled back and each write
/// runs alone, so one refused write does not undo the others. Under load
/// one fsync and a handful of statements cover many referrals; alone, a
/// write commits at once, as before.
pub(crate) mod group {
    use tokio::sync::{mpsc, oneshot};

    use super::{FinishedAttempt, NewIntake, Recorded, StoreError};

    /// Most writes in one transaction.
    pub const LIMIT: usize = 256;
    /// Writes waiting for the writer (then callers wait for room).
    pub const QUEUE: usize = 4096;

    pub enum Write {
        Intake(
            Box<NewIntake>,
            oneshot::Sender<Result<Recorded, StoreError>>,
        ),
        Finish(
            Box<FinishedAttempt>,
            oneshot::Sender<Result<(), StoreError>>,
        ),
    }

    /// A copy of a write, to run inside the group's transaction.
    pub enum Job {
        Intake(Box<NewIntake>),
        Finish(Box<FinishedAttempt>),
    }

    /// A job's result inside the group's transaction, not yet committed.
    pub enum Done {
        Intake(Result<Recorded, StoreError>),
        Finish(Result<(), StoreError>),
    }

    impl Write {
        /// Whether the write can be run twice (after a failed group): all
        /// but those carrying a Task update, whose notification payload is
        /// built once.
        pub fn can_run_again(&self) -> bool {
            match self {
                Write::Intake(..) => true,
                Write::Finish(finished, _) => finished.task_update.is_none(),
            }
        }

        /// A copy to run inside the group (only for writes that
        /// [`can_run_again`](Self::can_run_again)).
        pub fn copy(&self) -> Job {
            match self {
                Write::Intake(intake, _) => Job::Intake(intake.clone()),
                Write::Finish(finished, _) => Job::Finish(Box::new(FinishedAttempt {
                    attempt: finished.attempt.clone(),
                    audit: finished.audit.clone(),
                    disposition: finished.disposition.clone(),
                    task_update: None,
                })),
            }
        }

        /// Answer with the copy's result, now committed.
        pub fn answer(self, done: Done) {
            match (self, done) {
                (Write::Intake(_, reply), Done::Intake(result)) => {
                    let _ = reply.send(result);
                }
                (Write::Finish(_, reply), Done::Finish(result)) => {
                    let _ = reply.send(result);
                }
                (write, _) => write.refuse("internal error: a write and its result differ"),
            }
        }

        /// Answer without writing: nothing was stored, for `why`.
        pub fn refuse(self, why: &str) {
            let lost = || StoreError::NotCommitted(why.to_owned());
            match self {
                Write::Intake(_, reply) => {
                    let _ = reply.send(Err(lost()));
                }
                Write::Finish(_, reply) => {
                    let _ = reply.send(Err(lost()));
                }
            }
        }
    }

    /// Take the next group: wait for one write, then whatever else is
    /// already queued. `None` when every sender is gone.
    pub async fn next(queue: &mut mpsc::Receiver<Write>) -> Option<Vec<Write>> {
        let first = queue.recv().await?;
        let mut group = vec![first];
        while group.len() < LIMIT {
            match queue.try_recv() {
                Ok(write) => group.push(write),
                Err(_) => break,
            }
        }
        Some(group)
    }

    /// Send a write and wait for its answer.
    pub async fn submit<T>(
        queue: &mpsc::Sender<Write>,
        write: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        queue
            .send(write(reply))
            .await
            .map_err(|_| StoreError::NotCommitted("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::NotCommitted("the writer has stopped".into()))?
    }
}

/// The outbox of one endpoint, for `GET /metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    pub endpoint: String,
    /// Messages not yet delivered (nor dead).
    pub pending: i64,
    /// When the oldest of them was queued (RFC 3339).
    pub oldest_pending_at: Option<String>,
    /// Messages dead-lettered (a replay is a new message; the original
    /// stays dead).
    pub dead: i64,
}

impl OutboxStats {
    fn combine(pending: Vec<(String, i64, String)>, dead: Vec<(String, i64)>) -> Vec<OutboxStats> {
        let mut by_endpoint: std::collections::BTreeMap<String, OutboxStats> = Default::default();
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

/// The storage operations the domain needs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Store a referral with its Task, first task event and outbox messages,
    /// atomically. A duplicate business identifier from the same referrer
    /// stores nothing and returns the existing referral, even under
    /// concurrent calls.
    async fn record_intake(&self, intake: NewIntake) -> Result<Recorded, StoreError>;

    /// One referral by server id.
    async fn referral(&self, id: &str) -> Result<Option<ReferralRow>, StoreError>;

    /// Referrals with this business identifier value (and system, when given).
    async fn referrals_by_identifier(
        &self,
        system: Option<&str>,
        value: &str,
    ) -> Result<Vec<ReferralRow>, StoreError>;

    /// One Task by server id.
    async fn task(&self, id: &str) -> Result<Option<TaskRow>, StoreError>;

    /// The Tasks whose focus is this referral.
    async fn tasks_for_referral(&self, referral_id: &str) -> Result<Vec<TaskRow>, StoreError>;

    /// Retention: empty the payloads of messages delivered before `before`
    /// and the response excerpts of attempts and bodies of callbacks from
    /// before then; ids, states and times stay. Returns how many rows.
    async fn purge_before(&self, before: &str) -> Result<u64, StoreError>;

    /// The referrals of the patient with this NHS number.
    async fn referrals_of_patient(&self, nhs_number: &str) -> Result<Vec<ReferralRow>, StoreError>;

    /// Erasure: replace each referral and its Task with the tombstones
    /// given, drop the reasons of its Task events, the payloads of its
    /// messages, the response excerpts of their attempts and the bodies of
    /// its callbacks, and record `audit`; then make the database forget the
    /// old bytes (SQLite: VACUUM and WAL truncation; PostgreSQL: VACUUM
    /// FULL of the tables touched).
    async fn erase(&self, tombstones: &[Tombstone], audit: AuditRow) -> Result<(), StoreError>;

    /// Append audit records, in one transaction.
    async fn append_audit(&self, records: &[AuditRow]) -> Result<(), StoreError>;

    /// Audit records, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError>;

    /// Store a new token.
    async fn insert_token(&self, token: TokenRow) -> Result<(), StoreError>;

    /// A token by its public id.
    async fn token(&self, id: &str) -> Result<Option<TokenRow>, StoreError>;

    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<TokenRow>, StoreError>;

    /// Revoke a token; `false` if there is no such unrevoked token.
    async fn revoke_token(&self, id: &str, at: &str) -> Result<bool, StoreError>;

    /// Tasks last updated at or after `since` (an RFC 3339 UTC instant with
    /// milliseconds, as stored, so that text order is time order), oldest
    /// change first.
    async fn tasks_updated_since(
        &self,
        since: &str,
        referrer_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<TaskRow>, StoreError>;

    /// Apply a Task change (a referrer's cancellation, a Signpost event).
    async fn update_task(&self, update: TaskUpdate) -> Result<(), StoreError>;

    /// Record a provider callback and apply its Task change, atomically; a
    /// webhook-id seen before changes nothing.
    async fn apply_callback(
        &self,
        inbound: InboundRow,
        update: Option<TaskUpdate>,
    ) -> Result<CallbackApplied, StoreError>;

    /// A callback received before, by provider and webhook-id.
    async fn inbound(
        &self,
        provider_id: &str,
        webhook_id: &str,
    ) -> Result<Option<InboundRow>, StoreError>;

    /// Provider callbacks received, newest first, by provider and/or
    /// referral.
    async fn inbound_events(
        &self,
        provider_id: Option<&str>,
        referral_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InboundRow>, StoreError>;

    /// Lease up to `limit` due messages to `worker` until `lease_until`
    /// (Unix ms). A message is due when it is pending, its time has come,
    /// no other worker holds an unexpired lease on it, its endpoint is not
    /// disabled, and no earlier message for the same referral and endpoint
    /// is still pending.
    async fn claim_due(
        &self,
        worker: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<MessageRow>, StoreError>;

    /// When the next message becomes due (Unix ms), if any is waiting.
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;

    /// Record an attempt and what follows from it.
    async fn finish_attempt(&self, finished: FinishedAttempt) -> Result<(), StoreError>;

    /// Give back the leases a stopping worker holds.
    async fn release_leases(&self, worker: &str) -> Result<(), StoreError>;

    /// Add one message (an operator's replay).
    async fn insert_message(&self, message: NewMessage) -> Result<(), StoreError>;

    /// Messages, newest first.
    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<MessageRow>, StoreError>;

    /// One message by id.
    async fn message(&self, id: &str) -> Result<Option<MessageRow>, StoreError>;

    /// Every attempt to deliver a message, first first.
    async fn attempts(&self, message_id: &str) -> Result<Vec<AttemptRow>, StoreError>;

    /// Endpoints disabled by a `410 Gone`.
    async fn disabled_endpoints(&self) -> Result<Vec<DisabledEndpoint>, StoreError>;

    /// Re-enable an endpoint; `false` if it was not disabled.
    async fn enable_endpoint(&self, endpoint: &str) -> Result<bool, StoreError>;

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Per endpoint: undelivered messages, the oldest one's creation time,
    /// and dead letters (for `GET /metrics`).
    async fn outbox_stats(&self) -> Result<Vec<OutboxStats>, StoreError>;

    /// Wake `wake` whenever another process (a separate worker or another
    /// instance) adds outbox messages, where the backend can tell
    /// (PostgreSQL `LISTEN/NOTIFY`). Returns the listening task, if any.
    fn watch_outbox(&self, wake: Arc<tokio::sync::Notify>) -> Option<tokio::task::JoinHandle<()>>;
}

/// Open the store named by `database_url` (`sqlite:` or `postgres://`),
/// applying migrations.
pub async fn open(database_url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::open(database_url, max_connections).await?,
        ))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresStore::open(database_url, max_connections).await?,
        ))
    } else {
        Err(StoreError::Open(
            "the database URL must start with sqlite: or postgres://".into(),
        ))
    }
}

/// The SQL both backends share. Both accept `$n` placeholders.
mod sql {
    /// Rows of `columns` bound values each that fit one statement: SQLite
    /// takes at most 32,766 bound values, PostgreSQL 65,535.
    pub fn rows_per_statement(columns: usize) -> usize {
        30_000 / columns
    }

    /// Whether to keep a statement of `rows` rows prepared: one-row
    /// statements recur; multi-row ones, whose text changes with the size
    /// of the group, would push them out of the connection's cache.
    pub fn keep_prepared(rows: usize) -> bool {
        rows == 1
    }

    // The multi-row inserts (`sqlx::QueryBuilder` adds `VALUES (…), (…)`).
    pub const INSERT_REFERRALS: &str = "INSERT INTO referrals \
        (id, referrer_id, identifier_system, identifier_value, provider_id, version_id, last_updated, resource, nhs_number) ";
    /// A referrer's second referral with the same business identifier is
    /// not inserted (and not returned): intake answers with the first.
    pub const INSERT_REFERRALS_END: &str =
        " ON CONFLICT (referrer_id, identifier_system, identifier_value) DO NOTHING RETURNING id";
    pub const INSERT_TASKS: &str =
        "INSERT INTO tasks (id, referral_id, status, version_id, last_updated, resource) ";
    pub const INSERT_TASK_EVENTS: &str =
        "INSERT INTO task_events (task_id, from_status, to_status, actor, reason, at) ";
    pub const INSERT_MESSAGES: &str = "INSERT INTO outbox \
        (id, referral_id, endpoint, kind, payload, state, attempts, next_attempt_at, created_at, replay_of) ";
    pub const INSERT_ATTEMPTS: &str = "INSERT INTO delivery_attempts \
        (message_id, attempt, worker, started_at, latency_ms, status_code, error, response_excerpt, outcome) ";
    pub const INSERT_AUDIT: &str = "INSERT INTO audit_log \
        (at, actor, client, request_id, action, resource, referral_id, outcome) ";
    /// Messages delivered: followed by `WHEN id THEN delivered_at` for
    /// each, [`MESSAGES_DELIVERED_WHERE`] and their ids.
    pub const MESSAGES_DELIVERED: &str = "UPDATE outbox SET state = 'delivered', attempts = attempts + 1, \
        last_error = NULL, lease_owner = NULL, lease_until = NULL, delivered_at = CASE id";
    pub const MESSAGES_DELIVERED_WHERE: &str = " END WHERE id IN (";
    pub const SELECT_REFERRAL_BY_BUSINESS_ID: &str = "SELECT * FROM referrals \
        WHERE referrer_id = $1 AND identifier_system = $2 AND identifier_value = $3";
    pub const UPDATE_REFERRAL: &str = "UPDATE referrals SET version_id = $1, last_updated = $2, resource = $3 \
        WHERE id = $4 AND version_id = $5";
    pub const UPDATE_TASK: &str = "UPDATE tasks SET status = $1, version_id = $2, last_updated = $3, resource = $4 \
        WHERE id = $5 AND version_id = $6";
    pub const INSERT_TASK_EVENT: &str = "INSERT INTO task_events \
        (task_id, from_status, to_status, actor, reason, at) VALUES ($1, $2, $3, $4, $5, $6)";
    pub const SELECT_REFERRAL: &str = "SELECT * FROM referrals WHERE id = $1";
    pub const SELECT_REFERRALS_BY_VALUE: &str =
        "SELECT * FROM referrals WHERE identifier_value = $1 ORDER BY id";
    pub const SELECT_REFERRALS_BY_SYSTEM_VALUE: &str = "SELECT * FROM referrals WHERE identifier_value = $1 AND identifier_system = $2 ORDER BY id";
    pub const SELECT_TASK: &str = "SELECT * FROM tasks WHERE id = $1";
    pub const SELECT_TASKS_FOR_REFERRAL: &str =
        "SELECT * FROM tasks WHERE referral_id = $1 ORDER BY id";
    pub const SELECT_TASKS_UPDATED_SINCE: &str = "SELECT t.* FROM tasks t \
        JOIN referrals r ON r.id = t.referral_id \
        WHERE t.last_updated >= $1 AND (CAST($2 AS TEXT) IS NULL OR r.referrer_id = $2) \
        ORDER BY t.last_updated, t.id LIMIT $3";
    pub const PURGE_PAYLOADS: &str = "UPDATE outbox SET payload = '' \
        WHERE state = 'delivered' AND created_at < $1 AND payload <> ''";
    pub const PURGE_EXCERPTS: &str = "UPDATE delivery_attempts SET response_excerpt = NULL \
        WHERE started_at < $1 AND response_excerpt IS NOT NULL";
    pub const PURGE_CALLBACKS: &str = "UPDATE inbound_events SET body = '' \
        WHERE received_at < $1 AND body <> ''";
    pub const SELECT_REFERRALS_OF_PATIENT: &str =
        "SELECT * FROM referrals WHERE nhs_number = $1 ORDER BY id";
    pub const ERASE_REFERRAL: &str =
        "UPDATE referrals SET resource = $2, nhs_number = NULL WHERE id = $1";
    pub const ERASE_TASK: &str = "UPDATE tasks SET resource = $2 WHERE referral_id = $1";
    pub const ERASE_TASK_EVENTS: &str = "UPDATE task_events SET reason = NULL \
        WHERE task_id IN (SELECT id FROM tasks WHERE referral_id = $1)";
    pub const ERASE_MESSAGES: &str =
        "UPDATE outbox SET payload = '', last_error = NULL WHERE referral_id = $1";
    pub const ERASE_EXCERPTS: &str = "UPDATE delivery_attempts SET response_excerpt = NULL, error = NULL \
        WHERE message_id IN (SELECT id FROM outbox WHERE referral_id = $1)";
    pub const ERASE_CALLBACKS: &str =
        "UPDATE inbound_events SET body = '', outcome = 'erased' WHERE referral_id = $1";
    pub const SELECT_AUDIT: &str = "SELECT * FROM audit_log \
        WHERE (CAST($1 AS TEXT) IS NULL OR referral_id = $1) \
          AND (CAST($2 AS TEXT) IS NULL OR actor = $2) \
          AND (CAST($3 AS TEXT) IS NULL OR at >= $3) \
        ORDER BY seq DESC LIMIT $4";
    pub const INSERT_TOKEN: &str = "INSERT INTO api_tokens \
        (id, role, referrer_id, salt, hash, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, NULL)";
    pub const SELECT_TOKEN: &str = "SELECT * FROM api_tokens WHERE id = $1";
    pub const SELECT_TOKENS: &str = "SELECT * FROM api_tokens ORDER BY created_at, id";
    pub const REVOKE_TOKEN: &str =
        "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
    pub const NEXT_EVENT_NUMBER: &str = "INSERT INTO notification_counters (referrer_id, events) VALUES ($1, 1) \
        ON CONFLICT (referrer_id) DO UPDATE SET events = notification_counters.events + 1 \
        RETURNING events";
    pub const INSERT_INBOUND: &str = "INSERT INTO inbound_events \
        (provider_id, webhook_id, received_at, referral_id, body, response_status, outcome) \
        VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (provider_id, webhook_id) DO NOTHING";
    pub const SELECT_INBOUND_EVENTS: &str = "SELECT * FROM inbound_events \
        WHERE (CAST($1 AS TEXT) IS NULL OR provider_id = $1) \
          AND (CAST($2 AS TEXT) IS NULL OR referral_id = $2) \
        ORDER BY received_at DESC, webhook_id LIMIT $3";
    pub const SELECT_INBOUND: &str =
        "SELECT * FROM inbound_events WHERE provider_id = $1 AND webhook_id = $2";
    /// The messages that may be sent now (see [`super::Store::claim_due`]);
    /// `{lock}` is where PostgreSQL adds `FOR UPDATE SKIP LOCKED`.
    pub const DUE: &str = "SELECT o.seq FROM outbox o \
        WHERE o.state = 'pending' AND o.next_attempt_at <= $3 \
          AND (o.lease_until IS NULL OR o.lease_until < $3) \
          AND o.endpoint NOT IN (SELECT endpoint FROM disabled_endpoints) \
          AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.referral_id = o.referral_id \
              AND e.endpoint = o.endpoint AND e.state = 'pending' AND e.seq < o.seq) \
        ORDER BY o.next_attempt_at, o.seq LIMIT $4";
    pub const CLAIM: &str =
        "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE seq IN ({due}) RETURNING *";
    pub const NEXT_DUE: &str = "SELECT MIN(CASE WHEN o.lease_until IS NOT NULL AND o.lease_until > o.next_attempt_at \
            THEN o.lease_until ELSE o.next_attempt_at END) FROM outbox o \
        WHERE o.state = 'pending' \
          AND o.endpoint NOT IN (SELECT endpoint FROM disabled_endpoints) \
          AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.referral_id = o.referral_id \
              AND e.endpoint = o.endpoint AND e.state = 'pending' AND e.seq < o.seq)";
    pub const MESSAGE_RETRY: &str = "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2, \
        last_error = $3, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'pending'";
    pub const PENDING_BY_ENDPOINT: &str = "SELECT endpoint, COUNT(*), MIN(created_at) \
        FROM outbox WHERE state = 'pending' GROUP BY endpoint";
    pub const DEAD_BY_ENDPOINT: &str =
        "SELECT endpoint, COUNT(*) FROM outbox WHERE state = 'dead' GROUP BY endpoint";
    pub const MESSAGE_DEAD: &str = "UPDATE outbox SET state = 'dead', attempts = attempts + 1, \
        last_error = $2, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND state = 'pending'";
    pub const DISABLE_ENDPOINT: &str = "INSERT INTO disabled_endpoints (endpoint, disabled_at, reason) \
        VALUES ($1, $2, $3) ON CONFLICT (endpoint) DO NOTHING";
    pub const RELEASE_LEASES: &str = "UPDATE outbox SET lease_owner = NULL, lease_until = NULL \
        WHERE lease_owner = $1 AND state = 'pending'";
    pub const SELECT_MESSAGES: &str = "SELECT * FROM outbox \
        WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) \
          AND (CAST($2 AS TEXT) IS NULL OR endpoint = $2) \
          AND (CAST($3 AS TEXT) IS NULL OR referral_id = $3) \
        ORDER BY seq DESC LIMIT $4";
    pub const SELECT_MESSAGE: &str = "SELECT * FROM outbox WHERE id = $1";
    pub const SELECT_ATTEMPTS: &str =
        "SELECT * FROM delivery_attempts WHERE message_id = $1 ORDER BY id";
    pub const SELECT_DISABLED: &str = "SELECT * FROM disabled_endpoints ORDER BY endpoint";
    pub const ENABLE_ENDPOINT: &str = "DELETE FROM disabled_endpoints WHERE endpoint = $1";
}

/// Implements [`Store`] for a backend struct with `writer` and `reader`
/// pools. The SQL is shared; only the pools differ (SQLite serialises writes
/// through a one-connection pool), and how rows are claimed and new messages
/// announced:
/// - `$db`: the sqlx database type;
/// - `$claim_lock`: appended to the due-message query when claiming
///   (`FOR UPDATE SKIP LOCKED` on PostgreSQL);
/// - `$announce`: SQL run in a transaction that added messages, so other
///   processes wake (`pg_notify` on PostgreSQL), or `None`.
macro_rules! impl_store {
    ($backend:ty, $db:ty, $claim_lock:expr, $announce:expr) => {
        impl $backend {
            /// The group committer (see [`crate::store::group`]): runs until
            /// the store is dropped.
            #[allow(dead_code)] // PostgreSQL does not group its commits
            fn start_writer(
                writer: sqlx::Pool<$db>,
            ) -> tokio::sync::mpsc::Sender<$crate::store::group::Write> {
                let (writes, mut queue) = tokio::sync::mpsc::channel($crate::store::group::QUEUE);
                tokio::spawn(async move {
                    while let Some(group) = $crate::store::group::next(&mut queue).await {
                        Self::commit_group(&writer, group).await;
                    }
                });
                writes
            }

            /// Commit a group. Fast path: every write that can be run again
            /// (all but a dead letter's Task update, whose notification
            /// builder runs once) goes into one transaction with no
            /// savepoints, and one commit covers them all. If any of them
            /// fails, or the commit does, the transaction is rolled back
            /// and each is run again alone, in its own transaction, so that
            /// each caller gets its own answer and nothing half-done stays.
            #[allow(dead_code)] // PostgreSQL does not group its commits
            async fn commit_group(
                writer: &sqlx::Pool<$db>,
                group: Vec<$crate::store::group::Write>,
            ) {
                use $crate::store::group::{Job, Write};
                let (plain, alone): (Vec<Write>, Vec<Write>) =
                    group.into_iter().partition(Write::can_run_again);
                if !plain.is_empty() {
                    let mut tx = match writer.begin().await {
                        Ok(tx) => Some(tx),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot begin a group commit");
                            None
                        }
                    };
                    // (Copied before the first await: a `&Write` is not `Send`.)
                    let copies: Vec<Job> = plain.iter().map(Write::copy).collect();
                    let done = match tx.as_mut() {
                        Some(tx) => Self::jobs_in(tx, copies).await.ok(),
                        None => None,
                    };
                    let committed = match (tx, &done) {
                        (Some(tx), Some(_)) => match tx.commit().await {
                            Ok(()) => true,
                            Err(e) => {
                                tracing::warn!(error = %e, "a group commit failed; running its writes one by one");
                                false
                            }
                        },
                        (Some(tx), None) => {
                            let _ = tx.rollback().await;
                            false
                        }
                        (None, _) => false,
                    };
                    if let (true, Some(done)) = (committed, done) {
                        // Only now, with the group on disk, answer.
                        for (write, result) in plain.into_iter().zip(done) {
                            write.answer(result);
                        }
                    } else {
                        for write in plain {
                            Self::commit_alone(writer, write).await;
                        }
                    }
                }
                for write in alone {
                    Self::commit_alone(writer, write).await;
                }
            }

            /// Commit a write: with the group where there is one (SQLite),
            /// else in its own transaction.
            async fn commit<T>(
                &self,
                write: impl FnOnce(
                    tokio::sync::oneshot::Sender<Result<T, $crate::store::StoreError>>,
                ) -> $crate::store::group::Write,
            ) -> Result<T, $crate::store::StoreError> {
                match &self.writes {
                    Some(writes) => $crate::store::group::submit(writes, write).await,
                    None => {
                        let (reply, answer) = tokio::sync::oneshot::channel();
                        Self::commit_alone(&self.writer, write(reply)).await;
                        answer.await.map_err(|_| {
                            $crate::store::StoreError::NotCommitted("the write was dropped".into())
                        })?
                    }
                }
            }

            /// One write in its own transaction.
            async fn commit_alone(writer: &sqlx::Pool<$db>, write: $crate::store::group::Write) {
                use $crate::store::group::Write;
                let mut tx = match writer.begin().await {
                    Ok(tx) => tx,
                    Err(e) => {
                        write.refuse(&e.to_string());
                        return;
                    }
                };
                match write {
                    Write::Intake(intake, reply) => {
                        let result = match Self::intake_in(&mut tx, *intake).await {
                            Ok(recorded) => tx.commit().await.map(|()| recorded).map_err(Into::into),
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(result);
                    }
                    Write::Finish(finished, reply) => {
                        let result = match Self::finish_in(&mut tx, *finished).await {
                            Ok(()) => tx.commit().await.map_err(Into::into),
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(result);
                    }
                }
            }

            /// A group's jobs inside its transaction, answered in order. The
            /// intakes go first, then the attempts' outcomes, each kind with
            /// one statement per table for the whole group: under load the
            /// cost was the number of statements (sqlx hands each one to the
            /// connection's thread and back), not the commit.
            async fn jobs_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                jobs: Vec<$crate::store::group::Job>,
            ) -> Result<Vec<$crate::store::group::Done>, $crate::store::StoreError> {
                use $crate::store::group::{Done, Job};
                let mut intakes = Vec::new();
                let mut finishes = Vec::new();
                let kinds: Vec<bool> = jobs
                    .into_iter()
                    .map(|job| match job {
                        Job::Intake(intake) => {
                            intakes.push(*intake);
                            true
                        }
                        Job::Finish(finished) => {
                            finishes.push(*finished);
                            false
                        }
                    })
                    .collect();
                let mut recorded = Self::intakes_in(tx, intakes).await?.into_iter();
                Self::finishes_in(tx, finishes).await?;
                Ok(kinds
                    .into_iter()
                    .map(|intake| match intake {
                        true => Done::Intake(recorded.next().ok_or_else(|| {
                            $crate::store::StoreError::NotCommitted("an intake went unanswered".into())
                        })),
                        false => Done::Finish(Ok(())),
                    })
                    .collect())
            }

            /// One intake, in its own transaction.
            async fn intake_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                intake: $crate::store::NewIntake,
            ) -> Result<$crate::store::Recorded, $crate::store::StoreError> {
                Self::intakes_in(tx, vec![intake])
                    .await?
                    .pop()
                    .ok_or_else(|| $crate::store::StoreError::NotCommitted("the intake went unanswered".into()))
            }

            /// Intakes, in the order given: each referral is inserted unless
            /// its referrer already sent its business identifier (then the
            /// stored one is returned, and nothing is written for it); the
            /// new ones get their Task, its first event and their messages.
            async fn intakes_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                intakes: Vec<$crate::store::NewIntake>,
            ) -> Result<Vec<$crate::store::Recorded>, $crate::store::StoreError> {
                use $crate::store::{Recorded, sql};
                let mut inserted = std::collections::HashSet::new();
                for chunk in intakes.chunks(sql::rows_per_statement(9)) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(sql::INSERT_REFERRALS);
                    insert.push_values(chunk, |mut row, intake| {
                        let r = &intake.referral;
                        row.push_bind(&r.id)
                            .push_bind(&r.referrer_id)
                            .push_bind(&r.identifier_system)
                            .push_bind(&r.identifier_value)
                            .push_bind(&r.provider_id)
                            .push_bind(r.version_id)
                            .push_bind(&r.last_updated)
                            .push_bind(&r.resource)
                            .push_bind(&r.nhs_number);
                    });
                    insert.push(sql::INSERT_REFERRALS_END);
                    let ids: Vec<(String,)> = insert
                        .build_query_as()
                        .persistent(sql::keep_prepared(chunk.len()))
                        .fetch_all(&mut **tx)
                        .await?;
                    inserted.extend(ids.into_iter().map(|(id,)| id));
                }
                let created: Vec<&$crate::store::NewIntake> = intakes
                    .iter()
                    .filter(|i| inserted.contains(&i.referral.id))
                    .collect();
                Self::insert_rows(tx, sql::INSERT_TASKS, 6, &created, |mut row, intake| {
                        let t = &intake.task;
                        row.push_bind(&t.id)
                            .push_bind(&t.referral_id)
                            .push_bind(&t.status)
                            .push_bind(t.version_id)
                            .push_bind(&t.last_updated)
                            .push_bind(&t.resource);
                })
                .await?;
                Self::insert_rows(tx, sql::INSERT_TASK_EVENTS, 6, &created, |mut row, intake| {
                        let t = &intake.task;
                        row.push_bind(&t.id)
                            .push_bind(None::<String>)
                            .push_bind(&t.status)
                            .push_bind(&intake.actor)
                            .push_bind(None::<String>)
                            .push_bind(&t.last_updated);
                })
                .await?;
                let messages: Vec<&$crate::store::NewMessage> =
                    created.iter().flat_map(|i| &i.messages).collect();
                Self::insert_messages(tx, &messages).await?;
                let mut recorded = Vec::with_capacity(intakes.len());
                for intake in intakes {
                    if inserted.contains(&intake.referral.id) {
                        recorded.push(Recorded::Created(intake.referral));
                        continue;
                    }
                    let r = &intake.referral;
                    let existing: $crate::store::ReferralRow =
                        sqlx::query_as(sql::SELECT_REFERRAL_BY_BUSINESS_ID)
                            .bind(&r.referrer_id)
                            .bind(&r.identifier_system)
                            .bind(&r.identifier_value)
                            .fetch_one(&mut **tx)
                            .await?;
                    recorded.push(Recorded::Existing(existing));
                }
                Ok(recorded)
            }

            /// One attempt's outcome, in its own transaction.
            async fn finish_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                finished: $crate::store::FinishedAttempt,
            ) -> Result<(), $crate::store::StoreError> {
                Self::finishes_in(tx, vec![finished]).await
            }

            /// Attempts' outcomes: each attempt's record, its message's new
            /// state (delivered ones in one statement), its Task update if
            /// it has one, and its audit record.
            async fn finishes_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                finished: Vec<$crate::store::FinishedAttempt>,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::{Disposition, sql};
                if finished.is_empty() {
                    return Ok(());
                }
                // (References to the rows, not to `FinishedAttempt`s, which are
                // not `Sync`: their notification builders are `Send` only.)
                let attempts: Vec<&$crate::store::AttemptRow> =
                    finished.iter().map(|f| &f.attempt).collect();
                Self::insert_rows(tx, sql::INSERT_ATTEMPTS, 9, &attempts, |mut row, a| {
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
                let delivered: Vec<&$crate::store::AttemptRow> = finished
                    .iter()
                    .filter(|f| f.disposition == Disposition::Delivered)
                    .map(|f| &f.attempt)
                    .collect();
                for chunk in delivered.chunks(sql::rows_per_statement(3)) {
                    // delivered_at = CASE id WHEN … THEN started_at … END
                    let mut update = sqlx::QueryBuilder::<$db>::new(sql::MESSAGES_DELIVERED);
                    for a in chunk {
                        update.push(" WHEN ").push_bind(&a.message_id);
                        update.push(" THEN ").push_bind(&a.started_at);
                    }
                    update.push(sql::MESSAGES_DELIVERED_WHERE);
                    let mut ids = update.separated(", ");
                    for a in chunk {
                        ids.push_bind(&a.message_id);
                    }
                    update.push(") AND state = 'pending'");
                    update.build().persistent(sql::keep_prepared(chunk.len())).execute(&mut **tx).await?;
                }
                let audits: Vec<&$crate::store::AuditRow> = finished.iter().map(|f| &f.audit).collect();
                Self::insert_audit(tx, &audits).await?;
                for f in finished {
                    let a = &f.attempt;
                    let error = a
                        .error
                        .clone()
                        .or_else(|| a.status_code.map(|code| format!("answered {code}")));
                    match &f.disposition {
                        Disposition::Delivered => {}
                        Disposition::Retry { next_attempt_at } => {
                            sqlx::query(sql::MESSAGE_RETRY)
                                .bind(&a.message_id)
                                .bind(next_attempt_at)
                                .bind(&error)
                                .execute(&mut **tx)
                                .await?;
                        }
                        Disposition::Dead => {
                            sqlx::query(sql::MESSAGE_DEAD)
                                .bind(&a.message_id)
                                .bind(&error)
                                .execute(&mut **tx)
                                .await?;
                        }
                        Disposition::DisableEndpoint {
                            reason,
                            next_attempt_at,
                        } => {
                            sqlx::query(sql::MESSAGE_RETRY)
                                .bind(&a.message_id)
                                .bind(next_attempt_at)
                                .bind(&error)
                                .execute(&mut **tx)
                                .await?;
                            let endpoint: (String,) =
                                sqlx::query_as("SELECT endpoint FROM outbox WHERE id = $1")
                                    .bind(&a.message_id)
                                    .fetch_one(&mut **tx)
                                    .await?;
                            sqlx::query(sql::DISABLE_ENDPOINT)
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

            /// Insert `rows` after `head` (`INSERT INTO t (…) `), as many rows
            /// per statement as the bound-value limit allows; `bind` binds one
            /// row's `columns` values.
            async fn insert_rows<T: Sync>(
                tx: &mut sqlx::Transaction<'static, $db>,
                head: &'static str,
                columns: usize,
                rows: &[T],
                mut bind: impl FnMut(sqlx::query_builder::Separated<'_, $db, &'static str>, &T) + Send,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql;
                for chunk in rows.chunks(sql::rows_per_statement(columns)) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(head);
                    insert.push_values(chunk, &mut bind);
                    insert.build().persistent(sql::keep_prepared(chunk.len())).execute(&mut **tx).await?;
                }
                Ok(())
            }

            async fn insert_audit(
                tx: &mut sqlx::Transaction<'static, $db>,
                records: &[&$crate::store::AuditRow],
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql;
                Self::insert_rows(tx, sql::INSERT_AUDIT, 8, records, |mut row, r| {
                        row.push_bind(&r.at)
                            .push_bind(&r.actor)
                            .push_bind(&r.client)
                            .push_bind(&r.request_id)
                            .push_bind(&r.action)
                            .push_bind(&r.resource)
                            .push_bind(&r.referral_id)
                            .push_bind(&r.outcome);
                })
                .await
            }

            async fn insert_messages(
                tx: &mut sqlx::Transaction<'static, $db>,
                messages: &[&$crate::store::NewMessage],
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql;
                if messages.is_empty() {
                    return Ok(());
                }
                Self::insert_rows(tx, sql::INSERT_MESSAGES, 8, messages, |mut row, m| {
                        row.push_bind(&m.id)
                            .push_bind(&m.referral_id)
                            .push_bind(&m.endpoint)
                            .push_bind(&m.kind)
                            .push_bind(&m.payload)
                            .push_unseparated(", 'pending', 0")
                            .push_bind(m.next_attempt_at)
                            .push_bind(&m.created_at)
                            .push_bind(&m.replay_of);
                })
                .await?;
                let announce: Option<&str> = $announce;
                if let Some(announce) = announce {
                    sqlx::query(announce).execute(&mut **tx).await?;
                }
                Ok(())
            }

            /// Apply a Task update inside `tx`: the Task first (its row lock
            /// orders concurrent changes to one referral), then its event,
            /// the referral, and the messages.
            async fn apply_update(
                tx: &mut sqlx::Transaction<'static, $db>,
                update: $crate::store::TaskUpdate,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::{StoreError, sql};
                let t = &update.task;
                let changed = sqlx::query(sql::UPDATE_TASK)
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
                sqlx::query(sql::INSERT_TASK_EVENT)
                    .bind(&t.id)
                    .bind(&update.from_status)
                    .bind(&t.status)
                    .bind(&update.actor)
                    .bind(&update.reason)
                    .bind(&t.last_updated)
                    .execute(&mut **tx)
                    .await?;
                if let Some(r) = &update.referral {
                    let changed = sqlx::query(sql::UPDATE_REFERRAL)
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
                let mut messages = update.messages;
                if let Some(notification) = update.notification {
                    let (number,): (i64,) = sqlx::query_as(sql::NEXT_EVENT_NUMBER)
                        .bind(&notification.referrer_id)
                        .fetch_one(&mut **tx)
                        .await?;
                    let mut message = notification.message;
                    message.payload = (notification.payload)(number);
                    messages.push(message);
                }
                Self::insert_messages(tx, &messages.iter().collect::<Vec<_>>()).await
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::Store for $backend {
            async fn record_intake(
                &self,
                intake: $crate::store::NewIntake,
            ) -> Result<$crate::store::Recorded, $crate::store::StoreError> {
                self.commit(|reply| $crate::store::group::Write::Intake(Box::new(intake), reply))
                    .await
            }

            async fn referral(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::ReferralRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_REFERRAL)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn referrals_by_identifier(
                &self,
                system: Option<&str>,
                value: &str,
            ) -> Result<Vec<$crate::store::ReferralRow>, $crate::store::StoreError> {
                use $crate::store::sql;
                let rows = match system {
                    Some(system) => {
                        sqlx::query_as(sql::SELECT_REFERRALS_BY_SYSTEM_VALUE)
                            .bind(value)
                            .bind(system)
                            .fetch_all(&self.reader)
                            .await?
                    }
                    None => {
                        sqlx::query_as(sql::SELECT_REFERRALS_BY_VALUE)
                            .bind(value)
                            .fetch_all(&self.reader)
                            .await?
                    }
                };
                Ok(rows)
            }

            async fn task(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::TaskRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_TASK)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn tasks_for_referral(
                &self,
                referral_id: &str,
            ) -> Result<Vec<$crate::store::TaskRow>, $crate::store::StoreError> {
                Ok(
                    sqlx::query_as($crate::store::sql::SELECT_TASKS_FOR_REFERRAL)
                        .bind(referral_id)
                        .fetch_all(&self.reader)
                        .await?,
                )
            }

            async fn purge_before(&self, before: &str) -> Result<u64, $crate::store::StoreError> {
                use $crate::store::sql;
                let mut tx = self.writer.begin().await?;
                let mut purged = 0;
                for statement in [
                    sql::PURGE_PAYLOADS,
                    sql::PURGE_EXCERPTS,
                    sql::PURGE_CALLBACKS,
                ] {
                    purged += sqlx::query(statement)
                        .bind(before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(purged)
            }

            async fn referrals_of_patient(
                &self,
                nhs_number: &str,
            ) -> Result<Vec<$crate::store::ReferralRow>, $crate::store::StoreError> {
                Ok(
                    sqlx::query_as($crate::store::sql::SELECT_REFERRALS_OF_PATIENT)
                        .bind(nhs_number)
                        .fetch_all(&self.writer)
                        .await?,
                )
            }

            async fn erase(
                &self,
                tombstones: &[$crate::store::Tombstone],
                audit: $crate::store::AuditRow,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::sql;
                let mut tx = self.writer.begin().await?;
                for t in tombstones {
                    sqlx::query(sql::ERASE_REFERRAL)
                        .bind(&t.referral_id)
                        .bind(&t.referral_resource)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(sql::ERASE_TASK)
                        .bind(&t.referral_id)
                        .bind(&t.task_resource)
                        .execute(&mut *tx)
                        .await?;
                    for statement in [
                        sql::ERASE_TASK_EVENTS,
                        sql::ERASE_MESSAGES,
                        sql::ERASE_EXCERPTS,
                        sql::ERASE_CALLBACKS,
                    ] {
                        sqlx::query(statement)
                            .bind(&t.referral_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                Self::insert_audit(&mut tx, &[&audit]).await?;
                tx.commit().await?;
                self.forget().await
            }

            async fn append_audit(
                &self,
                records: &[$crate::store::AuditRow],
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                Self::insert_audit(&mut tx, &records.iter().collect::<Vec<_>>()).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn audit(
                &self,
                filter: &$crate::store::AuditFilter,
            ) -> Result<Vec<$crate::store::AuditRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_AUDIT)
                    .bind(&filter.referral_id)
                    .bind(&filter.actor)
                    .bind(&filter.since)
                    .bind(filter.limit)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn insert_token(
                &self,
                t: $crate::store::TokenRow,
            ) -> Result<(), $crate::store::StoreError> {
                sqlx::query($crate::store::sql::INSERT_TOKEN)
                    .bind(&t.id)
                    .bind(&t.role)
                    .bind(&t.referrer_id)
                    .bind(&t.salt)
                    .bind(&t.hash)
                    .bind(&t.created_at)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn token(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::TokenRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_TOKEN)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn tokens(
                &self,
            ) -> Result<Vec<$crate::store::TokenRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_TOKENS)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn revoke_token(
                &self,
                id: &str,
                at: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                Ok(sqlx::query($crate::store::sql::REVOKE_TOKEN)
                    .bind(id)
                    .bind(at)
                    .execute(&self.writer)
                    .await?
                    .rows_affected()
                    > 0)
            }

            async fn tasks_updated_since(
                &self,
                since: &str,
                referrer_id: Option<&str>,
                limit: i64,
            ) -> Result<Vec<$crate::store::TaskRow>, $crate::store::StoreError> {
                Ok(
                    sqlx::query_as($crate::store::sql::SELECT_TASKS_UPDATED_SINCE)
                        .bind(since)
                        .bind(referrer_id)
                        .bind(limit)
                        .fetch_all(&self.reader)
                        .await?,
                )
            }

            async fn update_task(
                &self,
                update: $crate::store::TaskUpdate,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                Self::apply_update(&mut tx, update).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn apply_callback(
                &self,
                inbound: $crate::store::InboundRow,
                update: Option<$crate::store::TaskUpdate>,
            ) -> Result<$crate::store::CallbackApplied, $crate::store::StoreError> {
                use $crate::store::{CallbackApplied, sql};
                let mut tx = self.writer.begin().await?;
                let inserted = sqlx::query(sql::INSERT_INBOUND)
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
                    let first: $crate::store::InboundRow = sqlx::query_as(sql::SELECT_INBOUND)
                        .bind(&inbound.provider_id)
                        .bind(&inbound.webhook_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Ok(CallbackApplied::Duplicate(first));
                }
                if let Some(update) = update {
                    Self::apply_update(&mut tx, update).await?;
                }
                tx.commit().await?;
                Ok(CallbackApplied::Applied)
            }

            async fn inbound(
                &self,
                provider_id: &str,
                webhook_id: &str,
            ) -> Result<Option<$crate::store::InboundRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_INBOUND)
                    .bind(provider_id)
                    .bind(webhook_id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn inbound_events(
                &self,
                provider_id: Option<&str>,
                referral_id: Option<&str>,
                limit: i64,
            ) -> Result<Vec<$crate::store::InboundRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_INBOUND_EVENTS)
                    .bind(provider_id)
                    .bind(referral_id)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn claim_due(
                &self,
                worker: &str,
                now: i64,
                lease_until: i64,
                limit: i64,
            ) -> Result<Vec<$crate::store::MessageRow>, $crate::store::StoreError> {
                use $crate::store::sql;
                static CLAIM: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
                    let lock: &str = $claim_lock;
                    sql::CLAIM.replace("{due}", &format!("{} {lock}", sql::DUE))
                });
                let mut rows: Vec<$crate::store::MessageRow> =
                    sqlx::query_as(sqlx::AssertSqlSafe(CLAIM.as_str()))
                        .bind(worker)
                        .bind(lease_until)
                        .bind(now)
                        .bind(limit)
                        .fetch_all(&self.writer)
                        .await?;
                rows.sort_by_key(|m| m.seq);
                Ok(rows)
            }

            async fn next_due(&self) -> Result<Option<i64>, $crate::store::StoreError> {
                let (at,): (Option<i64>,) = sqlx::query_as($crate::store::sql::NEXT_DUE)
                    .fetch_one(&self.reader)
                    .await?;
                Ok(at)
            }

            async fn finish_attempt(
                &self,
                finished: $crate::store::FinishedAttempt,
            ) -> Result<(), $crate::store::StoreError> {
                self.commit(|reply| $crate::store::group::Write::Finish(Box::new(finished), reply))
                    .await
            }

            async fn release_leases(&self, worker: &str) -> Result<(), $crate::store::StoreError> {
                sqlx::query($crate::store::sql::RELEASE_LEASES)
                    .bind(worker)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn insert_message(
                &self,
                message: $crate::store::NewMessage,
            ) -> Result<(), $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                Self::insert_messages(&mut tx, &[&message]).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn messages(
                &self,
                filter: &$crate::store::MessageFilter,
            ) -> Result<Vec<$crate::store::MessageRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_MESSAGES)
                    .bind(&filter.state)
                    .bind(&filter.endpoint)
                    .bind(&filter.referral_id)
                    .bind(filter.limit)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn message(
                &self,
                id: &str,
            ) -> Result<Option<$crate::store::MessageRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_MESSAGE)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn attempts(
                &self,
                message_id: &str,
            ) -> Result<Vec<$crate::store::AttemptRow>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_ATTEMPTS)
                    .bind(message_id)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn disabled_endpoints(
                &self,
            ) -> Result<Vec<$crate::store::DisabledEndpoint>, $crate::store::StoreError> {
                Ok(sqlx::query_as($crate::store::sql::SELECT_DISABLED)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn enable_endpoint(
                &self,
                endpoint: &str,
            ) -> Result<bool, $crate::store::StoreError> {
                let mut tx = self.writer.begin().await?;
                let removed = sqlx::query($crate::store::sql::ENABLE_ENDPOINT)
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                let announce: Option<&str> = $announce;
                if let (true, Some(announce)) = (removed > 0, announce) {
                    sqlx::query(announce).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(removed > 0)
            }

            async fn outbox_stats(
                &self,
            ) -> Result<Vec<$crate::store::OutboxStats>, $crate::store::StoreError> {
                let pending: Vec<(String, i64, String)> =
                    sqlx::query_as($crate::store::sql::PENDING_BY_ENDPOINT)
                        .fetch_all(&self.reader)
                        .await?;
                let dead: Vec<(String, i64)> = sqlx::query_as($crate::store::sql::DEAD_BY_ENDPOINT)
                    .fetch_all(&self.reader)
                    .await?;
                Ok($crate::store::OutboxStats::combine(pending, dead))
            }

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }

            fn watch_outbox(
                &self,
                wake: std::sync::Arc<tokio::sync::Notify>,
            ) -> Option<tokio::task::JoinHandle<()>> {
                self.watch(wake)
            }
        }
    };
}
use impl_store;
