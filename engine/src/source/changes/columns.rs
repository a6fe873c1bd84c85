//! The change batch: the table's columns, then four change columns — the operation
//! (`_sluice_op`), the order of changes (`_sluice_seq`), the commit time
//! (`_sluice_commit_at`) and the log position (`_sluice_position`). The same columns
//! whether the rows come from the snapshot or from the log, so that one run's files and
//! the next one's make one table.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::{Error, Result};
use crate::job::changes::{COMMIT_AT_COLUMN, OP_COLUMN, POSITION_COLUMN, SEQ_COLUMN};
use crate::source::batch::ColumnBuilder;
use crate::source::types::{LakeType, Read, SourceColumn};

/// What a change row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Read by the initial snapshot.
    Snapshot,
    Insert,
    Update,
    Delete,
    /// The table was emptied: every row before it goes.
    Truncate,
}

impl Op {
    /// The value of `_sluice_op`.
    pub fn code(self) -> &'static str {
        match self {
            Op::Snapshot => "r",
            Op::Insert => "i",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Truncate => "t",
        }
    }
}

/// The four change columns, in order.
pub fn change_columns() -> Vec<SourceColumn> {
    vec![
        SourceColumn::new(OP_COLUMN, "text", Read::Text, LakeType::String, false),
        SourceColumn::new(SEQ_COLUMN, "bigint", Read::I64, LakeType::Int64, false),
        SourceColumn::new(
            COMMIT_AT_COLUMN,
            "timestamptz",
            Read::DateTimeUtc,
            LakeType::TimestampUtc,
            false,
        ),
        SourceColumn::new(POSITION_COLUMN, "text", Read::Text, LakeType::String, false),
    ]
}

/// The table's columns followed by the change columns; refuses a table that has a
/// column of a change column's name.
pub fn with_change_columns(table: Vec<SourceColumn>) -> Result<Vec<SourceColumn>> {
    let extra = change_columns();
    if let Some(c) = table
        .iter()
        .find(|c| extra.iter().any(|e| e.lake_name == c.lake_name))
    {
        return Err(Error::user(format!(
            "the table has a column `{}`, the name of a column change capture adds: rename it in the source",
            c.name
        )));
    }
    Ok(table.into_iter().chain(extra).collect())
}

/// Appends the change columns of one row to the builders after the table's (`at` is the
/// index of the first change column).
pub fn append_change(
    builders: &mut [ColumnBuilder],
    at: usize,
    (op, seq, commit_at, position): (Op, i64, DateTime<Utc>, &str),
) -> std::result::Result<(), String> {
    let [op_b, seq_b, at_b, pos_b] = &mut builders[at..] else {
        return Err("the change columns are missing from the batch".into());
    };
    let fit = |r: std::result::Result<(), crate::source::batch::Misfit>| r.map_err(|m| m.0);
    fit(op_b.text(op.code()))?;
    fit(seq_b.int(seq))?;
    fit(at_b.datetime_utc(commit_at))?;
    fit(pos_b.text(position))
}

/// The snapshot's batches with the change columns added: operation `r`, the order of
/// changes from `next_seq` on (the last one used is left in `last_seq`), the time the
/// snapshot started, and the position it was taken after.
pub fn snapshot_rows(
    rows: BoxStream<'static, Result<RecordBatch>>,
    schema: SchemaRef,
    (started, position): (DateTime<Utc>, String),
    last_seq: Arc<AtomicI64>,
) -> BoxStream<'static, Result<RecordBatch>> {
    rows.map(move |batch| {
        let batch = batch?;
        let n = batch.num_rows();
        let first = last_seq.load(Ordering::SeqCst) + 1;
        let count = i64::try_from(n).map_err(|_| Error::internal("a batch of too many rows"))?;
        last_seq.store(first + count - 1, Ordering::SeqCst);
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        columns.push(Arc::new(StringArray::from(vec![Op::Snapshot.code(); n])));
        columns.push(Arc::new(Int64Array::from_iter_values(first..first + count)));
        columns.push(Arc::new(
            TimestampMicrosecondArray::from(vec![started.timestamp_micros(); n])
                .with_timezone("UTC"),
        ));
        columns.push(Arc::new(StringArray::from(vec![position.as_str(); n])));
        RecordBatch::try_new(schema.clone(), columns)
            .map_err(|e| Error::internal(format!("adding the change columns: {e}")))
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_column_may_not_take_a_change_column_name() {
        let table = vec![SourceColumn::new(
            "_SLUICE_OP",
            "text",
            Read::Text,
            LakeType::String,
            false,
        )];
        assert!(with_change_columns(table).is_err());
        let table = vec![SourceColumn::new(
            "id",
            "INT4",
            Read::I32,
            LakeType::Int32,
            false,
        )];
        assert_eq!(with_change_columns(table).map(|c| c.len()).unwrap_or(0), 5);
    }
}
