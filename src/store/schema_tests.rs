//! The two backends' migrations must define the same tables with the same
//! columns: the SQL in the area files is shared, so a column added to one
//! backend only would break the other at run time, not at build time.
//!
//! Each backend is migrated from nothing, and its catalogue read back
//! (`pragma_table_info` on SQLite, `information_schema.columns` on
//! PostgreSQL). PostgreSQL is the server named by `SIGNPOST_TEST_POSTGRES`
//! (default `postgres://postgres@127.0.0.1:5432/test`); when it cannot be
//! reached the comparison is skipped with a loud line, unless
//! `SIGNPOST_REQUIRE_POSTGRES=1`.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Connection;

/// Table name → column names.
type Schema = BTreeMap<String, BTreeSet<String>>;

/// sqlx's own bookkeeping, not part of the schema.
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

async fn sqlite_schema() -> Schema {
    let mut conn = sqlx::SqliteConnection::connect("sqlite::memory:")
        .await
        .expect("an in-memory SQLite database opens");
    sqlx::migrate!("src/store/migrations/sqlite")
        .run(&mut conn)
        .await
        .expect("the SQLite migrations run on an empty database");
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p \
         WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name <> $1",
    )
    .bind(MIGRATIONS_TABLE)
    .fetch_all(&mut conn)
    .await
    .expect("the SQLite catalogue reads");
    collect(columns)
}

/// `None` when the server cannot be reached (and is not required).
async fn postgres_schema() -> Option<Schema> {
    let admin = std::env::var("SIGNPOST_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut conn = match sqlx::PgConnection::connect(&admin).await {
        Ok(conn) => conn,
        Err(e) if std::env::var("SIGNPOST_REQUIRE_POSTGRES").as_deref() != Ok("1") => {
            eprintln!(
                "\n*** SKIPPED: the PostgreSQL half of the schema comparison: cannot reach {admin} ({e}). \
                 Start PostgreSQL or set SIGNPOST_TEST_POSTGRES to run it; SIGNPOST_REQUIRE_POSTGRES=1 makes this a failure. ***\n"
            );
            return None;
        }
        Err(e) => panic!(
            "PostgreSQL is required (SIGNPOST_REQUIRE_POSTGRES=1) but {admin} is unreachable: {e}"
        ),
    };
    let name = format!("signpost_schema_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut conn)
        .await
        .expect("create the comparison database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let read = async {
        let mut db = sqlx::PgConnection::connect(&format!("{base}/{name}")).await?;
        sqlx::migrate!("src/store/migrations/postgres")
            .run(&mut db)
            .await
            .map_err(|e| sqlx::Error::Protocol(e.to_string()))?;
        let columns: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name <> $1",
        )
        .bind(MIGRATIONS_TABLE)
        .fetch_all(&mut db)
        .await?;
        db.close().await?;
        Ok::<_, sqlx::Error>(columns)
    }
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop the comparison database");
    Some(collect(read.expect(
        "the PostgreSQL migrations run and the catalogue reads",
    )))
}

fn collect(columns: Vec<(String, String)>) -> Schema {
    let mut schema = Schema::new();
    for (table, column) in columns {
        schema.entry(table).or_default().insert(column);
    }
    schema
}

#[tokio::test]
async fn sqlite_and_postgresql_migrations_define_the_same_tables_and_columns() {
    let sqlite = sqlite_schema().await;
    // The catalogue query finds what the area files use.
    for (table, column) in [
        ("referrals", "nhs_number"),
        ("outbox", "lease_until"),
        ("api_tokens", "hash"),
    ] {
        assert!(
            sqlite
                .get(table)
                .is_some_and(|columns| columns.contains(column)),
            "SQLite schema lacks {table}.{column}: {sqlite:#?}"
        );
    }
    let Some(postgres) = postgres_schema().await else {
        return;
    };
    assert_eq!(
        sqlite, postgres,
        "the SQLite (left) and PostgreSQL (right) migrations differ"
    );
}
