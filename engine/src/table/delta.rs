//! A Delta table (`target.format: delta`): the run's files committed to the table's
//! Delta log (through [`crate::sink::delta`]), in the order that keeps its invariant: a
//! version holds a run's data if and only if its checkpoint is committed.
//!
//! - begin: the pending attempt records the job's next transaction version;
//! - stage (`append`, `replace`, `merge`): the table is read once and the run's files
//!   checked against it; a merge folds the run's rows by key and rewrites the table's
//!   files that hold its keys without them;
//! - commit: (a) the state the commit makes is recorded in the pending attempt
//!   (compare-and-set); (b) one Delta commit: files added and replaced, the job's
//!   transaction version, the run's progress in the commit info; (c) the state store
//!   takes the prepared state.
//!
//! A failure while staging removes the attempt's files (the caller's `abandon`). From
//! (a) on, nothing is removed here: whether (b) happened, even when its answer was
//! lost, is read from the log by the next run's `recover`, which then rolls forward or
//! removes the files. Replaced files stay for readers of older versions until `sluice
//! vacuum`; only the quarantine table (plain Parquet) loses them at once.

use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use deltalake_core::DeltaTable;

use super::{
    Commit, LakeTable, MergeBy, Optimized, Recovered, SNAPSHOT_COLUMN, Scope, Staged, Vacuumed,
    Written,
};
use crate::budget::MemoryBudget;
use crate::error::{Error, Result};
use crate::job::Job;
use crate::sink::delta::{self, AsOf, Change, maintain, merge};
use crate::sink::{self, Lake, Manifest, WrittenFile};
use crate::store::{Attempt, DeltaAttempt};
use crate::summary::{DeltaReport, RunSummary};

pub struct Delta<'a> {
    lake: &'a Lake,
    job: &'a Job,
}

impl<'a> Delta<'a> {
    pub fn new(lake: &'a Lake, job: &'a Job) -> Self {
        Self { lake, job }
    }

    fn table(&self) -> &str {
        &self.job.target.table
    }

    /// Reads the table once (what the commit is checked against) and checks that the
    /// run's files fit it; `replaces`: the run replaces the whole table.
    async fn read(&self, run: &Written<'_>, replaces: bool) -> Result<Option<DeltaTable>> {
        let table = self.table();
        let read = delta::open(self.lake, table, AsOf::Latest).await?;
        delta::check_new_table(
            self.lake,
            (table, read.as_ref()),
            &run.manifest.files,
            replaces,
        )
        .await?;
        delta::check_schema((table, read.as_ref()), &run.schema, replaces)?;
        Ok(read)
    }

    /// A commit of the run's own files, as `change`.
    fn staged(&self, run: &Written<'_>, read: Option<DeltaTable>, change: Change) -> DeltaCommit {
        DeltaCommit {
            lake: self.lake.clone(),
            table: self.table().to_string(),
            target_size: self.job.target.file_size,
            read,
            files: run.manifest.files.clone(),
            change,
            schema: run.schema.clone(),
            partition_by: self.job.target.partition_by.clone(),
            report: DeltaReport::default(),
            manifest: run.manifest.clone(),
        }
    }
}

