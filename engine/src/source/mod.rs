//! Sources: every kind the pipeline reads, behind one contract ([`Source`]).
//!
//! Two families share it. *Tables* (PostgreSQL, MySQL/MariaDB, SQLite: [`table`]) are
//! read over a cursor window, and their progress is a column value, the watermark.
//! *Feeds* (an SQS queue: [`queue`]; a partner's API: [`http`]; files on SFTP, S3 or a
//! folder: [`files`]) yield what arrives, and their progress is what the runs consumed:
//! the keys each committed run took (messages, files), kept with the run's manifest. Either
//! way the run's [`Checkpoint`] is committed in the same compare-and-set as the files, and
//! a feed acknowledges what it consumed (deletes the messages) only after that commit.
//! Adding a kind is its module and one line in [`open`].

mod batch;
pub mod changes;
pub mod cursor;
mod database;
pub mod files;
pub mod http;
mod mysql;
mod pg_binary;
mod pg_copy;
mod pg_split;
mod placeholder;
mod postgres;
pub mod queue;
pub mod records;
mod secret;
mod split;
mod sql;
mod sqlite;
pub mod table;
pub mod types;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

pub use batch::{BatchBuilder, BatchSize};
pub use cursor::{CursorValue, Window};
pub use placeholder::{redact, resolve_secret, resolve_url, url_escape};
pub use types::{LakeType, SourceColumn};

use crate::error::{Error, Result};
use crate::job::{From, Job};

/// A connected source, for one job.
///
/// Contract: `columns` is called first; `plan` once, for a run; then `extract` exactly
/// once, which consumes the source. When its batches have ended, the extract's `done`
/// says what the run consumed; the pipeline writes the batches, commits `done`'s
/// checkpoint with them, and only then calls its acknowledgement. Nothing is ever
/// written to a database (every statement is a SELECT); a queue loses a message only to
/// that acknowledgement.
#[async_trait]
pub trait Source: Send {
    /// The columns the source yields, in order, with their lake types.
    async fn columns(&mut self) -> Result<Vec<SourceColumn>>;

    /// The NOT NULL columns and the primary key of the job's table, from the database's
    /// catalog (for `sluice schema infer`); empty for a query or a feed.
    async fn constraints(&mut self) -> Result<Vec<Constraint>> {
        Ok(Vec::new())
    }

    /// Fixes what the run reads, from what the job has committed (and the keys its
    /// committed runs consumed): `None` when there is nothing new. Tables: the window
    /// `(watermark, greatest cursor]`; feeds: whatever arrives (the window is
    /// unbounded); files: the new files.
    async fn plan(
        &mut self,
        columns: &[SourceColumn],
        committed: &Checkpoint,
        ledger: &dyn Ledger,
        now: DateTime<Utc>,
    ) -> Result<Option<Window>>;

    /// What planning found, for a run with nothing new to read (a file feed's files
    /// still being written).
    fn planned(&self) -> Report {
        Report::Table
    }

    /// Streams the planned rows as batches of bounded size (the driver reads ahead at
    /// most two batches).
    fn extract(
        self: Box<Self>,
        columns: Vec<SourceColumn>,
        window: Window,
        run: RunContext,
    ) -> Extract;
}

/// What an extract gets from the run besides its window.
pub struct RunContext {
    /// The run key (in the names of the run's files and its manifest).
    pub run_key: String,
    /// What the job has committed.
    pub committed: Checkpoint,
    /// The keys earlier runs consumed (feeds skip redeliveries with it).
    pub ledger: Arc<dyn Ledger>,
    /// What the batches in flight may hold together (the run's memory budget).
    pub batches: crate::budget::Batches,
}

/// A run's extract: the batches, then what reading them consumed.
pub struct Extract {
    pub batches: BoxStream<'static, Result<RecordBatch>>,
    /// Resolves once `batches` has ended.
    pub done: BoxFuture<'static, Result<Consumed>>,
}

/// An extract whose batches a task produces once they are first read: `run` sends them
/// (at most two ahead) and returns what it consumed, which becomes the extract's `done`.
/// A run that fails before reading (while it plans) has not touched the source.
pub(crate) fn produced<F, Fut>(what: &'static str, run: F) -> Extract
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<RecordBatch>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Consumed>> + Send + 'static,
{
    use futures::StreamExt;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let start = async move {
        let (tx, mut rx) = tokio::sync::mpsc::channel(2);
        let task = tokio::spawn(run(tx));
        tokio::spawn(async move {
            let consumed = task
                .await
                .map_err(|e| Error::internal(format!("{what}'s task failed: {e}")))
                .and_then(|c| c);
            let _ = done_tx.send(consumed);
        });
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    };
    let batches = futures::stream::once(start).flatten().boxed();
    let done = Box::pin(async move {
        done_rx
            .await
            .map_err(|_| Error::internal(format!("{what}'s batches were never read")))?
    });
    Extract { batches, done }
}

/// What a run consumed of its source: committed with its files.
pub struct Consumed {
    /// The checkpoint the commit stores.
    pub checkpoint: Checkpoint,
    /// The keys of what the run consumed (a feed's messages), kept in its manifest.
    pub keys: Vec<String>,
    /// What could not be decoded, for the quarantine table.
    pub poison: Vec<Poison>,
    /// The feed's counts, for the run record.
    pub report: Report,
    /// Committed runs whose files this run's commit replaces (a file feed reloading
    /// the run that loaded a changed file): removed once it has committed.
    pub replaces: Vec<String>,
    /// Called after the commit (a queue deletes what the run received; a file feed
    /// moves or deletes the files).
    pub acknowledge: Option<Box<dyn Acknowledge>>,
}

/// A source's counts of one run, by family.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Report {
    /// A table's (its counts are the run's rows).
    #[default]
    Table,
    Queue(FeedReport),
    Api(ApiReport),
    Files(files::FilesReport),
    Changes(changes::ChangeReport),
}

