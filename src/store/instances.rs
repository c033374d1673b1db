//! The Signpost processes sharing the database: each `serve` beats every
//! few seconds with the mapping set it has live, timed by the database's
//! clock (so an instance whose clock is off is neither dropped nor kept
//! alive by it). Nothing of any patient is stored here.

use async_trait::async_trait;

use super::{Instances, SqlStore, StoreError, backend::Backend};

/// One instance, as it last beat.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Instance {
    /// Unique per process (host name, process id and a random part).
    pub id: String,
    pub started_at: String,
    /// When it last beat (Unix ms, the database's clock).
    pub heartbeat_ms: i64,
    /// Its live mapping set's fingerprint (provider, version and file
    /// hash of each mapping).
    pub mappings: String,
}

/// `{now}` is the backend's [`Backend::NOW_MS`].
const BEAT: &str = "INSERT INTO instances (id, started_at, heartbeat_ms, mappings) \
    VALUES ($1, $2, {now}, $3) ON CONFLICT (id) DO UPDATE \
    SET heartbeat_ms = excluded.heartbeat_ms, mappings = excluded.mappings";
/// Instances that beat within the last `$1` ms, and the database's time.
const LIVE: &str = "SELECT id, started_at, heartbeat_ms, mappings FROM instances \
    WHERE heartbeat_ms >= {now} - $1 ORDER BY id";
/// Instances silent for a day are forgotten.
const FORGET: &str = "DELETE FROM instances WHERE heartbeat_ms < {now} - 86400000";
const LEAVE: &str = "DELETE FROM instances WHERE id = $1";

fn sql<B: Backend>(text: &str) -> String {
    text.replace("{now}", B::NOW_MS)
}

macro_rules! impl_instances {
    ($db:ty) => {
        #[async_trait]
        impl Instances for SqlStore<$db> {
            async fn beat(&self, instance: &Instance) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query(sqlx::AssertSqlSafe(sql::<$db>(BEAT)))
                    .bind(&instance.id)
                    .bind(&instance.started_at)
                    .bind(&instance.mappings)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(sql::<$db>(FORGET)))
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn live_instances(&self, within_ms: i64) -> Result<Vec<Instance>, StoreError> {
                Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql::<$db>(LIVE)))
                    .bind(within_ms)
                    .fetch_all(&self.reader)
                    .await?)
            }

            async fn leave(&self, id: &str) -> Result<(), StoreError> {
                sqlx::query(LEAVE).bind(id).execute(&self.writer).await?;
                Ok(())
            }
        }
    };
}

impl_instances!(sqlx::Sqlite);
impl_instances!(sqlx::Postgres);
