//! The PostgreSQL backend, for several Signpost instances sharing one
//! database. Concurrent duplicate intakes are settled by the unique
//! constraint: `ON CONFLICT DO NOTHING` waits for the first transaction and
//! then sees its row. Due messages are claimed `FOR UPDATE SKIP LOCKED`,
//! and a transaction that adds messages notifies [`CHANNEL`] on commit.

use std::{str::FromStr, sync::Arc, time::Duration};

use sqlx::{
    ConnectOptions, Connection, PgPool, Postgres,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::sync::Notify;

use super::{
    Reclaim, SqlStore, StoreError,
    backend::{Backend, PROBE_WAIT},
};
use crate::config::DatabaseSettings;

/// PostgreSQL storage. Reads and writes share one pool.
pub type PostgresStore = SqlStore<Postgres>;

/// The `LISTEN/NOTIFY` channel a transaction that adds outbox messages
/// notifies on commit.
const CHANNEL: &str = "signpost_outbox";

impl SqlStore<Postgres> {
    /// Connect and migrate. Every session of the pool gives up on a lock
    /// after `lock_timeout` and on a statement after `statement_timeout`
    /// (`[database]`), so that one blocked statement fails (`503`) rather
    /// than queue every request behind it.
    pub async fn open(
        url: &str,
        max_connections: u32,
        waits: &DatabaseSettings,
    ) -> Result<Self, StoreError> {
        let options =
            PgConnectOptions::from_str(url).map_err(|e| StoreError::Open(e.to_string()))?;
        // Migrations on a session of their own, without those limits: an
        // instance starting beside another waits for its migrations.
        let mut migrating = options.connect().await?;
        sqlx::migrate!("src/store/migrations/postgres")
            .run(&mut migrating)
            .await?;
        let _ = migrating.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(waits.acquire_timeout)
            .connect_with(options.options([
                ("lock_timeout", millis(waits.lock_timeout)),
                ("statement_timeout", millis(waits.statement_timeout)),
            ]))
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

fn millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis())
}

/// The tables an erasure changes: their old row versions (and TOAST
/// chunks and index entries) hold the erased values until reclaimed.
const ERASED_TABLES: &str =
    "referrals, tasks, task_events, outbox, delivery_attempts, inbound_events";

/// Sessions, prepared transactions and replication slots that may still
/// see row versions an erasure with transaction id `$1` replaced: those
/// whose snapshot (`xmin`) or own transaction is not newer than it. Plain
/// `VACUUM` must keep what they can see.
const OLDER_THAN_ERASURE: &str = "SELECT \
    (SELECT count(*) FROM pg_stat_activity \
      WHERE datname = current_database() AND pid <> pg_backend_pid() \
        AND backend_type = 'client backend' \
        AND (age(backend_xmin) >= age(($1 % 4294967296)::text::xid) \
          OR age(backend_xid) >= age(($1 % 4294967296)::text::xid))) \
  + (SELECT count(*) FROM pg_prepared_xacts \
      WHERE database = current_database() \
        AND age(transaction) >= age(($1 % 4294967296)::text::xid)) \
  + (SELECT count(*) FROM pg_replication_slots \
      WHERE xmin IS NOT NULL AND age(xmin) >= age(($1 % 4294967296)::text::xid))";

/// One reclaim at a time across every instance (a second `VACUUM` of the
/// same table would only wait for the first).
const RECLAIM_LOCK: i64 = 0x5349_474e_504f_5354; // "SIGNPOST"

/// Reclaim what erasures left: once no transaction older than the newest
/// pending erasure is left, `VACUUM (FREEZE)` the erased tables (which removes the
/// old row versions, their TOAST chunks and their index entries, taking
/// only a lock that reads and writes pass) and mark those erasures
/// reclaimed. `bounded`: within the pool's `statement_timeout` (an erasure
/// waiting to answer); else without a statement limit (the background
/// retry, which nobody waits on).
async fn reclaim(pool: &PgPool, bounded: bool) -> Result<Reclaim, StoreError> {
    let pending: Option<(i64, i64)> = sqlx::query_as(
        "SELECT max(id), max(horizon) FROM erasure_reclaims WHERE reclaimed_at IS NULL \
         HAVING count(*) > 0",
    )
    .fetch_optional(pool)
    .await?;
    let Some((last, horizon)) = pending else {
        return Ok(Reclaim::Done);
    };
    // Its own session: VACUUM cannot run in a transaction, and the
    // advisory lock belongs to the session.
    let mut conn = pool.connect_options().connect().await?;
    // An erasure waiting to answer waits (within `lock_timeout`) for
    // another instance's reclaim to finish; the background retry does not.
    let locked = if bounded {
        match sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(RECLAIM_LOCK)
            .execute(&mut conn)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                let e = StoreError::from(e);
                if !e.is_lock_wait() {
                    return Err(e);
                }
                false
            }
        }
    } else {
        let (locked,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(RECLAIM_LOCK)
            .fetch_one(&mut conn)
            .await?;
        locked
    };
    if !locked {
        return Ok(Reclaim::Pending(
            "another instance is reclaiming the old row versions now".into(),
        ));
    }
    let (older,): (i64,) = sqlx::query_as(OLDER_THAN_ERASURE)
        .bind(horizon)
        .fetch_one(&mut conn)
        .await?;
    if older > 0 {
        tracing::warn!(
            transactions = older,
            "erasure: an older transaction can still see the erased rows; their old versions are reclaimed once it ends"
        );
        return Ok(Reclaim::Pending(format!(
            "{older} older transaction(s) (or prepared transactions or replication slots) can still \
             see the erased rows: their old versions stay in the database until those end, and are \
             then reclaimed automatically"
        )));
    }
    if !bounded {
        sqlx::query("SET statement_timeout = 0")
            .execute(&mut conn)
            .await?;
    }
    // FREEZE makes it aggressive: a page another session has pinned at
    // that moment is waited for (briefly) rather than skipped with its
    // dead versions left in place, which a plain VACUUM does and which the
    // test saw. Pages left all-frozen are skipped by the next one.
    // Twice: the test saw, about once in ten runs, one old version left
    // after a single pass (cause not pinned down; see the note of issue
    // 21); the second pass only visits pages changed since the first.
    let vacuum = format!("VACUUM (FREEZE, INDEX_CLEANUP ON, ANALYZE) {ERASED_TABLES}");
    for _ in 0..2 {
        if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(vacuum.as_str()))
            .execute(&mut conn)
            .await
        {
            let e = StoreError::from(e);
            if e.is_lock_wait() {
                tracing::warn!(error = %e, "erasure: the reclaim waited too long for a lock; it is retried");
                return Ok(Reclaim::Pending(
                    "the reclaim of the old row versions waited too long for a lock or time; it is retried automatically".into(),
                ));
            }
            return Err(e);
        }
    }
    sqlx::query(
        "UPDATE erasure_reclaims SET reclaimed_at = to_char(now() AT TIME ZONE 'UTC', \
           'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') WHERE id <= $1 AND reclaimed_at IS NULL",
    )
    .bind(last)
    .execute(&mut conn)
    .await?;
    // (Closing the session releases the advisory lock.)
    let _ = conn.close().await;
    Ok(Reclaim::Done)
}

