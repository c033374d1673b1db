//! How Signpost waits on its database (`[database]`): how long a request
//! waits for a connection, a lock or a statement before it gives up with
//! `503` (and an erasure retries), how quickly readiness says a stalled
//! database is not ready, how often an erasure's deferred reclaim is
//! retried, and how often each instance beats (see `crate::instances`).

use std::time::Duration;

use serde::Deserialize;

use super::delivery::parse_duration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDatabase {
    pub(super) acquire_timeout: Option<String>,
    pub(super) lock_timeout: Option<String>,
    pub(super) statement_timeout: Option<String>,
    pub(super) ready_timeout: Option<String>,
    pub(super) reclaim_interval: Option<String>,
    pub(super) heartbeat_interval: Option<String>,
}

/// Waits on the database (`[database]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// Longest wait for a pooled connection (`acquire_timeout`, default
    /// 10 s): with the database unreachable, a request answers `503` after
    /// this.
    pub acquire_timeout: Duration,
    /// Longest wait of a PostgreSQL statement for a lock another session
    /// holds (`lock_timeout`, default 5 s): it then fails (`503`), rather
    /// than queue every later request behind it.
    pub lock_timeout: Duration,
    /// Longest run of a PostgreSQL statement (`statement_timeout`,
    /// default 30 s).
    pub statement_timeout: Duration,
    /// Longest wait of `GET /health/ready` for the database
    /// (`ready_timeout`, default 2 s): a database that does not answer in
    /// time is not ready.
    pub ready_timeout: Duration,
    /// How often each instance retries the reclaim an erasure could not
    /// finish at once (`reclaim_interval`, default 60 s; PostgreSQL).
    pub reclaim_interval: Duration,
    /// How often each `serve` beats into the `instances` table with its
    /// mapping set (`heartbeat_interval`, default 10 s); an instance is
    /// live while its last beat is at most three intervals old.
    pub heartbeat_interval: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            acquire_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(30),
            ready_timeout: Duration::from_secs(2),
            reclaim_interval: Duration::from_secs(60),
            heartbeat_interval: Duration::from_secs(10),
        }
    }
}

impl RawDatabase {
    pub(super) fn check(self, problems: &mut Vec<String>) -> DatabaseSettings {
        let defaults = DatabaseSettings::default();
        let mut duration = |key: &str, value: Option<String>, default: Duration| {
            let Some(text) = value else {
                return default;
            };
            match parse_duration(&text) {
                Some(d) if !d.is_zero() => d,
                _ => {
                    problems.push(format!(
                        "`database.{key}`: {text:?} is not a duration above zero such as 500ms, 5s or 5m"
                    ));
                    default
                }
            }
        };
        DatabaseSettings {
            acquire_timeout: duration(
                "acquire_timeout",
                self.acquire_timeout,
                defaults.acquire_timeout,
            ),
            lock_timeout: duration("lock_timeout", self.lock_timeout, defaults.lock_timeout),
            statement_timeout: duration(
                "statement_timeout",
                self.statement_timeout,
                defaults.statement_timeout,
            ),
            ready_timeout: duration("ready_timeout", self.ready_timeout, defaults.ready_timeout),
            reclaim_interval: duration(
                "reclaim_interval",
                self.reclaim_interval,
                defaults.reclaim_interval,
            ),
            heartbeat_interval: duration(
                "heartbeat_interval",
                self.heartbeat_interval,
                defaults.heartbeat_interval,
            ),
        }
    }
}
