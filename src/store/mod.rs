//! Durable storage behind narrow traits, one per area, with two backends:
//! embedded SQLite (the default, so `signpost serve` needs no setup) and
//! PostgreSQL (for several instances sharing one database).
//!
//! Every method is one whole transaction, so no transaction type leaks out of
//! a backend. Idempotency is enforced by unique constraints
//! (`referrals (referrer_id, identifier_system, identifier_value)`), never by
//! search-then-insert. Resources are stored as the JSON text that is served,
//! so reads need no re-serialisation.
//!
//! Layout: the traits, [`open`] and [`StoreError`] here; the private rows (and
//! the store's own API types) in `rows.rs`, the domain's in
//! `domain::model`; [`SqlStore`] and what differs per backend in
//! `backend.rs`, `sqlite.rs` and `postgres.rs`; the group commit in
//! `group.rs`; the SQL one file per area (`intake.rs`, `tasks.rs`,
//! `outbox.rs`, `inbox.rs`, `deliveries.rs`, `events.rs`, `audit.rs`,
//! `tokens.rs`, `retention.rs`, `bars.rs`, `portal.rs`, `instances.rs`,
//! `reports.rs`, `escalations.rs`).

mod audit;
mod backend;
mod bars;
mod deliveries;
mod escalations;
mod events;
mod file_modes;
mod group;
mod inbox;
mod instances;
mod intake;
mod outbox;
mod portal;
mod postgres;
mod reports;
mod retention;
mod rows;
mod sqlite;
mod tasks;
mod tokens;

use std::sync::Arc;

use async_trait::async_trait;

use crate::config::DatabaseSettings;
pub use crate::domain::model::{
    Attempt, AttemptRecord, AuditFilter, AuditRecord, BarsExchange, CallbackApplied,
    DisabledEndpoint, Escalation, InboundCallback, MessageUpdate, NewIntake, NewMessage,
    Notification, OutboxMessage, Recorded, Referral, Task, TaskUpdate, Token, Tombstone,
};
use crate::domain::{Endpoint, MessageId, NhsNumber, ProviderId, ReferralId, ReferrerId, TaskId};

pub use self::{
    backend::{Backend, SqlStore},
    bars::BarsMessages,
    escalations::EscalationStore,
    instances::Instance,
    portal::{PortalSession, PortalStore, PortalUser, TaskEvent},
    postgres::PostgresStore,
    reports::FactRow,
    rows::{MessageFilter, OutboxStats},
    sqlite::SqliteStore,
};

/// Referrals: intake and reads (`intake.rs`).
#[async_trait]
pub trait ReferralStore: Send + Sync + 'static {
    /// Store a referral with its Task, first task event and outbox messages,
    /// atomically. A duplicate business identifier from the same referrer
    /// stores nothing and returns the existing referral, even under
    /// concurrent calls.
    async fn record_intake(&self, intake: NewIntake) -> Result<Recorded, StoreError>;

    /// One referral by server id.
    async fn referral(&self, id: &ReferralId) -> Result<Option<Referral>, StoreError>;

    /// Referrals with this business identifier value (and system, when given).
    async fn referrals_by_identifier(
        &self,
        system: Option<&str>,
        value: &str,
    ) -> Result<Vec<Referral>, StoreError>;

    /// Whether the database takes writes now: the write lock is taken and
    /// released (nothing is written), giving up after about a second. A
    /// read alone says nothing of a database another process has locked.
    async fn probe_write(&self) -> Result<(), StoreError>;
}

/// Tasks, their changes and provider callbacks (`tasks.rs`).
#[async_trait]
pub trait TaskEvents: Send + Sync + 'static {
    /// One Task by server id.
    async fn task(&self, id: &TaskId) -> Result<Option<Task>, StoreError>;

    /// The Tasks whose focus is this referral.
    async fn tasks_for_referral(&self, referral_id: &ReferralId) -> Result<Vec<Task>, StoreError>;

    /// Tasks last updated at or after `since` (an RFC 3339 UTC instant with
    /// milliseconds, as stored, so that text order is time order), oldest
    /// change first.
    async fn tasks_updated_since(
        &self,
        since: &str,
        referrer_id: Option<&ReferrerId>,
        limit: i64,
    ) -> Result<Vec<Task>, StoreError>;

    /// Apply a Task change (a referrer's cancellation, a Signpost event).
    async fn update_task(&self, update: TaskUpdate) -> Result<(), StoreError>;

    /// Record a provider callback and apply its Task change, and the
    /// escalation it asks for (with its change to the Task as `update`
    /// left it), atomically; a webhook-id seen before changes nothing.
    async fn apply_callback(
        &self,
        inbound: InboundCallback,
        update: Option<TaskUpdate>,
        escalation: Option<(Escalation, TaskUpdate)>,
    ) -> Result<CallbackApplied, StoreError>;

    /// A callback received before, by provider and webhook-id.
    async fn inbound(
        &self,
        provider_id: &ProviderId,
        webhook_id: &str,
    ) -> Result<Option<InboundCallback>, StoreError>;

    /// Provider callbacks received, newest first, by provider and/or
    /// referral.
    async fn inbound_events(
        &self,
        provider_id: Option<&ProviderId>,
        referral_id: Option<&ReferralId>,
        limit: i64,
    ) -> Result<Vec<InboundCallback>, StoreError>;
}

