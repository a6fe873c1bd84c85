//! Delta Lake tables, through delta-rs: sluice's own writer makes the Parquet files (its
//! speed and memory budget stay), and a run commits them to the table's `_delta_log`
//! together with its progress.
//!
//! **The invariant: a Delta version holds a run's data if and only if that run's
//! checkpoint is committed.** The state store and the log are two stores, so "committed"
//! means: in the state store, or recorded in the log in a way the next run finishes.
//! 1. Before writing, the run records its attempt as pending, with the transaction
//!    version it will commit: the table's application-transaction (`txn`) version for
//!    the job (`sluice:<job id>`) plus one.
//! 2. It writes its files, named with its run key as on plain Parquet.
//! 3. It records in the pending attempt the state its commit makes (the checkpoint, the
//!    run record, the contract).
//! 4. One Delta commit: the files it adds, those it replaces removed, the transaction
//!    `(sluice:<job id>, N)`, and the progress in the commit's info — atomic for every
//!    reader.
//! 5. The state store takes the prepared state and the pending mark goes.
//!
//! A crash before 4 leaves the table's transaction version below N: no version holds the
//! files, and the next run removes them (by their run key) and reads the same window
//! again. A crash between 4 and 5 leaves it at N: the next run takes the prepared state
//! (rolls forward) and removes nothing. Another writer committing meanwhile (sluice's own
//! runs are kept apart by the lease): delta-rs checks the conflict; an append is retried
//! over the new version, a replace or merge whose files it touched fails as busy, and the
//! next run starts over.

pub mod maintain;
pub mod merge;
mod open;
pub mod scan;

pub use open::{AsOf, open};

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Utc;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, MetadataExt, Remove, StructType, Transaction};
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableError};
use object_store::ObjectStore;
use object_store::prefix::PrefixStore;

use self::scan::LiveFile;
use super::writer::unescape_partition_value;
use super::{Lake, PartitionedWriter, WrittenFile};
use crate::budget::WriterBudget;
use crate::error::{Error, Result, classify_datafusion};
use crate::job::Target;

/// The folder that makes a table folder a Delta table.
pub const LOG_DIR: &str = "_delta_log";

/// The application id under which a job's runs record their progress in the log.
pub fn app_id(job_id: &str) -> String {
    format!("sluice:{job_id}")
}

/// The log store of `table`: commits are conditional puts (`If-None-Match` on S3, an
/// exclusive create in a folder), so two writers of one version cannot both succeed and
/// no lock table is needed.
pub fn log_store(lake: &Lake, table: &str) -> Result<LogStoreRef> {
    let (root, location) = lake.table_location(table)?;
    let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(
        root.clone(),
        object_store::path::Path::from_url_path(location.path())
            .map_err(|e| Error::internal(format!("table location {location}: {e}")))?,
    ));
    Ok(default_logstore(
        prefixed,
        root,
        &location,
        &StorageConfig::default(),
    ))
}

/// Whether the lake holds `table` as a Delta table.
pub async fn exists(lake: &Lake, table: &str) -> Result<bool> {
    lake.holds_any(&lake.path(&format!("{table}/{LOG_DIR}"))?)
        .await
}

/// The last transaction version `app` committed to `table` (0: none).
pub async fn txn_version(lake: &Lake, table: &str, app: &str) -> Result<i64> {
    match open(lake, table, AsOf::Latest).await? {
        Some(delta) => txn_of(&delta, table, app).await,
        None => Ok(0),
    }
}

/// The last transaction version `app` committed to the version `delta` is loaded at.
async fn txn_of(delta: &DeltaTable, table: &str, app: &str) -> Result<i64> {
    delta
        .snapshot()
        .map_err(|e| classify(e, &format!("the Delta table {table}")))?
        .transaction_version(delta.log_store().as_ref(), app)
        .await
        .map(|v| v.unwrap_or(0))
        .map_err(|e| classify(e, &format!("reading {table}'s transactions")))
}

