//! Group commit: the writes that must be durable before they are
//! acknowledged (a referral's intake, a delivery attempt's outcome) queue
//! for the one writer task, which runs every write that arrived while the
//! previous commit was being flushed in one transaction, with one
//! multi-row statement per table, commits once, and only then answers each.
//! If anything in the group fails, the group is rolled back and each write
//! runs alone, so one refused write does not undo the others. Under load
//! one fsync and a handful of statements cover many referrals; alone, a
//! write commits at once, as before.
//!
//! SQLite groups its commits (it has one writer); PostgreSQL does not (it
//! takes concurrent transactions and flushes their commits together
//! itself), so there every write goes through [`SqlStore::commit`] alone.
//! Nothing here is SQL: the statements are the areas' (`intake.rs`,
//! `outbox.rs`), reached through [`Jobs`].

use std::future::Future;

use sqlx::{Pool, Transaction};
use tokio::sync::{mpsc, oneshot};

use super::{
    AttemptRecord, NewIntake, Recorded, StoreError,
    backend::{Backend, SqlStore},
};

/// Most writes in one transaction.
pub const LIMIT: usize = 256;
/// Writes waiting for the writer (then callers wait for room).
pub const QUEUE: usize = 4096;

pub enum Write {
    Intake(
        Box<NewIntake>,
        oneshot::Sender<Result<Recorded, StoreError>>,
    ),
    Finish(Box<AttemptRecord>, oneshot::Sender<Result<(), StoreError>>),
}

/// A copy of a write, to run inside the group's transaction.
pub enum Job {
    Intake(Box<NewIntake>),
    Finish(Box<AttemptRecord>),
}

/// A job's result inside the group's transaction, not yet committed.
pub enum Done {
    Intake(Result<Recorded, StoreError>),
    Finish(Result<(), StoreError>),
}

impl Write {
    /// A copy to run inside the group (the original answers once the
    /// group has committed, or runs alone if it did not).
    pub fn copy(&self) -> Job {
        match self {
            Write::Intake(intake, _) => Job::Intake(intake.clone()),
            Write::Finish(finished, _) => Job::Finish(finished.clone()),
        }
    }

    /// Whether its caller stopped waiting for the answer.
    fn is_abandoned(&self) -> bool {
        match self {
            Write::Intake(_, reply) => reply.is_closed(),
            Write::Finish(_, reply) => reply.is_closed(),
        }
    }

    /// Answer with the copy's result, now committed.
    pub fn answer(self, done: Done) {
        match (self, done) {
            (Write::Intake(_, reply), Done::Intake(result)) => {
                let _ = reply.send(result);
            }
            (Write::Finish(_, reply), Done::Finish(result)) => {
                let _ = reply.send(result);
            }
            (write, _) => write.refuse(|| {
                StoreError::OutcomeUnknown("internal error: a write and its result differ".into())
            }),
        }
    }

    /// Answer with an error (made by `lost`), without writing.
    pub fn refuse(self, lost: impl Fn() -> StoreError) {
        match self {
            Write::Intake(_, reply) => {
                let _ = reply.send(Err(lost()));
            }
            Write::Finish(_, reply) => {
                let _ = reply.send(Err(lost()));
            }
        }
    }
}

/// Take the next group: wait for one write, then whatever else is
/// already queued. `None` when every sender is gone.
pub async fn next(queue: &mut mpsc::Receiver<Write>) -> Option<Vec<Write>> {
    let first = queue.recv().await?;
    let mut group = vec![first];
    while group.len() < LIMIT {
        match queue.try_recv() {
            Ok(write) => group.push(write),
            Err(_) => break,
        }
    }
    Some(group)
}

/// Send a write and wait for its answer.
pub async fn submit<T>(
    queue: &mpsc::Sender<Write>,
    write: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
) -> Result<T, StoreError> {
    let (reply, answer) = oneshot::channel();
    queue
        .send(write(reply))
        .await
        .map_err(|_| StoreError::NotCommitted("the writer has stopped".into()))?;
    // (Handed over, then the writer went: it may have committed it.)
    answer
        .await
        .map_err(|_| StoreError::OutcomeUnknown("the writer has stopped".into()))?
}

/// The two kinds of grouped write, inside a transaction: the areas' SQL
/// (`intake.rs`, `outbox.rs`), for each backend.
pub trait Jobs: Backend {
    /// Intakes, in the order given, answered in that order.
    fn intakes_in(
        tx: &mut Transaction<'static, Self>,
        intakes: Vec<NewIntake>,
    ) -> impl Future<Output = Result<Vec<Recorded>, StoreError>> + Send;

