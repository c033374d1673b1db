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

/// Storage failures. All of them are the server's problem, never the
/// client's; the HTTP layer answers `503`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable or refused the operation")]
    Database(#[from] sqlx::Error),
    #[error("cannot open the database: {0}")]
    Open(String),
    #[error("database migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// The storage operations the domain needs.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Store a referral with its Task and first task event, atomically. A
    /// duplicate business identifier from the same referrer stores nothing
    /// and returns the existing referral, even under concurrent calls.
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

    /// Whether the database answers.
    async fn ping(&self) -> Result<(), StoreError>;
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
    pub const INSERT_REFERRAL: &str = "INSERT INTO referrals \
        (id, referrer_id, identifier_system, identifier_value, provider_id, version_id, last_updated, resource) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
        ON CONFLICT (referrer_id, identifier_system, identifier_value) DO NOTHING";
    pub const SELECT_REFERRAL_BY_BUSINESS_ID: &str = "SELECT * FROM referrals \
        WHERE referrer_id = $1 AND identifier_system = $2 AND identifier_value = $3";
    pub const INSERT_TASK: &str = "INSERT INTO tasks \
        (id, referral_id, status, version_id, last_updated, resource) VALUES ($1, $2, $3, $4, $5, $6)";
    pub const INSERT_TASK_EVENT: &str = "INSERT INTO task_events \
        (task_id, from_status, to_status, actor, reason, at) VALUES ($1, NULL, $2, $3, NULL, $4)";
    pub const SELECT_REFERRAL: &str = "SELECT * FROM referrals WHERE id = $1";
    pub const SELECT_REFERRALS_BY_VALUE: &str =
        "SELECT * FROM referrals WHERE identifier_value = $1 ORDER BY id";
    pub const SELECT_REFERRALS_BY_SYSTEM_VALUE: &str = "SELECT * FROM referrals WHERE identifier_value = $1 AND identifier_system = $2 ORDER BY id";
    pub const SELECT_TASK: &str = "SELECT * FROM tasks WHERE id = $1";
    pub const SELECT_TASKS_FOR_REFERRAL: &str =
        "SELECT * FROM tasks WHERE referral_id = $1 ORDER BY id";
}

/// Implements [`Store`] for a backend struct with `writer` and `reader`
/// pools. The SQL is identical on both backends; only the pools differ
/// (SQLite serialises writes through a one-connection pool).
macro_rules! impl_store {
    ($backend:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $backend {
            async fn record_intake(
                &self,
                intake: $crate::store::NewIntake,
            ) -> Result<$crate::store::Recorded, $crate::store::StoreError> {
                use $crate::store::{Recorded, sql};
                let r = &intake.referral;
                let t = &intake.task;
                let mut tx = self.writer.begin().await?;
                let inserted = sqlx::query(sql::INSERT_REFERRAL)
                    .bind(&r.id)
                    .bind(&r.referrer_id)
                    .bind(&r.identifier_system)
                    .bind(&r.identifier_value)
                    .bind(&r.provider_id)
                    .bind(r.version_id)
                    .bind(&r.last_updated)
                    .bind(&r.resource)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    let existing: $crate::store::ReferralRow =
                        sqlx::query_as(sql::SELECT_REFERRAL_BY_BUSINESS_ID)
                            .bind(&r.referrer_id)
                            .bind(&r.identifier_system)
                            .bind(&r.identifier_value)
                            .fetch_one(&mut *tx)
                            .await?;
                    tx.commit().await?;
                    return Ok(Recorded::Existing(existing));
                }
                sqlx::query(sql::INSERT_TASK)
                    .bind(&t.id)
                    .bind(&t.referral_id)
                    .bind(&t.status)
                    .bind(t.version_id)
                    .bind(&t.last_updated)
                    .bind(&t.resource)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sql::INSERT_TASK_EVENT)
                    .bind(&t.id)
                    .bind(&t.status)
                    .bind(&intake.actor)
                    .bind(&t.last_updated)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(Recorded::Created(intake.referral))
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

            async fn ping(&self) -> Result<(), $crate::store::StoreError> {
                sqlx::query("SELECT 1").execute(&self.reader).await?;
                Ok(())
            }
        }
    };
}
use impl_store;
