//! The audit trail: append-only records of who did what (see
//! [`crate::audit`]), written in batches and read newest first.

use async_trait::async_trait;
use sqlx::Transaction;

use super::{AuditFilter, AuditRecord, AuditTrail, SqlStore, StoreError, rows::AuditRow};

const INSERT_AUDIT: &str = "INSERT INTO audit_log \
    (at, actor, credential, client, request_id, action, resource, referral_id, outcome) ";
const SELECT_AUDIT: &str = "SELECT * FROM audit_log \
    WHERE (CAST($1 AS TEXT) IS NULL OR referral_id = $1) \
      AND (CAST($2 AS TEXT) IS NULL OR actor = $2) \
      AND (CAST($3 AS TEXT) IS NULL OR at >= $3) \
    ORDER BY seq DESC LIMIT $4";

macro_rules! impl_audit_trail {
    ($db:ty) => {
        #[async_trait]
        impl AuditTrail for SqlStore<$db> {
            async fn append_audit(&self, records: &[AuditRecord]) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                Self::insert_audit(&mut tx, &records.iter().collect::<Vec<_>>()).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
                Ok(sqlx::query_as::<_, AuditRow>(SELECT_AUDIT)
                    .bind(&filter.referral_id)
                    .bind(&filter.actor)
                    .bind(&filter.since)
                    .bind(filter.limit)
                    .fetch_all(&self.reader)
                    .await?
                    .into_iter()
                    .map(AuditRecord::from)
                    .collect())
            }
        }

        impl SqlStore<$db> {
            /// Audit records inside `tx` (with a delivery attempt, an
            /// erasure, or a batch of their own).
            pub(super) async fn insert_audit(
                tx: &mut Transaction<'static, $db>,
                records: &[&AuditRecord],
            ) -> Result<(), StoreError> {
                Self::insert_rows(tx, INSERT_AUDIT, 9, records, |mut row, r| {
                    row.push_bind(&r.at)
                        .push_bind(&r.actor)
                        .push_bind(&r.credential)
                        .push_bind(&r.client)
                        .push_bind(&r.request_id)
                        .push_bind(&r.action)
                        .push_bind(&r.resource)
                        .push_bind(&r.referral_id)
                        .push_bind(&r.outcome);
                })
                .await
            }
        }
    };
}

impl_audit_trail!(sqlx::Sqlite);
impl_audit_trail!(sqlx::Postgres);
