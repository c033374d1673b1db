//! A published funnel as CSV, JSON and FHIR R4 (`Measure`, summary
//! `MeasureReport`). Only [`Published`] figures are rendered: suppression
//! has already been applied.

use serde_json::{Value, json};

use super::{
    funnel::{CHANGES, COUNTS, SWEMWBS_CHANGE, TIMES},
    suppression::{Figure, Published, csv_header},
};
use crate::domain::Timestamp;

/// The Measure's canonical URL and id.
pub const MEASURE_ID: &str = "signpost-referral-funnel";
pub const MEASURE_URL: &str = "https://signpost.example/fhir/Measure/signpost-referral-funnel";
/// Signpost's CodeSystem for the funnel's populations and times: no
/// standard code exists for "referrals that reached first contact" and
/// the like, so they are Signpost's own (README, "Reports").
pub const FUNNEL_CODES: &str = "https://signpost.example/fhir/CodeSystem/referral-funnel";
const DATA_ABSENT_REASON: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
/// Which suppression was applied to a MeasureReport.
const SUPPRESSION_EXTENSION: &str = "https://signpost.example/fhir/StructureDefinition/suppression";

/// A median change as text: SWEMWBS (hundredths) with two decimals.
fn change_text(i: usize, figure: Figure) -> String {
    match figure {
        Figure::Value(v) if i == SWEMWBS_CHANGE => super::outcomes::decimal_text(v),
        other => text(other),
    }
}

fn change_json(i: usize, figure: Figure) -> Value {
    match figure {
        Figure::Value(v) if i == SWEMWBS_CHANGE => super::outcomes::decimal(v),
        other => json_figure(other),
    }
}

fn text(figure: Figure) -> String {
    match figure {
        Figure::Value(v) => v.to_string(),
        Figure::Masked => "*".to_owned(),
        Figure::Absent => String::new(),
    }
}

