//! Job state: watermarks, the attempt in flight, the last committed run, and the lease
//! that keeps two runs of one job apart.

mod dynamo;
mod local;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use dynamo::DynamoStore;
pub use local::LocalStore;

use crate::error::{Error, Result};
use crate::source::{Checkpoint, CursorValue, FeedCheckpoint, Window};
use crate::summary::RunSummary;

/// What the store keeps for one job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    /// The cursor value up to which rows are in the lake (incremental jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<CursorValue>,
    /// The committed runs of a feed whose consumed keys are remembered (feed jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<FeedCheckpoint>,
    /// The log position and order of changes committed (change capture jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<crate::source::changes::ChangeState>,
    /// An attempt that started writing and has not committed. When a run finds one, that
    /// attempt failed: its files are removed before anything else is written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Attempt>,
    /// The last run that committed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<CommittedRun>,
    /// Run keys whose files a rewind took out of the table: removed before anything else
    /// is written, so a crash during the removal is finished by the next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discard: Vec<String>,
    /// The table's schema contract: frozen from the first run, or the job row's as later
    /// runs evolved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<crate::contract::StoredContract>,
}

impl JobState {
    /// What the job has committed of its source.
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            watermark: self.watermark.clone(),
            feed: self.feed.clone(),
            changes: self.changes.clone(),
        }
    }

    /// Takes `checkpoint` as what the job has committed.
    pub fn advance(&mut self, checkpoint: Checkpoint) {
        self.watermark = checkpoint.watermark;
        self.feed = checkpoint.feed;
        self.changes = checkpoint.changes;
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub run_id: String,
    pub run_key: String,
    pub table: String,
    pub window: Window,
    pub started_at: DateTime<Utc>,
    /// A run into a Delta table: the transaction version its commit records, and once
    /// its files are written, the state that commit makes (see `sink::delta`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaAttempt>,
}

impl Attempt {
    /// A new attempt of `run_key` on `table`, reading `window`; what its table's format
    /// records to settle it is added by its table (`begin`).
    pub fn new(
        (run_id, run_key): (&str, &str),
        table: &str,
        window: Window,
        started_at: DateTime<Utc>,
    ) -> Self {
        Self {
            run_id: run_id.to_string(),
            run_key: run_key.to_string(),
            table: table.to_string(),
            window,
            started_at,
            delta: None,
        }
    }
}

/// A Delta run's commit as the state store knows it before the log has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaAttempt {
    /// The application-transaction version the run's commit records.
    pub txn: i64,
    /// The job's state once the commit is in the log: taken by the next run if this one
    /// dies after the commit and before it saves this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepared: Option<Box<JobState>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedRun {
    pub run_id: String,
    pub run_key: String,
    pub mode: String,
    pub window: Window,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub finished_at: DateTime<Utc>,
}

/// A value with the version it was read at. Version 0: never stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub version: u64,
}

/// Where job state lives.
///
/// Contract: `load` and `save` may be called any number of times; `save` is a
/// compare-and-set that succeeds only if the stored version is still `expected` (0 for a
/// job never stored), so that an update based on stale state is refused rather than
/// lost. A successful `save` is durable before it returns. `lease` is taken once per run,
/// before the first `save`, and held until the run ends; a lease of a process that died
/// is released by the store (the OS for files, expiry for DynamoDB). Run records are
/// kept for audit and never change the state.
#[async_trait]
pub trait StateStore: Send + Sync {
    async fn load(&self, job: &str) -> Result<Versioned<JobState>>;

    /// Stores `state` if the stored version is still `expected`; returns the new version.
    async fn save(&self, job: &str, state: &JobState, expected: u64) -> Result<u64>;

    /// Takes the job's lease for `ttl` (kept alive while held, where leases expire), or
    /// fails with [`crate::error::ErrorClass::Busy`] when another run holds it.
    async fn lease(&self, job: &str, owner: &str, ttl: Duration) -> Result<Box<dyn Lease>>;

    /// Who holds the job's lease now, if anyone (for `sluice state show`).
    async fn lease_holder(&self, job: &str) -> Result<Option<String>>;

    /// Keeps the record of a finished run (committed, up to date or failed).
    async fn record_run(&self, run: &RunSummary) -> Result<()>;

    /// The job's run records, newest first, at most `limit`.
    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunSummary>>;

    /// Where the store is, for messages.
    fn describe(&self) -> String;
}

/// A held lease. `release` lets the next run of the job start at once; a lease dropped
/// without it (a crash) is released by the OS or by expiry.
#[async_trait]
pub trait Lease: Send {
    async fn release(self: Box<Self>) -> Result<()>;
}

/// Opens the state store named by `--state`: a folder (the default), `file://…`, or
/// `dynamodb://TABLE`.
pub async fn open(location: &str) -> Result<Box<dyn StateStore>> {
    if location.starts_with("dynamodb://") {
        return Ok(Box::new(DynamoStore::open(location).await?));
    }
    if location.contains("://") && !location.starts_with("file://") {
        return Err(Error::user(format!(
            "state store {location:?} is not supported: use a folder or dynamodb://TABLE"
        )));
    }
    Ok(Box::new(LocalStore::open(
        location.trim_start_matches("file://"),
    )?))
}
