//! The referral funnel over a period: per stratum, how many referrals
//! reached each stage, how many ended in each branch, and the median and
//! 90th percentile of the time to each stage. The store answers with
//! counts and hour histograms (`report_facts`, grouped in SQL); this turns
//! them into figures, and [`super::suppression`] makes them safe to
//! publish.

use std::collections::BTreeMap;

use crate::domain::Timestamp;

/// What a funnel can be stratified by (`by=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    Provider,
    /// The referral's SNOMED CT code.
    Scheme,
    /// The referring organisation (ODS code).
    Ods,
    /// The referring professional's role (PractitionerRole.code).
    Profession,
    AgeBand,
    Sex,
    /// The calendar month the referral was made (UTC).
    Month,
    /// Why a declined or rejected referral ended (the statusReason's code,
    /// or `other`); `none` for the other endings and while open.
    Reason,
}

impl Dimension {
    pub const ALL: &[Dimension] = &[
        Dimension::Provider,
        Dimension::Scheme,
        Dimension::Ods,
        Dimension::Profession,
        Dimension::AgeBand,
        Dimension::Sex,
        Dimension::Month,
        Dimension::Reason,
    ];

    /// Its name in `by=` and in CSV headers.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Provider => "provider",
            Dimension::Scheme => "scheme",
            Dimension::Ods => "ods",
            Dimension::Profession => "profession",
            Dimension::AgeBand => "age_band",
            Dimension::Sex => "sex",
            Dimension::Month => "month",
            Dimension::Reason => "reason",
        }
    }

    /// Its column in `report_facts` (never from the request: SQL is built
    /// from these names only).
    pub fn column(self) -> &'static str {
        match self {
            Dimension::Ods => "ods",
            Dimension::Reason => "ending_reason",
            other => other.name(),
        }
    }

    /// `provider,profession` → the dimensions, each at most once.
    pub fn parse_list(text: &str) -> Result<Vec<Dimension>, String> {
        let mut by = Vec::new();
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let dimension = Dimension::ALL
                .iter()
                .copied()
                .find(|d| d.name() == name)
                .ok_or_else(|| {
                    format!(
                        "`by` takes a comma-separated list of: {}",
                        Dimension::ALL
                            .iter()
                            .map(|d| d.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
            if !by.contains(&dimension) {
                by.push(dimension);
            }
        }
        Ok(by)
    }
}

/// The counts of a stratum, in this order (see the README, "Reports").
pub const COUNTS: &[&str] = &[
    "referred",
    "delivered",
    "contacted",
    "engaged",
    "completed",
    "declined",
    "rejected",
    "revoked",
    "entered_in_error",
    "failed",
    "open",
    "escalated",
    "ons4_paired",
    "swemwbs_paired",
];

/// How many counts a stratum has.
pub const N_COUNTS: usize = 14;
/// Indexes into [`COUNTS`]: people with a start and an end score.
pub const ONS4_PAIRED: usize = 12;
pub const SWEMWBS_PAIRED: usize = 13;

/// The outcome changes (end minus start) a stratum reports the median of:
/// the four ONS4 items, each on its own, and the SWEMWBS metric score.
pub const CHANGES: &[&str] = &[
    "ons4_life_satisfaction",
    "ons4_worthwhile",
    "ons4_happiness",
    "ons4_anxiety",
    "swemwbs",
];
/// The change measured in hundredths (the SWEMWBS metric score).
pub const SWEMWBS_CHANGE: usize = 4;

/// Indexes into [`COUNTS`].
pub const REFERRED: usize = 0;
/// The final branches (with `completed`): each referral is in exactly one,
/// so they add up to `referred` (what secondary suppression protects).
pub const ENDINGS: &[usize] = &[4, 5, 6, 7, 8, 9, 10];

/// The times measured, from referral to each stage.
pub const TIMES: &[&str] = &["delivery", "contact", "engagement", "completion"];

/// One stratum's counts as the store found them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountRow {
    /// The stratum's value in each `by` dimension, in order.
    pub key: Vec<String>,
    pub counts: [i64; N_COUNTS],
}

/// How many referrals in a stratum reached stage [`TIMES`]`[measure]`
/// within `hours` whole hours of referral (rounded down).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRow {
    pub key: Vec<String>,
    pub measure: usize,
    pub hours: i64,
    pub count: i64,
}

/// A half-open period `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// A time's figures before suppression: how many people it is measured
/// on, its median and its 90th percentile (whole hours, nearest rank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    pub people: i64,
    pub median: Option<i64>,
    pub p90: Option<i64>,
}

