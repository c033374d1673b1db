//! BaRS messages received (`bars_messages`): the durable record behind
//! BaRS idempotency (one row per sender and `X-Request-Id`, enforced by the
//! primary key, never by search-then-insert) and the addressing of
//! responses. A message's row is written in the transaction of the change
//! it asked for (`intake.rs`, `tasks.rs`), so a change is never committed
//! without it, nor it without the change.

use async_trait::async_trait;
use sqlx::Transaction;

use super::{BarsExchange, SqlStore, StoreError};
use crate::domain::{ReferralId, ReferrerId};

const INSERT: &str = "INSERT INTO bars_messages \
    (request_id, correlation_id, bundle_id, workflow, referral_id, referrer_id, source_endpoint, received_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (referrer_id, request_id) DO NOTHING";
const DELETE: &str = "DELETE FROM bars_messages WHERE referrer_id = $1 AND request_id = $2";
const SELECT_BY_REQUEST: &str =
    "SELECT * FROM bars_messages WHERE referrer_id = $1 AND request_id = $2";
const SELECT_REFERRAL_MESSAGE: &str = "SELECT * FROM bars_messages \
    WHERE referral_id = $1 AND workflow = 'referral' ORDER BY received_at LIMIT 1";

/// BaRS messages (`bars.rs`).
#[async_trait]
pub trait BarsMessages: Send + Sync + 'static {
    /// The message `referrer_id` sent under this request id, if it was
    /// processed.
    async fn bars_message(
        &self,
        referrer_id: &ReferrerId,
        request_id: &str,
    ) -> Result<Option<BarsExchange>, StoreError>;

    /// The BaRS message that created this referral, if it came by BaRS.
    async fn bars_referral_message(
        &self,
        referral_id: &ReferralId,
    ) -> Result<Option<BarsExchange>, StoreError>;
}

macro_rules! impl_bars_messages {
    ($db:ty) => {
        #[async_trait]
        impl BarsMessages for SqlStore<$db> {
            async fn bars_message(
                &self,
                referrer_id: &ReferrerId,
                request_id: &str,
            ) -> Result<Option<BarsExchange>, StoreError> {
                Ok(sqlx::query_as(SELECT_BY_REQUEST)
                    .bind(referrer_id)
                    .bind(request_id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn bars_referral_message(
                &self,
                referral_id: &ReferralId,
            ) -> Result<Option<BarsExchange>, StoreError> {
                Ok(sqlx::query_as(SELECT_REFERRAL_MESSAGE)
                    .bind(referral_id)
                    .fetch_optional(&self.reader)
                    .await?)
            }
        }

        impl SqlStore<$db> {
            /// Record a message inside `tx`: `Some(the first)` when its
            /// sender already used the request id (nothing is written
            /// then). On PostgreSQL a concurrent transaction holding the
            /// same key is waited for, so the loser sees the winner's row.
            pub(super) async fn record_bars_in(
                tx: &mut Transaction<'static, $db>,
                e: &BarsExchange,
            ) -> Result<Option<BarsExchange>, StoreError> {
                let inserted = sqlx::query(INSERT)
                    .bind(&e.request_id)
                    .bind(&e.correlation_id)
                    .bind(&e.bundle_id)
                    .bind(&e.workflow)
                    .bind(&e.referral_id)
                    .bind(&e.referrer_id)
                    .bind(&e.source_endpoint)
                    .bind(&e.received_at)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected()
                    > 0;
                if inserted {
                    return Ok(None);
                }
                Ok(Some(
                    sqlx::query_as(SELECT_BY_REQUEST)
                        .bind(&e.referrer_id)
                        .bind(&e.request_id)
                        .fetch_one(&mut **tx)
                        .await?,
                ))
            }

            /// Forget a message recorded in `tx` (an intake that changed
            /// nothing: its referral was already stored, and intake answers
            /// it from that one, the same way on every retry).
            pub(super) async fn forget_bars_in(
                tx: &mut Transaction<'static, $db>,
                e: &BarsExchange,
            ) -> Result<(), StoreError> {
                sqlx::query(DELETE)
                    .bind(&e.referrer_id)
                    .bind(&e.request_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        }
    };
}

impl_bars_messages!(sqlx::Sqlite);
impl_bars_messages!(sqlx::Postgres);
