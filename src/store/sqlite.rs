//! The embedded SQLite backend: one file (created when missing), WAL with
//! `synchronous=FULL` so that a committed referral survives power loss, and
//! all writes serialised through a single-connection pool (SQLite allows one
//! writer at a time; queueing in the pool beats `SQLITE_BUSY` retries), with
//! the durable writes group-committed (see `group.rs`).

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    Connection, Sqlite, SqlitePool,
    pool::PoolConnection,
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous},
};
use tokio::sync::Notify;

use crate::config::DatabaseSettings;

use super::{
    Reclaim, SqlStore, StoreError,
    backend::{Backend, PROBE_WAIT},
};

/// How long a statement waits for another process's lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// SQLite storage.
pub type SqliteStore = SqlStore<Sqlite>;

impl Backend for Sqlite {
    /// SQLite has one writer: a claim cannot race another.
    const CLAIM_LOCK: &'static str = "";
    /// No channel between processes.
    const ANNOUNCE: Option<&'static str> = None;
    /// One writer: transactions never interleave.
    const REFERRAL_LOCK: &'static str = "";
    /// The erasure's `VACUUM` finishes before it answers.
    const RECORD_RECLAIM: Option<&'static str> = None;
    /// (One machine: the database's clock is the worker's.)
    const NOW_MS: &'static str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

    /// After an erasure: rebuild the file without free pages and empty the
    /// write-ahead log, so no old copy of the erased rows remains on disk.
    async fn forget(writer: &SqlitePool) -> Result<Reclaim, StoreError> {
        let mut conn = writer.acquire().await?;
        sqlx::query("VACUUM").execute(&mut *conn).await?;
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *conn)
            .await?;
        Ok(Reclaim::Done)
    }

    async fn reclaim_pending(_writer: &SqlitePool) -> Result<Reclaim, StoreError> {
        Ok(Reclaim::Done)
    }

    /// `BEGIN IMMEDIATE` takes the write lock (a read would pass while
    /// another process holds it). Bounded by a short busy timeout rather
    /// than by cancelling the statement, which would leave the connection
    /// in an unknown state.
    async fn probe_write(conn: &mut PoolConnection<Sqlite>) -> Result<(), StoreError> {
        let wait = format!("PRAGMA busy_timeout = {}", PROBE_WAIT.as_millis());
        sqlx::query(sqlx::AssertSqlSafe(wait))
            .execute(&mut **conn)
            .await?;
        let probed = match conn.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => tx.rollback().await,
            Err(e) => Err(e),
        };
        let restore = format!("PRAGMA busy_timeout = {}", BUSY_TIMEOUT.as_millis());
        sqlx::query(sqlx::AssertSqlSafe(restore))
            .execute(&mut **conn)
            .await?;
        Ok(probed?)
    }

    /// One process owns a SQLite database's worker; it is woken in-process,
    /// and a separate `signpost worker` on the same file polls.
    fn watch(_writer: &SqlitePool, _wake: Arc<Notify>) -> Option<tokio::task::JoinHandle<()>> {
        None
    }
}

impl SqlStore<Sqlite> {
    /// Open (creating the file and its folder if needed, owner-only) and
    /// migrate.
    pub async fn open(
        url: &str,
        max_readers: u32,
        waits: &DatabaseSettings,
    ) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Open(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            // Freed and overwritten content is zeroed, so erased data does
            // not linger in free pages.
            .pragma("secure_delete", "ON")
            .busy_timeout(BUSY_TIMEOUT);
        super::file_modes::prepare(options.get_filename())?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(waits.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&writer)
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(max_readers.max(1))
            .acquire_timeout(waits.acquire_timeout)
            // READONLY must not be combined with CREATE (SQLite misuse).
            .connect_with(options.create_if_missing(false).read_only(true))
            .await?;
        Ok(SqlStore {
            // SQLite has one writer: group its commits.
            writes: Some(Self::start_writer(writer.clone())),
            writer,
            reader,
            wake: Arc::new(Notify::new()),
        })
    }
}
