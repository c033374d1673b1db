//! The PostgreSQL backend, for several Signpost instances sharing one
//! database. Concurrent duplicate intakes are settled by the unique
//! constraint: `ON CONFLICT DO NOTHING` waits for the first transaction and
//! then sees its row.

use std::time::Duration;

use sqlx::{PgPool, postgres::PgPoolOptions};

use super::{StoreError, impl_store};

/// PostgreSQL storage. Reads and writes share one pool.
pub struct PostgresStore {
    writer: PgPool,
    reader: PgPool,
}

impl PostgresStore {
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
        Ok(PostgresStore {
            writer: pool.clone(),
            reader: pool,
        })
    }
}

impl_store!(PostgresStore);
