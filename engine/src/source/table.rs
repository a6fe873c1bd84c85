//! Tables: a relation of a database, read over a cursor window. Each database is its own
//! module behind [`Table`]; [`Tabular`] turns any of them into a [`Source`], whose plan
//! is the window and whose checkpoint is the watermark.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;

use super::{
    Checkpoint, Constraint, Consumed, CursorValue, Extract, RunContext, Source, SourceColumn,
    Window, cursor, find_column, mysql, postgres, redact, resolve_url, secret, sql, sqlite,
};
use crate::budget::Batches;
use crate::error::{Error, Result};
use crate::job::{Address, ConnectionKind, Job, Mode, Relation};

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

/// Connects to the job's database.
pub async fn open(
    job: &Job,
    relation: &Relation,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn Source>> {
    let (url, secrets) = match &job.connection.address {
        Address::Url(template) => resolve_url(template, &job.connection.name, env)?,
        Address::Secret(id) => secret::connection_url(id, job.connection.kind)
            .await
            .map_err(|e| e.context(format!("connection `{}`", job.connection.name)))?,
        Address::Http(_) | Address::Files(_) => {
            return Err(Error::internal("a feed's connection read as a table"));
        }
    };
    let plan = sql::Plan::new(job, relation);
    let table: Result<Box<dyn Table>> = match job.connection.kind {
        ConnectionKind::Postgres => postgres::connect(&url, plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Table>),
        ConnectionKind::Mysql => mysql::connect(&url, plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Table>),
        ConnectionKind::Sqlite => sqlite::connect(&url, job.connection.base_dir.as_deref(), plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Table>),
        _ => Err(Error::internal("a feed's connection read as a table")),
    };
    let table = table.map_err(|e| {
        redact(e, &secrets).context(format!("connection `{}`", job.connection.name))
    })?;
    Ok(Box::new(Tabular {
        table,
        mode: job.mode,
        cursor: job.cursor.clone(),
        lag: job.lag,
    }))
}

/// A table as a source.
struct Tabular {
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
