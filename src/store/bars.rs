//! BaRS messages received (`bars_messages`): the durable record behind
//! BaRS idempotency (one row per `X-Request-Id`, enforced by the primary
//! key, never by search-then-insert) and the addressing of responses.

use async_trait::async_trait;

use super::{SqlStore, StoreError};
use crate::domain::{ReferralId, ReferrerId};

/// One processed BaRS request message.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BarsExchange {
    /// `X-Request-Id`, as received (lower-case GUID).
    pub request_id: String,
    /// `X-Correlation-Id`: echoed on every response about this referral.
    pub correlation_id: String,
    /// The request Bundle's `id`: `MessageHeader.response.identifier` of
    /// every response.
    pub bundle_id: String,
    /// `referral` or `cancellation`.
    pub workflow: String,
    pub referral_id: ReferralId,
    pub referrer_id: ReferrerId,
    /// `MessageHeader.source.endpoint`: where responses go.
    pub source_endpoint: String,
    pub received_at: String,
}

const INSERT: &str = "INSERT INTO bars_messages \
    (request_id, correlation_id, bundle_id, workflow, referral_id, referrer_id, source_endpoint, received_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (request_id) DO NOTHING";
const SELECT_BY_REQUEST: &str = "SELECT * FROM bars_messages WHERE request_id = $1";
const SELECT_REFERRAL_MESSAGE: &str = "SELECT * FROM bars_messages \
    WHERE referral_id = $1 AND workflow = 'referral' ORDER BY received_at LIMIT 1";

/// BaRS messages (`bars.rs`).
#[async_trait]
pub trait BarsMessages: Send + Sync + 'static {
    /// Record a processed message; `false` when its request id was already
    /// recorded (nothing is changed then).
    async fn record_bars_message(&self, exchange: &BarsExchange) -> Result<bool, StoreError>;

    /// The message processed under this request id, if any.
    async fn bars_message(&self, request_id: &str) -> Result<Option<BarsExchange>, StoreError>;

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
            async fn record_bars_message(&self, e: &BarsExchange) -> Result<bool, StoreError> {
                Ok(sqlx::query(INSERT)
                    .bind(&e.request_id)
                    .bind(&e.correlation_id)
                    .bind(&e.bundle_id)
                    .bind(&e.workflow)
                    .bind(&e.referral_id)
                    .bind(&e.referrer_id)
                    .bind(&e.source_endpoint)
                    .bind(&e.received_at)
                    .execute(&self.writer)
                    .await?
                    .rows_affected()
                    > 0)
            }

            async fn bars_message(
                &self,
                request_id: &str,
            ) -> Result<Option<BarsExchange>, StoreError> {
                Ok(sqlx::query_as(SELECT_BY_REQUEST)
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
    };
}

impl_bars_messages!(sqlx::Sqlite);
impl_bars_messages!(sqlx::Postgres);
