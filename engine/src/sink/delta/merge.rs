//! Mode `merge`: a run's rows upserted into a Delta table by primary key.
//!
//! The run has written its rows (the window's, deletes included) as files, uncommitted.
//! Then:
//! 1. Within the run, a key's latest row (by cursor) wins and the rows `delete_when`
//!    holds for are dropped; only when there are such rows are the run's files written
//!    again (the usual case, a window of distinct keys and no deletes, keeps them).
//! 2. The table's live files that hold a key of the run are found (a semi-join of each
//!    file's key columns with the run's keys) and only those are rewritten without the
//!    run's keys.
//! 3. The commit removes the touched files and adds the rewrites and the run's rows, in
//!    one version: a reader sees the table before the merge or after it.
//!
//! Every file written here carries the run key, so a crash before the commit leaves
//! files that no version holds, removed by the next run's recovery.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use deltalake_core::kernel::Remove;
use futures::{StreamExt, TryStreamExt};

use super::scan::DeltaFiles;
use super::{column_list, quote};
use crate::budget::WriterBudget;
use crate::error::{Error, Result, classify_datafusion};
use crate::job::Target;
use crate::sink::{Lake, WrittenFile};
use deltalake_core::DeltaTable;

/// What a merge reads.
pub struct MergeInput<'a> {
    pub lake: &'a Lake,
    pub target: &'a Target,
    pub run_key: &'a str,
    /// The output's columns, partition columns included.
    pub schema: SchemaRef,
    /// The run's files (its window's rows).
    pub files: Vec<WrittenFile>,
    pub key: &'a [String],
    /// Orders a key's rows within the run: the greatest wins (NULL least); on a tie, the
    /// greatest by the other columns in order, so that a replay gives the same table.
    pub cursor: Option<&'a str>,
    /// Orders a key's rows the cursor leaves tied (`source.tie_break`): the greatest
    /// wins, NULL least. What it leaves tied goes to the delete, then to the other columns.
    pub tie_break: Option<&'a str>,
    /// A feed's merge: a run's row replaces the table's row of its key only if its
    /// `cursor` is not older (a late or re-sent old version leaves the newer one).
    pub newest_wins: bool,
    pub delete_when: Option<&'a str>,
    /// Change capture: the predicate that makes a row a truncate. The run's last
    /// truncate (by `cursor`) empties the table, and the run's rows before it go too.
    pub truncate_when: Option<&'a str>,
    /// The table as the run read it (`None`: there is none yet).
    pub read: Option<&'a DeltaTable>,
    /// Bytes the merge's queries may hold.
    pub pool: u64,
    pub writer: WriterBudget,
}

/// What the commit adds and removes.
#[derive(Debug, Default)]
pub struct Merged {
    pub files: Vec<WrittenFile>,
    pub removes: Vec<Remove>,
    /// Rows of the table replaced or deleted by the run's keys.
    pub matched: u64,
    /// Rows of the run that were deletes.
    pub deletes: u64,
    /// The ties the run resolved.
    pub ties: Ties,
}

/// Keys whose newest rows in the run share the cursor value, and how they were decided.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Ties {
    /// Keys with two or more rows at their greatest cursor value.
    pub tied: u64,
    /// Of those, the keys `tie_break` did not decide (all of them without one): decided
    /// by the rule, the delete over an upsert, then the greatest by the other columns.
    pub by_rule: u64,
}

impl MergeInput<'_> {
    /// The key columns, quoted: `"a", "b"`.
    fn key_list(&self) -> String {
        self.key
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Files the run wrote, as a table.
    fn written(&self, files: &[WrittenFile]) -> Result<DeltaFiles> {
        DeltaFiles::written(
            self.lake,
            &self.target.table,
            self.schema.clone(),
            &self.target.partition_by,
            files,
        )
    }

    fn output(&self) -> super::Output<'_> {
        super::Output {
            lake: self.lake,
            target: self.target,
            schema: &self.schema,
            key: self.run_key,
            writer: self.writer,
        }
    }
}

