//! The audit trail: every request of a caller who proved who it is
//! (creates, reads, searches, changes, status callbacks, admin actions,
//! and the refused ones), every delivery attempt and every operator
//! command is recorded with when, who (referrer, admin token, provider,
//! CLI user), from where, what (the action and resource, the referral),
//! and how it ended. Requests that proved no identity (failed
//! authentications, unmatched paths) are recorded in aggregate: a sample
//! and a count per kind and minute ([`anonymous`]), so anonymous traffic
//! cannot make the trail grow with it. Only ids: never patient data, never
//! query strings or bodies.
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

pub mod anonymous;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::mpsc;

use crate::{
    domain::{Actor, Clock, SystemClock, Timestamp},
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

    /// Queue a record (waiting only if the writer is far behind). Records
    /// of [`Actor::Unauthenticated`] are sampled and counted, not written
    /// one by one (see [`anonymous`]).
    pub async fn record(&self, row: AuditRecord) {
        if self.sender.send(row).await.is_err() {
            tracing::error!("the audit writer has stopped; a record was not written");
        }
    }
}

async fn write_batches(store: Arc<dyn AuditTrail>, mut receiver: mpsc::Receiver<AuditRecord>) {
    let mut received = Vec::with_capacity(BATCH);
    let mut batch = Vec::with_capacity(BATCH);
    let mut tally = anonymous::Tally::default();
    loop {
        // Wake at least once a window to write the counts that are due.
        let closed =
            match tokio::time::timeout(anonymous::WINDOW, receiver.recv_many(&mut received, BATCH))
                .await
            {
                Ok(0) => true,
                Ok(_) | Err(_) => false,
            };
        let now = Instant::now();
        for record in received.drain(..) {
            if record.actor == Actor::Unauthenticated {
                batch.extend(tally.take(record, now));
            } else {
                batch.push(record);
            }
        }
        batch.extend(tally.close(now, &self::now(), closed));
        if !batch.is_empty() {
            write(store.as_ref(), &batch).await;
            batch.clear();
        }
        if closed {
            return;
        }
    }
}

/// Write `batch`, retrying until it is written: audit records are not
/// dropped.
async fn write(store: &dyn AuditTrail, batch: &[AuditRecord]) {
    let mut delay = Duration::from_millis(100);
    while let Err(e) = store.append_audit(batch).await {
        tracing::warn!(error = %e, records = batch.len(), "cannot write audit records; retrying");
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// Now, to the millisecond (stored as its fixed-width text).
pub fn now() -> Timestamp {
    SystemClock.now()
}
