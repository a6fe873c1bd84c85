//! Table maintenance: optimize (small files bin-packed into files of the job's
//! `file_size`) and vacuum (files no version within the retention needs, removed).
//!
//! Both are safe while readers read: optimize commits a version with the same rows
//! (`dataChange: false`, the old files stay for readers of older versions), vacuum
//! removes only what no version in the retention reads. The caller holds the job's
//! lease, so no run of the job commits meanwhile; another writer's commit is detected
//! as a conflict and the optimize's files are removed.

use std::collections::BTreeMap;

use deltalake_core::operations::vacuum::VacuumMode;

use super::scan::{DeltaFiles, LiveFile};
use super::{AsOf, Change, Commit, classify};
use crate::budget::WriterBudget;
use crate::error::{Error, Result};
use crate::job::Target;
use crate::sink::Lake;

/// What an optimize did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Optimized {
    pub version: Option<u64>,
    pub partitions: usize,
    pub removed: usize,
    pub added: usize,
    pub rows: u64,
}

/// A file counts as small below this share of the target size.
const SMALL: f64 = 0.75;

/// Bin-packs each partition's small files into files of `target.file_size`: one commit
/// that removes them and adds the packed ones (rows unchanged). `op_key` names the new
/// files (16 hex digits, like a run key), so that a crash's leftovers are known.
pub async fn optimize(
    lake: &Lake,
    target: &Target,
    op_key: &str,
    pool: u64,
    writer: WriterBudget,
) -> Result<Optimized> {
    let table = &target.table;
    let Some(delta) = super::open(lake, table, AsOf::Latest).await? else {
        return Err(Error::user(format!(
            "`{table}` is not a Delta table in {} (optimize packs Delta tables: set target.format: delta and run the job)",
            lake.url()
        )));
    };
    let files = DeltaFiles::of(lake, table, &delta)?;
    let small = (target.file_size as f64 * SMALL) as u64;
    let mut groups: BTreeMap<Vec<(String, Option<String>)>, Vec<&LiveFile>> = BTreeMap::new();
    for file in files.files().filter(|f| f.size < small) {
        let mut key: Vec<_> = file.partition_values.clone().into_iter().collect();
        key.sort();
        groups.entry(key).or_default().push(file);
    }
    groups.retain(|_, files| files.len() > 1);
    if groups.is_empty() {
        return Ok(Optimized::default());
    }
    let ctx = super::session(lake, pool)?;
    let schema = std::sync::Arc::new(
        datafusion::datasource::TableProvider::schema(&files)
            .as_ref()
            .clone(),
    );
    let columns = super::column_list(&schema);
    let target = Target {
        partition_by: files.partition_columns().to_vec(),
        ..target.clone()
    };
    let out = super::Output {
        lake,
        target: &target,
        schema: &schema,
        key: op_key,
        writer,
    };
    // One partition at a time: its packed files fill up in turn.
    let mut written = Vec::new();
    for group in groups.values() {
        let chosen: std::collections::BTreeSet<&str> =
            group.iter().map(|f| f.path.as_str()).collect();
        let packed = files.only(|f| chosen.contains(f.path.as_str()));
        let pass = async {
            ctx.deregister_table("packed")
                .and_then(|_| ctx.register_table("packed", std::sync::Arc::new(packed)))
                .map_err(|e| crate::error::classify_datafusion(e, "optimize"))?;
            super::write_sql(&ctx, &format!("SELECT {columns} FROM packed"), &out, "o").await
        };
        match pass.await {
            Ok(files) => written.extend(files),
            Err(e) => {
                crate::sink::remove_run(lake, table, op_key).await.ok();
                return Err(e);
            }
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    let removes = groups
        .values()
        .flatten()
        .map(|f| super::remove(f, now))
        .collect::<Vec<_>>();
    let removed = removes.len();
    let rows = written.iter().map(|f| f.rows).sum();
    crate::failpoint::reached("optimize-written").await;
    let committed = super::commit(
        lake,
        Commit {
            table,
            read: Some(&delta),
            schema: schema.clone(),
            partition_by: target.partition_by.clone(),
            files: &written,
            change: Change::Compact(removes),
            target_size: target.file_size,
            txn: None,
            progress: serde_json::json!({ "optimize": op_key }),
        },
    )
    .await;
    match committed {
        Ok(version) => Ok(Optimized {
            version: Some(version),
            partitions: groups.len(),
            removed,
            added: written.len(),
            rows,
        }),
        Err(e) => {
            crate::sink::remove_run(lake, table, op_key).await.ok();
            Err(e)
        }
    }
}

/// What a vacuum did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Vacuumed {
    pub deleted: usize,
    pub dry_run: bool,
    /// The files removed (or, on a dry run, that would be), relative to the table's
    /// folder as the store names them, sorted.
    pub files: Vec<String>,
}

/// Removes the files of `table` that no version younger than `retain` reads, and files
/// no version ever committed (a crashed run's or optimize's) once older than `retain`.
pub async fn vacuum(
    lake: &Lake,
    table: &str,
    retain: std::time::Duration,
    dry_run: bool,
) -> Result<Vacuumed> {
    let Some(delta) = super::open(lake, table, AsOf::Latest).await? else {
        return Err(Error::user(format!(
            "`{table}` is not a Delta table in {} (vacuum cleans Delta tables)",
            lake.url()
        )));
    };
    let retention =
        chrono::Duration::from_std(retain).map_err(|e| Error::user(format!("--retain: {e}")))?;
    let (_, metrics) = delta
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .with_dry_run(dry_run)
        .await
        .map_err(|e| classify(e, &format!("vacuuming {table}")))?;
    let mut files = metrics.files_deleted;
    files.sort();
    Ok(Vacuumed {
        deleted: files.len(),
        dry_run,
        files,
    })
}