pub async fn merge(input: MergeInput<'_>) -> Result<Merged> {
    let ctx = super::session(input.lake, input.pool)?;
    let table = &input.target.table;
    let incoming = input.written(&input.files)?;
    register(&ctx, "incoming", Arc::new(incoming))?;
    let keys = input.key_list();
    let columns = column_list(&input.schema);
    let (run_files, truncates) = truncate(&ctx, &input, &columns).await?;
    let deletes = match input.delete_when {
        Some(p) => count(&ctx, &format!("SELECT count(*) FROM incoming WHERE {p}")).await?,
        None => 0,
    };
    let mut existing = match input.read {
        Some(delta) => Some(DeltaFiles::of(input.lake, table, delta)?)
            .filter(|files| files.files().next().is_some()),
        None => None,
    };
    // A truncate removes every live file of the table; none of its rows is kept.
    let mut emptied = Vec::new();
    let mut truncated_rows = 0;
    if truncates && let Some(files) = existing.take() {
        let now = chrono::Utc::now().timestamp_millis();
        emptied = files.files().map(|f| super::remove(f, now)).collect();
        truncated_rows = files.files().filter_map(|f| f.rows).sum();
    }
    // The run's distinct keys, when there are rows of the table they may match.
    if existing.is_some() {
        register_keys(&ctx, "incoming", &keys).await?;
    }
    // Read before the run's files may be written again below.
    let (repeated, bounds) = repeats(&ctx, &input, existing.is_some()).await?;
    let mut merged = Merged {
        deletes,
        removes: emptied,
        matched: truncated_rows,
        ..Merged::default()
    };
    merged.files = if repeated > 0 || deletes > 0 {
        let order = rank_order(&input);
        merged.ties = ties(&ctx, &input).await?;
        let keep = input
            .delete_when
            .map(|p| format!(" AND NOT coalesce(({p}), false)"))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {columns} FROM (SELECT *, row_number() OVER (PARTITION BY {keys}{order}) AS sluice_rank__ FROM incoming) ranked WHERE sluice_rank__ = 1{keep}"
        );
        let files = super::write_sql(&ctx, &sql, &input.output(), "u").await?;
        ctx.deregister_table("incoming")
            .map_err(|e| classify_datafusion(e, "the merge"))?;
        for file in &run_files {
            input.lake.delete(&input.lake.path(&file.path)?).await?;
        }
        files
    } else {
        run_files
    };
    let Some(existing) = existing else {
        return Ok(merged);
    };
    let touched = touched_files(&ctx, &existing, input.key, bounds).await?;
    if touched.is_empty() {
        return Ok(merged);
    }
    if let (true, Some(cursor)) = (input.newest_wins, input.cursor) {
        let older = Arc::new(existing.only(|f| touched.contains(&f.path)));
        merged.files = drop_older(&ctx, &input, cursor, older, merged.files).await?;
    }
    let before: u64 = existing
        .files()
        .filter(|f| touched.contains(&f.path))
        .filter_map(|f| f.rows)
        .sum();
    register(
        &ctx,
        "touched",
        Arc::new(existing.only(|f| touched.contains(&f.path))),
    )?;
    // The table's rows as the output's columns (a column the output gained, `evolve`, is
    // NULL in them), without the run's keys. The run's keys are the join's build side,
    // the table's rows stream past them.
    let table_schema = datafusion::datasource::TableProvider::schema(&existing);
    let kept = input
        .schema
        .fields()
        .iter()
        .map(|f| match table_schema.field_with_name(f.name()) {
            Ok(_) => format!("t.{}", quote(f.name())),
            Err(_) => format!("NULL AS {}", quote(f.name())),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {kept} FROM run_keys k RIGHT ANTI JOIN touched t ON {}",
        key_match(input.key, "t")
    );
    let rewritten = super::write_sql(&ctx, &sql, &input.output(), "m").await?;
    let after: u64 = rewritten.iter().map(|f| f.rows).sum();
    merged.matched = before.saturating_sub(after);
    merged.files.extend(rewritten);
    let now = chrono::Utc::now().timestamp_millis();
    merged.removes.extend(
        existing
            .files()
            .filter(|f| touched.contains(&f.path))
            .map(|f| super::remove(f, now)),
    );
    Ok(merged)
}

/// Change capture's truncates: when the run holds one, its rows ordered before the last
/// truncate (by the cursor) and the truncates themselves leave the run's files, which
/// are written again (as `incoming`); the caller then drops the table's rows. Returns
/// the run's files and whether the run truncates.
async fn truncate(
    ctx: &SessionContext,
    input: &MergeInput<'_>,
    columns: &str,
) -> Result<(Vec<WrittenFile>, bool)> {
    let (Some(predicate), Some(cursor)) = (input.truncate_when, input.cursor) else {
        return Ok((input.files.clone(), false));
    };
    let c = quote(cursor);
    let last = row(
        ctx,
        &format!("SELECT CAST(max({c}) AS BIGINT) FROM incoming WHERE {predicate}"),
    )
    .await?;
    let Some(Some(at)) = last.first().copied() else {
        return Ok((input.files.clone(), false));
    };
    let sql = format!("SELECT {columns} FROM incoming WHERE {c} > {at}");
    let files = super::write_sql(ctx, &sql, &input.output(), "t").await?;
    deregister(ctx, &["incoming"])?;
    for file in &input.files {
        input.lake.delete(&input.lake.path(&file.path)?).await?;
    }
    register(ctx, "incoming", Arc::new(input.written(&files)?))?;
    Ok((files, true))
}