/// The outbox as the delivery worker uses it (`outbox.rs`).
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Lease up to `limit` due messages to `worker` for `lease_ms`
    /// milliseconds. A message is due when it is pending, its time has come
    /// by `now` (Unix ms, the worker's clock), no other worker holds an
    /// unexpired lease on it, its endpoint is not disabled nor an inbox
    /// (whose messages are collected: [`InboxStore`]), and no earlier message
    /// for the same referral and endpoint is still pending. Leases are timed
    /// by the database's clock, so that workers whose clocks disagree cannot
    /// take each other's leases early.
    async fn claim_due(
        &self,
        worker: &str,
        now: i64,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// When the next message becomes due (Unix ms), if any is waiting.
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;

    /// Record an attempt and write what delivery decided follows from it
    /// (the message's new state, a Task change), in one transaction.
    async fn record_attempt(&self, record: AttemptRecord) -> Result<(), StoreError>;

    /// Give back the leases a stopping worker holds.
    async fn release_leases(&self, worker: &str) -> Result<(), StoreError>;

    /// Notified whenever a write through this store has committed messages
    /// to send (or let a waiting one go): what delivery workers wait on.
    /// Every write that adds messages wakes it, in the store, after its
    /// commit; nothing outside the store needs to.
    fn wakeups(&self) -> Arc<tokio::sync::Notify>;

    /// Notify [`Outbox::wakeups`] also whenever another process (a
    /// separate worker or another instance) adds outbox messages, where the
    /// backend can tell (PostgreSQL `LISTEN/NOTIFY`). Returns the listening
    /// task, if any.
    fn watch_outbox(&self) -> Option<tokio::task::JoinHandle<()>>;
}

/// Inboxes: the outbox messages of providers that collect them (lease,
/// commit) rather than have them pushed (`inbox.rs`). A message's offset
/// in its inbox is its outbox `seq`.
#[async_trait]
pub trait InboxStore: Send + Sync + 'static {
    /// The endpoints whose messages are collected, not pushed (replacing
    /// the set; written from the configuration at start-up). The delivery
    /// worker skips them.
    async fn set_inbox_endpoints(&self, endpoints: &[Endpoint]) -> Result<(), StoreError>;

    /// Lease up to `limit` of `endpoint`'s ready messages to `owner` until
    /// `lease_until` (Unix ms), in offset order. Ready at `now`: pending,
    /// under no unexpired lease, and no earlier message for its referral
    /// still pending (leased or not).
    async fn lease_inbox(
        &self,
        endpoint: &Endpoint,
        owner: &str,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Whether any of `endpoint`'s messages is ready at `now`.
    async fn inbox_has_ready(&self, endpoint: &Endpoint, now: i64) -> Result<bool, StoreError>;

    /// The message at `offset` in `endpoint`'s inbox, in whatever state.
    async fn inbox_message(
        &self,
        endpoint: &Endpoint,
        offset: i64,
    ) -> Result<Option<OutboxMessage>, StoreError>;

    /// `endpoint`'s pending messages leased (at some time) to `owner`, up
    /// to `offset`, in order.
    async fn leased_to(
        &self,
        endpoint: &Endpoint,
        owner: &str,
        offset: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// `endpoint`'s pending messages queued at or before `queued_before`
    /// (Unix ms), oldest first, at most `limit`: of kind `kind` and never
    /// nudged (no attempt recorded) when `unnudged_of` is `Some(kind)`.
    async fn inbox_waiting(
        &self,
        endpoint: &Endpoint,
        queued_before: i64,
        unnudged_of: Option<crate::domain::MessageKind>,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// Record what became of inbox messages (collected, nudged, expired):
    /// each as an attempt, with its audit record, the message's new state
    /// and its Task change, in one transaction.
    async fn record_inbox(&self, records: Vec<AttemptRecord>) -> Result<(), StoreError>;
}

/// The outbox as operators see it: messages, attempts, replays, disabled
/// endpoints, figures (`deliveries.rs`).
#[async_trait]
pub trait Deliveries: Send + Sync + 'static {
    /// Add one message (an operator's replay).
    async fn insert_message(&self, message: NewMessage) -> Result<(), StoreError>;

    /// Messages, newest first.
    async fn messages(&self, filter: &MessageFilter) -> Result<Vec<OutboxMessage>, StoreError>;

    /// One message by id.
    async fn message(&self, id: &MessageId) -> Result<Option<OutboxMessage>, StoreError>;

    /// Every attempt to deliver a message, first first.
    async fn attempts(&self, message_id: &MessageId) -> Result<Vec<Attempt>, StoreError>;

    /// Endpoints disabled by a `410 Gone`.
    async fn disabled_endpoints(&self) -> Result<Vec<DisabledEndpoint>, StoreError>;

    /// Re-enable an endpoint; `false` if it was not disabled.
    async fn enable_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError>;

    /// Make a pending message due at `now_ms` (an operator's retry) and
    /// wake delivery; `false` if it is not pending.
    async fn retry_now(&self, id: &MessageId, now_ms: i64) -> Result<bool, StoreError>;

    /// Per endpoint: undelivered messages, the oldest one's creation time,
    /// and dead letters (for `GET /metrics`).
    async fn outbox_stats(&self) -> Result<Vec<OutboxStats>, StoreError>;
}

/// A referrer's numbered events, for its Subscription's `$status` and
/// `$events` (`events.rs`).
#[async_trait]
pub trait SubscriptionEvents: Send + Sync + 'static {
    /// The referrer's notifications numbered `first` to `last` (inclusive),
    /// as first queued (not replays), by number, at most `limit`.
    async fn events(
        &self,
        referrer: &ReferrerId,
        first: i64,
        last: i64,
        limit: i64,
    ) -> Result<Vec<OutboxMessage>, StoreError>;

    /// How many events the referrer has had (the last number given).
    async fn events_since_start(&self, referrer: &ReferrerId) -> Result<i64, StoreError>;

    /// Whether the endpoint is disabled (it answered `410 Gone`).
    async fn endpoint_disabled(&self, endpoint: &Endpoint) -> Result<bool, StoreError>;
}

