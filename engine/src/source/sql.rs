//! SQL building and the extract loop shared by every sqlx dialect.
//!
//! Identifiers are always quoted for the dialect; cursor values are always bound
//! parameters, never spliced into the text.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use sqlx::query::Query;
use sqlx::{Database, Encode, Type};

use super::batch::{BatchBuilder, BatchSize, DialectRow};
use super::cursor::{CursorValue, Window};
use super::types::{SourceColumn, arrow_schema};
use crate::budget::Batches;
use crate::error::{Result, classify_sqlx};
use crate::job::{Job, Relation, Split};

/// What one job reads, independent of the dialect.
#[derive(Debug, Clone)]
pub struct Plan {
    pub from: Relation,
    pub primary_key: Vec<String>,
    pub batch_rows: usize,
    pub split: Option<Split>,
    /// What the run's batches in flight may hold together (set when the extract starts).
    pub batches: Batches,
}

impl Plan {
    pub fn new(job: &Job, from: &Relation) -> Self {
        Self {
            from: from.clone(),
            primary_key: job.primary_key.clone(),
            batch_rows: job.batch_rows,
            split: job.split.clone(),
            batches: Batches::unbounded(),
        }
    }

    /// The size of each batch when `producers` connections read at once.
    pub fn batch(&self, producers: usize) -> BatchSize {
        BatchSize {
            rows: self.batch_rows,
            bytes: self.batches.per_batch(producers),
        }
    }
}

/// The parts of SQL that differ between databases.
#[derive(Debug, Clone, Copy)]
pub struct Syntax {
    pub quote: char,
    /// `$1, $2` (PostgreSQL) rather than `?`.
    pub numbered_params: bool,
    /// The type to CAST columns read as text to.
    pub text_type: &'static str,
}

impl Syntax {
    pub fn ident(&self, name: &str) -> String {
        let q = self.quote;
        format!("{q}{}{q}", name.replace(q, &format!("{q}{q}")))
    }

    fn param(&self, n: usize) -> String {
        if self.numbered_params {
            format!("${n}")
        } else {
            "?".into()
        }
    }

    /// The FROM clause: a quoted table, or the job's query as a subquery.
    pub fn from(&self, from: &Relation) -> String {
        match from {
            Relation::Table {
                schema: Some(s),
                name,
            } => format!("{}.{}", self.ident(s), self.ident(name)),
            Relation::Table { schema: None, name } => self.ident(name),
            Relation::Query(q) => format!("({q}) AS sluice_source"),
        }
    }

    /// A statement whose result columns describe the source, without reading a row.
    pub fn describe(&self, from: &Relation) -> String {
        format!("SELECT * FROM {} WHERE 1 = 0", self.from(from))
    }

