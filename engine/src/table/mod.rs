//! A job's lake table, whatever its format: the one seam between a run and the way its
//! table keeps data. The pipeline asks a [`LakeTable`] to begin an attempt, to stage
//! the run's files as an append, a replacement or a merge, to commit what it staged,
//! to settle an attempt a crash left pending, and to maintain itself; it never asks
//! which format the table has. Each format is one module: `parquet` (Hive-partitioned
//! Parquet and sluice's manifests) and `delta` (the same files committed to a Delta
//! log). [`open`] is the only place the format is matched: a third format (Iceberg) is
//! one module and one line there.
//!
//! Every format shares the first half of a run: the files are written by
//! [`crate::sink::PartitionedWriter`], named with the run key, with the run's manifest
//! beside them, before the table is asked anything. What a format decides is when
//! those files become the table's rows, and how a crash between the two stores (the
//! lake, the state store) is settled.
//!
//! The contract, in the order a run calls it (one run at a time, under the job's lease):
//! 1. [`LakeTable::recover`] settles a pending attempt: its commit happened (the
//!    state it made is returned, to be saved) or not (its files are removed).
//! 2. [`LakeTable::begin`] records in the new pending attempt what the format needs to
//!    settle it later, before any file is written.
//! 3. One of [`LakeTable::append`], [`LakeTable::replace`], [`LakeTable::merge`]
//!    stages the commit. It commits nothing: on error the caller removes the attempt's
//!    files ([`LakeTable::abandon`]).
//! 4. [`Staged::commit`] makes the run's rows the table's and saves the state the run
//!    makes, in the order that keeps "the table holds the run's rows if and only if its
//!    checkpoint is committed". On error the attempt stays pending for step 1 of the
//!    next run: nothing is removed then.
//! 5. [`LakeTable::remove_replaced`], after a replacement's commit: the files it
//!    replaced that no reader needs any more.

mod delta;
mod parquet;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::SchemaRef;

pub use crate::sink::delta::maintain::{Optimized, Vacuumed};

use crate::budget::MemoryBudget;
use crate::error::Result;
use crate::job::Job;
use crate::sink::{Lake, Manifest};
use crate::spec::TableFormat;
use crate::store::{Attempt, JobState, StateStore, Versioned};
use crate::summary::RunSummary;

/// Opens the table `job` writes, in its format. The only `match` on the format.
pub fn open<'a>(lake: &'a Lake, job: &'a Job) -> Box<dyn LakeTable + 'a> {
    match job.target.format {
        TableFormat::Parquet => Box::new(parquet::Parquet::new(lake, job)),
        TableFormat::Delta => Box::new(delta::Delta::new(lake, job)),
    }
}

/// The table that settles a pending attempt: the format the attempt was made in (an
/// attempt on a Delta table records its transaction), even if the job's row has
/// changed format since; otherwise the job's.
pub fn of_attempt<'a>(lake: &'a Lake, job: &'a Job, attempt: &Attempt) -> Box<dyn LakeTable + 'a> {
    if attempt.delta.is_some() {
        Box::new(delta::Delta::new(lake, job))
    } else {
        open(lake, job)
    }
}

/// A job's table, as a run and the maintenance commands use it. Called under the job's
/// lease only, so that no two callers change one table at once (other writers of a
/// Delta table are detected as conflicts by its log).
#[async_trait]
pub trait LakeTable: Send + Sync {
    /// Before the attempt is recorded as pending (and before any file is written):
    /// records in `attempt` what this format needs to settle it after a crash. Called
    /// once per attempt; reads, never writes.
    async fn begin(&self, attempt: &mut Attempt) -> Result<()>;

