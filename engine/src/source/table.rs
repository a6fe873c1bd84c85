//! Tables: a relation of a database, read over a cursor window. Each database is its own
//! module behind [`Table`] (connected by `database`); [`Tabular`] turns any of
//! them into a [`Source`], whose plan is the window and whose checkpoint is the watermark.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;

use super::{
    Checkpoint, Constraint, Consumed, CursorValue, Extract, RunContext, Source, SourceColumn,
    Window, cursor, find_column,
};
use crate::budget::Batches;
use crate::error::{Error, Result};
use crate::job::{Job, Mode};

/// A connected database, for one job's relation.
///
/// Contract: `columns` is called first; `max_cursor` at most once, only for incremental
/// jobs; then `extract` exactly once. Every statement is a SELECT.
#[async_trait]
pub trait Table: Send {
    async fn columns(&mut self) -> Result<Vec<SourceColumn>>;

    async fn constraints(&mut self) -> Result<Vec<Constraint>>;

    /// The greatest value of `cursor` not after `ceiling` (when given), or `None` when no
    /// row qualifies. This fixes the window's upper bound for the whole run.
    async fn max_cursor(
        &mut self,
        cursor: &SourceColumn,
        ceiling: Option<&CursorValue>,
    ) -> Result<Option<CursorValue>>;

    /// Streams the rows of `window` (all rows when the window is unbounded) ordered by the
    /// cursor and then the primary key, as batches of at most the job's `batch_rows`,
    /// which together stay within `batches`.
    fn extract(
        self: Box<Self>,
        columns: Vec<SourceColumn>,
        window: Window,
        batches: Batches,
    ) -> BoxStream<'static, Result<RecordBatch>>;
}

/// A table as a source.
pub(super) struct Tabular {
    table: Box<dyn Table>,
    mode: Mode,
    cursor: Option<String>,
    lag: Option<std::time::Duration>,
}

#[async_trait]
impl Source for Tabular {
    async fn columns(&mut self) -> Result<Vec<SourceColumn>> {
        self.table.columns().await
    }

    async fn constraints(&mut self) -> Result<Vec<Constraint>> {
        self.table.constraints().await
    }

    async fn plan(
        &mut self,
        columns: &[SourceColumn],
        committed: &Checkpoint,
        _: &dyn super::Ledger,
        now: DateTime<Utc>,
    ) -> Result<Option<Window>> {
        match self.mode {
            Mode::Incremental | Mode::Merge => self.window(columns, committed, now).await,
            Mode::Full | Mode::Snapshot => Ok(Some(Window::everything())),
        }
    }

    fn extract(
        self: Box<Self>,
        columns: Vec<SourceColumn>,
        window: Window,
        run: RunContext,
    ) -> Extract {
        let checkpoint = Checkpoint {
            watermark: match self.mode {
                Mode::Incremental | Mode::Merge => window.hi.clone(),
                Mode::Full | Mode::Snapshot => run.committed.watermark,
            },
            feed: None,
            changes: None,
        };
        Extract {
            batches: self.table.extract(columns, window, run.batches),
            done: Box::pin(async move { Ok(Consumed::checkpoint(checkpoint)) }),
        }
    }
}

impl Tabular {
    /// The job's `table` as its source.
    pub(super) fn new(table: Box<dyn Table>, job: &Job) -> Self {
        Self {
            table,
            mode: job.mode,
            cursor: job.cursor.clone(),
            lag: job.lag,
        }
    }

    /// Fixes `(lo, hi]`, or `None` when there is nothing new.
    async fn window(
        &mut self,
        columns: &[SourceColumn],
        committed: &Checkpoint,
        now: DateTime<Utc>,
    ) -> Result<Option<Window>> {
        let name = self
            .cursor
            .as_deref()
            .ok_or_else(|| Error::internal("incremental job without cursor"))?;
        let column = find_column(columns, name).map_err(|e| e.context("source.cursor"))?;
        cursor::check_cursor_column(column)?;
        let ceiling = self
            .lag
            .map(|lag| cursor::lag_ceiling(column, lag, now))
            .transpose()?;
        let lo = committed.watermark.clone();
        let hi = self.table.max_cursor(column, ceiling.as_ref()).await?;
        if let (Some(lo), Some(hi)) = (&lo, &hi)
            && std::mem::discriminant(lo) != std::mem::discriminant(hi)
        {
            return Err(Error::user(format!(
                "the stored watermark {lo} does not match the type of cursor `{name}` ({}); the cursor column changed type — rewind the job's state",
                column.source_type
            )));
        }
        Ok(match (&lo, hi) {
            (_, None) => None,
            (Some(lo), Some(hi)) if hi <= *lo => None,
            (_, Some(hi)) => Some(Window {
                cursor: Some(column.name.clone()),
                lo,
                hi: Some(hi),
            }),
        })
    }
}
