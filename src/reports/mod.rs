//! Evidence that social prescribing works, published without exposing a
//! patient: the referral funnel (stages, branches, times to each stage)
//! over a period, stratified as asked, and only ever as suppressed
//! aggregates.
//!
//! - `facts.rs`: what intake and each Task change record for reports (the
//!   strata, the journey), written by the store in their transactions;
//! - `funnel.rs`: the figures from the store's counts and histograms;
//! - `suppression.rs`: the NHS rule for publishing them;
//! - `render.rs`: CSV, JSON and FHIR (`Measure`, `MeasureReport`).
//!
//! Reports read `report_facts` only: never a referral, a Task or a
//! callback body.

pub mod facts;
pub mod funnel;
pub mod outcomes;
pub mod render;
pub mod suppression;

use std::sync::Arc;

use self::{
    funnel::{Dimension, Funnel, Period},
    suppression::{Published, Suppression},
};
use crate::{
    domain::Timestamp,
    store::{ReportFacts, StoreError},
};

/// The reports service: what the HTTP layer and the CLI call.
#[derive(Clone)]
pub struct Reports {
    store: Arc<dyn ReportFacts>,
    /// `[reports] suppression`: what an admin gets; an analyst always gets
    /// `nhs`.
    configured: Suppression,
}

/// Who asks, which decides the suppression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// An admin (or the CLI, run by an operator on the server): the
    /// configured rule.
    Operator,
    /// An analyst: always `nhs`.
    Analyst,
}

/// A request for a funnel, as the HTTP layer and the CLI take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunnelQuery {
    pub period: Period,
    pub by: Vec<Dimension>,
}

impl FunnelQuery {
    /// `from` and `to` as dates (`2026-01-01`, both included) or RFC 3339
    /// instants (`to` excluded); `by` as a comma-separated list.
    pub fn parse(from: &str, to: &str, by: &str) -> Result<FunnelQuery, String> {
        let start =
            instant(from, false).ok_or("`from` must be a date (YYYY-MM-DD) or an RFC 3339 time")?;
        let end =
            instant(to, true).ok_or("`to` must be a date (YYYY-MM-DD) or an RFC 3339 time")?;
        if end <= start {
            return Err("`to` must be after `from`".into());
        }
        Ok(FunnelQuery {
            period: Period {
                from: start,
                to: end,
            },
            by: Dimension::parse_list(by)?,
        })
    }
}

/// A date's start (or, for the period's end, the next day's start), or an
/// instant as given.
fn instant(text: &str, end: bool) -> Option<Timestamp> {
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end { date.succ_opt()? } else { date };
        return Some(Timestamp::from(day.and_hms_opt(0, 0, 0)?.and_utc()));
    }
    text.parse().ok()
}

impl Reports {
    pub fn new(store: Arc<dyn ReportFacts>, configured: Suppression) -> Reports {
        Reports { store, configured }
    }

    /// The rule applied for `audience`.
    pub fn suppression_for(&self, audience: Audience) -> Suppression {
        match audience {
            Audience::Operator => self.configured,
            Audience::Analyst => Suppression::Nhs,
        }
    }

    /// The funnel before suppression (never published as it is).
    pub async fn funnel(&self, query: &FunnelQuery) -> Result<Funnel, StoreError> {
        let (counts, times, changes) = self.store.funnel_rows(query.period, &query.by).await?;
        Ok(Funnel::assemble(
            query.period,
            query.by.clone(),
            counts,
            times,
            changes,
        ))
    }

    /// The funnel as `audience` may see it.
    pub async fn published(
        &self,
        query: &FunnelQuery,
        audience: Audience,
    ) -> Result<Published, StoreError> {
        let funnel = self.funnel(query).await?;
        Ok(suppression::publish(
            &funnel,
            self.suppression_for(audience),
        ))
    }
}
