//! Referrals: intake (the referral, its Task, the Task's first event and
//! the outbox messages, in one transaction, group-committed on SQLite) and
//! reads. Idempotency is the unique constraint on
//! `referrals (referrer_id, identifier_system, identifier_value)`: a second
//! referral with the same business identifier is not inserted, and the
//! first is returned, even under concurrent intakes.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::Transaction;

use super::{
    BarsExchange, FactRow, NewIntake, NewMessage, Recorded, Referral, ReferralStore, SqlStore,
    StoreError,
    backend::{Backend, PROBE_WAIT, keep_prepared, rows_per_statement},
    group::Write,
    rows::{ReferralRow, referrals},
};
use crate::domain::{NhsNumber, ReferralId};

// The multi-row inserts (`sqlx::QueryBuilder` adds `VALUES (…), (…)`).
const INSERT_REFERRALS: &str = "INSERT INTO referrals \
    (id, referrer_id, identifier_system, identifier_value, provider_id, version_id, last_updated, resource, nhs_number) ";
/// A referrer's second referral with the same business identifier is not
/// inserted (and not returned): intake answers with the first.
const INSERT_REFERRALS_END: &str =
    " ON CONFLICT (referrer_id, identifier_system, identifier_value) DO NOTHING RETURNING id";
const INSERT_TASKS: &str =
    "INSERT INTO tasks (id, referral_id, status, version_id, last_updated, resource) ";
const INSERT_TASK_EVENTS: &str =
    "INSERT INTO task_events (task_id, from_status, to_status, actor, reason, at) ";
const SELECT_REFERRAL_BY_BUSINESS_ID: &str = "SELECT * FROM referrals \
    WHERE referrer_id = $1 AND identifier_system = $2 AND identifier_value = $3";
const SELECT_REFERRAL: &str = "SELECT * FROM referrals WHERE id = $1";
const SELECT_REFERRALS_BY_VALUE: &str =
    "SELECT * FROM referrals WHERE identifier_value = $1 ORDER BY id";
const SELECT_REFERRALS_BY_SYSTEM_VALUE: &str = "SELECT * FROM referrals \
    WHERE identifier_value = $1 AND identifier_system = $2 ORDER BY id";

