//! The audit trail: every request (creates, reads, searches, changes,
//! status callbacks, admin actions, and the refused ones, token failures
//! included), every delivery attempt and every operator command is
//! recorded with when, who (referrer, admin token, provider, CLI user),
//! from where, what (the action and resource, the referral), and how it
//! ended. Only ids: never patient data, never query strings or bodies.
//!
//! Delivery attempts are recorded in the attempt's own transaction. Request
//! records are written by a background task in batches (one transaction
//! per batch, at most a few milliseconds after the answer), so auditing
//! reads does not turn every read into a synchronous write; a `kill -9`
//! can lose the records of the last moments' requests, never those of a
//! delivery, and the referrals, Task events and callbacks themselves are
//! stored durably elsewhere. Records are append-only: no API or statement
//! changes or deletes them.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::Response,
};
use chrono::{SecondsFormat, Utc};
use tokio::sync::mpsc;

use crate::{
    auth::{Caller, Role},
    fhir::AppState,
    store::{AuditFilter, AuditRow, AuditTrail, StoreError},
};

/// Most records waiting to be written before requests wait for the writer.
const QUEUE: usize = 16_384;
/// Most records written in one transaction.
const BATCH: usize = 512;

/// Who acted, when it was not a token holder (a provider's callback).
#[derive(Debug, Clone)]
pub struct AuditActor(pub String);

/// The referral a request concerned (set by handlers on the response).
#[derive(Debug, Clone)]
pub struct AuditReferral(pub String);

/// The request id (set by the request-id middleware).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Sends request records to the background writer.
#[derive(Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<AuditRow>,
    trail: Arc<dyn AuditTrail>,
}

impl AuditLog {
    /// Start the writer on `store`; it stops, after writing everything
    /// queued, once every `AuditLog` clone is dropped.
    pub fn start(trail: Arc<dyn AuditTrail>) -> (AuditLog, tokio::task::JoinHandle<()>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write_batches(trail.clone(), receiver));
        (AuditLog { sender, trail }, writer)
    }

    /// Records written, newest first.
    pub async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, StoreError> {
        self.trail.audit(filter).await
    }

    /// Queue a record (waiting only if the writer is far behind).
    pub async fn record(&self, row: AuditRow) {
        if self.sender.send(row).await.is_err() {
            tracing::error!("the audit writer has stopped; a record was not written");
        }
    }
}

async fn write_batches(store: Arc<dyn AuditTrail>, mut receiver: mpsc::Receiver<AuditRow>) {
    let mut batch = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let mut delay = Duration::from_millis(100);
        while let Err(e) = store.append_audit(&batch).await {
            // Keep the batch and retry: audit records are not dropped.
            tracing::warn!(error = %e, records = batch.len(), "cannot write audit records; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        batch.clear();
    }
}

/// Now, as stored.
pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The actor name of a caller.
pub fn actor(caller: &Caller) -> String {
    match &caller.role {
        Role::Referrer(id) => format!("referrer:{id}"),
        Role::Admin => format!("admin:{}", caller.credential),
        Role::Monitor => format!("monitor:{}", caller.credential),
    }
}

/// Middleware: one record per request, after the answer.
pub async fn record_requests(
    State(app): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let action = format!(
        "{} {}",
        request.method(),
        request
            .extensions()
            .get::<MatchedPath>()
            .map_or("(no route)", MatchedPath::as_str)
    );
    // The path names the resource; the query is left out (it may hold
    // identifiers of people).
    let path = request.uri().path().to_owned();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let request_id = request.extensions().get::<RequestId>().map(|r| r.0.clone());
    let response = next.run(request).await;
    let extensions = response.extensions();
    let actor = extensions
        .get::<Caller>()
        .map(actor)
        .or_else(|| extensions.get::<AuditActor>().map(|a| a.0.clone()))
        .unwrap_or_else(|| "unauthenticated".into());
    // A create names its new resource in Location.
    let resource = response
        .headers()
        .get(header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.find("/fhir/").map(|at| l[at..].to_owned()))
        .unwrap_or(path);
    app.audit
        .record(AuditRow {
            seq: 0,
            at: now(),
            actor,
            client,
            request_id,
            action,
            resource: Some(resource),
            referral_id: extensions.get::<AuditReferral>().map(|r| r.0.clone()),
            outcome: response.status().as_u16().to_string(),
        })
        .await;
    response
}
