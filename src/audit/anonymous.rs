//! What requests that proved no identity write to the audit trail: per
//! kind (action and outcome, both from closed sets), the first of each
//! window as a sample record, and at the window's end one record counting
//! the rest. However many anonymous requests arrive, the trail grows by at
//! most two records per kind per window. The count names the distinct
//! client addresses the rest came from (the first [`ADDRESSES_NAMED`], and
//! how many more), so a run from many addresses is not hidden behind its
//! first.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use crate::{
    domain::{Actor, Timestamp},
    store::AuditRecord,
};

/// How long one sample stands for the requests of its kind.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Distinct client addresses a count names; beyond them it counts them,
/// up to `ADDRESSES_COUNTED` (memory stays bounded per kind).
pub const ADDRESSES_NAMED: usize = 20;
const ADDRESSES_COUNTED: usize = 10_000;

/// The windows open now, by kind.
#[derive(Default)]
pub struct Tally {
    windows: HashMap<Kind, Window>,
}

/// A kind of anonymous request: its action and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Kind {
    action: String,
    outcome: String,
}

struct Window {
    opened: Instant,
    /// When the sample was recorded (the count's start).
    since: Timestamp,
    /// Requests after the sample.
    more: u64,
    /// The distinct client addresses of those requests, the first
    /// [`ADDRESSES_NAMED`] of them.
    addresses: Vec<String>,
    /// The others, to count them, up to [`ADDRESSES_COUNTED`].
    others: HashSet<String>,
}

impl Window {
    fn count_address(&mut self, client: Option<String>) {
        let Some(client) = client else {
            return;
        };
        if self.addresses.contains(&client) {
            return;
        }
        if self.addresses.len() < ADDRESSES_NAMED {
            self.addresses.push(client);
        } else if self.others.len() < ADDRESSES_COUNTED {
            self.others.insert(client);
        }
    }
}

impl Tally {
    /// Take `record` of an anonymous request at `now`: the records to
    /// write for it (the sample that opens a window, after the count
    /// closing an expired one), or none when it is only counted.
    pub fn take(&mut self, record: AuditRecord, now: Instant) -> Vec<AuditRecord> {
        let kind = Kind {
            action: record.action.clone(),
            outcome: record.outcome.clone(),
        };
        let mut written = Vec::new();
        if let Some(window) = self.windows.get_mut(&kind) {
            if now.duration_since(window.opened) < WINDOW {
                window.more += 1;
                window.count_address(record.client);
                return written;
            }
            let window = self.windows.remove(&kind).expect("present");
            written.extend(count(&kind, &window, record.at));
        }
        self.windows.insert(
            kind,
            Window {
                opened: now,
                since: record.at,
                more: 0,
                addresses: Vec::new(),
                others: HashSet::new(),
            },
        );
        written.push(record);
        written
    }

    /// The counts of the windows that have ended by `now` (of every
    /// window when `all`), closing them.
    pub fn close(&mut self, now: Instant, at: &Timestamp, all: bool) -> Vec<AuditRecord> {
        let mut written = Vec::new();
        self.windows.retain(|kind, window| {
            if all || now.duration_since(window.opened) >= WINDOW {
                written.extend(count(kind, window, *at));
                false
            } else {
                true
            }
        });
        written
    }
}

/// The record counting a window's requests after its sample, if any.
fn count(kind: &Kind, window: &Window, at: Timestamp) -> Option<AuditRecord> {
    (window.more > 0).then(|| AuditRecord {
        seq: 0,
        at,
        actor: Actor::Unauthenticated,
        credential: None,
        client: None,
        request_id: None,
        action: kind.action.clone(),
        resource: None,
        referral_id: None,
        outcome: format!(
            "{}: {} more since {} (counted, not recorded one by one){}",
            kind.outcome,
            window.more,
            window.since,
            from_addresses(window)
        ),
    })
}