    /// Stages adding the run's rows to the table (incremental runs and feeds).
    async fn append(&self, run: Written<'_>) -> Result<Box<dyn Staged>>;

    /// Stages replacing `scope` (the whole table, or one snapshot partition) with the
    /// run's rows (full and snapshot runs).
    async fn replace(&self, run: Written<'_>, scope: &Scope) -> Result<Box<dyn Staged>>;

    /// Stages an upsert of the run's rows by key: a key's newest row replaces the
    /// table's row of that key, or deletes it when it is a delete (mode merge; change
    /// capture's inserts, updates and deletes). May write files (the table's files
    /// rewritten without the run's keys), named with the run key: the caller's
    /// `abandon` removes them with the run's on error.
    async fn merge(&self, run: Written<'_>, by: &MergeBy<'_>) -> Result<Box<dyn Staged>>;

    /// Settles `attempt`, which a run left pending (it failed or was killed): whether
    /// its commit is in the table. If not, its files are removed. Idempotent: a crash
    /// during it is settled again by the next run.
    async fn recover(&self, attempt: &Attempt) -> Result<Recovered>;

    /// Removes every file the run `run_key` wrote to the table (and its quarantine
    /// table), its manifests and record keys: a failed attempt's before its retry
    /// writes, or the runs a rewind takes out. Returns how many data files went. Only
    /// for a run no commit references.
    async fn abandon(&self, run_key: &str) -> Result<usize>;

    /// After a replacement's commit (or the next run, if this process died first):
    /// removes the files of other runs in `scope` that no reader needs any more.
    /// Returns how many. Idempotent.
    async fn remove_replaced(&self, scope: &Scope, keep: &str) -> Result<usize>;

    /// Whether a rewind may take committed runs out of the table (`Err`: the user's
    /// error saying why not and what to do instead).
    fn check_rewind(&self) -> Result<()>;

    /// Bin-packs the table's small files into files of the job's size (rows
    /// unchanged); `op_key` names the new files as a run key does.
    async fn optimize(&self, op_key: &str, budget: MemoryBudget) -> Result<Optimized>;

    /// Removes the files no version younger than `retain` reads.
    async fn vacuum(&self, retain: Duration, dry_run: bool) -> Result<Vacuumed>;
}

/// A commit staged by [`LakeTable::append`], [`LakeTable::replace`] or
/// [`LakeTable::merge`], not yet made.
#[async_trait]
pub trait Staged: Send {
    /// Commits the run and saves `commit.next` as the job's state; on success
    /// `commit.state` is that state at its new version. Called at most once. On error
    /// the attempt is left pending (whether the commit happened is settled by
    /// [`LakeTable::recover`]); the run's files stay.
    async fn commit(self: Box<Self>, commit: Commit<'_>, summary: &mut RunSummary) -> Result<()>;
}

/// What the run wrote, for the table to commit: files closed, manifest written.
pub struct Written<'a> {
    pub manifest: &'a Manifest,
    /// The output's columns (the contract's), partition columns included.
    pub schema: SchemaRef,
    /// The run's memory budget (a merge reads the table's rows within it).
    pub budget: MemoryBudget,
}

/// The job's state at the commit: the stored state (with its pending attempt) and the
/// state the commit makes.
pub struct Commit<'a> {
    pub store: &'a dyn StateStore,
    pub job_id: &'a str,
    pub state: &'a mut Versioned<JobState>,
    pub next: JobState,
}

impl Commit<'_> {
    /// Saves `next` as the job's state (compare-and-set on the stored version).
    async fn save_next(self) -> Result<()> {
        self.state.value = self.next;
        self.state.version = self
            .store
            .save(self.job_id, &self.state.value, self.state.version)
            .await?;
        Ok(())
    }
}

/// What a replacement replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The whole table (mode full).
    Table,
    /// One day's snapshot partition, `snapshot=<date>` (mode snapshot): the other days
    /// are kept.
    Snapshot(String),
}

impl Scope {
    /// The snapshot partition of the day of `now`.
    pub fn snapshot(now: DateTime<Utc>) -> Scope {
        Scope::Snapshot(now.format("%Y-%m-%d").to_string())
    }

    /// The folder below the table that the scope is (empty for the whole table).
    pub fn folder(&self) -> String {
        match self {
            Scope::Table => String::new(),
            Scope::Snapshot(day) => format!("{SNAPSHOT_COLUMN}={day}"),
        }
    }
}

/// The partition column snapshot runs add.
pub const SNAPSHOT_COLUMN: &str = "snapshot";

/// How a merge matches and ranks rows.
#[derive(Debug, Clone, Copy)]
pub struct MergeBy<'a> {
    /// The primary key.
    pub key: &'a [String],
    /// The column that orders a key's rows within the run (the greatest wins).
    pub cursor: Option<&'a str>,
    /// The column that decides a key's rows of the same cursor value.
    pub tie_break: Option<&'a str>,
    /// Without a cursor: the last of a key's rows wins (a feed's records, in order).
    pub newest_wins: bool,
    /// The SQL predicate over an output row that makes it a delete.
    pub delete_when: Option<&'a str>,
    /// The SQL predicate over an output row that makes it a truncate (change capture):
    /// the table's rows and the run's rows ordered before it by `cursor` are dropped.
    pub truncate_when: Option<&'a str>,
}

impl<'a> MergeBy<'a> {
    /// The merge a job's row asks for (mode merge).
    pub fn of(job: &'a Job) -> Self {
        if let crate::job::From::Changes(_) = &job.from {
            // Change capture: the log's order decides, deletes and truncates included.
            use crate::job::changes::{DELETE_WHEN, SEQ_COLUMN, TRUNCATE_WHEN};
            return Self {
                key: &job.primary_key,
                cursor: Some(SEQ_COLUMN),
                tie_break: None,
                newest_wins: false,
                delete_when: Some(DELETE_WHEN),
                truncate_when: Some(TRUNCATE_WHEN),
            };
        }
        Self {
            key: &job.primary_key,
            cursor: job.cursor.as_deref(),
            tie_break: job.tie_break.as_deref(),
            newest_wins: job.records().is_some(),
            delete_when: job.delete_when.as_deref(),
            truncate_when: None,
        }
    }
}

/// How a pending attempt was settled.
#[derive(Debug)]
pub enum Recovered {
    /// Its commit is in the table, its state was not saved: this is the job's state.
    Committed(Box<JobState>),
    /// It did not commit: its files (this many data files) are gone.
    Removed(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_is_a_folder_of_the_table() {
        assert_eq!(Scope::Table.folder(), "");
        let day = DateTime::parse_from_rfc3339("2024-05-01T23:59:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        assert_eq!(Scope::snapshot(day).folder(), "snapshot=2024-05-01");
    }
}
