//! `report_facts`: written with each intake (`intake.rs`), Task change
//! (`tasks.rs`) and delivery (`outbox.rs`), in their transactions; read
//! here as per-stratum counts and hour histograms, grouped in SQL over the
//! period's range of the `referred_at` index.

use async_trait::async_trait;
use sqlx::Transaction;

use super::{ReportFacts, SqlStore, StoreError, backend::rows_per_statement};
use crate::{
    domain::{MessageId, ReferralId, TaskId},
    reports::{
        facts::{JourneyStep, ReferralFacts},
        funnel::{CountRow, Dimension, N_COUNTS, Period, TimeRow},
    },
};

const INSERT_FACTS: &str = "INSERT INTO report_facts (task_id, referral_id, referred_at, referred_ms, month, \
    provider, scheme, ods, profession, age_band, sex, delivered_ms, contact_ms, engaged_ms, completed_ms, \
    ending, escalated) ";
/// A Task change's step: each stage keeps the first time it was reached;
/// an answer from the provider shows the referral reached it.
const APPLY_STEP: &str = "UPDATE report_facts SET \
    delivered_ms = CASE WHEN $1 = 1 AND delivered_ms IS NULL THEN $2 ELSE delivered_ms END, \
    contact_ms = CASE WHEN $3 = 1 AND contact_ms IS NULL THEN $2 ELSE contact_ms END, \
    engaged_ms = CASE WHEN $4 = 1 AND engaged_ms IS NULL THEN $2 ELSE engaged_ms END, \
    completed_ms = CASE WHEN $5 = 'completed' AND completed_ms IS NULL THEN $2 ELSE completed_ms END, \
    ending = COALESCE($5, ending), \
    escalated = CASE WHEN $6 = 1 THEN 1 ELSE escalated END, \
    ending_reason = CASE WHEN $5 IS NOT NULL THEN COALESCE($8, 'none') ELSE ending_reason END \
    WHERE task_id = $7";
/// Scores reported with a Task change: the first start is the baseline (a
/// later start changes nothing), the latest end replaces an earlier one.
const APPLY_OUTCOMES: &str = "UPDATE report_facts SET \
    ons4_start_1 = COALESCE(ons4_start_1, $1), ons4_start_2 = COALESCE(ons4_start_2, $2), \
    ons4_start_3 = COALESCE(ons4_start_3, $3), ons4_start_4 = COALESCE(ons4_start_4, $4), \
    ons4_end_1 = COALESCE($5, ons4_end_1), ons4_end_2 = COALESCE($6, ons4_end_2), \
    ons4_end_3 = COALESCE($7, ons4_end_3), ons4_end_4 = COALESCE($8, ons4_end_4), \
    swemwbs_start = COALESCE(swemwbs_start, $9), swemwbs_end = COALESCE($10, swemwbs_end) \
    WHERE task_id = $11";
/// The referral message (not a cancellation, nor a replay's later copy)
/// reached the provider.
const DELIVERED: &str = "UPDATE report_facts SET delivered_ms = $1 \
    WHERE delivered_ms IS NULL \
      AND referral_id = (SELECT referral_id FROM outbox WHERE id = $2 AND kind = 'referral')";

/// A whole `report_facts` row: what the bench generates directly.
#[derive(Debug, Clone)]
pub struct FactRow {
    pub task_id: TaskId,
    pub referral_id: ReferralId,
    pub facts: ReferralFacts,
    pub delivered_ms: Option<i64>,
    pub contact_ms: Option<i64>,
    pub engaged_ms: Option<i64>,
    pub completed_ms: Option<i64>,
    pub ending: Option<&'static str>,
    pub escalated: bool,
}