/// Where a window's counted requests came from: `; from a, b` and, past
/// [`ADDRESSES_NAMED`], `and N more addresses`.
fn from_addresses(window: &Window) -> String {
    if window.addresses.is_empty() {
        return String::new();
    }
    let mut text = format!("; from {}", window.addresses.join(", "));
    match window.others.len() {
        0 => {}
        ADDRESSES_COUNTED => {
            text.push_str(&format!(" and at least {ADDRESSES_COUNTED} more addresses"))
        }
        n => text.push_str(&format!(" and {n} more addresses")),
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Clock, SystemClock};

    fn anonymous(action: &str, outcome: &str) -> AuditRecord {
        AuditRecord {
            seq: 0,
            at: SystemClock.now(),
            actor: Actor::Unauthenticated,
            credential: None,
            client: Some("192.0.2.1".into()),
            request_id: Some("r".into()),
            action: action.into(),
            resource: None,
            referral_id: None,
            outcome: outcome.into(),
        }
    }

    #[test]
    fn one_sample_per_kind_and_window_then_one_count() {
        let mut tally = Tally::default();
        let start = Instant::now();
        let mut written = Vec::new();
        for n in 0..1000 {
            written.extend(tally.take(anonymous("GET (no route)", "404"), start));
            if n % 2 == 0 {
                written.extend(tally.take(anonymous("GET /fhir/Task", "401"), start));
            }
        }
        assert_eq!(written.len(), 2, "one sample of each kind");
        assert!(written.iter().all(|r| r.client.is_some()));
        // Within the window nothing more is due.
        let at = SystemClock.now();
        assert!(tally.close(start + WINDOW / 2, &at, false).is_empty());
        let counts = tally.close(start + WINDOW, &at, false);
        let mut outcomes: Vec<_> = counts.iter().map(|r| r.outcome.clone()).collect();
        outcomes.sort();
        assert_eq!(outcomes.len(), 2);
        assert!(
            outcomes[0].starts_with("401: 499 more since "),
            "{outcomes:?}"
        );
        assert!(
            outcomes[1].starts_with("404: 999 more since "),
            "{outcomes:?}"
        );
        assert!(
            counts
                .iter()
                .all(|r| r.client.is_none() && r.resource.is_none())
        );
        // The next request opens a new window with a new sample.
        assert_eq!(
            tally
                .take(anonymous("GET (no route)", "404"), start + WINDOW)
                .len(),
            1
        );
    }

    /// Review finding 16: the count names the distinct addresses the
    /// counted requests came from (bounded), not only the sample's.
    #[test]
    fn the_count_names_the_distinct_addresses_bounded() {
        let mut tally = Tally::default();
        let start = Instant::now();
        let from = |client: String| AuditRecord {
            client: Some(client),
            ..anonymous("GET /fhir/Task", "401")
        };
        for n in 0..100 {
            for _ in 0..3 {
                tally.take(from(format!("192.0.2.{n}")), start);
            }
        }
        let counts = tally.close(start + WINDOW, &SystemClock.now(), false);
        assert_eq!(counts.len(), 1);
        let outcome = &counts[0].outcome;
        assert!(outcome.starts_with("401: 299 more since "), "{outcome}");
        // The sample's address again, then the next ones, up to the bound.
        assert!(
            outcome.contains("; from 192.0.2.0, 192.0.2.1, "),
            "{outcome}"
        );
        assert!(outcome.contains("192.0.2.19"), "{outcome}");
        assert!(!outcome.contains("192.0.2.20,"), "{outcome}");
        assert!(outcome.ends_with(" and 80 more addresses"), "{outcome}");
    }

    #[test]
    fn a_request_after_the_window_closes_it_and_a_lone_sample_has_no_count() {
        let mut tally = Tally::default();
        let start = Instant::now();
        tally.take(anonymous("GET /fhir/Task", "401"), start);
        tally.take(anonymous("GET /fhir/Task", "401"), start);
        let later = tally.take(anonymous("GET /fhir/Task", "401"), start + WINDOW);
        assert_eq!(
            later.len(),
            2,
            "the count of the last window, then a sample"
        );
        assert!(later[0].outcome.starts_with("401: 1 more since "));
        assert_eq!(later[1].outcome, "401");
        // A window with only its sample closes without a count.
        assert!(tally.close(start, &SystemClock.now(), true).is_empty());
    }
}
