//! Safe publication (NHS Digital's rule for published statistics below
//! national level): a count of 1 to 7 is masked and every other count is
//! rounded to the nearest 5; then, so that a masked cell cannot be worked
//! out from a total, wherever one cell of a sum is the only masked one, the
//! smallest other cell of that sum is masked too (secondary suppression),
//! until no sum has exactly one. Medians and percentiles are withheld where
//! fewer than 10 people contribute. `none` publishes the exact figures (an
//! admin's choice, never an analyst's).

use super::funnel::{CHANGES, COUNTS, ENDINGS, Funnel, N_COUNTS, Period, REFERRED, Stratum, TIMES};

/// Which rule was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Suppression {
    #[default]
    Nhs,
    None,
}

impl Suppression {
    pub fn as_str(self) -> &'static str {
        match self {
            Suppression::Nhs => "nhs",
            Suppression::None => "none",
        }
    }

    /// What a report says about the rule (its CSV header line).
    pub fn describe(self) -> &'static str {
        match self {
            Suppression::Nhs => {
                "counts of 1-7 masked (*), other counts rounded to the nearest 5, secondary suppression so that no masked count can be recovered from a total; times and median changes withheld (*) where fewer than 10 people contribute"
            }
            Suppression::None => "none: exact figures (admin only)",
        }
    }
}

/// Fewest people a median or percentile is published for.
pub const MIN_PEOPLE_FOR_TIMES: i64 = 10;

/// A published figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Figure {
    Value(i64),
    /// Suppressed (FHIR: the data-absent-reason `masked`).
    Masked,
    /// Nothing to measure (no one reached the stage).
    Absent,
}

/// A published stratum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub key: Vec<String>,
    pub counts: Vec<Figure>,
    /// Per [`TIMES`]: (median, 90th percentile), in hours.
    pub times: Vec<(Figure, Figure)>,
    /// Per [`CHANGES`]: the median change (SWEMWBS in hundredths).
    pub changes: Vec<Figure>,
}

/// The funnel as it may leave Signpost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub period: Period,
    pub funnel_by: Vec<&'static str>,
    pub suppression: Suppression,
    pub rows: Vec<Row>,
    pub total: Row,
}

/// Apply `rule` to `funnel`.
pub fn publish(funnel: &Funnel, rule: Suppression) -> Published {
    let mut masked: Vec<[bool; N_COUNTS]> = funnel
        .strata
        .iter()
        .chain([&funnel.total])
        .map(|s| {
            s.counts
                .map(|c| rule == Suppression::Nhs && (1..=7).contains(&c))
        })
        .collect();
    if rule == Suppression::Nhs {
        secondary(funnel, &mut masked);
    }
    let total_index = funnel.strata.len();
    let row = |(i, stratum): (usize, &Stratum)| Row {
        key: stratum.key.clone(),
        counts: stratum
            .counts
            .iter()
            .zip(masked[i])
            .map(|(&count, masked)| match (masked, rule) {
                (true, _) => Figure::Masked,
                (false, Suppression::None) => Figure::Value(count),
                (false, Suppression::Nhs) => Figure::Value(round_to_5(count)),
            })
            .collect(),
        times: stratum
            .times
            .iter()
            .map(|t| {
                let figure = |value: Option<i64>| match value {
                    None => Figure::Absent,
                    Some(_) if rule == Suppression::Nhs && t.people < MIN_PEOPLE_FOR_TIMES => {
                        Figure::Masked
                    }
                    Some(hours) => Figure::Value(hours),
                };
                (figure(t.median), figure(t.p90))
            })
            .collect(),
        changes: stratum
            .changes
            .iter()
            .map(|c| match c.median {
                None => Figure::Absent,
                Some(_) if rule == Suppression::Nhs && c.people < MIN_PEOPLE_FOR_TIMES => {
                    Figure::Masked
                }
                Some(change) => Figure::Value(change),
            })
            .collect(),
    };
    Published {
        period: funnel.period,
        funnel_by: funnel.by.iter().map(|d| d.name()).collect(),
        suppression: rule,
        rows: funnel.strata.iter().enumerate().map(row).collect(),
        total: row((total_index, &funnel.total)),
    }
}

