//! Retention and erasure. Purging empties old payloads, response excerpts
//! and callback bodies (ids, states and times stay). Erasing a patient
//! replaces their referrals and Tasks with tombstones, drops everything
//! else that could hold their data, records the erasure in the audit trail,
//! all in one transaction, and then has the backend forget the old bytes
//! ([`Backend::forget`]: SQLite VACUUM and WAL truncation; PostgreSQL
//! ANALYZE, and a plain VACUUM once no older transaction can see them,
//! retried by every instance in the background until done: see
//! `postgres.rs`).
//!
//! Erasure wins every race with work in flight: holding the referral's row
//! from its first statement, it marks the referral (`erased_at`), and every
//! transaction that records
//! what came of in-flight work (a delivery's answer, a provider's callback,
//! a Task change) first reads that mark holding the referral's row
//! ([`Backend::REFERRAL_LOCK`]) and, for an erased referral, keeps nothing
//! that could hold patient data. Whichever of the two commits second sees
//! the other: an erasure after such a write empties what it wrote, and
//! such a write after an erasure writes nothing of the patient.

use std::{collections::HashSet, sync::LazyLock};

use async_trait::async_trait;
use sqlx::Transaction;

use super::{
    AuditRecord, Reclaim, Referral, Retention, SqlStore, StoreError, Tombstone,
    backend::{Backend, rows_per_statement},
    rows::{ReferralRow, referrals},
};
use crate::domain::{MessageId, NhsNumber, ReferralId};

/// Delivered and dead-lettered messages alike: nothing will send either
/// again (a replay is a new message, refused once its payload is gone).
const PURGE_PAYLOADS: &str = "UPDATE outbox SET payload = '' \
    WHERE state IN ('delivered', 'dead') AND created_at < $1 AND payload <> ''";
const PURGE_EXCERPTS: &str = "UPDATE delivery_attempts SET response_excerpt = NULL \
    WHERE started_at < $1 AND response_excerpt IS NOT NULL";
const PURGE_CALLBACKS: &str = "UPDATE inbound_events SET body = '' \
    WHERE received_at < $1 AND body <> ''";
/// Every referral that may name the patient: by the NHS number read at
/// intake, or anywhere in the stored resource (a second NHS number, an
/// identifier in any position). A superset: the domain keeps those whose
/// resource really carries the number as an NHS-number identifier.
const SELECT_REFERRALS_OF_PATIENT: &str = "SELECT * FROM referrals \
    WHERE erased_at IS NULL AND (nhs_number = $1 OR resource LIKE $2) ORDER BY id";
/// First statement of an erasure (see the module's comment). The version
/// moves on, so that a change prepared from the erased version (a
/// cancellation read before) finds it changed and is prepared again.
/// The tombstones state the versions read here, holding the referral's row
/// ([`Backend::REFERRAL_LOCK`], which every Task writer takes first), so
/// the body, the `ETag` and `_history` agree whatever changed since the
/// referral was read for the erasure. One UPDATE per row: an intermediate
/// row version would be one more copy of the patient's data to forget.
const REFERRAL_VERSION: &str = "SELECT r.version_id FROM referrals r WHERE r.id = $1";
const TASK_VERSION: &str = "SELECT version_id FROM tasks WHERE referral_id = $1";
const ERASE_REFERRAL: &str = "UPDATE referrals SET resource = $2, nhs_number = NULL, \
    erased_at = $3, version_id = $4 WHERE id = $1";
const ERASE_TASK: &str = "UPDATE tasks SET resource = $2, version_id = $3 WHERE referral_id = $1";
const ERASE_TASK_EVENTS: &str = "UPDATE task_events SET reason = NULL \
    WHERE task_id IN (SELECT id FROM tasks WHERE referral_id = $1)";
const ERASE_MESSAGES: &str =
    "UPDATE outbox SET payload = '', last_error = NULL WHERE referral_id = $1";
const ERASE_EXCERPTS: &str = "UPDATE delivery_attempts SET response_excerpt = NULL, error = NULL \
    WHERE message_id IN (SELECT id FROM outbox WHERE referral_id = $1)";
