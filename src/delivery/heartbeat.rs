//! The delivery worker's heartbeat: the worker beats on every round of
//! its loop, and `GET /health/ready` (in `http::health`) reports the
//! process not ready when a worker it expects has not been round lately.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use crate::domain::Clock;

/// The delivery worker's heartbeat.
#[derive(Debug)]
pub struct WorkerHeartbeat {
    /// Whether this process runs a worker (`[delivery] worker`).
    pub expected: bool,
    /// When the worker last went round its loop (Unix ms; 0: not yet).
    last_beat: AtomicI64,
    /// How long the worker may sleep between rounds.
    poll_interval: Duration,
    /// The worker's clock.
    clock: Arc<dyn Clock>,
}

impl WorkerHeartbeat {
    pub fn new(
        expected: bool,
        poll_interval: Duration,
        clock: Arc<dyn Clock>,
    ) -> Arc<WorkerHeartbeat> {
        Arc::new(WorkerHeartbeat {
            expected,
            last_beat: AtomicI64::new(0),
            poll_interval,
            clock,
        })
    }

    /// Called by the worker on every round.
    pub fn beat(&self) {
        self.last_beat
            .store(self.clock.now().as_millis(), Ordering::Relaxed);
    }

    /// Called by the worker when it stops.
    pub fn stopped(&self) {
        self.last_beat.store(0, Ordering::Relaxed);
    }

    /// Whether the worker has been round its loop recently.
    pub fn alive(&self) -> bool {
        let last = self.last_beat.load(Ordering::Relaxed);
        // A round waits at most `poll_interval`, plus a claim query; allow
        // three rounds and a few seconds of a slow database.
        let allowed =
            i64::try_from((self.poll_interval * 3).as_millis()).unwrap_or(i64::MAX / 2) + 5_000;
        last > 0 && self.clock.now().as_millis() - last < allowed
    }
}
