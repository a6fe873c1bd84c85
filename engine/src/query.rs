//! `sluice query`: ANSI SQL over the lake's tables, each registered from its Hive layout
//! (partition folders become string columns), the way Athena sees them.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
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

/// A DataFusion context with every table of the lake registered under its name.
pub async fn lake_context(lake: &Lake) -> Result<SessionContext> {
    register_tables(lake, SessionContext::new(), |_| true).await
}

/// Registers in `ctx` the lake's tables that `wanted` accepts, each under its name.
pub async fn register_tables(
    lake: &Lake,
    ctx: SessionContext,
    wanted: impl Fn(&str) -> bool,
) -> Result<SessionContext> {
    register_store(lake, &ctx)?;
    for (name, table) in lake_tables(lake, &ctx, wanted).await? {
        ctx.register_table(name.as_str(), table)
            .map_err(|e| classify_datafusion(e, &format!("registering lake table {name}")))?;
    }
    Ok(ctx)
}

/// Lets `ctx` read the lake's bucket (a folder lake needs nothing).
pub fn register_store(lake: &Lake, ctx: &SessionContext) -> Result<()> {
    let base =
        url::Url::parse(lake.url()).map_err(|e| Error::internal(format!("lake url: {e}")))?;
    if base.scheme() != "file" {
        let bucket = url::Url::parse(&format!(
            "{}://{}",
            base.scheme(),
            base.host_str().unwrap_or_default()
        ))
        .map_err(|e| Error::internal(format!("lake url: {e}")))?;
        ctx.register_object_store(&bucket, lake.store());
    }
    Ok(())
}

/// The lake's tables that `wanted` accepts, by name, as they are now (`ctx` must read the
/// lake: `register_store`). A table reads its folder's file list at each scan.
pub async fn lake_tables(
    lake: &Lake,
    ctx: &SessionContext,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<(String, Arc<ListingTable>)>> {
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
        if let Some(table) = table_from_dir(ctx, lake, &name).await? {
            tables.push((name, table));
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
pub async fn query(lake: &Lake, sql: &str) -> Result<Vec<RecordBatch>> {
    let ctx = lake_context(lake).await?;
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
/// (`table 'datafusion.public.nosuch' not found`).
fn unknown_table(e: &DataFusionError) -> Option<&str> {
    let DataFusionError::Plan(message) = e.find_root() else {
        return None;
    };
    let quoted = message
        .strip_prefix("table '")?
        .strip_suffix("' not found")?;
    quoted.rsplit('.').next()
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