/// Whether the log holds the commit of the run `run_key`, which recorded transaction
/// version `txn` for `app`: the transaction version has reached it and one of the commits
/// since names the run in its info (two deployments sharing a lake might share an
/// application id; the run key is the run's own).
pub async fn holds_run(
    lake: &Lake,
    table: &str,
    app: &str,
    txn: i64,
    run_key: &str,
) -> Result<bool> {
    use futures::TryStreamExt;
    let Some(delta) = open(lake, table, AsOf::Latest).await? else {
        return Ok(false);
    };
    if txn_of(&delta, table, app).await? < txn {
        return Ok(false);
    }
    let mut history = delta.history(Some(HISTORY_SEARCHED));
    while let Some(info) = history
        .try_next()
        .await
        .map_err(|e| classify(e, &format!("reading {table}'s history")))?
    {
        if info
            .info
            .get("sluice")
            .and_then(|s| s.get("run_key"))
            .and_then(|k| k.as_str())
            == Some(run_key)
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// How many of the latest commits recovery searches for a run's: the commits since a
/// killed run (a run takes the job's lease, so only other writers' commits come between).
const HISTORY_SEARCHED: usize = 1000;

/// Before a run's first commit makes the folder of `table` a Delta table (`read`: the
/// table the run read, `None` when there is none yet): refused where the folder already
/// holds files other than the run's `own` (a Parquet table's, written before the job's
/// format became delta), unless the run replaces them (a full run): no version would
/// hold them, readers of the Delta table would not see them, and vacuum would remove
/// them.
pub async fn check_new_table(
    lake: &Lake,
    (table, read): (&str, Option<&DeltaTable>),
    own: &[WrittenFile],
    replaces: bool,
) -> Result<()> {
    if replaces || read.is_some() {
        return Ok(());
    }
    let own: std::collections::HashSet<&str> = own.iter().map(|f| f.path.as_str()).collect();
    let foreign = lake
        .list(&lake.table_dir(table)?)
        .await?
        .into_iter()
        .map(|o| lake.relative(&o.location))
        .find(|p| !own.contains(p.as_str()));
    match foreign {
        None => Ok(()),
        Some(path) => Err(Error::user(format!(
            "the folder of table `{table}` already holds files that no Delta log lists ({path}, …): a Parquet table's, written before the job's target.format became delta; a Delta table there would hide them. Run the job once in mode full (which replaces them), or give it a new target.table"
        ))),
    }
}

/// Before a run's commit (and before it records what it will commit): its output may add
/// columns to the table's, not change their types (that is Delta's type-widening table
/// feature, which sluice does not write), unless the run replaces the table (a full run).
pub fn check_schema(
    (table, read): (&str, Option<&DeltaTable>),
    output: &Schema,
    replaces: bool,
) -> Result<()> {
    let Some(delta) = read.filter(|_| !replaces) else {
        return Ok(());
    };
    let current = delta
        .snapshot()
        .map_err(|e| classify(e, &format!("the Delta table {table}")))?
        .schema();
    let changed: Vec<String> = delta_schema(output)?
        .fields()
        .filter_map(|f| {
            let old = current.field(f.name())?;
            (old.data_type() != f.data_type()).then(|| {
                format!(
                    "`{}` from {} to {}",
                    f.name(),
                    old.data_type(),
                    f.data_type()
                )
            })
        })
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    Err(Error::user(format!(
        "the output changes the type of {} in Delta table `{table}`, whose columns keep their types: run the job once in mode full (it replaces the table's schema), or keep the contract's types",
        changed.join(", ")
    )))
}

/// What a run's commit changes in the table.
pub enum Change {
    /// Adds the files (incremental runs and feeds).
    Append,
    /// Replaces every file (full runs): one version holds the old rows, the next the new.
    Overwrite,
    /// Replaces the files of one partition value (`snapshot` = the run's day).
    ReplacePartition { column: String, value: String },
    /// Removes these files (a merge's rewritten ones) and adds the run's.
    Rewrite(Vec<Remove>),
    /// Removes these files and adds the same rows packed into fewer (optimize): no
    /// data changes, so a concurrent append does not conflict with it.
    Compact(Vec<Remove>),
}

/// One run's commit.
pub struct Commit<'a> {
    pub table: &'a str,
    /// The version the run read (what its merge, optimize or checks saw): the commit's
    /// conflicts are checked against every commit since. `None`: the latest.
    pub read: Option<&'a DeltaTable>,
    /// The output's columns, partition columns included, in the table's order.
    pub schema: SchemaRef,
    pub partition_by: Vec<String>,
    pub files: &'a [WrittenFile],
    pub change: Change,
    /// The size files roll at (recorded by an optimize).
    pub target_size: u64,
    /// `(application id, version)` recorded with the data (a run's; none for optimize).
    pub txn: Option<(String, i64)>,
    /// What the commit's info says of the run (its window, run key, checkpoint).
    pub progress: serde_json::Value,
}

/// Commits a run's files; returns the table version that holds them. A table's first
/// commit creates it: version 0 holds the first run's data (no empty version comes
/// before it, so `--as-of 0` reads the first load).
pub async fn commit(lake: &Lake, c: Commit<'_>) -> Result<u64> {
    let log = log_store(lake, c.table)?;
    let opened;
    let delta = match c.read {
        Some(d) => d,
        None => {
            opened = match open(lake, c.table, AsOf::Latest).await? {
                Some(d) => d,
                None => match create(lake, &c, log.clone()).await? {
                    Created::Holding(version) => return Ok(version),
                    Created::ByAnother(d) => d,
                },
            };
            &opened
        }
    };
    let snapshot = delta
        .snapshot()
        .map_err(|e| classify(e, &format!("the Delta table {}", c.table)))?;
    let mut actions = Vec::new();
    // `evolve`: columns the contract gained join the table's schema in the same commit; a
    // full run replaces the schema with its output's.
    let wanted = delta_schema(&c.schema)?;
    let current = snapshot.schema();
    let added: Vec<_> = wanted
        .fields()
        .filter(|f| current.field(f.name()).is_none())
        .cloned()
        .collect();
    let replaced = matches!(c.change, Change::Overwrite) && wanted != *current;
    if replaced || !added.is_empty() {
        let merged = if replaced {
            Ok(wanted.clone())
        } else {
            StructType::try_new(current.fields().cloned().chain(added))
        }
        .map_err(|e| Error::internal(format!("the evolved schema of {}: {e}", c.table)))?;
        let metadata = snapshot
            .metadata()
            .clone()
            .with_schema(&merged)
            .map_err(|e| Error::internal(format!("evolving the schema of {}: {e}", c.table)))?;
        actions.push(Action::Metadata(metadata));
    }
    let now = Utc::now().timestamp_millis();
    let (mode, predicate) = match &c.change {
        Change::Append => (SaveMode::Append, None),
        Change::Overwrite => {
            for file in snapshot.log_data().iter() {
                actions.push(Action::Remove(file.remove_action(true)));
            }
            (SaveMode::Overwrite, None)
        }
        Change::ReplacePartition { column, value } => {
            for file in snapshot.log_data().iter() {
                if file.partition_values_map().get(column) == Some(&Some(value.clone())) {
                    actions.push(Action::Remove(file.remove_action(true)));
                }
            }
            (SaveMode::Overwrite, Some(format!("{column} = '{value}'")))
        }
        Change::Rewrite(removes) => {
            actions.extend(removes.iter().cloned().map(Action::Remove));
            (SaveMode::Append, None)
        }
        Change::Compact(removes) => {
            actions.extend(removes.iter().cloned().map(|r| {
                Action::Remove(Remove {
                    data_change: false,
                    ..r
                })
            }));
            (SaveMode::Append, None)
        }
    };
    let compact = matches!(c.change, Change::Compact(_));
    for file in c.files {
        let mut add = add_action(c.table, file, now)?;
        add.data_change = !compact;
        actions.push(Action::Add(add));
    }
    let properties = commit_properties(&c);
    let operation = if compact {
        DeltaOperation::Optimize {
            predicate: None,
            target_size: i64::try_from(c.target_size).unwrap_or(i64::MAX),
        }
    } else {
        DeltaOperation::Write {
            mode,
            partition_by: (!c.partition_by.is_empty()).then(|| c.partition_by.clone()),
            predicate,
        }
    };
    let done = CommitBuilder::from(properties)
        .with_actions(actions)
        .build(Some(snapshot), log, operation)
        .await
        .map_err(|e| classify(e, &format!("committing to the Delta table {}", c.table)))?;
    Ok(done.version())
}

/// A session whose queries hold at most `pool` bytes and read the lake.
pub fn session(lake: &Lake, pool: u64) -> Result<SessionContext> {
    let runtime = crate::transform::bounded_runtime(pool, CacheManagerConfig::default())?;
    let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
    lake.register_store(&ctx)?;
    Ok(ctx)
}

/// The remove action of a live file.
pub fn remove(file: &LiveFile, now: i64) -> Remove {
    Remove {
        path: file.path.clone(),
        data_change: true,
        deletion_timestamp: Some(now),
        extended_file_metadata: Some(true),
        partition_values: Some(file.partition_values.clone()),
        size: i64::try_from(file.size).ok(),
        ..Remove::default()
    }
}

/// Where rows computed by a query go: new files of `target`, named with `key` and a tag.
pub struct Output<'a> {
    pub lake: &'a Lake,
    pub target: &'a Target,
    /// The table's columns, partition columns included.
    pub schema: &'a SchemaRef,
    pub key: &'a str,
    pub writer: WriterBudget,
}