/// How a key's rows within the run are ranked: by the cursor, newest first (NULL last),
/// then by `tie_break`, greatest first (NULL last); a tie of both goes to a delete
/// (`delete_when` holds) over an upsert, then to the greatest by the other columns in
/// order, so that a replay gives the same table.
fn rank_order(input: &MergeInput<'_>) -> String {
    let ordered = |n: &str| input.cursor == Some(n) || input.tie_break == Some(n);
    let mut order: Vec<String> = input
        .cursor
        .iter()
        .chain(input.tie_break.iter())
        .map(|c| format!("{} DESC NULLS LAST", quote(c)))
        .collect();
    if let Some(p) = input.delete_when {
        order.push(format!("coalesce(({p}), false) DESC"));
    }
    order.extend(
        input
            .schema
            .fields()
            .iter()
            .map(|f| f.name())
            .filter(|n| !input.key.contains(n) && !ordered(n.as_str()))
            .map(|n| format!("{} DESC NULLS LAST", quote(n))),
    );
    format!(" ORDER BY {}", order.join(", "))
}

/// Counts the run's ties: keys with more than one row at their newest cursor value, and
/// those `tie_break` leaves tied too (the rule of `rank_order` decides them).
async fn ties(ctx: &SessionContext, input: &MergeInput<'_>) -> Result<Ties> {
    let Some(cursor) = input.cursor else {
        return Ok(Ties::default());
    };
    let keys = input.key_list();
    let tied_by = |order: String| {
        format!(
            "SELECT count(*) FROM (SELECT {keys} FROM (SELECT {keys}, rank() OVER (PARTITION BY {keys} ORDER BY {order}) AS sluice_tie__ FROM incoming) ranked WHERE sluice_tie__ = 1 GROUP BY {keys} HAVING count(*) > 1) tied"
        )
    };
    let by_cursor = format!("{} DESC NULLS LAST", quote(cursor));
    let tied = count(ctx, &tied_by(by_cursor.clone())).await?;
    let by_rule = match input.tie_break {
        Some(column) if tied > 0 => {
            let order = format!("{by_cursor}, {} DESC NULLS LAST", quote(column));
            count(ctx, &tied_by(order)).await?
        }
        _ => tied,
    };
    Ok(Ties { tied, by_rule })
}

/// A feed's merge: removes the run's rows whose key the table holds with a newer cursor
/// (`older` is the table's files that hold a run key), and makes `run_keys` the keys
/// that remain, so that only their table rows are replaced.
async fn drop_older(
    ctx: &SessionContext,
    input: &MergeInput<'_>,
    cursor: &str,
    older: Arc<DeltaFiles>,
    files: Vec<WrittenFile>,
) -> Result<Vec<WrittenFile>> {
    register(ctx, "run_rows", Arc::new(input.written(&files)?))?;
    register(ctx, "table_rows", older)?;
    let c = quote(cursor);
    let newer = format!(
        "{} AND (t.{c} > k.{c} OR (k.{c} IS NULL AND t.{c} IS NOT NULL))",
        key_match(input.key, "t")
    );
    let stale = count(
        ctx,
        &format!("SELECT count(*) FROM run_rows k LEFT SEMI JOIN table_rows t ON {newer}"),
    )
    .await?;
    if stale == 0 {
        deregister(ctx, &["run_rows", "table_rows"])?;
        return Ok(files);
    }
    let columns = input
        .schema
        .fields()
        .iter()
        .map(|f| format!("k.{}", quote(f.name())))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {columns} FROM run_rows k LEFT ANTI JOIN table_rows t ON {newer}");
    let fresh = super::write_sql(ctx, &sql, &input.output(), "n").await?;
    deregister(ctx, &["run_rows", "table_rows", "run_keys"])?;
    for file in &files {
        input.lake.delete(&input.lake.path(&file.path)?).await?;
    }
    register(ctx, "kept", Arc::new(input.written(&fresh)?))?;
    register_keys(ctx, "kept", &input.key_list()).await?;
    deregister(ctx, &["kept"])?;
    Ok(fresh)
}

/// Registers the distinct `keys` of table `from` as `run_keys`, in memory: the build
/// side of the joins that find and rewrite the table's rows of the run's keys.
async fn register_keys(ctx: &SessionContext, from: &str, keys: &str) -> Result<()> {
    let frame = ctx
        .sql(&format!("SELECT DISTINCT {keys} FROM {from}"))
        .await
        .map_err(|e| classify_datafusion(e, "the merge's keys"))?;
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .map_err(|e| classify_datafusion(e, "the merge's keys"))?;
    let table = MemTable::try_new(schema, vec![batches])
        .map_err(|e| classify_datafusion(e, "the merge's keys"))?;
    register(ctx, "run_keys", Arc::new(table))
}

