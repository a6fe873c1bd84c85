//! `--engine local`: DataFusion over the lake in this process. Each query gets a session
//! with only the key's tables and its own memory pool; the tables come from a listing
//! of the lake kept for a moment (`listing_ttl`), so that a busy server does not list the
//! bucket per query, while a new table shows within that moment and a new file in a table
//! at once (a table lists its files at each scan).

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::config::ConfigNonZeroUsize;
use datafusion::execution::cache::cache_manager::{
    CacheManager, CacheManagerConfig, FileMetadataCache,
};
use datafusion::execution::context::SQLOptions;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use tokio::sync::Mutex;

use super::leash::Leash;
use super::{Batches, Engine, Query, Rows, TableInfo};
use crate::query::LakeTable;
use crate::serve::keys::Key;
use crate::serve::refusal::Refusal;
use crate::sink::Lake;
use crate::sink::delta::AsOf;
use crate::sink::delta::scan::DeltaFiles;

/// The deepest nesting the session's parser takes (more than any --max-sql-depth
/// worth setting; the guard refuses deeper statements first).
const PARSER_DEPTH: usize = 100_000;

/// The lake's tables by name, as listed at one moment.
type Listing = Arc<Vec<(String, LakeTable)>>;

pub struct Local {
    lake: Lake,
    /// Each query's memory pool, and the most one step of it may make at once.
    memory: u64,
    /// The most bytes one value a function makes may have.
    value_bytes: usize,
    /// The Parquet footers read, kept across queries (an entry holds for its file's size
    /// and time, so a rewritten file is read again); file listings are not kept, so a new
    /// file is seen by the next query.
    footers: Arc<FileMetadataCache>,
    listing_ttl: Duration,
    listed: Mutex<Option<(Instant, Listing)>>,
}

impl Local {
    pub fn new(
        lake: Lake,
        memory: u64,
        value_bytes: usize,
        listing_ttl: Duration,
    ) -> crate::error::Result<Self> {
        let footers = CacheManager::try_new(&CacheManagerConfig::default())
            .map_err(|e| crate::error::classify_datafusion(e, "the footer cache"))?
            .get_file_metadata_cache();
        Ok(Self {
            lake,
            memory,
            value_bytes,
            footers,
            listing_ttl,
            listed: Mutex::new(None),
        })
    }

    /// The lake's tables, listed again once the last listing is older than the TTL.
    async fn lake_tables(&self) -> Result<Listing, Refusal> {
        let mut listed = self.listed.lock().await;
        if let Some((at, tables)) = listed.as_ref()
            && at.elapsed() < self.listing_ttl
        {
            return Ok(tables.clone());
        }
        let ctx = SessionContext::new();
        self.lake.register_store(&ctx)?;
        let tables = Arc::new(
            crate::query::lake_tables(&self.lake, &ctx, |_| true, |_| AsOf::Latest).await?,
        );
        *listed = Some((Instant::now(), tables.clone()));
        Ok(tables)
    }

    /// A session over the lake with the key's tables only and the per-query memory pool.
    async fn session(&self, key: &Key) -> Result<SessionContext, Refusal> {
        let mut config = SessionConfig::new().with_information_schema(true);
        // The guard has bounded how deep a statement nests (--max-sql-depth) before any
        // engine parses it: the parser here takes whatever the guard let through.
        config.options_mut().sql_parser.recursion_limit =
            ConfigNonZeroUsize::try_new(PARSER_DEPTH)?;
        // Each partition's sort sets aside this much for merging what it spilled: by
        // default 10 MB a partition, which alone can exceed a small pool. A quarter of
        // the pool, shared by the partitions, leaves the rest to the rows.
        let partitions = config.target_partitions().max(1) as u64;
        let merge = (self.memory / 4 / partitions).min(10 << 20);
        config.options_mut().execution.sort_spill_reservation_bytes =
            usize::try_from(merge).unwrap_or(usize::MAX);
        let caches = CacheManagerConfig::default()
            .with_file_metadata_cache(Some(self.footers.clone()))
            .with_list_files_cache_limit(0);
        let runtime = crate::transform::bounded_runtime(self.memory, caches)?;
        let mut ctx = SessionContext::new_with_config_rt(config, runtime);
        crate::transform::register_functions(&mut ctx)?;
        super::bounded::register(&ctx, self.value_bytes, self.batch_limit());
        self.lake.register_store(&ctx)?;
        for (name, table) in self.lake_tables().await?.iter() {
            if key.allows(name) {
                ctx.register_table(name.as_str(), table.provider())?;
            }
        }
        Ok(ctx)
    }