/// CSV: a first line naming the suppression, the header, a row per
/// stratum and a last row of totals (`all` in each dimension). Every cell
/// is a number, `*`, empty, or a code made of letters, digits, `-`, `.`,
/// `_` and `+` (see `facts::clean`), so nothing needs quoting.
pub fn csv(published: &Published) -> String {
    let mut out = format!(
        "# suppression={}: {}\n",
        published.suppression.as_str(),
        published.suppression.describe()
    );
    out.push_str(&csv_header(published).join(","));
    out.push('\n');
    let (from, to) = (
        published.period.from.to_string(),
        published.period.to.to_string(),
    );
    for row in published.rows.iter().chain([&published.total]) {
        let mut cells = vec![from.clone(), to.clone()];
        cells.extend(row.key.iter().cloned());
        cells.extend(row.counts.iter().map(|&f| text(f)));
        for &(median, p90) in &row.times {
            cells.push(text(median));
            cells.push(text(p90));
        }
        cells.extend(
            row.changes
                .iter()
                .enumerate()
                .map(|(i, &f)| change_text(i, f)),
        );
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

fn json_figure(figure: Figure) -> Value {
    match figure {
        Figure::Value(v) => json!(v),
        Figure::Masked => json!("masked"),
        Figure::Absent => Value::Null,
    }
}

/// JSON: `{period, by, suppression, strata: [{key, counts, times}], total}`.
pub fn json(published: &Published) -> Value {
    let row = |row: &super::suppression::Row| {
        let counts: serde_json::Map<String, Value> = COUNTS
            .iter()
            .zip(&row.counts)
            .map(|(name, &f)| ((*name).to_owned(), json_figure(f)))
            .collect();
        let times: serde_json::Map<String, Value> = TIMES
            .iter()
            .zip(&row.times)
            .map(|(name, &(median, p90))| {
                (
                    format!("hours_to_{name}"),
                    json!({"median": json_figure(median), "p90": json_figure(p90)}),
                )
            })
            .collect();
        let key: serde_json::Map<String, Value> = published
            .funnel_by
            .iter()
            .zip(&row.key)
            .map(|(d, v)| ((*d).to_owned(), json!(v)))
            .collect();
        let changes: serde_json::Map<String, Value> = CHANGES
            .iter()
            .zip(&row.changes)
            .enumerate()
            .map(|(i, (name, &f))| {
                (
                    format!("change_{name}"),
                    json!({"median": change_json(i, f)}),
                )
            })
            .collect();
        json!({"stratum": key, "counts": counts, "times": times, "outcomes": changes})
    };
    json!({
        "period": {"from": published.period.from.to_string(), "to": published.period.to.to_string()},
        "by": published.funnel_by,
        "suppression": published.suppression.as_str(),
        "strata": published.rows.iter().map(row).collect::<Vec<_>>(),
        "total": row(&published.total),
    })
}

fn code(code: &str) -> Value {
    json!({"coding": [{"system": FUNNEL_CODES, "code": code}]})
}

/// Every group of the Measure and its reports: the funnel's counts as
/// populations of one group, then one group per time figure (median and
/// 90th percentile of each time), scored in hours.
fn time_codes() -> Vec<String> {
    TIMES
        .iter()
        .flat_map(|t| [format!("median-hours-to-{t}"), format!("p90-hours-to-{t}")])
        .collect()
}

fn change_codes() -> Vec<String> {
    CHANGES
        .iter()
        .map(|c| format!("median-change-{}", c.replace('_', "-")))
        .collect()
}

fn population_code(name: &str) -> String {
    name.replace('_', "-")
}

/// `GET /fhir/Measure/signpost-referral-funnel`.
pub fn measure() -> Value {
    // FHIRPath over one referral's row of report facts (`report_facts`),
    // the criteria Signpost evaluates in SQL.
    let criteria = |description: &str, expression: &str| json!({"language": "text/fhirpath", "description": description, "expression": expression});
    let populations: Vec<Value> = COUNTS
        .iter()
        .map(|name| {
            json!({
                "code": code(&population_code(name)),
                "criteria": criteria(
                    &format!("referrals made in the period counted as {name} (README, Reports)"),
                    &fact_criterion(name),
                ),
            })
        })
        .collect();
    let mut groups = vec![json!({
        "code": code("funnel"),
        "description": "Referrals made in the period, by the stages they reached and how they ended",
        "population": populations,
        "stratifier": stratifiers(),
    })];
    for time in time_codes() {
        groups.push(json!({
            "code": code(&time),
            "description": format!("{time} (whole hours from referral, nearest rank)"),
            "population": [{
                "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population", "code": "initial-population"}]},
                "criteria": criteria("referrals made in the period that reached the stage", "true"),
            }],
            "stratifier": stratifiers(),
        }));
    }
    for change in change_codes() {
        groups.push(json!({
            "code": code(&change),
            "description": format!("{change}: end minus start score, over the people with both (nearest-rank median; SWEMWBS metric score, ONS4 items each on its own)"),
            "population": [{
                "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-population", "code": "initial-population"}]},
                "criteria": criteria("referrals made in the period with a start and an end score", "start.exists() and end.exists()"),
            }],
            "stratifier": stratifiers(),
        }));
    }
    json!({
        "resourceType": "Measure",
        "id": MEASURE_ID,
        "url": MEASURE_URL,
        "version": "1",
        "name": "SignpostReferralFunnel",
        "title": "Social prescribing referral funnel",
        "status": "active",
        "description": "Referrals made in a period: how many were delivered, reached first contact, engaged and completed; how many were declined, rejected, revoked, entered in error, failed, are still open or were escalated; the median and 90th percentile time to each stage; how many people have paired (start and end) wellbeing scores and the median change of each ONS4 item and of the SWEMWBS metric score. Published with NHS Digital's suppression rule.",
        "scoring": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/measure-scoring", "code": "cohort"}]},
        "group": groups,
    })
}

/// Which report facts a count takes.
fn fact_criterion(count: &str) -> String {
    match count {
        "referred" => "true".into(),
        "delivered" => "delivered_ms.exists()".into(),
        "contacted" => "contact_ms.exists()".into(),
        "engaged" => "engaged_ms.exists()".into(),
        "open" => "ending.empty()".into(),
        "escalated" => "escalated = 1".into(),
        "ons4_paired" => "ons4_start_1.exists() and ons4_end_1.exists()".into(),
        "swemwbs_paired" => "swemwbs_start.exists() and swemwbs_end.exists()".into(),
        ending => format!("ending = '{}'", ending.replace('_', "-")),
    }
}

fn stratifiers() -> Vec<Value> {
    super::funnel::Dimension::ALL
        .iter()
        .map(|d| {
            json!({
                "code": {"text": d.name()},
                "criteria": {"language": "text/fhirpath", "expression": d.column()},
            })
        })
        .collect()
}

