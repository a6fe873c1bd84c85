//! `sluice optimize` and `sluice vacuum`: maintenance of a job's table, as its format
//! offers it (a Delta table's; a Parquet table refuses both), under the job's lease, so
//! that no run of the job commits meanwhile (a run started during it is refused as busy
//! and retried by its scheduler).

use std::time::Duration;

use super::Context;
use crate::budget::MemoryBudget;
use crate::error::Result;
use crate::job::Job;
use crate::summary::human_bytes;
use crate::table;

/// Bin-packs the small files of the job's table; returns what it did, line by line.
pub async fn optimize(job: &Job, ctx: &Context) -> Result<Vec<String>> {
    let op_key = op_key();
    let work = async {
        let contract = crate::catalog::current_contract(job, ctx.store.as_ref()).await?;
        let columns = contract.as_ref().map_or(16, Vec::len);
        let budget = MemoryBudget::new(ctx.memory_limit, columns, ctx.lake.upload_part())?;
        table::open(&ctx.lake, job).optimize(&op_key, budget).await
    };
    let done = super::holding_lease(job, ctx, &format!("optimize-{op_key}"), work).await?;
    Ok(vec![match done.version {
        None => format!(
            "{}: nothing to pack (no partition has two files under three quarters of {})",
            job.target.table,
            human_bytes(job.target.file_size)
        ),
        Some(version) => format!(
            "{}: version {version} packs {} files into {} in {} partition{} ({} rows, unchanged)",
            job.target.table,
            done.removed,
            done.added,
            done.partitions,
            if done.partitions == 1 { "" } else { "s" },
            done.rows
        ),
    }])
}

/// Removes the files of the job's table that no version younger than `retain` reads.
pub async fn vacuum(
    job: &Job,
    ctx: &Context,
    retain: Duration,
    dry_run: bool,
) -> Result<Vec<String>> {
    let lake_table = table::open(&ctx.lake, job);
    let work = lake_table.vacuum(retain, dry_run);
    let done = super::holding_lease(job, ctx, &format!("vacuum-{}", op_key()), work).await?;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut lines = vec![format!(
        "{}: {verb} {} file{} that no version of the last {}h reads",
        job.target.table,
        done.deleted,
        if done.deleted == 1 { "" } else { "s" },
        retain.as_secs() / 3600
    )];
    // A dry run is for deciding: it names every file (as `--help` promises); a real
    // vacuum names them too, so that what went is on record.
    lines.extend(
        done.files
            .iter()
            .map(|f| format!("  {verb} {}/{f}", job.target.table)),
    );
    Ok(lines)
}

/// 16 hex digits naming an optimize's files, as a run key names a run's.
fn op_key() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}
