//! Steps 6–7 of a run into a Delta table (`target.format: delta`), in the order that
//! keeps the invariant of [`crate::sink::delta`]: a version holds a run's data if and
//! only if its checkpoint is committed.
//!
//! 6a. (merge) the run's rows are folded by key and the table's files that hold its
//!     keys rewritten without them;
//! 6b. the state the commit makes is recorded in the pending attempt (compare-and-set);
//! 6c. one Delta commit: files added and replaced, the job's transaction version, the
//!     run's progress in the commit info;
//! 6d. the state store takes the prepared state.
//!
//! A failure before 6b removes the attempt's files. From 6b on, nothing is removed
//! here: whether 6c happened (even when its answer was lost) is read from the log by the
//! next run's recovery, which then rolls forward or removes the files.

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::SchemaRef;

use super::{Context, RunSummary};
use crate::budget::MemoryBudget;
use crate::error::{Error, Result};
use crate::job::{Job, Mode};
use crate::sink::delta::{self, AsOf, Change, Commit, merge};
use crate::sink::{Manifest, WrittenFile};
use crate::store::{DeltaAttempt, JobState, Versioned};
use crate::summary::DeltaReport;
use deltalake_core::DeltaTable;

/// What the run wrote, for its commit.
pub struct Written<'a> {
    pub manifest: &'a Manifest,
    /// The output's columns (the contract's), partition columns included.
    pub schema: SchemaRef,
    pub budget: MemoryBudget,
    pub now: DateTime<Utc>,
}

/// The transaction version a new attempt on `job`'s Delta table will commit.
pub async fn next_txn(job: &Job, ctx: &Context) -> Result<i64> {
    Ok(delta::txn_version(&ctx.lake, &job.target.table, &delta::app_id(&job.id)).await? + 1)
}

/// What the commit will do (6a): on failure nothing is committed and the caller
/// removes the attempt's files.
pub struct Planned {
    /// The table as the run read it, read once: checked, merged into, committed over.
    read: Option<DeltaTable>,
    files: Vec<WrittenFile>,
    change: Change,
    schema: SchemaRef,
    partition_by: Vec<String>,
    report: DeltaReport,
}

pub async fn plan(job: &Job, ctx: &Context, written: &Written<'_>) -> Result<Planned> {
    let files = written.manifest.files.clone();
    let table = job.target.table.as_str();
    let read = delta::open(&ctx.lake, table, AsOf::Latest).await?;
    let replaces = job.mode == Mode::Full;
    delta::check_new_table(&ctx.lake, (table, read.as_ref()), &files, replaces).await?;
    delta::check_schema((table, read.as_ref()), &written.schema, replaces)?;
    let mut planned = Planned {
        read: None,
        files: Vec::new(),
        change: Change::Append,
        schema: written.schema.clone(),
        partition_by: job.target.partition_by.clone(),
        report: DeltaReport::default(),
    };
    match job.mode {
        Mode::Full => planned.change = Change::Overwrite,
        Mode::Incremental => {}
        Mode::Snapshot => {
            planned.schema = delta::with_snapshot_column(&planned.schema);
            planned.partition_by.insert(0, "snapshot".to_string());
            planned.change = Change::ReplacePartition {
                column: "snapshot".into(),
                value: written.now.format("%Y-%m-%d").to_string(),
            };
        }
        Mode::Merge => {
            let merged = merge::merge(merge::MergeInput {
                lake: &ctx.lake,
                target: &job.target,
                run_key: &written.manifest.run_key,
                schema: planned.schema.clone(),
                files,
                key: &job.primary_key,
                cursor: job.cursor.as_deref(),
                tie_break: job.tie_break.as_deref(),
                newest_wins: job.records().is_some(),
                delete_when: job.delete_when.as_deref(),
                read: read.as_ref(),
                pool: written.budget.pool(),
                writer: written.budget.writer(),
            })
            .await?;
            planned.report.matched = merged.matched;
            planned.report.deletes = merged.deletes;
            planned.report.ties = merged.ties.tied;
            planned.report.ties_by_rule = merged.ties.by_rule;
            if merged.ties.tied > 0 {
                tracing::info!(
                    job_id = %job.id,
                    ties = merged.ties.tied,
                    by_tie_break = merged.ties.tied.saturating_sub(merged.ties.by_rule),
                    by_rule = merged.ties.by_rule,
                    "keys with rows of the same cursor value in the run: source.tie_break decided some; the rest went to the delete over an upsert, then to the greatest row by the other columns"
                );
            }
            planned.report.rewritten_files = merged.removes.len();
            planned.files = merged.files;
            planned.change = Change::Rewrite(merged.removes);
            planned.read = read;
            return Ok(planned);
        }
    }
    planned.files = files;
    planned.read = read;
    Ok(planned)
}

/// Commits the run (6b–6d); `next` is the state once committed. A failure leaves the
/// attempt pending for the next run's recovery to settle.
pub async fn commit(
    job: &Job,
    ctx: &Context,
    (state, next): (&mut Versioned<JobState>, JobState),
    (planned, written): (Planned, &Written<'_>),
    summary: &mut RunSummary,
) -> Result<()> {
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
    state.version = ctx.store.save(&job.id, &state.value, state.version).await?;
    crate::failpoint::reached("prepared").await;
    let progress = serde_json::json!({
        "run_id": written.manifest.run_id,
        "run_key": written.manifest.run_key,
        "window": written.manifest.window,
        "watermark": next.watermark,
        "rows": written.manifest.rows,
    });
    let mut report = planned.report;
    report.version = delta::commit(
        &ctx.lake,
        Commit {
            table: &job.target.table,
            read: planned.read.as_ref(),
            schema: planned.schema,
            partition_by: planned.partition_by,
            files: &planned.files,
            change: planned.change,
            target_size: job.target.file_size,
            txn: Some((delta::app_id(&job.id), txn)),
            progress,
        },
    )
    .await?;
    crate::failpoint::reached("delta-committed").await;
    summary.files = planned.files.len();
    summary.bytes = planned.files.iter().map(|f| f.bytes).sum();
    summary.delta = Some(report);
    state.value = next;
    state.version = ctx.store.save(&job.id, &state.value, state.version).await?;
    Ok(())
}

/// Recovery of a Delta attempt that recorded its prepared state (6b): whether its
/// commit is in the log. `Some(state)`: it is, and the run's state is this.
pub async fn committed_state(
    job: &Job,
    ctx: &Context,
    attempt: &crate::store::Attempt,
) -> Result<Option<JobState>> {
    let Some(DeltaAttempt {
        txn,
        prepared: Some(next),
    }) = &attempt.delta
    else {
        return Ok(None);
    };
    let app = delta::app_id(&job.id);
    let held = delta::holds_run(&ctx.lake, &attempt.table, &app, *txn, &attempt.run_key).await?;
    Ok(held.then(|| next.as_ref().clone()))
}
