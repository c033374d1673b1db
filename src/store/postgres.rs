//! The PostgreSQL backend, for several Signpost instances sharing one
//! database. Concurrent duplicate intakes are settled by the unique
//! constraint: `ON CONFLICT DO NOTHING` waits for the first transaction and
//! then sees its row. Due messages are claimed `FOR UPDATE SKIP LOCKED`,
//! and a transaction that adds messages notifies [`CHANNEL`] on commit.

use std::{sync::Arc, time::Duration};

use sqlx::{Connection, PgPool, Postgres, pool::PoolConnection, postgres::PgPoolOptions};
use tokio::sync::Notify;

use super::{
    SqlStore, StoreError,
    backend::{Backend, PROBE_WAIT},
};

/// PostgreSQL storage. Reads and writes share one pool.
pub type PostgresStore = SqlStore<Postgres>;

/// The `LISTEN/NOTIFY` channel a transaction that adds outbox messages
/// notifies on commit.
const CHANNEL: &str = "signpost_outbox";

impl SqlStore<Postgres> {
    /// Connect and migrate.
    pub async fn open(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await?;
        sqlx::migrate!("src/store/migrations/postgres")
            .run(&pool)
            .await?;
        Ok(SqlStore {
            // PostgreSQL takes concurrent transactions and flushes their
            // commits together itself (commit_delay); funnelling them through
            // one connection made intake slower (211/s against 562/s).
            writes: None,
            writer: pool.clone(),
            reader: pool,
            wake: Arc::new(Notify::new()),
        })
    }
}

impl Backend for Postgres {
    const CLAIM_LOCK: &'static str = "FOR UPDATE OF o SKIP LOCKED";
    const ANNOUNCE: Option<&'static str> = Some("SELECT pg_notify('signpost_outbox', '')");
    const REFERRAL_LOCK: &'static str = "FOR UPDATE OF r";

    /// The lock every write to the outbox takes (`ROW EXCLUSIVE`), within
    /// a `lock_timeout`; the transaction is rolled back.
    async fn probe_write(conn: &mut PoolConnection<Postgres>) -> Result<(), StoreError> {
        let mut tx = conn.begin().await?;
        let wait = format!("SET LOCAL lock_timeout = {}", PROBE_WAIT.as_millis());
        sqlx::query(sqlx::AssertSqlSafe(wait))
            .execute(&mut *tx)
            .await?;
        sqlx::query("LOCK TABLE outbox IN ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(())
    }

    /// After an erasure: rewrite the tables touched, so the old row
    /// versions are gone from the table files. (WAL segments and backups
    /// keep them until they are recycled: see the README.)
    async fn forget(writer: &PgPool) -> Result<(), StoreError> {
        // VACUUM FULL copies a deleted or updated row version that a
        // transaction older than the erasure might still see. So first wait
        // (bounded) until every transaction that was running in this
        // database when the erasure committed has ended.
        let (horizon,): (i64,) =
            sqlx::query_as("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint")
                .fetch_one(writer)
                .await?;
        let started = std::time::Instant::now();
        loop {
            let (older,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid() \
                   AND backend_type = 'client backend' \
                   AND (age(backend_xmin) >= age(($1 % 4294967296)::text::xid) \
                     OR age(backend_xid) >= age(($1 % 4294967296)::text::xid))",
            )
            .bind(horizon)
            .fetch_one(writer)
            .await?;
            if older == 0 {
                break;
            }
            if started.elapsed() > Duration::from_secs(10) {
                tracing::warn!(
                    transactions = older,
                    "erasure: transactions older than it are still running; rewriting the tables anyway, and rows they can see may stay in the files until the next VACUUM FULL"
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sqlx::query(
            "VACUUM FULL referrals, tasks, task_events, outbox, delivery_attempts, inbound_events",
        )
        .execute(writer)
        .await?;
        Ok(())
    }

    /// Listen on [`CHANNEL`] and wake the worker on every notification. A
    /// lost connection is re-established (sqlx reconnects on the next
    /// `recv`), and the worker is woken then too, since notifications sent
    /// while disconnected are lost.
    fn watch(writer: &PgPool, wake: Arc<Notify>) -> Option<tokio::task::JoinHandle<()>> {
        let pool = writer.clone();
        Some(tokio::spawn(async move {
            loop {
                let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for new outbox messages; polling");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        continue;
                    }
                };
                if let Err(e) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %e, "cannot LISTEN for new outbox messages; polling");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
                wake.notify_one();
                while listener.recv().await.is_ok() {
                    wake.notify_one();
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    }
}