impl Consumed {
    /// A table's: nothing to keep but the checkpoint, nothing to acknowledge.
    pub fn checkpoint(checkpoint: Checkpoint) -> Self {
        Self {
            checkpoint,
            keys: Vec::new(),
            poison: Vec::new(),
            report: Report::Table,
            replaces: Vec::new(),
            acknowledge: None,
        }
    }

    /// A queue run that took nothing new (it may have received what earlier runs
    /// committed): there is nothing to commit, only to acknowledge.
    /// A change capture run that read no change (its position may still move: it is
    /// saved without a commit of the table).
    pub fn is_empty(&self) -> bool {
        let nothing = match &self.report {
            Report::Queue(_) => true,
            Report::Changes(r) => r.rows == 0,
            _ => false,
        };
        nothing && self.keys.is_empty() && self.poison.is_empty()
    }
}

/// One message (or file, or page) that could not be decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Poison {
    pub key: String,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub error: String,
    pub body: String,
}

/// A feed run's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedReport {
    /// Messages received (a redelivered one counts each time).
    pub received: u64,
    /// Received messages that an earlier run (or this one) had already consumed.
    pub duplicates: u64,
    /// Messages moved to the quarantine table.
    pub quarantined: u64,
    /// Messages deleted from the queue after the commit.
    pub deleted: u64,
    /// Receive calls that failed after the SDK's retries. The first ended receiving:
    /// the run committed what it had received, and the rest waits for the next run.
    #[serde(default)]
    pub receive_failures: u64,
}

/// An API feed run's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiReport {
    /// HTTP requests sent (retries and token requests included).
    pub requests: u64,
    /// Requests sent again after a 429, a 5xx, a server fault or a dropped connection.
    pub retries: u64,
    /// Response bytes received.
    pub bytes: u64,
    /// Records the responses held.
    pub records: u64,
    /// Records outside the run's window (the API returned more than was asked), left
    /// for the run whose window holds them.
    pub outside_window: u64,
    /// Records moved to the quarantine table.
    pub quarantined: u64,
}

/// What the job has committed of its source.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checkpoint {
    /// Tables: the cursor value up to which rows are in the lake.
    pub watermark: Option<CursorValue>,
    /// Feeds: the committed runs whose consumed keys are remembered.
    pub feed: Option<FeedCheckpoint>,
    /// Change capture: the log position and the order of changes up to which the lake
    /// holds the table's changes.
    pub changes: Option<changes::ChangeState>,
}

/// The committed runs of a feed whose keys are remembered, oldest first: kept for as
/// long as the queue keeps a message, so that a redelivery is recognised.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FeedCheckpoint {
    /// (run key, commit time in Unix seconds).
    pub runs: Vec<(String, i64)>,
}

/// After the commit: makes the source forget what the run consumed.
#[async_trait]
pub trait Acknowledge: Send {
    /// Returns how many items were acknowledged.
    async fn acknowledge(self: Box<Self>) -> Result<u64>;
}

/// The keys committed runs consumed (from their manifests).
#[async_trait]
pub trait Ledger: Send + Sync {
    async fn keys(&self, run_key: &str) -> Result<Vec<String>>;
}

/// One column's constraints in the source's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub column: String,
    pub not_null: bool,
    /// Position in the primary key, from 1; 0 when not part of it.
    pub key_position: i64,
}

impl Constraint {
    fn from_row((column, not_null, key_position): (String, bool, i64)) -> Self {
        Self {
            column,
            not_null,
            key_position,
        }
    }
}

/// Connects to the job's source.
pub async fn open(job: &Job, env: &dyn Fn(&str) -> Option<String>) -> Result<Box<dyn Source>> {
    match &job.from {
        From::Relation(relation) => database::open(job, relation, env).await,
        From::Queue(feed) => queue::open(job, feed, env).await,
        From::Http(feed) => http::open(job, feed, env).await,
        From::Files(feed) => files::open(job, feed, env).await,
        From::Changes(feed) => changes::open(job, feed, env).await,
    }
}

/// Columns of `columns` by lower-case lake name, for resolving job column references.
pub fn find_column<'a>(columns: &'a [SourceColumn], name: &str) -> Result<&'a SourceColumn> {
    let by_name: BTreeMap<&str, &SourceColumn> =
        columns.iter().map(|c| (c.lake_name.as_str(), c)).collect();
    by_name
        .get(types::athena_name(name).as_str())
        .copied()
        .ok_or_else(|| {
            let hint = crate::spec::shape::did_you_mean(
                &types::athena_name(name),
                by_name.keys().copied(),
            )
            .map(|m| format!("; did you mean `{m}`?"))
            .unwrap_or_else(|| ".".into());
            Error::user(format!(
                "the source has no column `{name}`{hint} Its columns: {}",
                by_name.keys().copied().collect::<Vec<_>>().join(", ")
            ))
        })
}