/// What reports read, and the bench writes (`reports.rs`). The facts are
/// written by intake, Task changes and deliveries themselves.
#[async_trait]
pub trait ReportFacts: Send + Sync + 'static {
    /// Per stratum of `by`, the period's counts, hour histograms and
    /// histograms of outcome changes.
    async fn funnel_rows(
        &self,
        period: crate::reports::funnel::Period,
        by: &[crate::reports::funnel::Dimension],
    ) -> Result<
        (
            Vec<crate::reports::funnel::CountRow>,
            Vec<crate::reports::funnel::TimeRow>,
            Vec<crate::reports::funnel::TimeRow>,
        ),
        StoreError,
    >;

    /// Insert whole fact rows, in one transaction (the bench's national
    /// year, which would take hours through HTTP).
    async fn insert_fact_rows(&self, rows: &[FactRow]) -> Result<(), StoreError>;
}

/// The audit trail (`audit.rs`).
#[async_trait]
pub trait AuditTrail: Send + Sync + 'static {
    /// Append audit records, in one transaction.
    async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError>;

    /// Audit records, newest first.
    async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
}

/// API tokens (`tokens.rs`).
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Store a new token.
    async fn insert_token(&self, token: Token) -> Result<(), StoreError>;

    /// A token by its public id.
    async fn token(&self, id: &str) -> Result<Option<Token>, StoreError>;

    /// Every token, oldest first.
    async fn tokens(&self) -> Result<Vec<Token>, StoreError>;

    /// Revoke a token; `false` if there is no such unrevoked token.
    async fn revoke_token(&self, id: &str, at: &str) -> Result<bool, StoreError>;
}

