//! `signpost report funnel`: the funnel from the database, suppressed as
//! `[reports] suppression` says, as a table, CSV, JSON or a FHIR
//! MeasureReport.

use std::path::PathBuf;

use super::{ReportCommand, print_json};
use crate::{
    config::Config,
    domain::{Clock, SystemClock},
    reports::{Audience, FunnelQuery, Reports, render},
};

pub(super) async fn report(config: PathBuf, command: ReportCommand) -> anyhow::Result<()> {
    let ReportCommand::Funnel {
        from,
        to,
        by,
        format,
    } = command;
    let query = FunnelQuery::parse(&from, &to, &by).map_err(|e| anyhow::anyhow!(e))?;
    let config = Config::load(&config)?;
    let store = crate::store::open(&config.database_url, 1).await?;
    let reports = Reports::new(store, config.report_suppression);
    let published = reports.published(&query, Audience::Operator).await?;
    match format.as_str() {
        "csv" => print!("{}", render::csv(&published)),
        "json" => print_json(&render::json(&published)),
        "fhir" => print_json(&render::measure_report(&published, SystemClock.now())),
        "table" => print!("{}", table(&render::csv(&published))),
        _ => anyhow::bail!("--format is one of table, csv, json, fhir"),
    }
    Ok(())
}

/// The CSV lined up in columns (its first line, the suppression, kept as
/// it is).
fn table(csv: &str) -> String {
    let mut lines = csv.lines();
    let mut out = lines.next().map(|l| format!("{l}\n")).unwrap_or_default();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}