/// Runs `sql` and writes its rows as files tagged `tag` (`part-<key>-<tag><n>.parquet`);
/// a column of a narrower type (an older file's) is cast to the output's.
pub async fn write_sql(
    ctx: &SessionContext,
    sql: &str,
    out: &Output<'_>,
    tag: &'static str,
) -> Result<Vec<WrittenFile>> {
    use futures::StreamExt;
    let mut stream = ctx
        .sql(sql)
        .await
        .map_err(|e| classify_datafusion(e, "planning the rewrite"))?
        .execute_stream()
        .await
        .map_err(|e| classify_datafusion(e, "the rewrite"))?;
    let mut writer = PartitionedWriter::new(
        out.lake.clone(),
        out.target,
        out.key,
        out.schema,
        None,
        out.writer,
    )?
    .tagged(tag);
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| classify_datafusion(e, "the rewrite"))?;
        let columns = batch
            .columns()
            .iter()
            .zip(out.schema.fields())
            .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::user(format!(
                    "a row of the table does not fit the output's types: {e}"
                ))
            })?;
        let batch = RecordBatch::try_new(out.schema.clone(), columns)
            .map_err(|e| Error::internal(format!("the rewritten rows: {e}")))?;
        writer.write(&batch).await?;
    }
    writer.finish().await
}

