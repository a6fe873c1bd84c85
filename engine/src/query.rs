//! `sluice query`: ANSI SQL over the lake's tables, the way Athena sees them: a Parquet
//! table from its Hive layout (partition folders become string columns), a Delta table
//! from its log (at its latest version, or, for the tables a query names, `--as-of` an
//! earlier one).

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;

use crate::error::{Error, Result, classify_datafusion, classify_object_store};
use crate::sink::Lake;
use crate::sink::delta::{AsOf, scan::DeltaFiles};

/// A lake table as DataFusion reads it.
#[derive(Debug, Clone)]
pub enum LakeTable {
    /// Plain Parquet: the folder's files, listed at each scan.
    Parquet(Arc<ListingTable>),
    /// A Delta table version's files.
    Delta(Arc<DeltaFiles>),
}

impl LakeTable {
    pub fn provider(&self) -> Arc<dyn TableProvider> {
        match self {
            LakeTable::Parquet(t) => t.clone(),
            LakeTable::Delta(t) => t.clone(),
        }
    }

    pub fn partition_columns(&self) -> Vec<String> {
        match self {
            LakeTable::Parquet(t) => t
                .options()
                .table_partition_cols
                .iter()
                .map(|(name, _)| name.clone())
                .collect(),
            LakeTable::Delta(t) => t.partition_columns().to_vec(),
        }
    }
}

/// A DataFusion context with every table of the lake registered under its name: the
/// Delta tables `sql` names at `as_of`, every other at its latest version (time travel is
/// asked of the tables a query reads, not of the lake: a table without that version is
/// an error only when the query reads it).
pub async fn lake_context(lake: &Lake, sql: &str, as_of: AsOf) -> Result<SessionContext> {
    let mut ctx = SessionContext::new();
    crate::transform::register_functions(&mut ctx)?;
    lake.register_store(&ctx)?;
    let named = named_tables(&ctx, sql);
    let version = |name: &str| {
        if named.iter().any(|n| n == name) {
            as_of
        } else {
            AsOf::Latest
        }
    };
    for (name, table) in lake_tables(lake, &ctx, |_| true, version).await? {
        ctx.register_table(name.as_str(), table.provider())
            .map_err(|e| classify_datafusion(e, &format!("registering lake table {name}")))?;
    }
    Ok(ctx)
}

/// The tables `sql` reads (its relations, common table expressions excluded), as
/// DataFusion resolves their names (unquoted names lower-cased). A statement that does
/// not parse names none: planning it reports the error.
pub fn named_tables(ctx: &SessionContext, sql: &str) -> Vec<String> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let Ok(statement) = state.sql_to_statement(sql, &dialect) else {
        return Vec::new();
    };
    state
        .resolve_table_references(&statement)
        .map(|refs| refs.iter().map(|r| r.table().to_string()).collect())
        .unwrap_or_default()
}

/// The lake's tables that `wanted` accepts, by name, as they are now (`ctx` must read the
/// lake: `Lake::register_store`). A Parquet table reads its folder's file list at each
/// scan; a Delta table is the version `as_of` gives for its name.
pub async fn lake_tables(
    lake: &Lake,
    ctx: &SessionContext,
    wanted: impl Fn(&str) -> bool,
    as_of: impl Fn(&str) -> AsOf,
) -> Result<Vec<(String, LakeTable)>> {
    let listing = lake
        .store()
        .list_with_delimiter(Some(&lake.path("")?))
        .await
        .map_err(|e| classify_object_store(e, "listing the lake's tables"))?;
    let mut tables = Vec::new();
    for dir in listing.common_prefixes {
        let Some(name) = dir.filename().map(str::to_string) else {
            continue;
        };
        if name.starts_with('_') || name.starts_with('.') || !wanted(&name) {
            continue;
        }
        if let Some(table) = DeltaFiles::open(lake, &name, as_of(&name)).await? {
            tables.push((name, LakeTable::Delta(Arc::new(table))));
        } else if let Some(table) = table_from_dir(ctx, lake, &name).await? {
            tables.push((name, LakeTable::Parquet(table)));
        }
    }
    Ok(tables)
}