/// An erased referral's escalations keep their ids, reason, urgency and
/// times (what reports and the audit trail name), not their resources,
/// which carry the patient's identifier and the provider's words; closed,
/// so that they are never sent again.
/// (The version moves on, so that an acknowledgement or re-send that
/// read an escalation before the erasure cannot write it back after.)
const ERASE_ESCALATIONS: &str = "UPDATE escalations SET task = '', communication = '', \
    flag = NULL, service_request = NULL, state = 'cancelled', version_id = version_id + 1 \
    WHERE referral_id = $1";
const ERASE_CALLBACKS: &str =
    "UPDATE inbound_events SET body = '', outcome = 'erased' WHERE referral_id = $1";
/// The wellbeing scores kept for reports: health data, about a person
/// the referral's id still points to (the rest of its journey, codes and
/// bands, stays).
const ERASE_OUTCOMES: &str = "UPDATE report_facts SET ons4_start_1 = NULL, ons4_start_2 = NULL, \
    ons4_start_3 = NULL, ons4_start_4 = NULL, ons4_end_1 = NULL, ons4_end_2 = NULL, \
    ons4_end_3 = NULL, ons4_end_4 = NULL, swemwbs_start = NULL, swemwbs_end = NULL \
    WHERE referral_id = $1";
/// Callbacks that named no referral (refused) but carry the number.
const ERASE_STRAY_CALLBACKS: &str =
    "UPDATE inbound_events SET body = '' WHERE referral_id IS NULL AND body LIKE $1";
/// Erasures whose old row versions are still to be reclaimed.
const RECLAIMS_PENDING: &str = "SELECT count(*) FROM erasure_reclaims WHERE reclaimed_at IS NULL";
/// Attempts at an erasure's transaction when it waits too long for locks.
const ERASE_ATTEMPTS: u64 = 3;
/// Whether a referral is erased, holding its row (the backend's
/// [`Backend::REFERRAL_LOCK`] follows).
const REFERRAL_ERASED: &str = "SELECT r.erased_at FROM referrals r WHERE r.id = $1";
/// The referrals of messages, holding their rows: followed by the ids and
/// `)` and the lock.
const MESSAGES_ERASED: &str = "SELECT o.id, r.erased_at FROM outbox o \
    JOIN referrals r ON r.id = o.referral_id WHERE o.id IN (";

/// A tombstone `resource` stating `version` (the row's, as the erasure
/// leaves it) as its `meta.versionId`.
fn with_version(resource: &str, version: i64) -> String {
    match serde_json::from_str::<serde_json::Value>(resource) {
        Ok(mut resource) => {
            resource["meta"]["versionId"] = serde_json::json!(version.to_string());
            resource.to_string()
        }
        Err(_) => resource.to_owned(),
    }
}

