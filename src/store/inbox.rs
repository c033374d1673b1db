//! Inboxes: an inbox provider's messages are ordinary outbox rows (the
//! same `webhook-id`, the same payload), which the delivery worker skips
//! (`inbox_endpoints`, see `outbox.rs`) and the provider's consumers lease
//! instead, with the columns the worker would have used (`lease_owner` is
//! the consumer's name). What becomes of them (collected, nudged, expired)
//! is recorded as delivery attempts are, by `outbox.rs`'s `finishes_in`.

use std::sync::LazyLock;

use async_trait::async_trait;

use super::{
    AttemptRecord, Endpoint, InboxStore, OutboxMessage, SqlStore, StoreError, backend::Backend,
    rows::MessageRow,
};
use crate::domain::MessageKind;

/// `endpoint`'s messages ready at `$3`, in order (see
/// [`InboxStore::lease_inbox`]); the backend's [`Backend::CLAIM_LOCK`]
/// follows it.
const READY: &str = "SELECT o.seq FROM outbox o \
    WHERE o.endpoint = $5 AND o.state = 'pending' \
      AND (o.lease_until IS NULL OR o.lease_until < $3) \
      AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.referral_id = o.referral_id \
          AND e.endpoint = o.endpoint AND e.state = 'pending' AND e.seq < o.seq) \
    ORDER BY o.seq LIMIT $4";
const LEASE: &str =
    "UPDATE outbox SET lease_owner = $1, lease_until = $2 WHERE seq IN ({ready}) RETURNING *";
const HAS_READY: &str = "SELECT EXISTS (SELECT 1 FROM outbox o \
    WHERE o.endpoint = $1 AND o.state = 'pending' \
      AND (o.lease_until IS NULL OR o.lease_until < $2) \
      AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.referral_id = o.referral_id \
          AND e.endpoint = o.endpoint AND e.state = 'pending' AND e.seq < o.seq))";
const AT_OFFSET: &str = "SELECT * FROM outbox WHERE endpoint = $1 AND seq = $2";
const LEASED_TO: &str = "SELECT * FROM outbox WHERE endpoint = $1 AND state = 'pending' \
    AND lease_owner = $2 AND seq <= $3 ORDER BY seq";
const WAITING: &str = "SELECT * FROM outbox WHERE endpoint = $1 AND state = 'pending' \
    AND next_attempt_at <= $2 ORDER BY seq LIMIT $3";
const WAITING_UNNUDGED: &str = "SELECT * FROM outbox WHERE endpoint = $1 AND state = 'pending' \
    AND next_attempt_at <= $2 AND kind = $4 AND attempts = 0 ORDER BY seq LIMIT $3";

fn lease_sql<B: Backend>() -> String {
    LEASE.replace("{ready}", &format!("{READY} {}", B::CLAIM_LOCK))
}

fn in_order(rows: Vec<MessageRow>) -> Vec<OutboxMessage> {
    let mut messages: Vec<OutboxMessage> = rows.into_iter().map(OutboxMessage::from).collect();
    messages.sort_by_key(|m| m.seq);
    messages
}

macro_rules! impl_inbox {
    ($db:ty) => {
        #[async_trait]
        impl InboxStore for SqlStore<$db> {
            async fn set_inbox_endpoints(&self, endpoints: &[Endpoint]) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                sqlx::query("DELETE FROM inbox_endpoints")
                    .execute(&mut *tx)
                    .await?;
                for endpoint in endpoints {
                    sqlx::query("INSERT INTO inbox_endpoints (endpoint) VALUES ($1)")
                        .bind(endpoint)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                // A provider that became a webhook provider has messages to
                // push now.
                self.wake_workers();
                Ok(())
            }

            async fn lease_inbox(
                &self,
                endpoint: &Endpoint,
                owner: &str,
                now: i64,
                lease_until: i64,
                limit: i64,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                static LEASE_SQL: LazyLock<String> = LazyLock::new(lease_sql::<$db>);
                let rows: Vec<MessageRow> = sqlx::query_as(sqlx::AssertSqlSafe(LEASE_SQL.as_str()))
                    .bind(owner)
                    .bind(lease_until)
                    .bind(now)
                    .bind(limit)
                    .bind(endpoint)
                    .fetch_all(&self.writer)
                    .await?;
                Ok(in_order(rows))
            }

            async fn inbox_has_ready(
                &self,
                endpoint: &Endpoint,
                now: i64,
            ) -> Result<bool, StoreError> {
                let (ready,): (bool,) = sqlx::query_as(HAS_READY)
                    .bind(endpoint)
                    .bind(now)
                    .fetch_one(&self.reader)
                    .await?;
                Ok(ready)
            }

            async fn inbox_message(
                &self,
                endpoint: &Endpoint,
                offset: i64,
            ) -> Result<Option<OutboxMessage>, StoreError> {
                Ok(sqlx::query_as::<$db, MessageRow>(AT_OFFSET)
                    .bind(endpoint)
                    .bind(offset)
                    .fetch_optional(&self.writer)
                    .await?
                    .map(OutboxMessage::from))
            }

            async fn leased_to(
                &self,
                endpoint: &Endpoint,
                owner: &str,
                offset: i64,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows: Vec<MessageRow> = sqlx::query_as(LEASED_TO)
                    .bind(endpoint)
                    .bind(owner)
                    .bind(offset)
                    .fetch_all(&self.writer)
                    .await?;
                Ok(in_order(rows))
            }

            async fn inbox_waiting(
                &self,
                endpoint: &Endpoint,
                queued_before: i64,
                unnudged_of: Option<MessageKind>,
                limit: i64,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let query = sqlx::query_as::<$db, MessageRow>(match unnudged_of {
                    Some(_) => WAITING_UNNUDGED,
                    None => WAITING,
                })
                .bind(endpoint)
                .bind(queued_before)
                .bind(limit);
                let query = match unnudged_of {
                    Some(kind) => query.bind(kind),
                    None => query,
                };
                Ok(in_order(query.fetch_all(&self.reader).await?))
            }

            async fn record_inbox(&self, records: Vec<AttemptRecord>) -> Result<(), StoreError> {
                if records.is_empty() {
                    return Ok(());
                }
                // A Task change queues a notification; a message collected
                // or expired lets its referral's next one be handed out.
                let mut tx = self.writer.begin().await?;
                Self::finishes_in(&mut tx, records).await?;
                tx.commit().await?;
                self.wake_workers();
                Ok(())
            }
        }
    };
}

impl_inbox!(sqlx::Sqlite);
impl_inbox!(sqlx::Postgres);