    /// Attempts' outcomes.
    fn finishes_in(
        tx: &mut Transaction<'static, Self>,
        finished: Vec<AttemptRecord>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

macro_rules! impl_jobs {
    ($db:ty) => {
        impl Jobs for $db {
            async fn intakes_in(
                tx: &mut Transaction<'static, Self>,
                intakes: Vec<NewIntake>,
            ) -> Result<Vec<Recorded>, StoreError> {
                SqlStore::<$db>::intakes_in(tx, intakes).await
            }

            async fn finishes_in(
                tx: &mut Transaction<'static, Self>,
                finished: Vec<AttemptRecord>,
            ) -> Result<(), StoreError> {
                SqlStore::<$db>::finishes_in(tx, finished).await
            }
        }
    };
}

impl_jobs!(sqlx::Sqlite);
impl_jobs!(sqlx::Postgres);

impl<B: Jobs> SqlStore<B> {
    /// Start the group committer: it runs until the store is dropped.
    pub(super) fn start_writer(writer: Pool<B>) -> mpsc::Sender<Write> {
        let (writes, mut queue) = mpsc::channel(QUEUE);
        tokio::spawn(async move {
            while let Some(group) = next(&mut queue).await {
                commit_group(&writer, group).await;
            }
        });
        writes
    }

    /// Commit a write: with the group where there is one (SQLite), else
    /// in its own transaction.
    pub(super) async fn commit<T>(
        &self,
        write: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Write,
    ) -> Result<T, StoreError> {
        match &self.writes {
            Some(writes) => submit(writes, write).await,
            None => {
                let (reply, answer) = oneshot::channel();
                commit_alone(&self.writer, write(reply)).await;
                answer
                    .await
                    .map_err(|_| StoreError::OutcomeUnknown("the write was dropped".into()))?
            }
        }
    }
}

/// Commit a group. Fast path: every write goes into one transaction with no
/// savepoints, and one commit covers them all. If any of them fails, or the
/// commit does, the transaction is rolled back and each is run again alone,
/// in its own transaction, so that each caller gets its own answer and
/// nothing half-done stays. (Every write is plain data, so it can be run
/// twice.)
async fn commit_group<B: Jobs>(writer: &Pool<B>, group: Vec<Write>) {
    // A write whose caller has gone (its request timed out, answered that
    // the outcome is not known) is not run: better not stored than stored
    // unbeknown to the client.
    let (group, abandoned): (Vec<Write>, Vec<Write>) =
        group.into_iter().partition(|write| !write.is_abandoned());
    if !abandoned.is_empty() {
        tracing::info!(
            writes = abandoned.len(),
            "writes whose callers had gone were not run"
        );
    }
    if group.is_empty() {
        return;
    }
    let mut tx = match writer.begin().await {
        Ok(tx) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "cannot begin a group commit");
            None
        }
    };
    // (Copied before the first await: a `&Write` is not `Send`.)
    let copies: Vec<Job> = group.iter().map(Write::copy).collect();
    let done = match tx.as_mut() {
        Some(tx) => jobs_in(tx, copies).await.ok(),
        None => None,
    };
    let committed = match (tx, &done) {
        (Some(tx), Some(_)) => match tx.commit().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "a group commit failed; running its writes one by one");
                false
            }
        },
        (Some(tx), None) => {
            let _ = tx.rollback().await;
            false
        }
        (None, _) => false,
    };
    if let (true, Some(done)) = (committed, done) {
        // Only now, with the group on disk, answer.
        for (write, result) in group.into_iter().zip(done) {
            write.answer(result);
        }
    } else {
        for write in group {
            commit_alone(writer, write).await;
        }
    }
}

/// One write in its own transaction.
async fn commit_alone<B: Jobs>(writer: &Pool<B>, write: Write) {
    let mut tx = match writer.begin().await {
        Ok(tx) => tx,
        Err(e) => {
            write.refuse(|| StoreError::NotCommitted(e.to_string()));
            return;
        }
    };
    match write {
        Write::Intake(intake, reply) => {
            let result = match B::intakes_in(&mut tx, vec![*intake]).await {
                Ok(mut recorded) => match recorded.pop() {
                    Some(recorded) => tx.commit().await.map(|()| recorded).map_err(Into::into),
                    None => Err(StoreError::NotCommitted(
                        "the intake went unanswered".into(),
                    )),
                },
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
        Write::Finish(finished, reply) => {
            let result = match B::finishes_in(&mut tx, vec![*finished]).await {
                Ok(()) => tx.commit().await.map_err(Into::into),
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
    }
}

/// A group's jobs inside its transaction, answered in order. The intakes go
/// first, then the attempts' outcomes, each kind with one statement per
/// table for the whole group: under load the cost was the number of
/// statements (sqlx hands each one to the connection's thread and back),
/// not the commit.
async fn jobs_in<B: Jobs>(
    tx: &mut Transaction<'static, B>,
    jobs: Vec<Job>,
) -> Result<Vec<Done>, StoreError> {
    let mut intakes = Vec::new();
    let mut finishes = Vec::new();
    let kinds: Vec<bool> = jobs
        .into_iter()
        .map(|job| match job {
            Job::Intake(intake) => {
                intakes.push(*intake);
                true
            }
            Job::Finish(finished) => {
                finishes.push(*finished);
                false
            }
        })
        .collect();
    let mut recorded = B::intakes_in(tx, intakes).await?.into_iter();
    B::finishes_in(tx, finishes).await?;
    Ok(kinds
        .into_iter()
        .map(|intake| match intake {
            true => Done::Intake(
                recorded
                    .next()
                    .ok_or_else(|| StoreError::OutcomeUnknown("an intake went unanswered".into())),
            ),
            false => Done::Finish(Ok(())),
        })
        .collect())
}
