//! A referrer's numbered events (its Subscriptions-backport notifications),
//! read back for `Subscription/{id}/$status` and `$events`. The numbers
//! are allocated in `notification_counters` by the transaction that queues
//! each notification (`tasks.rs`); a replay carries its original's number,
//! so only originals are read here.
//!
//! The partial index `outbox_events` (migration 0016: `outbox (endpoint,
//! event_number) WHERE kind = 'notification' AND replay_of IS NULL`)
//! holds exactly the rows [`SELECT_EVENTS`] reads, in its order, so a
//! page of events is an index range, not a scan of the outbox.

use async_trait::async_trait;

use super::{OutboxMessage, SqlStore, StoreError, SubscriptionEvents, rows::MessageRow};
use crate::domain::{Endpoint, ReferrerId};

const SELECT_EVENTS: &str = "SELECT * FROM outbox \
    WHERE endpoint = $1 AND kind = 'notification' AND replay_of IS NULL \
      AND event_number >= $2 AND event_number <= $3 \
    ORDER BY event_number LIMIT $4";
const SELECT_EVENT_COUNT: &str = "SELECT events FROM notification_counters WHERE referrer_id = $1";
const SELECT_DISABLED: &str = "SELECT COUNT(*) FROM disabled_endpoints WHERE endpoint = $1";

macro_rules! impl_subscription_events {
    ($db:ty) => {
        #[async_trait]
        impl SubscriptionEvents for SqlStore<$db> {
            async fn events(
                &self,
                referrer: &ReferrerId,
                first: i64,
                last: i64,
                limit: i64,
            ) -> Result<Vec<OutboxMessage>, StoreError> {
                let rows: Vec<MessageRow> = sqlx::query_as(SELECT_EVENTS)
                    .bind(Endpoint::Referrer(referrer.clone()))
                    .bind(first)
                    .bind(last)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?;
                Ok(rows.into_iter().map(OutboxMessage::from).collect())
            }

            async fn events_since_start(&self, referrer: &ReferrerId) -> Result<i64, StoreError> {
                let count: Option<(i64,)> = sqlx::query_as(SELECT_EVENT_COUNT)
                    .bind(referrer)
                    .fetch_optional(&self.reader)
                    .await?;
                Ok(count.map_or(0, |(events,)| events))
            }

            async fn endpoint_disabled(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
                let (count,): (i64,) = sqlx::query_as(SELECT_DISABLED)
                    .bind(endpoint)
                    .fetch_one(&self.reader)
                    .await?;
                Ok(count > 0)
            }
        }
    };
}

impl_subscription_events!(sqlx::Sqlite);
impl_subscription_events!(sqlx::Postgres);