async fn table_from_dir(
    ctx: &SessionContext,
    lake: &Lake,
    name: &str,
) -> Result<Option<Arc<ListingTable>>> {
    // A table folder with no Parquet file (yet) has no schema: nothing to register.
    let objects = lake.list(&lake.table_dir(name)?).await?;
    // The newest file has the table's current schema: a contract only ever evolves by
    // adding columns and widening types, and older files are read into it (missing
    // columns as NULL, narrower types cast), as Athena reads them into the catalog's.
    let Some(newest) = objects
        .iter()
        .filter(|o| o.location.as_ref().ends_with(".parquet"))
        .max_by_key(|o| o.last_modified)
    else {
        return Ok(None);
    };
    let url = format!("{}/{name}/", lake.url().trim_end_matches('/'));
    let table_url = ListingTableUrl::parse(&url)
        .map_err(|e| classify_datafusion(e, &format!("lake table {name}")))?;
    let format = Arc::new(ParquetFormat::default());
    let state = ctx.state();
    let schema = format
        .infer_schema(&state, &lake.store(), std::slice::from_ref(newest))
        .await
        .map_err(|e| classify_datafusion(e, &format!("reading the schema of {name}")))?;
    let options = ListingOptions::new(format).with_file_extension(".parquet");
    let config = ListingTableConfig::new(table_url).with_listing_options(options);
    let config = config
        .infer_partitions_from_path(&state)
        .await
        .map_err(|e| classify_datafusion(e, &format!("reading the partitions of {name}")))?;
    let config = config.with_schema(schema);
    let table = ListingTable::try_new(config)
        .map_err(|e| classify_datafusion(e, &format!("lake table {name}")))?;
    Ok(Some(Arc::new(table)))
}

/// Runs `sql` over the lake and returns every result batch (query results are for
/// people: they are expected to be small).
pub async fn query(lake: &Lake, sql: &str, as_of: AsOf) -> Result<Vec<RecordBatch>> {
    let ctx = lake_context(lake, sql, as_of).await?;
    let frame = ctx
        .sql(sql)
        .await
        .map_err(|e| planning_error(Some(lake), &ctx, e))?;
    frame
        .collect()
        .await
        .map_err(|e| classify_datafusion(e, "query"))
}

/// A planning error; a table the context does not have is named with the tables it has.
/// `lake` names where the tables come from (for the lake's own users, not for a server's
/// clients, who are not told where the lake is).
pub fn planning_error(lake: Option<&Lake>, ctx: &SessionContext, e: DataFusionError) -> Error {
    match unknown_table(&e) {
        Some(name) => no_such_table(lake, ctx, name),
        None => classify_datafusion(e, "query"),
    }
}

/// The table a planning error says does not exist: DataFusion names it fully qualified
/// (`table 'datafusion.public.nosuch' not found`), the catalog and schema first — the
/// table's own name may hold dots (`"/tmp/x.parquet"`).
fn unknown_table(e: &DataFusionError) -> Option<&str> {
    let DataFusionError::Plan(message) = e.find_root() else {
        return None;
    };
    let quoted = message
        .strip_prefix("table '")?
        .strip_suffix("' not found")?;
    let mut parts = quoted.splitn(3, '.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(_), Some(_), Some(table)) => Some(table),
        _ => quoted.rsplit('.').next(),
    }
}

/// The tables registered in `ctx`'s default schema, sorted.
pub fn table_names(ctx: &SessionContext) -> Vec<String> {
    let options = ctx.copied_config();
    let defaults = &options.options().catalog;
    let mut tables = ctx
        .catalog(&defaults.default_catalog)
        .and_then(|c| c.schema(&defaults.default_schema))
        .map(|s| s.table_names())
        .unwrap_or_default();
    tables.sort();
    tables
}

/// The lake's tables, the closest to `name`, and (given the lake) where tables come from.
fn no_such_table(lake: Option<&Lake>, ctx: &SessionContext, name: &str) -> Error {
    let tables = table_names(ctx);
    let hint = crate::spec::shape::did_you_mean(name, tables.iter().map(String::as_str))
        .map(|m| format!(" Did you mean `{m}`?"))
        .unwrap_or_default();
    let Some(lake) = lake else {
        return Error::user(format!(
            "no table `{name}`.{hint} The tables: {}",
            if tables.is_empty() {
                "none".to_string()
            } else {
                tables.join(", ")
            }
        ));
    };
    let listed = if tables.is_empty() {
        "it has none yet: `sluice run` writes them".to_string()
    } else {
        format!("its tables: {}", tables.join(", "))
    };
    Error::user(format!(
        "the lake {} has no table `{name}`.{hint} {listed} (each is a folder of the lake with Parquet files in it)",
        lake.url()
    ))
}

/// The result as a text table.
pub fn render(batches: &[RecordBatch]) -> Result<String> {
    datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .map(|t| t.to_string())
        .map_err(|e| Error::internal(format!("formatting the result: {e}")))
}
