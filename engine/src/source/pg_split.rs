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
use super::sql::{Dialect, Plan};
use super::types::{LakeType, SourceColumn};
use crate::error::{Error, Result, classify_sqlx};
use crate::job::From;

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
    if !matches!(plan.from, From::Table { .. }) {
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
    let conditions = match split_column(&plan, &columns)? {
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
        let part = BatchBuilder::new(builder.schema(), columns.clone(), plan.batch_rows);
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

/// The integer column the parts are ranges of: the job's `split.column`, else a
/// one-column integer primary key, else none (page ranges).
fn split_column(plan: &Plan, columns: &[SourceColumn]) -> Result<Option<String>> {
    let integer =
        |c: &SourceColumn| matches!(c.lake, LakeType::Int16 | LakeType::Int32 | LakeType::Int64);
    if let Some(name) = plan.split.as_ref().and_then(|s| s.column.as_ref()) {
        let column =
            super::find_column(columns, name).map_err(|e| e.context("source.split.column"))?;
        if !integer(column) {
            return Err(Error::user(format!(
                "source.split.column: `{name}` has type {}; a split column is an integer column",
                column.source_type
            )));
        }
        return Ok(Some(column.name.clone()));
    }
    Ok(match plan.primary_key.as_slice() {
        [key] => super::find_column(columns, key)
            .ok()
            .filter(|c| integer(c))
            .map(|c| c.name.clone()),
        _ => None,
    })
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
    let bounds = bounds(i128::from(lo), i128::from(hi) + 1, parts);
    Ok(conditions(
        &bounds,
        |b| format!("{c} >= {b}"),
        |b| format!("{c} < {b}"),
        &format!("{c} IS NULL"),
    ))
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
    let bounds = bounds(0, i128::from(pages), parts);
    Ok(conditions(
        &bounds,
        |b| format!("ctid >= '({b},0)'::tid"),
        |b| format!("ctid < '({b},0)'::tid"),
        "FALSE",
    ))
}

/// The inner bounds that cut `[lo, end)` into at most `parts` ranges of equal width.
fn bounds(lo: i128, end: i128, parts: usize) -> Vec<i128> {
    let parts = parts.max(1) as i128;
    let width = ((end - lo) + parts - 1) / parts;
    if width <= 0 {
        return Vec::new();
    }
    (1..parts)
        .map(|i| lo + i * width)
        .filter(|b| *b < end)
        .collect()
}

/// One condition per range: below the first bound (or `first_extra`), between bounds,
/// from the last bound on.
fn conditions(
    bounds: &[i128],
    from: impl Fn(i128) -> String,
    below: impl Fn(i128) -> String,
    first_extra: &str,
) -> Vec<String> {
    let Some((&first, _)) = bounds.split_first() else {
        return vec!["TRUE".into()];
    };
    let mut out = vec![format!("{} OR {first_extra}", below(first))];
    out.extend(
        bounds
            .windows(2)
            .map(|w| format!("{} AND {}", from(w[0]), below(w[1]))),
    );
    if let Some(&last) = bounds.last() {
        out.push(from(last));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_everything_once() {
        assert_eq!(bounds(1, 101, 4), [26, 51, 76]);
        assert_eq!(bounds(0, 3, 4), [1, 2]);
        assert!(bounds(5, 5, 4).is_empty());
        assert_eq!(
            conditions(
                &[10, 20],
                |b| format!("c >= {b}"),
                |b| format!("c < {b}"),
                "c IS NULL"
            ),
            ["c < 10 OR c IS NULL", "c >= 10 AND c < 20", "c >= 20"]
        );
        assert_eq!(
            conditions(&[], |b| b.to_string(), |b| b.to_string(), "x"),
            ["TRUE"]
        );
        // Extreme values do not overflow.
        assert_eq!(
            bounds(i128::from(i64::MIN), i128::from(i64::MAX) + 1, 2).len(),
            1
        );
    }
}
