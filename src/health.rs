//! `GET /health/live` and `GET /health/ready`, open to all (load
//! balancers and orchestrators call them without credentials), so they
//! say only ok or not, never why in detail.
//!
//! Live: the process answers. Ready: the database answers (with its
//! tables), a checked
//! mapping set is loaded, and, where this process delivers, its delivery
//! worker has been round its loop recently.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::{domain::Clock, fhir::AppState};

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

    fn alive(&self) -> bool {
        let last = self.last_beat.load(Ordering::Relaxed);
        // A round waits at most `poll_interval`, plus a claim query; allow
        // three rounds and a few seconds of a slow database.
        let allowed =
            i64::try_from((self.poll_interval * 3).as_millis()).unwrap_or(i64::MAX / 2) + 5_000;
        last > 0 && self.clock.now().as_millis() - last < allowed
    }
}

/// `GET /health/live`.
pub async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

/// `GET /health/ready`: `200` when ready, else `503`.
pub async fn ready(State(app): State<AppState>) -> Response {
    // A real query on the outbox, not `SELECT 1`: the database must answer
    // and hold Signpost's tables.
    let database = app.referrals.store.next_due().await.is_ok();
    let mappings = !app.referrals.mappings.load().mappings.is_empty();
    let heartbeat = &app.worker_heartbeat;
    let worker = if !heartbeat.expected {
        "elsewhere"
    } else if heartbeat.alive() {
        "running"
    } else {
        "stopped"
    };
    let ready = database && mappings && worker != "stopped";
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let ok = |b: bool| if b { "ok" } else { "failing" };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "not ready" },
            "checks": {
                "database": ok(database),
                "mappings": ok(mappings),
                "worker": worker,
            },
        })),
    )
        .into_response()
}