/// Retention and erasure (`retention.rs`).
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Retention: empty the payloads of messages delivered before `before`
    /// and the response excerpts of attempts and bodies of callbacks from
    /// before then; ids, states and times stay. Returns how many rows.
    async fn purge_before(&self, before: &str) -> Result<u64, StoreError>;

    /// Every unerased referral that may be of the patient with this NHS
    /// number: the one read at intake, or the number anywhere in the stored
    /// resource (a superset: the caller checks where it stands).
    async fn referrals_of_patient(
        &self,
        nhs_number: &NhsNumber,
    ) -> Result<Vec<Referral>, StoreError>;

    /// Erasure: replace each referral and its Task with the tombstones
    /// given, drop the reasons of its Task events, the payloads of its
    /// messages, the response excerpts of their attempts and the bodies of
    /// its callbacks, and record `audit` (retried when it waited too long
    /// for a lock); then make the database forget the old bytes (SQLite:
    /// VACUUM and WAL truncation; PostgreSQL: ANALYZE, and a plain VACUUM
    /// once no older transaction can see them), saying what is left to do.
    /// Callbacks that named no referral but carry the NHS number lose their
    /// bodies too.
    async fn erase(
        &self,
        nhs_number: &NhsNumber,
        tombstones: &[Tombstone],
        audit: AuditRecord,
    ) -> Result<Reclaim, StoreError>;

    /// Finish what erasures left to reclaim, if it can be done now.
    async fn reclaim_pending(&self) -> Result<Reclaim, StoreError>;

    /// How many erasures have old row versions still to reclaim.
    async fn reclaims_pending(&self) -> Result<i64, StoreError>;
}

/// What an erasure did to the old copies of what it erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// Gone from the database (backups and, on PostgreSQL, WAL archives
    /// keep them: see the README).
    Done,
    /// Not yet, and why; it is finished without anyone asking again.
    Pending(String),
}

/// The instances sharing the database (`instances.rs`).
#[async_trait]
pub trait Instances: Send + Sync + 'static {
    /// Record that `instance` is alive now, with its mapping set.
    async fn beat(&self, instance: &Instance) -> Result<(), StoreError>;

    /// The instances that beat within the last `within_ms`, by id.
    async fn live_instances(&self, within_ms: i64) -> Result<Vec<Instance>, StoreError>;

    /// Forget an instance that stops.
    async fn leave(&self, id: &str) -> Result<(), StoreError>;
}

/// Every area: what the application is wired with (each consumer keeps
/// only the slice it needs).
pub trait Store:
    ReferralStore
    + TaskEvents
    + Outbox
    + InboxStore
    + Deliveries
    + SubscriptionEvents
    + AuditTrail
    + TokenStore
    + Retention
    + BarsMessages
    + Instances
    + PortalStore
    + ReportFacts
    + EscalationStore
{
}

impl<T> Store for T where
    T: ReferralStore
        + TaskEvents
        + Outbox
        + InboxStore
        + Deliveries
        + SubscriptionEvents
        + AuditTrail
        + TokenStore
        + Retention
        + BarsMessages
        + Instances
        + PortalStore
        + ReportFacts
        + EscalationStore
{
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
    /// The write was rolled back or never begun: nothing of it was
    /// stored.
    #[error("the database did not commit the write: {0}")]
    NotCommitted(String),
    /// The write was handed over but its answer was lost (the writer
    /// stopped): it may or may not have been committed.
    #[error("the outcome of the write is not known: {0}")]
    OutcomeUnknown(String),
}

impl StoreError {
    /// Whether the database gave up waiting: for a lock another session
    /// holds (PostgreSQL `lock_timeout`, a deadlock, or SQLite busy), or on
    /// a statement (`statement_timeout`). Worth retrying.
    pub fn is_lock_wait(&self) -> bool {
        let StoreError::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        matches!(
            e.code().as_deref(),
            // lock_not_available, deadlock_detected, query_canceled
            // (statement_timeout); SQLITE_BUSY, SQLITE_LOCKED and their
            // extended codes.
            Some("55P03" | "40P01" | "57014" | "5" | "6" | "261" | "262" | "517")
        )
    }

    /// Whether it is known that nothing was written. A database error may
    /// come from a commit that went through, or half through to a lost
    /// connection: only [`StoreError::NotCommitted`] and
    /// [`StoreError::Conflict`] (checked before anything is written) say
    /// so for certain.
    pub fn known_not_written(&self) -> bool {
        matches!(self, StoreError::NotCommitted(_) | StoreError::Conflict)
    }
}

/// Open the store named by `database_url` (`sqlite:` or `postgres://`),
/// applying migrations, with the default waits.
pub async fn open(database_url: &str, max_connections: u32) -> Result<Arc<dyn Store>, StoreError> {
    open_with(database_url, max_connections, &DatabaseSettings::default()).await
}

/// [`open`] with the waits of `[database]`.
pub async fn open_with(
    database_url: &str,
    max_connections: u32,
    waits: &DatabaseSettings,
) -> Result<Arc<dyn Store>, StoreError> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(
            SqliteStore::open(database_url, max_connections, waits).await?,
        ))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(
            PostgresStore::open(database_url, max_connections, waits).await?,
        ))
    } else {
        Err(StoreError::Open(
            "the database URL must start with sqlite: or postgres://".into(),
        ))
    }
}

#[cfg(test)]
mod schema_tests;
