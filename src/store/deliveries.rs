//! The outbox, as operators see it: messages and their attempts, replays
//! (a new message), retries brought forward, endpoints disabled by a `410 Gone` and re-enabled, and
//! the per-endpoint figures of `GET /metrics`.

use async_trait::async_trait;

use super::{
    Attempt, Deliveries, DisabledEndpoint, MessageFilter, NewMessage, OutboxMessage, OutboxStats,
    SqlStore, StoreError,
    backend::Backend,
    rows::{AttemptRow, DisabledEndpointRow, MessageRow},
};
use crate::domain::{Endpoint, MessageId};

const SELECT_MESSAGES: &str = "SELECT * FROM outbox \
    WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) \
      AND (CAST($2 AS TEXT) IS NULL OR endpoint = $2) \
      AND (CAST($3 AS TEXT) IS NULL OR referral_id = $3) \
    ORDER BY seq DESC LIMIT $4";
const SELECT_MESSAGE: &str = "SELECT * FROM outbox WHERE id = $1";
const SELECT_ATTEMPTS: &str = "SELECT * FROM delivery_attempts WHERE message_id = $1 ORDER BY id";
const SELECT_DISABLED: &str = "SELECT * FROM disabled_endpoints ORDER BY endpoint";
const ENABLE_ENDPOINT: &str = "DELETE FROM disabled_endpoints WHERE endpoint = $1";
const RETRY_NOW: &str =
    "UPDATE outbox SET next_attempt_at = $2 WHERE id = $1 AND state = 'pending'";
const PENDING_BY_ENDPOINT: &str = "SELECT endpoint, COUNT(*), MIN(created_at) \
    FROM outbox WHERE state = 'pending' GROUP BY endpoint";
const DEAD_BY_ENDPOINT: &str =
    "SELECT endpoint, COUNT(*) FROM outbox WHERE state = 'dead' GROUP BY endpoint";

macro_rules! impl_deliveries {
    ($db:ty) => {
        #[async_trait]
        impl Deliveries for SqlStore<$db> {
            async fn insert_message(&self, message: NewMessage) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                Self::insert_messages(&mut tx, &[&message]).await?;
                tx.commit().await?;
                self.wake_workers();
                Ok(())
            }

            async fn messages(
                &self,
                filter: &MessageFilter,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows: Vec<MessageRow> = sqlx::query_as(SELECT_MESSAGES)
                    .bind(filter.state)
                    .bind(&filter.endpoint)
                    .bind(&filter.referral_id)
                    .bind(filter.limit)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows.into_iter().map(OutboxMessage::from).collect())
            }

            async fn message(&self, id: &MessageId) -> Result<Option<OutboxMessage>, StoreError> {
                let row: Option<MessageRow> = sqlx::query_as(SELECT_MESSAGE)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(row.map(OutboxMessage::from))
            }

            async fn attempts(&self, message_id: &MessageId) -> Result<Vec<Attempt>, StoreError> {
                let rows: Vec<AttemptRow> = sqlx::query_as(SELECT_ATTEMPTS)
                    .bind(message_id)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows.into_iter().map(Attempt::from).collect())
            }

            async fn disabled_endpoints(&self) -> Result<Vec<DisabledEndpoint>, StoreError> {
                let rows: Vec<DisabledEndpointRow> = sqlx::query_as(SELECT_DISABLED)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows.into_iter().map(DisabledEndpoint::from).collect())
            }

            async fn enable_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let removed = sqlx::query(ENABLE_ENDPOINT)
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if let (true, Some(announce)) = (removed > 0, <$db as Backend>::ANNOUNCE) {
                    sqlx::query(announce).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                if removed > 0 {
                    self.wake_workers();
                }
                Ok(removed > 0)
            }

            async fn retry_now(&self, id: &MessageId, now_ms: i64) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let updated = sqlx::query(RETRY_NOW)
                    .bind(id)
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if let (true, Some(announce)) = (updated > 0, <$db as Backend>::ANNOUNCE) {
                    sqlx::query(announce).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                if updated > 0 {
                    self.wake_workers();
                }
                Ok(updated > 0)
            }

            async fn outbox_stats(&self) -> Result<Vec<OutboxStats>, StoreError> {
                let pending: Vec<(Endpoint, i64, String)> = sqlx::query_as(PENDING_BY_ENDPOINT)
                    .fetch_all(&self.reader)
                    .await?;
                let dead: Vec<(Endpoint, i64)> = sqlx::query_as(DEAD_BY_ENDPOINT)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(OutboxStats::combine(pending, dead))
            }
        }
    };
}

impl_deliveries!(sqlx::Sqlite);
impl_deliveries!(sqlx::Postgres);