/// An SQL identifier, quoted.
pub fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"a", "b", …`: every column of `schema`, quoted, in order.
pub fn column_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What creating a table did.
enum Created {
    /// The table is created, its version 0 holding the commit's files.
    Holding(u64),
    /// Another writer created it first: the commit goes over theirs.
    ByAnother(DeltaTable),
}

/// Creates the table with the commit's files, progress and transaction in its version 0
/// (one commit: its schema, partition columns and first data). A commit that removes
/// files has no table to remove them from: it adds its files the same way.
async fn create(lake: &Lake, c: &Commit<'_>, log: LogStoreRef) -> Result<Created> {
    let schema = delta_schema(&c.schema)?;
    let now = Utc::now().timestamp_millis();
    let adds = c
        .files
        .iter()
        .map(|f| add_action(c.table, f, now).map(Action::Add))
        .collect::<Result<Vec<_>>>()?;
    let created = CreateBuilder::new()
        .with_log_store(log)
        .with_table_name(c.table)
        .with_columns(schema.fields().cloned())
        .with_partition_columns(c.partition_by.clone())
        .with_actions(adds)
        .with_commit_properties(commit_properties(c))
        // Never `Ignore`: a table that appeared meanwhile must not swallow these files.
        .with_save_mode(SaveMode::ErrorIfExists)
        .await;
    match created {
        Ok(table) => Ok(Created::Holding(table.version().unwrap_or(0))),
        // Another writer created it first: commit over theirs.
        Err(_) if exists(lake, c.table).await? => open(lake, c.table, AsOf::Latest)
            .await?
            .map(Created::ByAnother)
            .ok_or_else(|| Error::busy(format!("the Delta table {} vanished", c.table))),
        Err(e) => Err(classify(
            e,
            &format!("creating the Delta table {}", c.table),
        )),
    }
}

/// A commit's info (the run's progress under `sluice`) and its application transaction.
fn commit_properties(c: &Commit<'_>) -> CommitProperties {
    let properties =
        CommitProperties::default().with_metadata([("sluice".to_string(), c.progress.clone())]);
    match &c.txn {
        Some((app, version)) => {
            properties.with_application_transaction(Transaction::new(app, *version))
        }
        None => properties,
    }
}

/// The Delta schema of an output schema.
pub fn delta_schema(schema: &Schema) -> Result<StructType> {
    StructType::try_from_arrow(schema)
        .map_err(|e| Error::user(format!("the output has a type Delta Lake cannot hold: {e}")))
}

/// A run's output schema with the `snapshot` partition a snapshot run adds.
pub fn with_snapshot_column(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.insert(0, Field::new("snapshot", DataType::Utf8, false));
    Arc::new(Schema::new(fields))
}

/// The add action of a written file: its path relative to the table, its partition
/// values from its folder, its row count as the file's statistics.
fn add_action(table: &str, file: &WrittenFile, now: i64) -> Result<Add> {
    let relative = file
        .path
        .strip_prefix(&format!("{table}/"))
        .ok_or_else(|| Error::internal(format!("{} is not in table {table}", file.path)))?;
    Ok(Add {
        path: relative.to_string(),
        partition_values: partition_values(&file.partition),
        size: i64::try_from(file.bytes).unwrap_or(i64::MAX),
        modification_time: now,
        data_change: true,
        stats: Some(delta_stats(file).to_string()),
        ..Add::default()
    })
}

/// A written file's Delta statistics: its row count and its integer columns' bounds.
fn delta_stats(file: &WrittenFile) -> serde_json::Value {
    let mut stats = serde_json::json!({ "numRecords": file.rows });
    if let (Some(serde_json::Value::Object(bounds)), Some(out)) =
        (&file.stats, stats.as_object_mut())
    {
        out.extend(bounds.clone());
    }
    stats
}

/// `dt=2024-05-01/region=%2Fx` → `{dt: 2024-05-01, region: /x}` (Hive escapes undone,
/// the default partition as NULL).
pub fn partition_values(folder: &str) -> HashMap<String, Option<String>> {
    folder
        .split('/')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| {
            let value = (v != super::writer::HIVE_NULL).then(|| unescape_partition_value(v));
            (unescape_partition_value(k), value)
        })
        .collect()
}

/// delta-rs's errors, classified: a conflicting commit is busy (the next run starts
/// over), storage trouble external, the rest internal.
pub fn classify(e: DeltaTableError, doing: &str) -> Error {
    use deltalake_core::kernel::transaction::TransactionError;
    let message = format!("{doing}: {e}");
    match &e {
        DeltaTableError::Transaction { source } => match source {
            TransactionError::VersionAlreadyExists(_)
            | TransactionError::CommitConflict(_)
            | TransactionError::MaxCommitAttempts(_) => Error::busy(format!(
                "{message} (another writer committed to the table; the next run starts over)"
            )),
            TransactionError::ObjectStore { .. } => Error::external(message),
            _ => Error::internal(message),
        },
        DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. } => {
            Error::external(message)
        }
        DeltaTableError::VersionAlreadyExists(_) => Error::busy(message),
        DeltaTableError::InvalidVersion(_) | DeltaTableError::InvalidDateTimeString { .. } => {
            Error::user(message)
        }
        _ => Error::internal(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_values_from_folders() {
        let v = partition_values("dt=2024-05-01/region=a%2Fb/x=__HIVE_DEFAULT_PARTITION__");
        assert_eq!(v["dt"].as_deref(), Some("2024-05-01"));
        assert_eq!(v["region"].as_deref(), Some("a/b"));
        assert_eq!(v["x"], None);
        assert!(partition_values("").is_empty());
    }
}