fn locked<B: Backend>(select: &str) -> String {
    format!("{select} {}", B::REFERRAL_LOCK)
}

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
                nhs_number: &NhsNumber,
            ) -> Result<Vec<Referral>, StoreError> {
                // (Ten digits: nothing in them is special to LIKE.)
                let rows: Vec<ReferralRow> = sqlx::query_as(SELECT_REFERRALS_OF_PATIENT)
                    .bind(nhs_number.as_str())
                    .bind(format!("%\"{}\"%", nhs_number.as_str()))
                    .fetch_all(&self.writer)
                    .await?;
                referrals(rows)
            }

            async fn erase(
                &self,
                nhs_number: &NhsNumber,
                tombstones: &[Tombstone],
                audit: AuditRecord,
            ) -> Result<Reclaim, StoreError> {
                // A session holding a row it must change makes it give up
                // after `lock_timeout` (rolled back): retry a few times
                // rather than wait without bound.
                let mut attempt = 1;
                loop {
                    match self.erase_once(nhs_number, tombstones, &audit).await {
                        Err(e) if e.is_lock_wait() && attempt < ERASE_ATTEMPTS => {
                            tracing::warn!(error = %e, attempt, "erasure waited too long for a lock; retrying");
                            tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
                            attempt += 1;
                        }
                        outcome => break outcome?,
                    }
                }
                <$db as Backend>::forget(&self.writer).await
            }

            async fn reclaim_pending(&self) -> Result<Reclaim, StoreError> {
                <$db as Backend>::reclaim_pending(&self.writer).await
            }

            async fn reclaims_pending(&self) -> Result<i64, StoreError> {
                let (pending,): (i64,) = sqlx::query_as(RECLAIMS_PENDING)
                    .fetch_one(&self.reader)
                    .await?;
                Ok(pending)
            }
        }

        impl SqlStore<$db> {
            /// One attempt at the erasure's transaction.
            async fn erase_once(
                &self,
                nhs_number: &NhsNumber,
                tombstones: &[Tombstone],
                audit: &AuditRecord,
            ) -> Result<(), StoreError> {
                static REFERRAL_VERSION_LOCKED: LazyLock<String> =
                    LazyLock::new(|| locked::<$db>(REFERRAL_VERSION));
                let mut tx = self.writer.begin().await?;
                for t in tombstones {
                    let version: Option<i64> =
                        sqlx::query_scalar(sqlx::AssertSqlSafe(REFERRAL_VERSION_LOCKED.as_str()))
                            .bind(&t.referral_id)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let version = version.unwrap_or(0) + 1;
                    sqlx::query(ERASE_REFERRAL)
                        .bind(&t.referral_id)
                        .bind(with_version(&t.referral_resource, version))
                        .bind(audit.at.to_string())
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                    let version: Option<i64> = sqlx::query_scalar(TASK_VERSION)
                        .bind(&t.referral_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let version = version.unwrap_or(0) + 1;
                    sqlx::query(ERASE_TASK)
                        .bind(&t.referral_id)
                        .bind(with_version(&t.task_resource, version))
                        .bind(version)
                        .execute(&mut *tx)
                        .await?;
                    for statement in [
                        ERASE_TASK_EVENTS,
                        ERASE_MESSAGES,
                        ERASE_EXCERPTS,
                        ERASE_CALLBACKS,
                        ERASE_OUTCOMES,
                        ERASE_ESCALATIONS,
                    ] {
                        sqlx::query(statement)
                            .bind(&t.referral_id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                sqlx::query(ERASE_STRAY_CALLBACKS)
                    .bind(format!("%{}%", nhs_number.as_str()))
                    .execute(&mut *tx)
                    .await?;
                if let Some(record) = <$db as Backend>::RECORD_RECLAIM {
                    sqlx::query(record)
                        .bind(audit.at.to_string())
                        .execute(&mut *tx)
                        .await?;
                }
                Self::insert_audit(&mut tx, &[audit]).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        impl SqlStore<$db> {
            /// Whether the referral is erased, holding its row until `tx`
            /// ends (see the module's comment).
            pub(super) async fn referral_erased(
                tx: &mut Transaction<'static, $db>,
                referral_id: &ReferralId,
            ) -> Result<bool, StoreError> {
                static SQL: LazyLock<String> = LazyLock::new(|| locked::<$db>(REFERRAL_ERASED));
                let erased: Option<(Option<String>,)> =
                    sqlx::query_as(sqlx::AssertSqlSafe(SQL.as_str()))
                        .bind(referral_id)
                        .fetch_optional(&mut **tx)
                        .await?;
                Ok(matches!(erased, Some((Some(_),))))
            }

            /// Which of these messages belong to an erased referral, holding
            /// their referrals' rows until `tx` ends.
            pub(super) async fn messages_erased(
                tx: &mut Transaction<'static, $db>,
                ids: &[&MessageId],
            ) -> Result<HashSet<MessageId>, StoreError> {
                let mut erased = HashSet::new();
                for chunk in ids.chunks(rows_per_statement(1)) {
                    let mut select = sqlx::QueryBuilder::<$db>::new(MESSAGES_ERASED);
                    let mut listed = select.separated(", ");
                    for id in chunk {
                        listed.push_bind(*id);
                    }
                    select.push(") ").push(<$db as Backend>::REFERRAL_LOCK);
                    let rows: Vec<(MessageId, Option<String>)> =
                        select.build_query_as().fetch_all(&mut **tx).await?;
                    erased.extend(
                        rows.into_iter()
                            .filter(|(_, at)| at.is_some())
                            .map(|(id, _)| id),
                    );
                }
                Ok(erased)
            }
        }
    };
}

impl_retention!(sqlx::Sqlite);
impl_retention!(sqlx::Postgres);