/// Nearest multiple of 5, halves up (12 → 10, 13 → 15).
fn round_to_5(count: i64) -> i64 {
    (count + 2) / 5 * 5
}

/// A cell of the funnel: (row, column).
type Cell = (usize, usize);

/// Secondary suppression over every published sum: within each row, the
/// endings add up to `referred`; within each column, the strata add up to
/// the total (the last row of `masked`). Where a sum whose total is shown
/// has exactly one masked part, its smallest other part (a non-zero one
/// first) is masked too; repeated until nothing changes.
fn secondary(funnel: &Funnel, masked: &mut [[bool; N_COUNTS]]) {
    let rows: Vec<&Stratum> = funnel.strata.iter().chain([&funnel.total]).collect();
    let total = rows.len() - 1;
    // Each sum: its total cell and its parts, as (row, column).
    let mut sums: Vec<(Cell, Vec<Cell>)> = Vec::new();
    for r in 0..rows.len() {
        sums.push(((r, REFERRED), ENDINGS.iter().map(|&c| (r, c)).collect()));
    }
    if !funnel.by.is_empty() {
        for c in 0..COUNTS.len() {
            sums.push(((total, c), (0..total).map(|r| (r, c)).collect()));
        }
    }
    loop {
        let mut changed = false;
        for (whole, parts) in &sums {
            if masked[whole.0][whole.1] {
                continue;
            }
            if parts.iter().filter(|(r, c)| masked[*r][*c]).count() != 1 {
                continue;
            }
            let value = |&(r, c): &(usize, usize)| rows[r].counts[c];
            let next = parts
                .iter()
                .filter(|(r, c)| !masked[*r][*c])
                .min_by_key(|p| (value(p) == 0, value(p)));
            if let Some(&(r, c)) = next {
                masked[r][c] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
}

/// The CSV header: dimension names, then every count, then each time's
/// median and 90th percentile.
pub fn csv_header(published: &Published) -> Vec<String> {
    let mut header: Vec<String> = ["from", "to"].iter().map(|s| (*s).to_owned()).collect();
    header.extend(published.funnel_by.iter().map(|s| (*s).to_owned()));
    header.extend(COUNTS.iter().map(|s| (*s).to_owned()));
    for time in TIMES {
        header.push(format!("median_hours_to_{time}"));
        header.push(format!("p90_hours_to_{time}"));
    }
    for change in CHANGES {
        header.push(format!("median_change_{change}"));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reports::funnel::{Dimension, Time};

    fn stratum(key: &str, counts: [i64; 12]) -> Stratum {
        let mut all = [0; N_COUNTS];
        all[..12].copy_from_slice(&counts);
        Stratum {
            key: vec![key.to_owned()],
            counts: all,
            times: [Time::default(); 4],
            changes: [Time::default(); 5],
        }
    }

    fn funnel(strata: Vec<Stratum>) -> Funnel {
        let mut total = [0; 12];
        for s in &strata {
            for (t, c) in total.iter_mut().zip(s.counts) {
                *t += c;
            }
        }
        Funnel {
            period: Period {
                from: crate::domain::Timestamp::from_millis(0),
                to: crate::domain::Timestamp::from_millis(1),
            },
            by: vec![Dimension::Provider],
            strata,
            total: stratum("all", total),
        }
    }

    use Figure::{Masked as M, Value as V};

    #[test]
    fn small_counts_are_masked_others_rounded_and_a_lone_mask_gets_a_partner() {
        // referred 40 = completed 20 + declined 3 + failed 17; the rest 0.
        let a = stratum("a", [40, 40, 30, 25, 20, 3, 0, 0, 0, 17, 0, 0]);
        // referred 12 = completed 12.
        let b = stratum("b", [12, 12, 12, 12, 12, 0, 0, 0, 0, 0, 0, 0]);
        let published = publish(&funnel(vec![a, b]), Suppression::Nhs);
        // Row a: declined (3) masked alone among the endings, so the
        // smallest non-zero other ending (failed 17) is masked too.
        assert_eq!(
            published.rows[0].counts[..12],
            vec![
                V(40),
                V(40),
                V(30),
                V(25),
                V(20),
                M,
                V(0),
                V(0),
                V(0),
                M,
                V(0),
                V(0)
            ]
        );
        // Row b is untouched: in the columns "declined" and "failed" the
        // total is masked too, so b's zeros give nothing away.
        assert_eq!(
            published.rows[1].counts[..12],
            vec![
                V(10),
                V(10),
                V(10),
                V(10),
                V(10),
                V(0),
                V(0),
                V(0),
                V(0),
                V(0),
                V(0),
                V(0)
            ]
        );
        // Total row: referred 52 -> 50; declined 3 masked; failed 17 -> 15 is
        // then the lone partner in the total row's endings.
        assert_eq!(
            published.total.counts[..12],
            vec![
                V(50),
                V(50),
                V(40),
                V(35),
                V(30),
                M,
                V(0),
                V(0),
                V(0),
                M,
                V(0),
                V(0)
            ]
        );
    }

    #[test]
    fn a_lone_masked_stratum_in_a_column_gets_a_partner_from_another_stratum() {
        // Column "referred": a's 3 is masked, the total 63 is shown, so b's
        // 20 (smaller than c's 40) is masked too, or 63 - 20 - 40 would give
        // a away. Rows: each ending sum then has its total masked (a, b) or
        // no mask (c, total).
        let a = stratum("a", [3, 3, 3, 3, 3, 0, 0, 0, 0, 0, 0, 0]);
        let b = stratum("b", [20, 20, 20, 20, 20, 0, 0, 0, 0, 0, 0, 0]);
        let c = stratum("c", [40, 40, 40, 40, 40, 0, 0, 0, 0, 0, 0, 0]);
        let published = publish(&funnel(vec![a, b, c]), Suppression::Nhs);
        let referred: Vec<Figure> = published.rows.iter().map(|r| r.counts[REFERRED]).collect();
        assert_eq!(referred, vec![M, M, V(40)]);
        assert_eq!(published.total.counts[REFERRED], V(65));
        // The same in every stage column and in completed.
        for (column, name) in COUNTS.iter().enumerate().take(5).skip(1) {
            let cells: Vec<Figure> = published.rows.iter().map(|r| r.counts[column]).collect();
            assert_eq!(cells, vec![M, M, V(40)], "column {name}");
        }
    }

    #[test]
    fn with_suppression_none_every_figure_is_exact() {
        let a = stratum("a", [3, 3, 2, 1, 1, 1, 0, 0, 0, 0, 1, 0]);
        let published = publish(&funnel(vec![a]), Suppression::None);
        assert_eq!(
            published.rows[0].counts[..12],
            [3, 3, 2, 1, 1, 1, 0, 0, 0, 0, 1, 0].map(V).to_vec()
        );
    }

    #[test]
    fn times_are_withheld_under_ten_people() {
        let mut a = stratum("a", [20, 20, 20, 20, 20, 0, 0, 0, 0, 0, 0, 0]);
        a.times[0] = Time {
            people: 9,
            median: Some(4),
            p90: Some(8),
        };
        a.times[1] = Time {
            people: 10,
            median: Some(5),
            p90: Some(9),
        };
        let published = publish(&funnel(vec![a]), Suppression::Nhs);
        assert_eq!(published.rows[0].times[0], (M, M));
        assert_eq!(published.rows[0].times[1], (V(5), V(9)));
        assert_eq!(published.rows[0].times[2], (Figure::Absent, Figure::Absent));
    }

    #[test]
    fn rounding_is_to_the_nearest_five_halves_up() {
        assert_eq!(
            [0, 8, 10, 12, 13, 17, 18].map(round_to_5),
            [0, 10, 10, 10, 15, 15, 20]
        );
    }
}
