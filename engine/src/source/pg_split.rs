//! Parallel, consistent reads of one PostgreSQL table: the first connection opens a
//! REPEATABLE READ transaction and exports its snapshot (`pg_export_snapshot()`); the
//! others import it (`SET TRANSACTION SNAPSHOT`) before any part is read, so the parts
//! together are exactly one view of the table, whatever commits meanwhile. Parts are
//! ranges of an integer column (the split column, else the integer primary key), or of
//! physical pages (`ctid`, PostgreSQL 14+ scans a TID range directly) for tables without
//! one. Each part streams its own `COPY … (FORMAT binary)` into its own batches.

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Row};
use tokio::task::JoinSet;

use super::batch::BatchBuilder;
use super::pg_copy;
use super::split;
use super::sql::{Dialect, Plan};
use super::types::SourceColumn;
use crate::error::{Error, Result, classify_sqlx};
use crate::job::Relation;

type Sender = tokio::sync::mpsc::Sender<Result<datafusion::arrow::record_batch::RecordBatch>>;

const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";

/// Tables with at least this many rows (by the planner's estimate) are split by default.
const AUTO_SPLIT_ROWS: i64 = 1_000_000;
/// Parts of a default split, at most.
const AUTO_SPLIT_MAX: usize = 4;

/// How many parts to read `table` in: the job's `split.parts`, or by default one per
/// core (up to four) for a large table, else one.
pub async fn parts(conn: &mut PgConnection, plan: &Plan, table: &str) -> Result<usize> {
    if let Some(split) = &plan.split {
        return Ok(split.parts);
    }
    if !matches!(plan.from, Relation::Table { .. }) {
        return Ok(1);
    }
    let estimate: i64 = sqlx::query_scalar(
        "SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = $1::regclass",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "estimating the table's size"))?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    Ok(if estimate >= AUTO_SPLIT_ROWS {
        cores.clamp(1, AUTO_SPLIT_MAX)
    } else {
        1
    })
}

/// A split read of the window: `select(condition)` is the window's SELECT restricted to
/// one part.
pub struct SplitRead {
    pub options: PgConnectOptions,
    pub plan: Plan,
    pub columns: Vec<SourceColumn>,
    pub parts: usize,
    pub select: Box<dyn Fn(&str) -> String + Send + Sync>,
}

/// Reads the parts, each into its own batches, all sent to `tx`.
pub async fn read(
    mut conn: PgConnection,
    split: SplitRead,
    builder: BatchBuilder,
    tx: Sender,
) -> Result<()> {
    let SplitRead {
        options,
        plan,
        columns,
        parts,
        select,
    } = split;
    let table = <sqlx::Postgres as Dialect>::SYNTAX.from(&plan.from);
    sqlx::query(BEGIN)
        .execute(&mut conn)
        .await
        .map_err(|e| classify_sqlx(e, "starting the snapshot transaction"))?;
    let snapshot: String = sqlx::query_scalar("SELECT pg_export_snapshot()")
        .fetch_one(&mut conn)
        .await
        .map_err(|e| classify_sqlx(e, "exporting the snapshot"))?;
    let conditions = match split::split_column(&plan, &columns)? {
        Some(column) => value_ranges(&mut conn, &table, &column, parts).await?,
        None => page_ranges(&mut conn, &table, parts).await?,
    };
    tracing::info!(
        parts = conditions.len(),
        "reading the table in parts on one snapshot"
    );

    let mut connections = vec![conn];
    for _ in 1..conditions.len() {
        let mut other = options
            .connect()
            .await
            .map_err(|e| classify_sqlx(e, "opening a connection for a part"))?;
        let join = format!("SET TRANSACTION SNAPSHOT '{snapshot}'");
        for statement in [BEGIN, join.as_str()] {
            sqlx::query(statement)
                .execute(&mut other)
                .await
                .map_err(|e| classify_sqlx(e, "joining the snapshot"))?;
        }
        connections.push(other);
    }

    let mut tasks = JoinSet::new();
    for (conn, condition) in connections.into_iter().zip(&conditions) {
        let copy = format!("COPY ({}) TO STDOUT (FORMAT binary)", select(condition));
        tracing::debug!(sql = %copy, "extract part");
        let part = BatchBuilder::new(
            builder.schema(),
            columns.clone(),
            plan.batch(conditions.len()),
        );
        tasks.spawn(pg_copy::stream(conn, copy, part, tx.clone()));
    }
    while let Some(done) = tasks.join_next().await {
        let failed = match done {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e),
            Err(e) => Some(Error::internal(format!("a part's task failed: {e}"))),
        };
        if let Some(e) = failed {
            tasks.abort_all();
            return Err(e);
        }
    }
    Ok(())
}

/// `parts` ranges of equal width between the column's smallest and greatest value; NULLs
/// go with the first part, values beyond the last bound with the last.
async fn value_ranges(
    conn: &mut PgConnection,
    table: &str,
    column: &str,
    parts: usize,
) -> Result<Vec<String>> {
    let c = <sqlx::Postgres as Dialect>::SYNTAX.ident(column);
    let row = sqlx::query(&format!(
        "SELECT min({c})::bigint, max({c})::bigint FROM {table}"
    ))
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "reading the split column's range"))?;
    let (Some(lo), Some(hi)) = (row.get::<Option<i64>, _>(0), row.get::<Option<i64>, _>(1)) else {
        return Ok(vec!["TRUE".into()]);
    };
    Ok(split::value_conditions(&c, lo, hi, parts))
}

/// `parts` ranges of the table's pages.
async fn page_ranges(conn: &mut PgConnection, table: &str, parts: usize) -> Result<Vec<String>> {
    let pages: i64 = sqlx::query_scalar(
        "SELECT (pg_relation_size($1::regclass) / current_setting('block_size')::bigint)::bigint",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "reading the table's size"))?;
    let bounds = split::bounds(0, i128::from(pages), parts);
    Ok(split::conditions(
        &bounds,
        |b| format!("ctid >= '({b},0)'::tid"),
        |b| format!("ctid < '({b},0)'::tid"),
        "FALSE",
    ))
}