impl Backend for Postgres {
    const CLAIM_LOCK: &'static str = "FOR UPDATE OF o SKIP LOCKED";
    const ANNOUNCE: Option<&'static str> = Some("SELECT pg_notify('signpost_outbox', '')");
    const REFERRAL_LOCK: &'static str = "FOR UPDATE OF r";
    const RECORD_RECLAIM: Option<&'static str> =
        Some("INSERT INTO erasure_reclaims (erased_at, horizon) VALUES ($1, txid_current())");
    const NOW_MS: &'static str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

    /// The lock every intake takes on the tables it writes (`ROW
    /// EXCLUSIVE`), within a `lock_timeout`; the transaction is rolled
    /// back. A session holding (or queued for) a lock that blocks intake
    /// fails it.
    async fn probe_write(conn: &mut PoolConnection<Postgres>) -> Result<(), StoreError> {
        let mut tx = conn.begin().await?;
        let wait = format!("SET LOCAL lock_timeout = {}", PROBE_WAIT.as_millis());
        sqlx::query(sqlx::AssertSqlSafe(wait))
            .execute(&mut *tx)
            .await?;
        sqlx::query("LOCK TABLE referrals, tasks, task_events, outbox IN ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok(())
    }

    /// After an erasure: refresh the planner's statistics at once (they
    /// sample live rows, and may hold an erased value), then reclaim the
    /// old row versions with a plain `VACUUM` if nothing older can still
    /// see them; else leave that to [`Backend::reclaim_pending`] and say
    /// so. Never `VACUUM FULL`: its exclusive lock stopped intake on every
    /// instance for the length of the rewrite.
    async fn forget(writer: &PgPool) -> Result<Reclaim, StoreError> {
        let analyze = format!("ANALYZE {ERASED_TABLES}");
        let analyzed = sqlx::query(sqlx::AssertSqlSafe(analyze))
            .execute(writer)
            .await;
        let reclaimed = reclaim(writer, true).await?;
        match analyzed {
            Ok(_) => Ok(reclaimed),
            Err(e) => {
                tracing::warn!(error = %e, "erasure: cannot refresh the statistics now; the reclaim does");
                Ok(Reclaim::Pending(
                    "the planner's statistics are refreshed by the pending reclaim".into(),
                ))
            }
        }
    }

    async fn reclaim_pending(writer: &PgPool) -> Result<Reclaim, StoreError> {
        reclaim(writer, false).await
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