/// The keys the run holds more than once, in one reading of its key columns; and, for
/// a key of one integer column when the table has rows (`bounded`), the least and the
/// greatest of its keys, for [`touched_files`].
async fn repeats(
    ctx: &SessionContext,
    input: &MergeInput<'_>,
    bounded: bool,
) -> Result<(u64, Option<(String, i64, i64)>)> {
    use datafusion::arrow::datatypes::DataType as T;
    let keys = input.key_list();
    let integer = match input.key {
        [column] if bounded => matches!(
            input.schema.field_with_name(column).map(|f| f.data_type()),
            Ok(T::Int8 | T::Int16 | T::Int32 | T::Int64)
        )
        .then_some(column),
        _ => None,
    };
    let bounds = integer
        .map(|c| {
            format!(
                ", CAST(min({q}) AS BIGINT), CAST(max({q}) AS BIGINT)",
                q = quote(c)
            )
        })
        .unwrap_or_default();
    let sql = format!(
        "SELECT count(*) FILTER (WHERE sluice_n__ > 1){bounds} FROM (SELECT {keys}, count(*) AS sluice_n__ FROM incoming GROUP BY {keys}) grouped"
    );
    Ok(match (row(ctx, &sql).await?.as_slice(), integer) {
        ([n, Some(lo), Some(hi)], Some(column)) => (
            n.unwrap_or(0).max(0).unsigned_abs(),
            Some((column.clone(), *lo, *hi)),
        ),
        ([n, ..], _) => (n.unwrap_or(0).max(0).unsigned_abs(), None),
        ([], _) => (0, None),
    })
}

/// The table's files that hold at least one of the run's keys, two files at a time; a
/// file whose statistics bound the key outside the run's keys is not read.
async fn touched_files(
    ctx: &SessionContext,
    existing: &DeltaFiles,
    key: &[String],
    bounds: Option<(String, i64, i64)>,
) -> Result<BTreeSet<String>> {
    // Owned, so that the reads below hold no borrow of the table across an await.
    let candidates: Vec<(String, DeltaFiles)> = existing
        .each_file()
        .filter(
            |(f, _)| match (&bounds, bounds.as_ref().and_then(|(c, _, _)| f.bounds(c))) {
                (Some((_, lo, hi)), Some((min, max))) => max >= *lo && min <= *hi,
                _ => true,
            },
        )
        .map(|(live, file)| (live.path.clone(), file))
        .collect();
    let found =
        futures::stream::iter(candidates.into_iter().enumerate().map(|(i, (path, file))| {
            let ctx = ctx.clone();
            async move {
                let name = format!("file_{i}");
                register(&ctx, &name, Arc::new(file))?;
                let sql = format!(
                    "SELECT count(*) FROM run_keys k RIGHT SEMI JOIN {name} t ON {}",
                    key_match(key, "t")
                );
                let n = count(&ctx, &sql).await;
                ctx.deregister_table(name.as_str())
                    .map_err(|e| classify_datafusion(e, "the merge"))?;
                Ok::<_, Error>((n? > 0).then_some(path))
            }
        }))
        .buffer_unordered(2)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(found.into_iter().flatten().collect())
}

/// `k.a = t.a AND k.b = t.b`
fn key_match(key: &[String], alias: &str) -> String {
    key.iter()
        .map(|k| format!("k.{q} = {alias}.{q}", q = quote(k)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

async fn count(ctx: &SessionContext, sql: &str) -> Result<u64> {
    let n = row(ctx, sql).await?.first().copied().flatten();
    Ok(n.map_or(0, |n| n.max(0).unsigned_abs()))
}

/// The first row `sql` answers, its BIGINT columns (`None`: NULL).
async fn row(ctx: &SessionContext, sql: &str) -> Result<Vec<Option<i64>>> {
    let batches = ctx
        .sql(sql)
        .await
        .map_err(|e| classify_datafusion(e, "planning the merge"))?
        .collect()
        .await
        .map_err(|e| classify_datafusion(e, "the merge"))?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    Ok(batch
        .columns()
        .iter()
        .map(|c| {
            c.as_any()
                .downcast_ref::<Int64Array>()
                .filter(|a| a.is_valid(0))
                .map(|a| a.value(0))
        })
        .collect())
}

fn register(
    ctx: &SessionContext,
    name: &str,
    table: Arc<dyn datafusion::datasource::TableProvider>,
) -> Result<()> {
    ctx.register_table(name, table)
        .map(|_| ())
        .map_err(|e| classify_datafusion(e, "the merge"))
}

fn deregister(ctx: &SessionContext, names: &[&str]) -> Result<()> {
    for name in names {
        ctx.deregister_table(*name)
            .map_err(|e| classify_datafusion(e, "the merge"))?;
    }
    Ok(())
}
