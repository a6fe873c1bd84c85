//! A Parquet table (`target.format: parquet`, the default): Hive-partitioned Parquet
//! files and sluice's manifests, with no log of its own. The state store is the
//! table's only record of which runs are in it: a run's files are part of the table
//! once the compare-and-set that commits its checkpoint succeeds, and a pending
//! attempt's files are removed by their run key. Readers list the folder, so a full
//! reload is not atomic for them: the replaced files go just after the commit.

use std::time::Duration;

use async_trait::async_trait;

use super::{Commit, LakeTable, MergeBy, Optimized, Recovered, Scope, Staged, Vacuumed, Written};
use crate::budget::MemoryBudget;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::sink::{self, Lake};
use crate::store::Attempt;
use crate::summary::RunSummary;

pub struct Parquet<'a> {
    lake: &'a Lake,
    job: &'a Job,
}

impl<'a> Parquet<'a> {
    pub fn new(lake: &'a Lake, job: &'a Job) -> Self {
        Self { lake, job }
    }

    fn table(&self) -> &str {
        &self.job.target.table
    }

    /// The maintenance commands are Delta's: what a Parquet table answers them.
    fn not_delta(&self, command: &str, what: &str) -> Error {
        Error::user(format!(
            "`{}` is not a Delta table in {} ({command} {what})",
            self.table(),
            self.lake.url()
        ))
    }
}

#[async_trait]
impl LakeTable for Parquet<'_> {
    async fn begin(&self, _attempt: &mut Attempt) -> Result<()> {
        Ok(())
    }

    async fn append(&self, _run: Written<'_>) -> Result<Box<dyn Staged>> {
        Ok(Box::new(StateOnly))
    }

    async fn replace(&self, _run: Written<'_>, _scope: &Scope) -> Result<Box<dyn Staged>> {
        // The replaced files go after the commit (`remove_replaced`).
        Ok(Box::new(StateOnly))
    }

    async fn merge(&self, _run: Written<'_>, _by: &MergeBy<'_>) -> Result<Box<dyn Staged>> {
        // Compiling a job refuses mode merge on a Parquet table; a merge has no commit
        // here that could replace rows atomically.
        Err(Error::internal(format!(
            "a merge into `{}`, a Parquet table: merge needs target.format: delta",
            self.table()
        )))
    }

    async fn recover(&self, attempt: &Attempt) -> Result<Recovered> {
        let removed = sink::remove_run(self.lake, &attempt.table, &attempt.run_key).await?;
        Ok(Recovered::Removed(removed))
    }

    async fn abandon(&self, run_key: &str) -> Result<usize> {
        sink::remove_run(self.lake, self.table(), run_key).await
    }

    async fn remove_replaced(&self, scope: &Scope, keep: &str) -> Result<usize> {
        let tables = sink::run_tables(self.table());
        sink::remove_other_runs(self.lake, &tables, &scope.folder(), keep).await
    }

    fn check_rewind(&self) -> Result<()> {
        Ok(())
    }

    async fn optimize(&self, _op_key: &str, _budget: MemoryBudget) -> Result<Optimized> {
        Err(self.not_delta(
            "optimize",
            "packs Delta tables: set target.format: delta and run the job",
        ))
    }

    async fn vacuum(&self, _retain: Duration, _dry_run: bool) -> Result<Vacuumed> {
        Err(self.not_delta("vacuum", "cleans Delta tables"))
    }
}

/// A Parquet table's commit: the compare-and-set of the job's state alone.
struct StateOnly;

#[async_trait]
impl Staged for StateOnly {
    async fn commit(self: Box<Self>, commit: Commit<'_>, _summary: &mut RunSummary) -> Result<()> {
        commit.save_next().await
    }
}