#[async_trait]
impl LakeTable for Delta<'_> {
    async fn begin(&self, attempt: &mut Attempt) -> Result<()> {
        let app = delta::app_id(&self.job.id);
        let txn = delta::txn_version(self.lake, self.table(), &app).await? + 1;
        attempt.delta = Some(DeltaAttempt {
            txn,
            prepared: None,
        });
        Ok(())
    }

    async fn append(&self, run: Written<'_>) -> Result<Box<dyn Staged>> {
        let read = self.read(&run, false).await?;
        Ok(Box::new(self.staged(&run, read, Change::Append)))
    }

    async fn replace(&self, run: Written<'_>, scope: &Scope) -> Result<Box<dyn Staged>> {
        let read = self.read(&run, *scope == Scope::Table).await?;
        let staged = match scope {
            Scope::Table => self.staged(&run, read, Change::Overwrite),
            Scope::Snapshot(day) => {
                let change = Change::ReplacePartition {
                    column: SNAPSHOT_COLUMN.into(),
                    value: day.clone(),
                };
                let mut staged = self.staged(&run, read, change);
                staged.schema = delta::with_snapshot_column(&staged.schema);
                staged.partition_by.insert(0, SNAPSHOT_COLUMN.to_string());
                staged
            }
        };
        Ok(Box::new(staged))
    }

    async fn merge(&self, run: Written<'_>, by: &MergeBy<'_>) -> Result<Box<dyn Staged>> {
        let read = self.read(&run, false).await?;
        let merged = merge::merge(merge::MergeInput {
            lake: self.lake,
            target: &self.job.target,
            run_key: &run.manifest.run_key,
            schema: run.schema.clone(),
            files: run.manifest.files.clone(),
            key: by.key,
            cursor: by.cursor,
            tie_break: by.tie_break,
            newest_wins: by.newest_wins,
            delete_when: by.delete_when,
            truncate_when: by.truncate_when,
            read: read.as_ref(),
            pool: run.budget.pool(),
            writer: run.budget.writer(),
        })
        .await?;
        if merged.ties.tied > 0 {
            tracing::info!(
                job_id = %self.job.id,
                ties = merged.ties.tied,
                by_tie_break = merged.ties.tied.saturating_sub(merged.ties.by_rule),
                by_rule = merged.ties.by_rule,
                "keys with rows of the same cursor value in the run: source.tie_break decided some; the rest went to the delete over an upsert, then to the greatest row by the other columns"
            );
        }
        let rewritten = merged.removes.len();
        let mut staged = self.staged(&run, read, Change::Rewrite(merged.removes));
        staged.files = merged.files;
        staged.report = DeltaReport {
            matched: merged.matched,
            deletes: merged.deletes,
            ties: merged.ties.tied,
            ties_by_rule: merged.ties.by_rule,
            rewritten_files: rewritten,
            ..DeltaReport::default()
        };
        Ok(Box::new(staged))
    }

    async fn recover(&self, attempt: &Attempt) -> Result<Recovered> {
        if let Some(DeltaAttempt {
            txn,
            prepared: Some(next),
        }) = &attempt.delta
        {
            let app = delta::app_id(&self.job.id);
            if delta::holds_run(self.lake, &attempt.table, &app, *txn, &attempt.run_key).await? {
                return Ok(Recovered::Committed(next.clone()));
            }
        }
        let removed = sink::remove_run(self.lake, &attempt.table, &attempt.run_key).await?;
        Ok(Recovered::Removed(removed))
    }

    async fn abandon(&self, run_key: &str) -> Result<usize> {
        sink::remove_run(self.lake, self.table(), run_key).await
    }

    async fn remove_replaced(&self, scope: &Scope, keep: &str) -> Result<usize> {
        // The table's replaced files stay for readers of older versions until vacuum;
        // its quarantine table is plain Parquet.
        let quarantine = [crate::quality::quarantine_table(self.table())];
        sink::remove_other_runs(self.lake, &quarantine, &scope.folder(), keep).await
    }

    fn check_rewind(&self) -> Result<()> {
        Err(Error::user(format!(
            "job `{}` writes a Delta table, whose log holds every run's files: taking runs out is not a rewind there (read an earlier version with `sluice query --as-of VERSION`)",
            self.job.id
        )))
    }

    async fn optimize(&self, op_key: &str, budget: MemoryBudget) -> Result<Optimized> {
        maintain::optimize(
            self.lake,
            &self.job.target,
            op_key,
            budget.pool(),
            budget.writer(),
        )
        .await
    }

    async fn vacuum(&self, retain: Duration, dry_run: bool) -> Result<Vacuumed> {
        maintain::vacuum(self.lake, self.table(), retain, dry_run).await
    }
}

/// A staged Delta commit: the table as the run read it (read once: checked, merged
/// into, committed over), and what the commit adds and removes.
struct DeltaCommit {
    lake: Lake,
    table: String,
    target_size: u64,
    read: Option<DeltaTable>,
    files: Vec<WrittenFile>,
    change: Change,
    schema: SchemaRef,
    partition_by: Vec<String>,
    report: DeltaReport,
    /// The run's manifest, for the progress the commit's info records.
    manifest: Manifest,
}

#[async_trait]
impl Staged for DeltaCommit {
    async fn commit(self: Box<Self>, commit: Commit<'_>, summary: &mut RunSummary) -> Result<()> {
        let Commit {
            store,
            job_id,
            state,
            next,
        } = commit;
        let Some(pending) = state.value.pending.as_mut() else {
            return Err(Error::internal("a Delta run without its pending attempt"));
        };
        let txn = pending
            .delta
            .as_ref()
            .map(|d| d.txn)
            .ok_or_else(|| Error::internal("a Delta run without its transaction version"))?;
        pending.delta = Some(DeltaAttempt {
            txn,
            prepared: Some(Box::new(next.clone())),
        });
        state.version = store.save(job_id, &state.value, state.version).await?;
        crate::failpoint::reached("prepared").await;
        let this = *self;
        let progress = serde_json::json!({
            "run_id": this.manifest.run_id,
            "run_key": this.manifest.run_key,
            "window": this.manifest.window,
            "watermark": next.watermark,
            "rows": this.manifest.rows,
        });
        let mut report = this.report;
        report.version = delta::commit(
            &this.lake,
            delta::Commit {
                table: &this.table,
                read: this.read.as_ref(),
                schema: this.schema,
                partition_by: this.partition_by,
                files: &this.files,
                change: this.change,
                target_size: this.target_size,
                txn: Some((delta::app_id(job_id), txn)),
                progress,
            },
        )
        .await?;
        crate::failpoint::reached("delta-committed").await;
        summary.files = this.files.len();
        summary.bytes = this.files.iter().map(|f| f.bytes).sum();
        summary.delta = Some(report);
        state.value = next;
        state.version = store.save(job_id, &state.value, state.version).await?;
        Ok(())
    }
}
