//! Failed sign-ins, counted per account and per client address: after
//! too many in a window, sign-in is refused for that account (or from that
//! address) until the window has passed, whatever is typed. Held in memory:
//! a restart forgets the counts (the accounts' passwords are argon2id
//! hashes and codes change every 30 seconds, so a reset buys an attacker
//! a handful of guesses per restart).

use std::{collections::HashMap, sync::Mutex, time::Duration};

use crate::domain::Timestamp;

/// Failures allowed in a window per account.
pub const ACCOUNT_FAILURES: u32 = 5;
/// Failures allowed in a window per client address (several people may
/// share an address).
pub const ADDRESS_FAILURES: u32 = 20;
/// How long failures count, and a lock-out lasts.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failure counts by key (`account:<email>`, `address:<ip>`).
#[derive(Debug, Default)]
pub struct Throttle {
    failures: Mutex<HashMap<String, Window>>,
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Timestamp,
    count: u32,
}

impl Throttle {
    /// Whether `key` has used up its `allowed` failures in the current
    /// window.
    pub fn is_locked(&self, key: &str, allowed: u32, now: Timestamp) -> bool {
        let failures = self.failures.lock().expect("throttle lock");
        failures
            .get(key)
            .is_some_and(|w| now.since(w.started) < WINDOW && w.count >= allowed)
    }

    /// Count a failure against `key`.
    pub fn fail(&self, key: &str, now: Timestamp) {
        let mut failures = self.failures.lock().expect("throttle lock");
        // Forget expired windows now and then, so the map stays small.
        if failures.len() > 10_000 {
            failures.retain(|_, w| now.since(w.started) < WINDOW);
        }
        let window = failures.entry(key.to_owned()).or_insert(Window {
            started: now,
            count: 0,
        });
        if now.since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        window.count += 1;
    }

    /// A successful sign-in clears the account's count (not the address's).
    pub fn clear(&self, key: &str) {
        self.failures.lock().expect("throttle lock").remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_the_allowed_failures_until_the_window_passes() {
        let throttle = Throttle::default();
        let start: Timestamp = "2026-01-01T00:00:00.000Z".parse().unwrap();
        for _ in 0..ACCOUNT_FAILURES {
            assert!(!throttle.is_locked("account:a", ACCOUNT_FAILURES, start));
            throttle.fail("account:a", start);
        }
        assert!(throttle.is_locked("account:a", ACCOUNT_FAILURES, start));
        assert!(!throttle.is_locked("account:b", ACCOUNT_FAILURES, start));
        assert!(!throttle.is_locked("account:a", ACCOUNT_FAILURES, start.after(WINDOW)));
    }
}