macro_rules! impl_referral_store {
    ($db:ty) => {
        #[async_trait]
        impl ReferralStore for SqlStore<$db> {
            async fn record_intake(&self, intake: NewIntake) -> Result<Recorded, StoreError> {
                let adds = !intake.messages.is_empty();
                let recorded = self
                    .commit(|reply| Write::Intake(Box::new(intake), reply))
                    .await?;
                if adds && matches!(recorded, Recorded::Created(_)) {
                    self.wake_workers();
                }
                Ok(recorded)
            }

            async fn referral(&self, id: &ReferralId) -> Result<Option<Referral>, StoreError> {
                let row: Option<ReferralRow> = sqlx::query_as(SELECT_REFERRAL)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?;
                row.map(Referral::try_from).transpose()
            }

            async fn referrals_by_identifier(
                &self,
                system: Option<&str>,
                value: &str,
            ) -> Result<Vec<Referral>, StoreError> {
                let rows: Vec<ReferralRow> = match system {
                    Some(system) => {
                        sqlx::query_as(SELECT_REFERRALS_BY_SYSTEM_VALUE)
                            .bind(value)
                            .bind(system)
                            .fetch_all(&self.reader)
                            .await?
                    }
                    None => {
                        sqlx::query_as(SELECT_REFERRALS_BY_VALUE)
                            .bind(value)
                            .fetch_all(&self.reader)
                            .await?
                    }
                };
                referrals(rows)
            }

            async fn probe_write(&self) -> Result<(), StoreError> {
                // Waiting for this process's own writes is bounded too.
                let mut conn = tokio::time::timeout(PROBE_WAIT, self.writer.acquire())
                    .await
                    .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))??;
                <$db as Backend>::probe_write(&mut conn).await
            }
        }

        impl SqlStore<$db> {
            /// Intakes, in the order given. A BaRS intake's message is
            /// recorded first: if its sender already used the request id,
            /// nothing else is written for it and the first message is
            /// returned. Then [`Self::referrals_in`]; a BaRS message whose
            /// referral was already stored changed nothing, and is not kept.
            pub(super) async fn intakes_in(
                tx: &mut Transaction<'static, $db>,
                intakes: Vec<NewIntake>,
            ) -> Result<Vec<Recorded>, StoreError> {
                let mut processed_before = Vec::with_capacity(intakes.len());
                let mut fresh = Vec::with_capacity(intakes.len());
                for intake in intakes {
                    let earlier = match &intake.bars {
                        Some(bars) => Self::record_bars_in(tx, bars).await?,
                        None => None,
                    };
                    if earlier.is_none() {
                        fresh.push(intake);
                    }
                    processed_before.push(earlier);
                }
                let bars: Vec<Option<BarsExchange>> =
                    fresh.iter().map(|i| i.bars.clone()).collect();
                let recorded = Self::referrals_in(tx, fresh).await?;
                for (answer, bars) in recorded.iter().zip(&bars) {
                    if let (Recorded::Existing(_), Some(bars)) = (answer, bars) {
                        Self::forget_bars_in(tx, bars).await?;
                    }
                }
                // (One answer per fresh intake, in order.)
                let mut recorded = recorded.into_iter();
                Ok(processed_before
                    .into_iter()
                    .filter_map(|earlier| match earlier {
                        Some(earlier) => Some(Recorded::AlreadyProcessed(earlier)),
                        None => recorded.next(),
                    })
                    .collect())
            }

            /// Referrals, in the order given: each is inserted unless its
            /// referrer already sent its business identifier (then the
            /// stored one is returned, and nothing is written for it); the
            /// new ones get their Task, its first event and their messages.
            async fn referrals_in(
                tx: &mut Transaction<'static, $db>,
                intakes: Vec<NewIntake>,
            ) -> Result<Vec<Recorded>, StoreError> {
                let mut inserted = HashSet::new();
                for chunk in intakes.chunks(rows_per_statement(9)) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(INSERT_REFERRALS);
                    insert.push_values(chunk, |mut row, intake| {
                        let r = &intake.referral;
                        row.push_bind(&r.id)
                            .push_bind(&r.referrer_id)
                            .push_bind(&r.identifier_system)
                            .push_bind(&r.identifier_value)
                            .push_bind(&r.provider_id)
                            .push_bind(r.version_id)
                            .push_bind(&r.last_updated)
                            .push_bind(&r.resource)
                            .push_bind(r.nhs_number.as_ref().map(NhsNumber::as_str));
                    });
                    insert.push(INSERT_REFERRALS_END);
                    let ids: Vec<(ReferralId,)> = insert
                        .build_query_as()
                        .persistent(keep_prepared(chunk.len()))
                        .fetch_all(&mut **tx)
                        .await?;
                    inserted.extend(ids.into_iter().map(|(id,)| id));
                }
                let created: Vec<&NewIntake> = intakes
                    .iter()
                    .filter(|i| inserted.contains(&i.referral.id))
                    .collect();
                Self::insert_rows(tx, INSERT_TASKS, 6, &created, |mut row, intake| {
                    let t = &intake.task;
                    row.push_bind(&t.id)
                        .push_bind(&t.referral_id)
                        .push_bind(&t.status)
                        .push_bind(t.version_id)
                        .push_bind(&t.last_updated)
                        .push_bind(&t.resource);
                })
                .await?;
                Self::insert_rows(tx, INSERT_TASK_EVENTS, 6, &created, |mut row, intake| {
                    let t = &intake.task;
                    row.push_bind(&t.id)
                        .push_bind(None::<String>)
                        .push_bind(&t.status)
                        .push_bind(&intake.actor)
                        .push_bind(None::<String>)
                        .push_bind(&t.last_updated);
                })
                .await?;
                let facts: Vec<FactRow> = created
                    .iter()
                    .map(|intake| FactRow {
                        task_id: intake.task.id.clone(),
                        referral_id: intake.referral.id.clone(),
                        facts: intake.facts.clone(),
                        delivered_ms: None,
                        contact_ms: None,
                        engaged_ms: None,
                        completed_ms: None,
                        ending: None,
                        escalated: false,
                    })
                    .collect();
                Self::insert_facts(tx, &facts).await?;
                let messages: Vec<&NewMessage> = created.iter().flat_map(|i| &i.messages).collect();
                Self::insert_messages(tx, &messages).await?;
                let mut recorded = Vec::with_capacity(intakes.len());
                for intake in intakes {
                    if inserted.contains(&intake.referral.id) {
                        recorded.push(Recorded::Created(intake.referral));
                        continue;
                    }
                    let r = &intake.referral;
                    let existing: ReferralRow = sqlx::query_as(SELECT_REFERRAL_BY_BUSINESS_ID)
                        .bind(&r.referrer_id)
                        .bind(&r.identifier_system)
                        .bind(&r.identifier_value)
                        .fetch_one(&mut **tx)
                        .await?;
                    recorded.push(Recorded::Existing(existing.try_into()?));
                }
                Ok(recorded)
            }
        }
    };
}

impl_referral_store!(sqlx::Sqlite);
impl_referral_store!(sqlx::Postgres);
