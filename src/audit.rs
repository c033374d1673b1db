//! The audit trail: every request (creates, reads, searches, changes,
//! status callbacks, admin actions, and the refused ones, token failures
//! included), every delivery attempt and every operator command is
//! recorded with when, who (referrer, admin token, provider, CLI user),
//! from where, what (the action and resource, the referral), and how it
//! ended. Only ids: never patient data, never query strings or bodies.
//!
//! This module is the writer; the HTTP layer's audit middleware
//! (`http::middleware::audit`) makes the request records, the domain and
//! the CLI the others.
//!
//! Delivery attempts are recorded in the attempt's own transaction. Request
//! records are written by a background task in batches (one transaction
//! per batch, at most a few milliseconds after the answer), so auditing
//! reads does not turn every read into a synchronous write; a `kill -9`
//! can lose the records of the last moments' requests, never those of a
//! delivery, and the referrals, Task events and callbacks themselves are
//! stored durably elsewhere. Records are append-only: no API or statement
//! changes or deletes them.

use std::{sync::Arc, time::Duration};

use tokio::sync::mpsc;

use crate::{
    domain::{Clock, SystemClock, Timestamp},
    store::{AuditFilter, AuditRecord, AuditTrail, StoreError},
};

/// Most records waiting to be written before requests wait for the writer.
const QUEUE: usize = 16_384;
/// Most records written in one transaction.
const BATCH: usize = 512;

/// Sends request records to the background writer.
#[derive(Clone)]
pub struct AuditLog {
    sender: mpsc::Sender<AuditRecord>,
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
    pub async fn list(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError> {
        self.trail.audit(filter).await
    }

    /// Queue a record (waiting only if the writer is far behind).
    pub async fn record(&self, row: AuditRecord) {
        if self.sender.send(row).await.is_err() {
            tracing::error!("the audit writer has stopped; a record was not written");
        }
    }
}

async fn write_batches(store: Arc<dyn AuditTrail>, mut receiver: mpsc::Receiver<AuditRecord>) {
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

/// Now, to the millisecond (stored as its fixed-width text).
pub fn now() -> Timestamp {
    SystemClock.now()
}