    /// The query planned over the key's session, its parameters bound.
    async fn frame(&self, key: &Key, query: &Query) -> Result<DataFrame, Refusal> {
        let ctx = self.session(key).await?;
        if let Some(as_of) = &query.as_of {
            self.travel(&ctx, key, &query.sql, as_of).await?;
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let mut frame = ctx
            .sql_with_options(&query.sql, options)
            .await
            .map_err(|e| Refusal::from(crate::query::planning_error(None, &ctx, e)))?;
        if let Some(params) = &query.params {
            frame = frame
                .with_param_values(param_values(params)?)
                .map_err(|e| Refusal::bad(format!("the parameters do not fit the query: {e}")))?;
        }
        Ok(frame)
    }

    /// Time travel: the Delta tables `sql` names (of those the key sees) registered again
    /// at `as_of`, the others left at their latest version; a version a named table does
    /// not have is the client's error, naming the versions it has.
    async fn travel(
        &self,
        ctx: &SessionContext,
        key: &Key,
        sql: &str,
        as_of: &str,
    ) -> Result<(), Refusal> {
        let as_of = AsOf::parse(as_of)?;
        for name in crate::query::named_tables(ctx, sql) {
            if !key.allows(&name) {
                continue;
            }
            let Some(table) = DeltaFiles::open(&self.lake, &name, as_of).await? else {
                continue;
            };
            ctx.deregister_table(name.as_str())?;
            ctx.register_table(name.as_str(), Arc::new(table))?;
        }
        Ok(())
    }

    /// The most bytes one step of a query may make at once: its memory.
    fn batch_limit(&self) -> usize {
        usize::try_from(self.memory).unwrap_or(usize::MAX)
    }

    /// The query running: its physical plan on the leash, its rows in the columns the
    /// plan announced (`schema` tells the same), and its memory pool.
    async fn run(&self, key: &Key, query: &Query, leash: &Leash) -> Result<Run, Refusal> {
        let frame = self.frame(key, query).await?;
        let schema: SchemaRef = frame.schema().inner().clone();
        let task = Arc::new(frame.task_ctx());
        let plan = frame.create_physical_plan().await?;
        let plan = super::checked::wrap(plan, leash, self.batch_limit())?;
        let pool = task.memory_pool().clone();
        let stream = execute_stream(plan, task)?;
        let announced = schema.clone();
        let rows = stream
            .map(move |batch| conform(batch.map_err(Refusal::from)?, &announced))
            .boxed();
        Ok(Run { schema, rows, pool })
    }

    async fn describe(&self, name: &str, table: &LakeTable) -> Result<TableInfo, Refusal> {
        // Files, bytes and partition folders: a Delta table's live files, a Parquet
        // table's in its folder.
        let (files, bytes, mut folders) = match table {
            LakeTable::Delta(delta) => {
                let live: Vec<_> = delta.files().collect();
                let folders = live
                    .iter()
                    .map(|f| {
                        f.path
                            .rsplit_once('/')
                            .map_or("", |(dir, _)| dir)
                            .to_string()
                    })
                    .collect::<Vec<_>>();
                (live.len(), live.iter().map(|f| f.size).sum(), folders)
            }
            LakeTable::Parquet(_) => {
                let objects = self.lake.list(&self.lake.table_dir(name)?).await?;
                let parquet: Vec<_> = objects
                    .iter()
                    .filter(|o| o.location.as_ref().ends_with(".parquet"))
                    .collect();
                let folders = parquet
                    .iter()
                    .filter_map(|o| o.location.as_ref().rsplit_once('/').map(|(dir, _)| dir))
                    .map(str::to_string)
                    .collect::<Vec<_>>();
                (parquet.len(), parquet.iter().map(|o| o.size).sum(), folders)
            }
        };
        folders.sort_unstable();
        folders.dedup();
        let partition_columns = table.partition_columns();
        let schema = table.provider().schema();
        Ok(TableInfo {
            name: name.to_string(),
            columns: columns(&schema),
            partitions: Some(if partition_columns.is_empty() {
                0
            } else {
                folders.len()
            }),
            partition_columns,
            files: Some(files),
            bytes: Some(bytes),
            quarantine_of: TableInfo::quarantine_of(name),
            schema,
        })
    }
}

/// A query running.
struct Run {
    schema: SchemaRef,
    rows: Batches,
    pool: Arc<dyn MemoryPool>,
}

/// A batch in the columns announced for it: the plan may know more than the planner
/// told (a literal's column is never null), and a client holds the server to what it
/// announced (Flight SQL's ADBC checks the streamed schema against GetFlightInfo's).
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, Refusal> {
    if batch.schema_ref() == schema {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column.clone())
            } else {
                datafusion::arrow::compute::cast(column, field.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|columns| {
            RecordBatch::try_new_with_options(
                schema.clone(),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )
        });
    columns.map_err(|e| {
        Refusal::from(crate::error::Error::internal(format!(
            "the rows do not fit the columns announced for them: {e}"
        )))
    })
}

/// Columns as `/v1/tables` lists them.
pub fn columns(schema: &SchemaRef) -> Vec<serde_json::Value> {
    schema
        .fields()
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name(),
                "type": f.data_type().to_string(),
                "nullable": f.is_nullable(),
            })
        })
        .collect()
}