    fn select_list(&self, columns: &[SourceColumn]) -> String {
        columns
            .iter()
            .map(|c| {
                let id = self.ident(&c.name);
                if c.as_text {
                    format!("CAST({id} AS {}) AS {id}", self.text_type)
                } else {
                    id
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The extract: the window's rows, in cursor then primary-key order.
    pub fn window(
        &self,
        plan: &Plan,
        columns: &[SourceColumn],
        window: &Window,
    ) -> (String, Vec<CursorValue>) {
        self.window_with(plan, columns, window, &|n, _| self.param(n), None)
    }

    /// One part of a split read: the window's SELECT with bound parameters, restricted
    /// to `part`, unordered.
    pub fn window_part(
        &self,
        plan: &Plan,
        columns: &[SourceColumn],
        window: &Window,
        part: &str,
    ) -> (String, Vec<CursorValue>) {
        self.window_with(plan, columns, window, &|n, _| self.param(n), Some(part))
    }

    /// The extract with each bound rendered by `bound(n, value)`: a placeholder, or (for
    /// `COPY`, which takes no parameters) a literal. With `part`, one part of a split
    /// read: that condition too, and no order (the parts arrive interleaved anyway).
    pub fn window_with(
        &self,
        plan: &Plan,
        columns: &[SourceColumn],
        window: &Window,
        bound: &dyn Fn(usize, &CursorValue) -> String,
        part: Option<&str>,
    ) -> (String, Vec<CursorValue>) {
        let mut sql = format!(
            "SELECT {} FROM {}",
            self.select_list(columns),
            self.from(&plan.from)
        );
        let mut binds = Vec::new();
        let mut conditions = Vec::new();
        if let Some(cursor) = &window.cursor {
            let c = self.ident(cursor);
            if let Some(lo) = &window.lo {
                binds.push(lo.clone());
                conditions.push(format!("{c} > {}", bound(binds.len(), lo)));
            }
            if let Some(hi) = &window.hi {
                binds.push(hi.clone());
                conditions.push(format!("{c} <= {}", bound(binds.len(), hi)));
            }
        }
        if let Some(part) = part {
            conditions.push(format!("({part})"));
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        if part.is_some() {
            return (sql, binds);
        }
        let order: Vec<String> = window
            .cursor
            .iter()
            .chain(
                plan.primary_key
                    .iter()
                    .filter(|k| Some(*k) != window.cursor.as_ref()),
            )
            .map(|c| self.ident(c))
            .collect();
        if !order.is_empty() {
            sql.push_str(" ORDER BY ");
            sql.push_str(&order.join(", "));
        }
        (sql, binds)
    }

    /// `MAX(cursor)`, not after `ceiling` when given.
    pub fn max_cursor(
        &self,
        plan: &Plan,
        cursor: &SourceColumn,
        ceiling: Option<&CursorValue>,
    ) -> (String, Vec<CursorValue>) {
        let c = self.ident(&cursor.name);
        let mut sql = format!("SELECT MAX({c}) AS {c} FROM {}", self.from(&plan.from));
        let binds: Vec<CursorValue> = ceiling.into_iter().cloned().collect();
        if !binds.is_empty() {
            sql.push_str(&format!(" WHERE {c} <= {}", self.param(1)));
        }
        (sql, binds)
    }
}

macro_rules! extract_loop {
    ($db:ty) => {
        impl super::sql::Fetch for $db {
            fn stream(
                mut conn: <$db as sqlx::Database>::Connection,
                sql: String,
                binds: Vec<super::cursor::CursorValue>,
                columns: Vec<super::types::SourceColumn>,
                batch: super::batch::BatchSize,
            ) -> futures::stream::BoxStream<
                'static,
                crate::error::Result<datafusion::arrow::record_batch::RecordBatch>,
            > {
                super::sql::spawn_stream(batch, columns, move |mut builder, tx| async move {
                    let mut query = sqlx::query::<$db>(&sql);
                    for b in &binds {
                        query = super::sql::bind_value(query, b);
                    }
                    let mut rows = query.fetch(&mut conn);
                    super::sql::drain(&mut rows, &mut builder, &tx).await
                })
            }

            async fn one_batch(
                conn: &mut <$db as sqlx::Database>::Connection,
                sql: &str,
                binds: &[super::cursor::CursorValue],
                columns: Vec<super::types::SourceColumn>,
            ) -> crate::error::Result<datafusion::arrow::record_batch::RecordBatch> {
                let mut query = sqlx::query::<$db>(sql);
                for b in binds {
                    query = super::sql::bind_value(query, b);
                }
                let rows = query
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(|e| crate::error::classify_sqlx(e, "querying the source"))?;
                super::sql::rows_to_batch(&rows, columns)
            }
        }
    };
}
pub(crate) use extract_loop;

/// Runs the per-dialect fetch and turns its rows into one small batch (for `MAX`).
pub trait Fetch: Database {
    fn stream(
        conn: Self::Connection,
        sql: String,
        binds: Vec<CursorValue>,
        columns: Vec<SourceColumn>,
        batch: BatchSize,
    ) -> BoxStream<'static, Result<RecordBatch>>;

    fn one_batch(
        conn: &mut Self::Connection,
        sql: &str,
        binds: &[CursorValue],
        columns: Vec<SourceColumn>,
    ) -> impl std::future::Future<Output = Result<RecordBatch>> + Send;
}

/// Binds a cursor value with the Rust type that matches it.
pub fn bind_value<'q, DB>(
    query: Query<'q, DB, DB::Arguments<'q>>,
    value: &CursorValue,
) -> Query<'q, DB, DB::Arguments<'q>>
where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    NaiveDate: Encode<'q, DB> + Type<DB>,
    NaiveDateTime: Encode<'q, DB> + Type<DB>,
    DateTime<Utc>: Encode<'q, DB> + Type<DB>,
{
    match value.clone() {
        CursorValue::Int(v) => query.bind(v),
        CursorValue::Text(v) => query.bind(v),
        CursorValue::Date(v) => query.bind(v),
        CursorValue::Timestamp(v) => query.bind(v),
        CursorValue::TimestampUtc(v) => query.bind(v),
    }
}

type Sender = tokio::sync::mpsc::Sender<Result<RecordBatch>>;

/// Runs `fill` on its own task, which sends batches through a channel of two: the
/// database is read at most two batches ahead of whoever consumes the stream.
pub fn spawn_stream<F, Fut>(
    batch: BatchSize,
    columns: Vec<SourceColumn>,
    fill: F,
) -> BoxStream<'static, Result<RecordBatch>>
where
    F: FnOnce(BatchBuilder, Sender) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let schema = arrow_schema(&columns);
    let builder = BatchBuilder::new(schema, columns, batch);
    let failed = tx.clone();
    tokio::spawn(async move {
        if let Err(e) = fill(builder, tx).await {
            let _ = failed.send(Err(e)).await;
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
    .boxed()
}

/// Moves rows from the driver into batches until the rows end or the consumer leaves.
pub async fn drain<R: DialectRow>(
    rows: &mut BoxStream<'_, std::result::Result<R, sqlx::Error>>,
    builder: &mut BatchBuilder,
    tx: &Sender,
) -> Result<()> {
    while let Some(row) = rows
        .try_next()
        .await
        .map_err(|e| classify_sqlx(e, "reading rows from the source"))?
    {
        builder.append(&row)?;
        if builder.is_full() && tx.send(Ok(builder.finish()?)).await.is_err() {
            return Ok(());
        }
    }
    if builder.rows() > 0 {
        let _ = tx.send(Ok(builder.finish()?)).await;
    }
    Ok(())
}

pub fn rows_to_batch<R: DialectRow>(rows: &[R], columns: Vec<SourceColumn>) -> Result<RecordBatch> {
    let schema = arrow_schema(&columns);
    let mut builder = BatchBuilder::new(schema, columns, BatchSize::rows(rows.len().max(1)));
    for row in rows {
        builder.append(row)?;
    }
    builder.finish()
}

/// A database sluice reads from: its syntax and how it describes a source's columns.
pub trait Dialect: Fetch {
    const SYNTAX: Syntax;

    /// Streams the window's rows. The default fetches rows with the window's bounds as
    /// bound parameters; a dialect with a faster bulk path overrides it.
    fn extract(
        conn: Self::Connection,
        _options: ConnectOptionsOf<Self>,
        plan: &Plan,
        columns: Vec<SourceColumn>,
        window: &Window,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        rows_extract::<Self>(conn, plan, columns, window)
    }

    /// The columns of the plan's table or query, mapped to lake types.
    fn columns(
        conn: &mut Self::Connection,
        plan: &Plan,
    ) -> impl std::future::Future<Output = Result<Vec<SourceColumn>>> + Send;

    /// What the database's catalog says of the plan's table: per column, whether it is
    /// NOT NULL and its position in the primary key (0: not in it). Empty for a query.
    fn constraints(
        conn: &mut Self::Connection,
        plan: &Plan,
    ) -> impl std::future::Future<Output = Result<Vec<super::Constraint>>> + Send;
}

/// The row path: the window's SELECT with its bounds as bound parameters.
pub fn rows_extract<DB: Dialect>(
    conn: DB::Connection,
    plan: &Plan,
    columns: Vec<SourceColumn>,
    window: &Window,
) -> BoxStream<'static, Result<RecordBatch>> {
    let (sql, binds) = DB::SYNTAX.window(plan, &columns, window);
    tracing::debug!(%sql, "extract");
    DB::stream(conn, sql, binds, columns, plan.batch(1))
}

/// How a dialect connects (for the extra connections of a split read).
pub type ConnectOptionsOf<DB> = <<DB as Database>::Connection as sqlx::Connection>::Options;

/// One connection to a source database, read as the [`super::Source`] contract says.
pub struct SqlSource<DB: Dialect> {
    pub conn: DB::Connection,
    pub options: ConnectOptionsOf<DB>,
    pub plan: Plan,
}

#[async_trait::async_trait]
impl<DB: Dialect> super::table::Table for SqlSource<DB>
where
    DB::Connection: Send,
{
    async fn columns(&mut self) -> Result<Vec<SourceColumn>> {
        let columns = DB::columns(&mut self.conn, &self.plan).await?;
        super::types::check_name_clashes(&columns).map_err(crate::error::Error::user)?;
        Ok(columns)
    }

    async fn constraints(&mut self) -> Result<Vec<super::Constraint>> {
        DB::constraints(&mut self.conn, &self.plan).await
    }

    async fn max_cursor(
        &mut self,
        cursor: &SourceColumn,
        ceiling: Option<&CursorValue>,
    ) -> Result<Option<CursorValue>> {
        let (sql, binds) = DB::SYNTAX.max_cursor(&self.plan, cursor, ceiling);
        let batch = DB::one_batch(&mut self.conn, &sql, &binds, vec![cursor.clone()]).await?;
        super::cursor::cursor_from_array(batch.column(0), cursor.lake)
    }

    fn extract(
        self: Box<Self>,
        columns: Vec<SourceColumn>,
        window: Window,
        batches: Batches,
    ) -> BoxStream<'static, Result<RecordBatch>> {
        let plan = Plan {
            batches,
            ..self.plan
        };
        DB::extract(self.conn, self.options, &plan, columns, &window)
    }
}

/// Connects with the dialect's options.
pub async fn connect<DB: Dialect>(
    options: ConnectOptionsOf<DB>,
    plan: Plan,
    database: &str,
) -> Result<SqlSource<DB>> {
    use sqlx::ConnectOptions;
    let conn = options
        .connect()
        .await
        .map_err(|e| classify_sqlx(e, &format!("connecting to {database}")))?;
    Ok(SqlSource {
        conn,
        options,
        plan,
    })
}

/// The result columns of the plan's table or query, from preparing (not running) a
/// statement over it.
pub async fn describe<DB>(conn: &mut DB::Connection, plan: &Plan) -> Result<Vec<DB::Column>>
where
    DB: Dialect,
    DB::Column: Clone,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
{
    use sqlx::Statement;
    let sql = DB::SYNTAX.describe(&plan.from);
    let statement = sqlx::Executor::prepare(&mut *conn, sql.as_str())
        .await
        .map_err(|e| classify_sqlx(e, "reading the source's columns"))?;
    Ok(statement.columns().to_vec())
}
