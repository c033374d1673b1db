//! Time as a parameter. Every "now" in the domain and the delivery worker
//! comes from a [`Clock`], so a test can stop time, move it on by an hour and
//! watch a retry fall due, without sleeping.

use std::{
    fmt,
    str::FromStr,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

use super::{UnknownCode, stored_as_text};

/// An instant, to the millisecond, in UTC. Its text form is RFC 3339 with
/// milliseconds and `Z` (`2026-12-07T17:30:00.000Z`): fixed width, so text
/// order is time order, which the stored columns rely on.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Timestamp(i64);

impl Timestamp {
    /// Unix milliseconds.
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    /// Unix milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Unix seconds (Standard Webhooks' `webhook-timestamp`).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// As chrono's type, for calendar arithmetic and other formats.
    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// This instant plus `duration` (saturating).
    pub fn after(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(millis))
    }

    /// This instant minus `duration` (saturating).
    pub fn before(self, duration: Duration) -> Self {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(millis))
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(at: DateTime<Utc>) -> Self {
        Self(at.timestamp_millis())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            &self
                .to_datetime()
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        )
    }
}

impl FromStr for Timestamp {
    type Err = UnknownCode;
    /// Any RFC 3339 time (stored rows written to the second parse too).
    fn from_str(text: &str) -> Result<Self, UnknownCode> {
        DateTime::parse_from_rfc3339(text)
            .map(|at| Self(at.timestamp_millis()))
            .map_err(|_| UnknownCode("RFC 3339 time"))
    }
}

stored_as_text!(Timestamp);

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    fn now(&self) -> Timestamp;
}

/// The system's clock: what `signpost serve` runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from(Utc::now())
    }
}

/// A clock that moves only when told to: for tests and simulations that
/// need a retry to fall due at once. Clones share one time.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn at(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.as_millis())))
    }

    /// A clock stopped at the system's present time.
    pub fn starting_now() -> Self {
        Self::at(SystemClock.now())
    }

    /// Moves time on by `duration`.
    pub fn advance(&self, duration: Duration) {
        let millis = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(millis, Ordering::SeqCst);
    }

    /// Sets the time (it may go backwards: that is the test's choice).
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_fixed_width_rfc3339_and_sorts_as_time_does() {
        let a = Timestamp::from_millis(1_765_128_600_000);
        assert_eq!(a.to_string(), "2025-12-07T17:30:00.000Z");
        assert_eq!("2025-12-07T17:30:00.000Z".parse(), Ok(a));
        assert_eq!("2025-12-07T17:30:00Z".parse(), Ok(a));
        let b = a.after(Duration::from_millis(1));
        assert!(a.to_string() < b.to_string());
        assert_eq!(b.since(a), Duration::from_millis(1));
        assert_eq!(a.since(b), Duration::ZERO);
        assert!("yesterday".parse::<Timestamp>().is_err());
    }

    #[test]
    fn a_manual_clock_moves_only_when_told_and_clones_share_it() {
        let clock = ManualClock::at(Timestamp::from_millis(1_000));
        let shared = clock.clone();
        assert_eq!(clock.now(), Timestamp::from_millis(1_000));
        shared.advance(Duration::from_secs(90));
        assert_eq!(clock.now(), Timestamp::from_millis(91_000));
    }
}
