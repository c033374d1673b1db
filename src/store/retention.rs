//! Retention and erasure. Purging empties old payloads, response excerpts
//! and callback bodies (ids, states and times stay). Erasing a patient
//! replaces their referrals and Tasks with tombstones, drops everything
//! else that could hold their data, records the erasure in the audit trail,
//! all in one transaction, and then has the backend forget the old bytes
//! ([`Backend::forget`]: SQLite VACUUM and WAL truncation; PostgreSQL
//! VACUUM FULL after older transactions end).

use async_trait::async_trait;

use super::{
    AuditRecord, Referral, Retention, SqlStore, StoreError, Tombstone,
    backend::Backend,
    rows::{ReferralRow, referrals},
};

const PURGE_PAYLOADS: &str = "UPDATE outbox SET payload = '' \
    WHERE state = 'delivered' AND created_at < $1 AND payload <> ''";
const PURGE_EXCERPTS: &str = "UPDATE delivery_attempts SET response_excerpt = NULL \
    WHERE started_at < $1 AND response_excerpt IS NOT NULL";
const PURGE_CALLBACKS: &str = "UPDATE inbound_events SET body = '' \
    WHERE received_at < $1 AND body <> ''";
const SELECT_REFERRALS_OF_PATIENT: &str =
    "SELECT * FROM referrals WHERE nhs_number = $1 ORDER BY id";
const ERASE_REFERRAL: &str = "UPDATE referrals SET resource = $2, nhs_number = NULL WHERE id = $1";
const ERASE_TASK: &str = "UPDATE tasks SET resource = $2 WHERE referral_id = $1";
const ERASE_TASK_EVENTS: &str = "UPDATE task_events SET reason = NULL \
    WHERE task_id IN (SELECT id FROM tasks WHERE referral_id = $1)";
const ERASE_MESSAGES: &str =
    "UPDATE outbox SET payload = '', last_error = NULL WHERE referral_id = $1";
const ERASE_EXCERPTS: &str = "UPDATE delivery_attempts SET response_excerpt = NULL, error = NULL \
    WHERE message_id IN (SELECT id FROM outbox WHERE referral_id = $1)";
const ERASE_CALLBACKS: &str =
    "UPDATE inbound_events SET body = '', outcome = 'erased' WHERE referral_id = $1";

macro_rules! impl_retention {
    ($db:ty) => {
        #[async_trait]
        impl Retention for SqlStore<$db> {
            async fn purge_before(&self, before: &str) -> Result<u64, StoreError> {
                let mut tx = self.writer.begin().await?;
                let mut purged = 0;
                for statement in [PURGE_PAYLOADS, PURGE_EXCERPTS, PURGE_CALLBACKS] {
                    purged += sqlx::query(statement)
                        .bind(before)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                }
                tx.commit().await?;
                Ok(purged)
            }

            async fn referrals_of_patient(
                &self,
                nhs_number: &str,
            ) -> Result<Vec<Referral>, StoreError> {
                let rows: Vec<ReferralRow> = sqlx::query_as(SELECT_REFERRALS_OF_PATIENT)
                    .bind(nhs_number)
                    .fetch_all(&self.writer)
                    .await?;
                referrals(rows)
            }

            async fn erase(
                &self,
                tombstones: &[Tombstone],
                audit: AuditRecord,
            ) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                for t in tombstones {
                    sqlx::query(ERASE_REFERRAL)
                        .bind(&t.referral_id)
                        .bind(&t.referral_resource)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(ERASE_TASK)
                        .bind(&t.referral_id)
                        .bind(&t.task_resource)
                        .execute(&mut *tx)
                        .await?;
                    for statement in [
                        ERASE_TASK_EVENTS,
                        ERASE_MESSAGES,
                        ERASE_EXCERPTS,
                        ERASE_CALLBACKS,
                    ] {
                        sqlx::query(statement)
                            .bind(&t.referral_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                Self::insert_audit(&mut tx, &[&audit]).await?;
                tx.commit().await?;
                <$db as Backend>::forget(&self.writer).await
            }
        }
    };
}

impl_retention!(sqlx::Sqlite);
impl_retention!(sqlx::Postgres);
