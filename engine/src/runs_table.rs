//! Runs as data: every run record, as the state store keeps it, also lands in the lake
//! table `_sluice_runs` — one small Parquet file per run under `day=YYYY-MM-DD/` (the day
//! the run started, UTC) — and is published in the Glue catalog beside the jobs' tables,
//! so that Athena users query the history as Glue users query `job_runs`:
//!
//! ```sql
//! SELECT job, status, rows, duration_seconds FROM "_sluice_runs"
//! WHERE day >= '2024-05-01' ORDER BY started_at DESC
//! ```
//!
//! The file name is the run id: a record written twice (a retried write) is refused as
//! already there, never duplicated. The table is an audit copy: the state store stays
//! the source of truth, and a record that cannot be written is a warning, not a failed
//! run.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use crate::catalog::{Partition, TableDef};
use crate::error::{Error, Result};
use crate::sink::Lake;
use crate::summary::{RunStatus, RunSummary};

/// The table's name, in the lake and in the catalog.
pub const TABLE: &str = "_sluice_runs";
/// The partition column.
pub const DAY: &str = "day";
/// The first day partition projection reaches back to: the table holds no earlier run.
const PROJECTION_START: &str = "2024-01-01";

/// The columns, in order, with their Athena types (the partition `day` is a folder).
pub const COLUMNS: [(&str, &str); 19] = [
    ("job", "string"),
    ("run_id", "string"),
    ("trigger", "string"),
    ("status", "string"),
    ("error_name", "string"),
    ("error", "string"),
    ("mode", "string"),
    ("lake_table", "string"),
    ("rows_read", "bigint"),
    ("rows", "bigint"),
    ("bytes", "bigint"),
    ("files", "bigint"),
    ("quarantined", "bigint"),
    ("duration_seconds", "double"),
    ("window_lo", "string"),
    ("window_hi", "string"),
    ("peak_rss", "bigint"),
    ("started_at", "timestamp"),
    ("finished_at", "timestamp"),
];

/// The Arrow schema of the files.
pub fn schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|(name, athena)| {
            let data_type = match *athena {
                "bigint" => DataType::Int64,
                "double" => DataType::Float64,
                "timestamp" => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                _ => DataType::Utf8,
            };
            Field::new(
                *name,
                data_type,
                !matches!(*name, "job" | "run_id" | "status"),
            )
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A status as the table spells it (as the run record does).
pub fn status_name(status: RunStatus) -> &'static str {
    match status {
        RunStatus::Committed => "committed",
        RunStatus::UpToDate => "up_to_date",
        RunStatus::Failed => "failed",
    }
}

/// One run record as a one-row batch.
pub fn batch(run: &RunSummary) -> Result<RecordBatch> {
    let text = |v: Option<String>| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    let int = |v: u64| -> ArrayRef {
        Arc::new(Int64Array::from(vec![i64::try_from(v).unwrap_or(i64::MAX)]))
    };
    let millis = run.started_at.timestamp_millis();
    let finished = millis.saturating_add((run.seconds.total * 1000.0) as i64);
    let at = |ms: i64| -> ArrayRef {
        Arc::new(TimestampMillisecondArray::from(vec![ms]).with_timezone("UTC"))
    };
    let columns: Vec<ArrayRef> = vec![
        text(Some(run.job.clone())),
        text(Some(run.run_id.clone())),
        text(run.trigger.clone()),
        text(Some(status_name(run.status).to_string())),
        text(run.error_class.map(|c| c.state_error().to_string())),
        text(run.error.clone()),
        text(Some(run.mode.clone())),
        text(Some(run.table.clone())),
        int(run.rows_read),
        int(run.rows),
        int(run.bytes),
        int(run.files as u64),
        int(run.quarantined),
        Arc::new(Float64Array::from(vec![run.seconds.total])),
        text(run.window.lo.as_ref().map(ToString::to_string)),
        text(run.window.hi.as_ref().map(ToString::to_string)),
        Arc::new(Int64Array::from(vec![
            run.peak_rss.and_then(|n| i64::try_from(n).ok()),
        ])),
        at(millis),
        at(finished),
    ];
    RecordBatch::try_new(schema(), columns)
        .map_err(|e| Error::internal(format!("a run record as a row of {TABLE}: {e}")))
}

/// Where a run's file goes, below the lake: `_sluice_runs/day=…/<job>-<run id>.parquet`.
pub fn file_path(run: &RunSummary) -> String {
    format!(
        "{TABLE}/{DAY}={}/{}-{}.parquet",
        run.started_at.format("%Y-%m-%d"),
        run.job,
        run.run_id
    )
}

/// Writes the run's record into the lake table.
pub async fn append(lake: &Lake, run: &RunSummary) -> Result<()> {
    let batch = batch(run)?;
    let mut bytes = Vec::new();
    {
        let properties = parquet::file::properties::WriterProperties::builder()
            .set_compression(parquet::basic::Compression::SNAPPY)
            .build();
        let mut writer =
            parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties))
                .map_err(|e| Error::internal(format!("writing {TABLE}: {e}")))?;
        writer
            .write(&batch)
            .map_err(|e| Error::internal(format!("writing {TABLE}: {e}")))?;
        writer
            .close()
            .map_err(|e| Error::internal(format!("writing {TABLE}: {e}")))?;
    }
    lake.create(&lake.path(&file_path(run))?, bytes).await
}

/// The table as the catalog holds it: partition projection over `day` from
/// `PROJECTION_START` to now, so nothing is registered per run and the definition does
/// not change from one day to the next.
pub fn table_def(lake: &Lake, database: &str) -> TableDef {
    let parameters = BTreeMap::from([
        ("classification".to_string(), "parquet".to_string()),
        ("EXTERNAL".to_string(), "TRUE".to_string()),
        ("parquet.compression".to_string(), "SNAPPY".to_string()),
        (
            "comment".to_string(),
            "every sluice run: one row per run record (sluice console shows the same)".to_string(),
        ),
    ]);
    TableDef {
        database: database.to_string(),
        name: TABLE.to_string(),
        location: format!("{}/{TABLE}/", lake.url().trim_end_matches('/')),
        columns: COLUMNS
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        partition_keys: vec![DAY.to_string()],
        parameters,
        // Projection's range starts at the earliest partition value given: a fixed start
        // keeps the range `PROJECTION_START,NOW` whatever days hold runs.
        partitions: vec![Partition {
            values: vec![PROJECTION_START.to_string()],
            path: format!("{DAY}={PROJECTION_START}"),
        }],
        projection: true,
    }
}

/// Publishes the table in the Glue database (compares first: unchanged after the first).
pub async fn publish(lake: &Lake, database: &str) -> Result<String> {
    let client = crate::catalog::glue::client().await;
    crate::catalog::glue::publish(&client, &table_def(lake, database)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_one_row_of_the_schema_under_its_day() -> Result<()> {
        let mut run = RunSummary::named("orders", "incremental", "orders", "20240501T020000Z-ab");
        run.rows = 42;
        run.status = RunStatus::Committed;
        let batch = batch(&run)?;
        assert_eq!(batch.num_rows(), 1);
        assert_eq!(batch.num_columns(), COLUMNS.len());
        assert!(file_path(&run).starts_with("_sluice_runs/day="));
        assert!(file_path(&run).ends_with("/orders-20240501T020000Z-ab.parquet"));
        let def = table_def(&Lake::in_memory(), "lake");
        let parameters = def.all_parameters();
        assert_eq!(
            parameters.get("projection.day.range").map(String::as_str),
            Some("2024-01-01,NOW")
        );
        Ok(())
    }
}