#[async_trait::async_trait]
impl Engine for Local {
    fn name(&self) -> &'static str {
        "local"
    }

    /// The page's rows are held until it is answered: they count against the query's
    /// memory pool and the leash's answer bytes as they are taken.
    async fn page(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
        limit: usize,
        leash: &Leash,
    ) -> Result<Rows, Refusal> {
        let offset: usize = match cursor {
            Some(text) => text
                .parse()
                .map_err(|_| Refusal::bad("`next` is not a continuation token this server gave"))?,
            None => 0,
        };
        let run = self.run(key, query, leash).await?;
        let held = MemoryConsumer::new("answer page").register(&run.pool);
        let (schema, mut stream) = (run.schema, run.rows);
        let (mut skip, mut want) = (offset, limit);
        let mut batches = Vec::new();
        let more = loop {
            let Some(batch) = stream.next().await else {
                break false;
            };
            let mut batch = batch?;
            if skip > 0 {
                let dropped = skip.min(batch.num_rows());
                skip -= dropped;
                batch = batch.slice(dropped, batch.num_rows() - dropped);
            }
            if batch.num_rows() == 0 {
                continue;
            }
            if want == 0 {
                break true;
            }
            let rows = batch.num_rows();
            let taken = want.min(rows);
            want -= taken;
            let batch = batch.slice(0, taken);
            held.try_grow(leash.answer(&batch)?)
                .map_err(Refusal::from)?;
            batches.push(batch);
            if taken < rows {
                break true;
            }
        };
        Ok(Rows {
            schema,
            batches,
            next: more.then(|| (offset + limit).to_string()),
        })
    }

    async fn schema(
        &self,
        key: &Key,
        query: &Query,
        _leash: &Leash,
    ) -> Result<(SchemaRef, Option<String>), Refusal> {
        Ok((self.frame(key, query).await?.schema().inner().clone(), None))
    }

    /// Planning is cheap here: every stream runs the query from its first row.
    async fn stream(
        &self,
        key: &Key,
        query: &Query,
        _cursor: Option<&str>,
        leash: &Leash,
    ) -> Result<(SchemaRef, Batches), Refusal> {
        let run = self.run(key, query, leash).await?;
        Ok((run.schema, run.rows))
    }

    async fn tables(&self, key: &Key, only: Option<&str>) -> Result<Vec<TableInfo>, Refusal> {
        let mut out = Vec::new();
        for (name, table) in self.lake_tables().await?.iter() {
            if key.allows(name) && only.is_none_or(|o| o == name) {
                out.push(self.describe(name, table).await?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

/// JSON parameters as DataFusion's: a list for `$1…`, an object for `$name`.
fn param_values(params: &serde_json::Value) -> Result<datafusion::common::ParamValues, Refusal> {
    let scalar = |v: &serde_json::Value| -> Result<ScalarValue, Refusal> {
        Ok(match v {
            serde_json::Value::Null => ScalarValue::Null,
            serde_json::Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => ScalarValue::Int64(Some(i)),
                None => ScalarValue::Float64(n.as_f64()),
            },
            serde_json::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
            other => {
                return Err(Refusal::bad(format!(
                    "a parameter is a string, number, boolean or null, not {other}"
                )));
            }
        })
    };
    match params {
        serde_json::Value::Array(list) => Ok(list
            .iter()
            .map(scalar)
            .collect::<Result<Vec<_>, _>>()?
            .into()),
        serde_json::Value::Object(map) => Ok(map
            .iter()
            .map(|(k, v)| Ok((k.clone(), scalar(v)?)))
            .collect::<Result<Vec<_>, Refusal>>()?
            .into()),
        _ => Err(Refusal::bad(
            "params is a list (for $1, $2, …) or an object (for $name)",
        )),
    }
}