/// `SELECT <by>, COUNT(*) … GROUP BY <by>` over the period.
fn counts_sql(by: &[Dimension]) -> String {
    let keys = key_columns(by);
    let ending =
        |e: &str| format!("CAST(SUM(CASE WHEN ending = '{e}' THEN 1 ELSE 0 END) AS BIGINT)");
    format!(
        "SELECT {keys}COUNT(*), COUNT(delivered_ms), COUNT(contact_ms), COUNT(engaged_ms), \
         {}, {}, {}, {}, {}, {}, CAST(SUM(CASE WHEN ending IS NULL THEN 1 ELSE 0 END) AS BIGINT), \
         CAST(SUM(escalated) AS BIGINT) \
         FROM report_facts WHERE referred_at >= $1 AND referred_at < $2 {}",
        ending("completed"),
        ending("declined"),
        ending("rejected"),
        ending("revoked"),
        ending("entered-in-error"),
        ending("failed"),
        group_by(by, ""),
    )
}

/// Hour histograms of the four times, one `UNION ALL` part each.
fn times_sql(by: &[Dimension]) -> String {
    let keys = key_columns(by);
    ["delivered_ms", "contact_ms", "engaged_ms", "completed_ms"]
        .iter()
        .enumerate()
        .map(|(measure, column)| {
            format!(
                "SELECT {keys}CAST({measure} AS BIGINT), ({column} - referred_ms) / 3600000 AS hours, COUNT(*) \
                 FROM report_facts WHERE referred_at >= $1 AND referred_at < $2 \
                 AND {column} IS NOT NULL{} {}",
                // Time to completion: of the referrals that ended completed.
                if *column == "completed_ms" { " AND ending = 'completed'" } else { "" },
                group_by(by, ", hours"),
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

/// Histograms of the change (end minus start) of each outcome measure
/// ([`crate::reports::funnel::CHANGES`]), over the people with both. The
/// `{end} IS NOT NULL` term is the partial indexes' condition (migration
/// 0019), which lets the planners use them.
fn changes_sql(by: &[Dimension]) -> String {
    let keys = key_columns(by);
    let measures = [
        ("ons4_start_1", "ons4_end_1"),
        ("ons4_start_2", "ons4_end_2"),
        ("ons4_start_3", "ons4_end_3"),
        ("ons4_start_4", "ons4_end_4"),
        ("swemwbs_start", "swemwbs_end"),
    ];
    measures
        .iter()
        .enumerate()
        .map(|(measure, (start, end))| {
            format!(
                "SELECT {keys}CAST({measure} AS BIGINT), {end} - {start} AS change, COUNT(*) \
                 FROM report_facts WHERE referred_at >= $1 AND referred_at < $2 \
                 AND {end} IS NOT NULL AND {start} IS NOT NULL {}",
                group_by(by, ", change"),
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn key_columns(by: &[Dimension]) -> String {
    by.iter().map(|d| format!("{}, ", d.column())).collect()
}

fn group_by(by: &[Dimension], extra: &str) -> String {
    let columns: Vec<&str> = by.iter().map(|d| d.column()).collect();
    match (columns.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("GROUP BY {}", extra.trim_start_matches(", ")),
        (false, _) => format!("GROUP BY {}{extra}", columns.join(", ")),
    }
}

macro_rules! impl_report_facts {
    ($db:ty) => {
        #[async_trait]
        impl ReportFacts for SqlStore<$db> {
            async fn funnel_rows(
                &self,
                period: Period,
                by: &[Dimension],
            ) -> Result<(Vec<CountRow>, Vec<TimeRow>, Vec<TimeRow>), StoreError> {
                use sqlx::Row;
                let (from, to) = (period.from.to_string(), period.to.to_string());
                let n = by.len();
                let counts = sqlx::query(sqlx::AssertSqlSafe(counts_sql(by)))
                    .bind(&from)
                    .bind(&to)
                    .fetch_all(&self.reader)
                    .await?
                    .into_iter()
                    .map(|row| -> Result<CountRow, sqlx::Error> {
                        let mut counts = [0i64; N_COUNTS];
                        // The SQL's 12; the paired counts come from the change histograms.
                        for (i, count) in counts.iter_mut().enumerate().take(12) {
                            *count = row.try_get::<Option<i64>, _>(n + i)?.unwrap_or(0);
                        }
                        Ok(CountRow {
                            key: (0..n).map(|i| row.try_get(i)).collect::<Result<_, _>>()?,
                            counts,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let (from, to) = (&from, &to);
                let histogram = |sql: String| async move {
                    sqlx::query(sqlx::AssertSqlSafe(sql))
                        .bind(from)
                        .bind(to)
                        .fetch_all(&self.reader)
                        .await?
                        .into_iter()
                        .map(|row| -> Result<TimeRow, sqlx::Error> {
                            Ok(TimeRow {
                                key: (0..n).map(|i| row.try_get(i)).collect::<Result<_, _>>()?,
                                measure: usize::try_from(row.try_get::<i64, _>(n)?)
                                    .unwrap_or(usize::MAX),
                                hours: row.try_get(n + 1)?,
                                count: row.try_get(n + 2)?,
                            })
                        })
                        .collect::<Result<Vec<_>, sqlx::Error>>()
                };
                let times = histogram(times_sql(by)).await?;
                // The same shape: `hours` holds the change (hundredths for
                // SWEMWBS).
                let changes = histogram(changes_sql(by)).await?;
                Ok((counts, times, changes))
            }

            async fn insert_fact_rows(&self, rows: &[FactRow]) -> Result<(), StoreError> {
                let mut tx = self.writer.begin().await?;
                Self::insert_facts(&mut tx, rows).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        impl SqlStore<$db> {
            pub(super) async fn insert_facts(
                tx: &mut Transaction<'static, $db>,
                rows: &[FactRow],
            ) -> Result<(), StoreError> {
                for chunk in rows.chunks(rows_per_statement(17)) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(INSERT_FACTS);
                    insert.push_values(chunk, |mut row, r| {
                        let f = &r.facts;
                        row.push_bind(&r.task_id)
                            .push_bind(&r.referral_id)
                            .push_bind(f.referred_at.to_string())
                            .push_bind(f.referred_at.as_millis())
                            .push_bind(f.month())
                            .push_bind(&f.provider)
                            .push_bind(&f.scheme)
                            .push_bind(&f.ods)
                            .push_bind(&f.profession)
                            .push_bind(&f.age_band)
                            .push_bind(&f.sex)
                            .push_bind(r.delivered_ms)
                            .push_bind(r.contact_ms)
                            .push_bind(r.engaged_ms)
                            .push_bind(r.completed_ms)
                            .push_bind(r.ending)
                            .push_bind(i64::from(r.escalated));
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                Ok(())
            }

            pub(super) async fn apply_step(
                tx: &mut Transaction<'static, $db>,
                task_id: &TaskId,
                step: &JourneyStep,
            ) -> Result<(), StoreError> {
                let Some(at) = step.at else {
                    return Ok(());
                };
                sqlx::query(APPLY_STEP)
                    .bind(i64::from(step.reached_provider))
                    .bind(at.as_millis())
                    .bind(i64::from(step.contact))
                    .bind(i64::from(step.engaged))
                    .bind(step.ending.map(|e| e.as_str()))
                    .bind(i64::from(step.escalated))
                    .bind(task_id)
                    .bind(step.ending_reason.as_deref())
                    .execute(&mut **tx)
                    .await?;
                let o = &step.outcomes;
                if !o.is_empty() {
                    let item = |items: Option<[i64; 4]>, i: usize| items.map(|a| a[i]);
                    sqlx::query(APPLY_OUTCOMES)
                        .bind(item(o.ons4_start, 0))
                        .bind(item(o.ons4_start, 1))
                        .bind(item(o.ons4_start, 2))
                        .bind(item(o.ons4_start, 3))
                        .bind(item(o.ons4_end, 0))
                        .bind(item(o.ons4_end, 1))
                        .bind(item(o.ons4_end, 2))
                        .bind(item(o.ons4_end, 3))
                        .bind(o.swemwbs_start)
                        .bind(o.swemwbs_end)
                        .bind(task_id)
                        .execute(&mut **tx)
                        .await?;
                }
                Ok(())
            }

            pub(super) async fn record_delivered(
                tx: &mut Transaction<'static, $db>,
                message_id: &MessageId,
                at_ms: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(DELIVERED)
                    .bind(at_ms)
                    .bind(message_id)
                    .execute(&mut **tx)
                    .await?;
                Ok(())
            }
        }
    };
}

impl_report_facts!(sqlx::Sqlite);
impl_report_facts!(sqlx::Postgres);
