//! Reports over HTTP, for analysts and admins ([`ReportReader`]): the
//! funnel as CSV (`GET /reports/funnel.csv`) and JSON
//! (`GET /reports/funnel.json`), and as FHIR: the `Measure`
//! (`GET /fhir/Measure/signpost-referral-funnel`), its evaluation
//! (`GET /fhir/Measure/signpost-referral-funnel/$evaluate-measure`) and
//! `GET /fhir/MeasureReport?measure=…&period=…&stratifier=…`. Every figure
//! has been suppressed before it is rendered (`reports::suppression`).

use std::sync::Arc;

use axum::{
    Router,
    extract::{RawQuery, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::{AppState, FhirError, FhirResponse, extract::ReportReader};
use crate::{
    outcome::{Issue, IssueCode},
    reports::{Audience, FunnelQuery, Reports, render},
    security::tokens::Role,
};

/// `/reports/…` (merged at the root).
pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/reports/funnel.csv", get(funnel_csv))
        .route("/reports/funnel.json", get(funnel_json))
}

/// The FHIR routes (nested under `/fhir`).
pub(super) fn fhir_router() -> Router<AppState> {
    Router::new()
        .route(&format!("/Measure/{}", render::MEASURE_ID), get(measure))
        .route(
            &format!("/Measure/{}/$evaluate-measure", render::MEASURE_ID),
            get(evaluate_measure),
        )
        .route("/MeasureReport", get(measure_report_search))
}

fn audience(reader: &ReportReader) -> Audience {
    match reader.0.role {
        Role::Admin => Audience::Operator,
        _ => Audience::Analyst,
    }
}

/// The query's parameters, each at most once unless `repeatable`.
fn params(raw: Option<String>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn one<'a>(params: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, FhirError> {
    let mut found = params.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.as_str());
    if found.next().is_some() {
        return Err(invalid(format!("`{name}` may be given once")));
    }
    Ok(first)
}

fn invalid(text: String) -> FhirError {
    FhirError::BadRequest(vec![Issue::error(IssueCode::Value, text)])
}

/// Only the named parameters are understood; any other is refused rather
/// than silently ignored (a report that ignored a filter would mislead).
fn only(params: &[(String, String)], known: &[&str]) -> Result<(), FhirError> {
    match params.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        Some(_) => Err(invalid(format!(
            "unknown parameter; this report takes: {}",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// `from`, `to` (dates, both included, or RFC 3339 instants, `to`
/// excluded) and `by`.
fn funnel_query(raw: Option<String>) -> Result<FunnelQuery, FhirError> {
    let params = params(raw);
    only(&params, &["from", "to", "by"])?;
    let from = one(&params, "from")?.ok_or_else(|| invalid("`from` is required".into()))?;
    let to = one(&params, "to")?.ok_or_else(|| invalid("`to` is required".into()))?;
    FunnelQuery::parse(from, to, one(&params, "by")?.unwrap_or("")).map_err(invalid)
}

async fn funnel_csv(
    reader: ReportReader,
    State(reports): State<Arc<Reports>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    let query = funnel_query(raw)?;
    let published = reports.published(&query, audience(&reader)).await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/csv; charset=utf-8; header=present",
        )],
        render::csv(&published),
    )
        .into_response())
}

async fn funnel_json(
    reader: ReportReader,
    State(reports): State<Arc<Reports>>,
    RawQuery(raw): RawQuery,
) -> Result<Response, FhirError> {
    let query = funnel_query(raw)?;
    let published = reports.published(&query, audience(&reader)).await?;
    Ok(axum::Json(render::json(&published)).into_response())
}

async fn measure(_: ReportReader) -> FhirResponse {
    FhirResponse::new(StatusCode::OK, render::measure().to_string())
}

/// `$evaluate-measure` with `periodStart`, `periodEnd` (dates, both
/// included) and Signpost's `stratifier` (the `by` list).
async fn evaluate_measure(
    reader: ReportReader,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<FhirResponse, FhirError> {
    let params = params(raw);
    only(
        &params,
        &["periodStart", "periodEnd", "stratifier", "reportType"],
    )?;
    if one(&params, "reportType")?.is_some_and(|t| t != "summary") {
        return Err(invalid(
            "only summary reports are published (no row-level data leaves)".into(),
        ));
    }
    let start =
        one(&params, "periodStart")?.ok_or_else(|| invalid("`periodStart` is required".into()))?;
    let end =
        one(&params, "periodEnd")?.ok_or_else(|| invalid("`periodEnd` is required".into()))?;
    let query = FunnelQuery::parse(start, end, one(&params, "stratifier")?.unwrap_or(""))
        .map_err(invalid)?;
    let report = report(&app, &reader, &query).await?;
    Ok(FhirResponse::new(StatusCode::OK, report.to_string()))
}

/// `GET /fhir/MeasureReport?measure=<url or id>&period=geD&period=leD&stratifier=…`:
/// a searchset holding the one summary report of that period.
async fn measure_report_search(
    reader: ReportReader,
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<FhirResponse, FhirError> {
    let params = params(raw);
    only(&params, &["measure", "period", "stratifier"])?;
    match one(&params, "measure")? {
        Some(m)
            if m == render::MEASURE_URL
                || m == render::MEASURE_ID
                || m == format!("Measure/{}", render::MEASURE_ID) => {}
        _ => {
            return Err(invalid(format!(
                "`measure` must name the one measure published: {}",
                render::MEASURE_URL
            )));
        }
    }
    let bound = |prefix: &str| {
        params
            .iter()
            .filter(|(k, _)| k == "period")
            .find_map(|(_, v)| v.strip_prefix(prefix))
    };
    let (Some(start), Some(end)) = (bound("ge"), bound("le")) else {
        return Err(invalid(
            "`period` is given twice: period=geYYYY-MM-DD&period=leYYYY-MM-DD".into(),
        ));
    };
    let query = FunnelQuery::parse(start, end, one(&params, "stratifier")?.unwrap_or(""))
        .map_err(invalid)?;
    let report = report(&app, &reader, &query).await?;
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": 1,
        "entry": [{"resource": report, "search": {"mode": "match"}}],
    });
    Ok(FhirResponse::new(StatusCode::OK, bundle.to_string()))
}

async fn report(
    app: &AppState,
    reader: &ReportReader,
    query: &FunnelQuery,
) -> Result<serde_json::Value, FhirError> {
    let published = app.reports.published(query, audience(reader)).await?;
    Ok(render::measure_report(
        &published,
        app.referrals.clock().now(),
    ))
}