/// A count as FHIR: `count`, or `_count` with the data-absent-reason
/// `masked` where it was suppressed.
fn population(name: &str, figure: Figure) -> Value {
    let mut population = json!({"code": code(&population_code(name))});
    match figure {
        Figure::Value(v) => population["count"] = json!(v),
        _ => population["_count"] = masked(),
    }
    population
}

fn masked() -> Value {
    json!({"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]})
}

fn score(figure: Figure) -> Option<Value> {
    match figure {
        Figure::Value(hours) => Some(
            json!({"value": hours, "unit": "h", "system": "http://unitsofmeasure.org", "code": "h"}),
        ),
        Figure::Masked => Some(masked()),
        Figure::Absent => None,
    }
}

/// A summary `MeasureReport` of the published funnel, made at `now`.
pub fn measure_report(published: &Published, now: Timestamp) -> Value {
    // (time group index, median or p90) → the figure of a row.
    let time_figure = |row: &super::suppression::Row, i: usize| {
        let (median, p90) = row.times[i / 2];
        if i.is_multiple_of(2) { median } else { p90 }
    };
    let stratum_value = |key: &[String]| -> Value {
        if key.len() == 1 {
            json!({"value": {"text": key[0]}})
        } else {
            json!({"component": published.funnel_by.iter().zip(key).map(|(d, v)| {
                json!({"code": {"text": d}, "value": {"text": v}})
            }).collect::<Vec<_>>()})
        }
    };
    let stratifier = |fill: &dyn Fn(&super::suppression::Row, &mut Value)| -> Vec<Value> {
        if published.funnel_by.is_empty() {
            return Vec::new();
        }
        vec![json!({
            "code": [{"text": published.funnel_by.join(",")}],
            "stratum": published.rows.iter().map(|row| {
                let mut stratum = stratum_value(&row.key);
                fill(row, &mut stratum);
                stratum
            }).collect::<Vec<_>>(),
        })]
    };
    let mut groups = vec![{
        let mut group = json!({
            "code": code("funnel"),
            "population": COUNTS.iter().zip(&published.total.counts)
                .map(|(name, &f)| population(name, f)).collect::<Vec<_>>(),
        });
        let strata = stratifier(&|row, stratum| {
            stratum["population"] = json!(
                COUNTS
                    .iter()
                    .zip(&row.counts)
                    .map(|(name, &f)| population(name, f))
                    .collect::<Vec<_>>()
            );
        });
        if !strata.is_empty() {
            group["stratifier"] = json!(strata);
        }
        group
    }];
    for (i, time) in time_codes().iter().enumerate() {
        let mut group = json!({"code": code(time)});
        if let Some(score) = score(time_figure(&published.total, i)) {
            group["measureScore"] = score;
        }
        let strata = stratifier(&|row, stratum| {
            if let Some(score) = score(time_figure(row, i)) {
                stratum["measureScore"] = score;
            }
        });
        if !strata.is_empty() {
            group["stratifier"] = json!(strata);
        }
        groups.push(group);
    }
    for (i, change) in change_codes().iter().enumerate() {
        let score = |figure: Figure| -> Option<Value> {
            match figure {
                Figure::Value(_) => Some(json!({"value": change_json(i, figure), "unit": "score",
                    "system": "http://unitsofmeasure.org", "code": "{score}"})),
                Figure::Masked => Some(masked()),
                Figure::Absent => None,
            }
        };
        let mut group = json!({"code": code(change)});
        if let Some(score) = score(published.total.changes[i]) {
            group["measureScore"] = score;
        }
        let strata = stratifier(&|row, stratum| {
            if let Some(score) = score(row.changes[i]) {
                stratum["measureScore"] = score;
            }
        });
        if !strata.is_empty() {
            group["stratifier"] = json!(strata);
        }
        groups.push(group);
    }
    json!({
        "resourceType": "MeasureReport",
        "extension": [{"url": SUPPRESSION_EXTENSION, "valueCode": published.suppression.as_str()}],
        "status": "complete",
        "type": "summary",
        "measure": MEASURE_URL,
        "date": now.to_string(),
        "period": {"start": published.period.from.to_string(), "end": published.period.to.to_string()},
        "group": groups,
    })
}