/// One stratum of the funnel, before suppression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stratum {
    pub key: Vec<String>,
    pub counts: [i64; N_COUNTS],
    pub times: [Time; 4],
    /// Per [`CHANGES`]: the people with both scores and the median change
    /// (its `p90` is not published).
    pub changes: [Time; 5],
}

/// The funnel, before suppression: every stratum, and the total of all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Funnel {
    pub period: Period,
    pub by: Vec<Dimension>,
    pub strata: Vec<Stratum>,
    pub total: Stratum,
}

impl Funnel {
    /// Put the store's counts and histograms together. The total's counts
    /// are the strata's sums; its times come from the merged histograms.
    pub fn assemble(
        period: Period,
        by: Vec<Dimension>,
        counts: Vec<CountRow>,
        times: Vec<TimeRow>,
        changes: Vec<TimeRow>,
    ) -> Funnel {
        let (time_histograms, all) = histograms::<4>(times);
        let (change_histograms, all_changes) = histograms::<5>(changes);
        let mut total = [0i64; N_COUNTS];
        let mut strata: Vec<Stratum> = counts
            .into_iter()
            .map(|mut row| {
                let times = time_histograms
                    .get(&row.key)
                    .map(|h| h.each_ref().map(time_of))
                    .unwrap_or_default();
                let changes: [Time; 5] = change_histograms
                    .get(&row.key)
                    .map(|h| h.each_ref().map(time_of))
                    .unwrap_or_default();
                row.counts[ONS4_PAIRED] = changes[0].people;
                row.counts[SWEMWBS_PAIRED] = changes[SWEMWBS_CHANGE].people;
                for (sum, count) in total.iter_mut().zip(row.counts) {
                    *sum += count;
                }
                Stratum {
                    key: row.key,
                    counts: row.counts,
                    times,
                    changes,
                }
            })
            .collect();
        strata.sort_by(|a, b| a.key.cmp(&b.key));
        Funnel {
            period,
            total: Stratum {
                key: by.iter().map(|_| "all".to_owned()).collect(),
                counts: total,
                times: all.each_ref().map(time_of),
                changes: all_changes.each_ref().map(time_of),
            },
            by,
            strata,
        }
    }
}

/// Rows of histograms per stratum, and merged over all strata.
#[allow(clippy::type_complexity)]
fn histograms<const N: usize>(
    rows: Vec<TimeRow>,
) -> (
    BTreeMap<Vec<String>, [BTreeMap<i64, i64>; N]>,
    [BTreeMap<i64, i64>; N],
) {
    let mut per: BTreeMap<Vec<String>, [BTreeMap<i64, i64>; N]> = BTreeMap::new();
    let mut all: [BTreeMap<i64, i64>; N] = std::array::from_fn(|_| BTreeMap::new());
    for row in rows {
        if row.measure >= N {
            continue;
        }
        *per.entry(row.key)
            .or_insert_with(|| std::array::from_fn(|_| BTreeMap::new()))[row.measure]
            .entry(row.hours)
            .or_default() += row.count;
        *all[row.measure].entry(row.hours).or_default() += row.count;
    }
    (per, all)
}

/// Median and 90th percentile by nearest rank (the smallest value with at
/// least half, or nine tenths, of the people at or below it).
fn time_of(histogram: &BTreeMap<i64, i64>) -> Time {
    let people: i64 = histogram.values().sum();
    let at_rank = |share_tenths: i64| -> Option<i64> {
        if people == 0 {
            return None;
        }
        let rank = (people * share_tenths + 9) / 10;
        let mut seen = 0;
        histogram.iter().find_map(|(hours, count)| {
            seen += count;
            (seen >= rank).then_some(*hours)
        })
    };
    Time {
        people,
        median: at_rank(5),
        p90: at_rank(9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_by_nearest_rank_over_the_hour_histogram() {
        let h: BTreeMap<i64, i64> = [(1, 1), (2, 1), (3, 1), (4, 1)].into();
        // Four people: the median is the 2nd, the 90th percentile the 4th.
        assert_eq!(
            time_of(&h),
            Time {
                people: 4,
                median: Some(2),
                p90: Some(4)
            }
        );
        let h: BTreeMap<i64, i64> = [(0, 9), (100, 1)].into();
        assert_eq!(
            time_of(&h),
            Time {
                people: 10,
                median: Some(0),
                p90: Some(0)
            }
        );
        assert_eq!(time_of(&BTreeMap::new()), Time::default());
    }

    #[test]
    fn by_names_parse_and_others_are_refused() {
        assert_eq!(
            Dimension::parse_list("provider, profession,provider").unwrap(),
            vec![Dimension::Provider, Dimension::Profession]
        );
        assert!(Dimension::parse_list("nhs_number").is_err());
        assert_eq!(Dimension::parse_list("").unwrap(), vec![]);
    }
}
