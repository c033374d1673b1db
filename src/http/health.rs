//! `GET /health/live` and `GET /health/ready`, open to all (load
//! balancers and orchestrators call them without credentials), so they
//! say only ok or not, never why in detail.
//!
//! Live: the process answers. Ready: the database answers (with its
//! tables) within `[database] ready_timeout` and no session holds a lock
//! intake would wait on (`"database": "waiting for a lock"`), a checked
//! mapping set is loaded, and, where this process
//! delivers, its delivery worker has been round its loop recently (see
//! [`crate::heartbeat`]).

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use super::AppState;
use crate::{
    delivery::WorkerHeartbeat,
    referrals::{DatabaseCheck, Referrals},
};

/// The health routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
}

/// `GET /health/live`.
async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

/// `GET /health/ready`: `200` when ready, else `503`.
async fn ready(
    State(referrals): State<Arc<Referrals>>,
    State(heartbeat): State<Arc<WorkerHeartbeat>>,
) -> Response {
    // A real query on the outbox, not `SELECT 1`: the database must answer
    // and hold Signpost's tables.
    let check = referrals.database_ready().await;
    let database = check == DatabaseCheck::Ready;
    let mappings = referrals.has_mappings();
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
                "database": match check {
                    DatabaseCheck::Ready => "ok",
                    DatabaseCheck::WaitingForLock => "waiting for a lock",
                    DatabaseCheck::Failing => "failing",
                },
                "mappings": ok(mappings),
                "worker": worker,
            },
        })),
    )
        .into_response()
}
