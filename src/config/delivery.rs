//! Delivery settings (`[delivery]`): retry schedule, timeouts, leases, and
//! the duration syntax they are written in.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    pub(super) retry_schedule: Option<Vec<String>>,
    pub(super) connect_timeout: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) max_retry_after: Option<String>,
    pub(super) lease: Option<String>,
    pub(super) concurrency: Option<usize>,
    pub(super) poll_interval: Option<String>,
    pub(super) worker: Option<bool>,
}

/// Delivery of referrals to providers and notifications to referrers
/// (`[delivery]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// Delays before the 2nd, 3rd, … attempt; the first attempt is
    /// immediate, so there are `len() + 1` attempts in all
    /// (`retry_schedule`).
    pub retry_schedule: Vec<Duration>,
    /// Time allowed to establish a connection (`connect_timeout`).
    pub connect_timeout: Duration,
    /// Time allowed for a whole attempt, connection included
    /// (`request_timeout`).
    pub request_timeout: Duration,
    /// Longest `Retry-After` honoured; longer ones are capped to this
    /// (`max_retry_after`).
    pub max_retry_after: Duration,
    /// How long a worker holds a claimed delivery before another may take it
    /// over (`lease`); longer than `request_timeout`.
    pub lease: Duration,
    /// Requests to endpoints in flight at once (`concurrency`); an attempt
    /// frees its slot when the answer is in, before it is recorded.
    pub concurrency: usize,
    /// How often the queue is checked when nothing signals new work
    /// (`poll_interval`).
    pub poll_interval: Duration,
    /// Whether `signpost serve` runs a delivery worker (`worker`, default
    /// true). Set false to let separate `signpost worker` processes deliver.
    pub worker: bool,
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        const MINUTE: u64 = 60;
        const HOUR: u64 = 60 * MINUTE;
        DeliveryConfig {
            retry_schedule: [
                5,
                5 * MINUTE,
                30 * MINUTE,
                2 * HOUR,
                5 * HOUR,
                10 * HOUR,
                10 * HOUR,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(6 * HOUR),
            lease: Duration::from_secs(60),
            concurrency: 64,
            poll_interval: Duration::from_secs(1),
            worker: true,
        }
    }
}

impl RawDelivery {
    pub(super) fn check(self, problems: &mut Vec<String>) -> DeliveryConfig {
        let defaults = DeliveryConfig::default();
        let mut duration = |key: &str, value: Option<String>, default: Duration, positive: bool| {
            let Some(text) = value else {
                return default;
            };
            match parse_duration(&text) {
                Some(d) if positive && d.is_zero() => {
                    problems.push(format!("`delivery.{key}`: must be more than zero"));
                    default
                }
                Some(d) => d,
                None => {
                    problems.push(format!(
                        "`delivery.{key}`: {text:?} is not a duration such as 500ms, 5s, 5m or 2h"
                    ));
                    default
                }
            }
        };
        let connect_timeout = duration(
            "connect_timeout",
            self.connect_timeout,
            defaults.connect_timeout,
            true,
        );
        let request_timeout = duration(
            "request_timeout",
            self.request_timeout,
            defaults.request_timeout,
            true,
        );
        let max_retry_after = duration(
            "max_retry_after",
            self.max_retry_after,
            defaults.max_retry_after,
            false,
        );
        let lease = duration("lease", self.lease, defaults.lease, true);
        let poll_interval = duration(
            "poll_interval",
            self.poll_interval,
            defaults.poll_interval,
            true,
        );
        let retry_schedule = match self.retry_schedule {
            None => defaults.retry_schedule,
            Some(texts) => texts
                .iter()
                .enumerate()
                .filter_map(|(i, text)| {
                    let parsed = parse_duration(text);
                    if parsed.is_none() {
                        problems.push(format!(
                            "`delivery.retry_schedule[{i}]`: {text:?} is not a duration such as 500ms, 5s, 5m or 2h"
                        ));
                    }
                    parsed
                })
                .collect(),
        };
        if lease <= request_timeout {
            problems.push(format!(
                "`delivery.lease`: must be longer than `delivery.request_timeout` ({}), or a slow attempt could be taken over while still running",
                format_duration(request_timeout)
            ));
        }
        let concurrency = self.concurrency.unwrap_or(defaults.concurrency);
        if !(1..=1024).contains(&concurrency) {
            problems.push("`delivery.concurrency`: must be between 1 and 1024".into());
        }
        DeliveryConfig {
            retry_schedule,
            connect_timeout,
            request_timeout,
            max_retry_after,
            lease,
            concurrency,
            poll_interval,
            worker: self.worker.unwrap_or(defaults.worker),
        }
    }
}

/// `<integer><unit>` with unit `ms`, `s`, `m`, `h` or `d`: `500ms`, `5s`,
/// `5m`, `2h`, `5d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    n.checked_mul(millis_per_unit).map(Duration::from_millis)
}

/// A duration in the units [`parse_duration`] reads, for messages.
pub(super) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let (value, unit) = [(3_600_000, "h"), (60_000, "m"), (1_000, "s")]
        .into_iter()
        .find(|&(per_unit, _)| ms > 0 && ms.is_multiple_of(per_unit))
        .map_or((ms, "ms"), |(per_unit, unit)| (ms / per_unit, unit));
    format!("{value}{unit}")
}
