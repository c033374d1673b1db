//! The database Signpost runs on, from the kit shared with the tests.

#[allow(unused_imports)]
use crate::*;

/// The database Signpost runs on (the kit's: a SQLite file in a temporary
/// folder, or a new PostgreSQL database, dropped with it), and what the
/// report says about it.
pub(crate) struct Database {
    /// Owns the database: dropping it drops a PostgreSQL one.
    pub(crate) _db: kit::Database,
    pub(crate) url: String,
    pub(crate) backend: String,
    /// How commits are made durable.
    pub(crate) durability: String,
}

impl Database {
    pub(crate) async fn fresh(postgres: Option<&str>) -> anyhow::Result<Database> {
        let Some(admin) = postgres else {
            let db = kit::Database::sqlite()?;
            return Ok(Database {
                url: db.url.clone(),
                _db: db,
                backend: "sqlite (embedded file)".into(),
                // As `src/store/sqlite.rs` opens it.
                durability: "WAL, synchronous=FULL".into(),
            });
        };
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(admin).await?;
        let show = async |conn: &mut sqlx::PgConnection, setting: &str| {
            sqlx::query_as::<_, (String,)>(sqlx::AssertSqlSafe(format!("SHOW {setting}")))
                .fetch_one(conn)
                .await
                .map(|(value,)| value)
        };
        let version = show(&mut conn, "server_version").await?;
        let durability = format!(
            "fsync={}, synchronous_commit={}",
            show(&mut conn, "fsync").await?,
            show(&mut conn, "synchronous_commit").await?
        );
        conn.close().await?;
        let db = kit::Database::postgres(admin, "signpost_bench").await?;
        let url = Url::parse(admin)?;
        let server = format!(
            "{}:{}",
            url.host_str().unwrap_or("?"),
            url.port().unwrap_or(5432)
        );
        Ok(Database {
            url: db.url.clone(),
            _db: db,
            backend: format!("postgres {version} on {server} (fresh database, dropped afterwards)"),
            durability,
        })
    }

    /// Whether a commit waits for the disk (the targets assume it does).
    pub(crate) fn durable(&self) -> bool {
        self.durability.contains("synchronous=FULL")
            || (self.durability.contains("fsync=on")
                && self.durability.contains("synchronous_commit=on"))
    }
}
