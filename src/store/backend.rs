//! One store, two SQL backends: [`SqlStore`] holds the pools, and the sealed
//! [`Backend`] trait supplies the little that differs between SQLite and
//! PostgreSQL (how due messages are locked when claimed, how other
//! processes hear of new messages, how an erasure makes the database forget,
//! who listens for other processes' messages).
//!
//! The SQL itself is shared, one file per area (`intake.rs`, `tasks.rs`,
//! `outbox.rs`, `deliveries.rs`, `audit.rs`, `tokens.rs`, `retention.rs`),
//! each written once in a small `macro_rules!` expanded for both backends.
//! Why a macro rather than generic functions: sqlx implements `Executor`
//! for `&mut SqliteConnection` and `&mut PgConnection` separately, not
//! through `Database`, so code generic over the backend would need a
//! higher-ranked `Executor` bound, and `Type`/`Encode`/`Decode`/`FromRow`
//! bounds for every value bound and row read, repeated on every function
//! (bounds in a trait's `where` clause are not implied at its uses). What
//! needs no SQL (the group commit in `group.rs`) is generic.

use std::{future::Future, sync::Arc};

use sqlx::Pool;
use tokio::sync::{Notify, mpsc};

use super::{Reclaim, StoreError, group};

mod sealed {
    pub trait Sealed {}
    impl Sealed for sqlx::Sqlite {}
    impl Sealed for sqlx::Postgres {}
}

/// What differs between the backends (implemented in `sqlite.rs` and
/// `postgres.rs`, and for nothing else).
pub trait Backend: sqlx::Database + sealed::Sealed {
    /// Appended to the due-message query when claiming (`FOR UPDATE …
    /// SKIP LOCKED` on PostgreSQL, so concurrent workers skip each other's
    /// rows rather than wait for them).
    const CLAIM_LOCK: &'static str;

    /// SQL run in a transaction that adds outbox messages (or re-enables an
    /// endpoint), so that other processes' workers wake when it commits
    /// (`pg_notify` on PostgreSQL); `None` where there is no such channel.
    const ANNOUNCE: Option<&'static str>;

    /// Appended to the read of a referral's erasure mark (`referrals r`)
    /// by a transaction that records what came of work in flight (a
    /// delivery's answer, a callback, a Task change): `FOR UPDATE OF r` on
    /// PostgreSQL. An erasure changes that row first, so the two cannot
    /// interleave: whichever comes second sees the other committed. SQLite
    /// has one writer, which serialises them already.
    const REFERRAL_LOCK: &'static str;

    /// Run in an erasure's transaction with its time (`$1`), to record that
    /// its old row versions are yet to be reclaimed (with the transaction's
    /// id on PostgreSQL); `None` where [`Backend::forget`] always finishes.
    const RECORD_RECLAIM: Option<&'static str>;

    /// The database's clock, in Unix milliseconds, as SQL: what leases are
    /// timed by, so that workers whose clocks disagree cannot take each
    /// other's leases early.
    const NOW_MS: &'static str;

    /// After an erasure has committed: make the database forget the old
    /// bytes of the rows it changed, or say what is left to do (which
    /// [`Backend::reclaim_pending`] then finishes).
    fn forget(writer: &Pool<Self>) -> impl Future<Output = Result<Reclaim, StoreError>> + Send;

    /// Finish what erasures left to reclaim, where it can be done now.
    fn reclaim_pending(
        writer: &Pool<Self>,
    ) -> impl Future<Output = Result<Reclaim, StoreError>> + Send;

    /// Take the database's write lock on `conn` and release it, writing
    /// nothing; fail after about [`PROBE_WAIT`] if it is held elsewhere.
    fn probe_write(
        conn: &mut sqlx::pool::PoolConnection<Self>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Wake `wake` whenever another process adds outbox messages, where
    /// the backend can tell. Returns the listening task, if any.
    fn watch(writer: &Pool<Self>, wake: Arc<Notify>) -> Option<tokio::task::JoinHandle<()>>;
}

/// How long a readiness probe waits for the database's write lock.
pub const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The store over one SQL backend: [`super::SqliteStore`] or
/// [`super::PostgresStore`].
pub struct SqlStore<B: Backend> {
    /// Group-committed writes (see `group.rs`); `None`: each write commits
    /// its own transaction.
    pub(super) writes: Option<mpsc::Sender<group::Write>>,
    pub(super) writer: Pool<B>,
    pub(super) reader: Pool<B>,
    /// Wakes this process's delivery workers when messages are added
    /// (see `outbox.rs`).
    pub(super) wake: Arc<Notify>,
}

/// Rows of `columns` bound values each that fit one statement: SQLite takes
/// at most 32,766 bound values, PostgreSQL 65,535.
pub(super) fn rows_per_statement(columns: usize) -> usize {
    30_000 / columns
}

/// Whether to keep a statement of `rows` rows prepared: one-row statements
/// recur; multi-row ones, whose text changes with the size of the group,
/// would push them out of the connection's cache.
pub(super) fn keep_prepared(rows: usize) -> bool {
    rows == 1
}

/// The multi-row insert every area uses.
macro_rules! impl_insert_rows {
    ($db:ty) => {
        impl $crate::store::SqlStore<$db> {
            /// Insert `rows` after `head` (`INSERT INTO t (…) `), as many
            /// rows per statement as the bound-value limit allows; `bind`
            /// binds one row's `columns` values.
            pub(super) async fn insert_rows<T: Sync>(
                tx: &mut sqlx::Transaction<'static, $db>,
                head: &'static str,
                columns: usize,
                rows: &[T],
                mut bind: impl FnMut(sqlx::query_builder::Separated<'_, $db, &'static str>, &T) + Send,
            ) -> Result<(), $crate::store::StoreError> {
                use $crate::store::backend::{keep_prepared, rows_per_statement};
                for chunk in rows.chunks(rows_per_statement(columns)) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(head);
                    insert.push_values(chunk, &mut bind);
                    insert
                        .build()
                        .persistent(keep_prepared(chunk.len()))
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }
        }
    };
}

impl_insert_rows!(sqlx::Sqlite);
impl_insert_rows!(sqlx::Postgres);
