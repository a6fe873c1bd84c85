//! The transform: the job's DataFusion SQL over the extract, which is registered as the
//! streaming table `source`. Batches flow through; nothing is collected.

use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::{Column, ScalarValue};
use datafusion::dataframe::DataFrame;
use datafusion::execution::TaskContext;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::stream::{BoxStream, StreamExt};

mod to_char;
pub mod wrapped;

use crate::contract::Feed;
use crate::error::{Error, Result, classify_datafusion};

/// The table name the extract has inside the transform.
pub const SOURCE_TABLE: &str = "source";

pub type BatchStream = BoxStream<'static, Result<RecordBatch>>;

/// The run's output as a DataFusion plan: the transform (or the extract as it is) over
/// the streaming table `source`, then the contract's casts and the quality flags.
pub struct Planned {
    ctx: SessionContext,
    frame: DataFrame,
}

/// A DataFusion runtime whose operators that hold rows (aggregates, sorts, joins) draw
/// from a pool of `bytes`, and spill to disk or fail with a clear error beyond it, instead
/// of growing without bound; its caches as `caches` says (a server shares some across
/// its queries' runtimes).
pub fn bounded_runtime(
    bytes: u64,
    caches: CacheManagerConfig,
) -> Result<Arc<datafusion::execution::runtime_env::RuntimeEnv>> {
    RuntimeEnvBuilder::new()
        .with_memory_limit(usize::try_from(bytes).unwrap_or(usize::MAX), 1.0)
        .with_cache_manager(caches)
        .build_arc()
        .map_err(|e| Error::internal(format!("a memory pool of {bytes} bytes: {e}")))
}

/// The functions sluice adds to DataFusion's, in transforms, `sluice query` and `serve`:
/// `to_char`, and the JSON functions of `datafusion-functions-json` (`json_get_str`,
/// `json_get_int`, `json_get_float`, `json_get_bool`, `json_get_json`, `json_get_array`,
/// `json_as_text`, `json_contains`, `json_length`, `json_object_keys`, and the operators
/// `->`, `->>`, `?`) over JSON text columns.
pub fn register_functions(ctx: &mut SessionContext) -> Result<()> {
    ctx.register_udf(to_char::udf());
    datafusion_functions_json::register_all(ctx)
        .map_err(|e| Error::internal(format!("registering the JSON functions: {e}")))
}

/// Plans `sql` (or, without a transform, the extract itself) over `input`.
pub async fn plan(
    sql: Option<&str>,
    schema: SchemaRef,
    input: BatchStream,
    memory_pool: u64,
) -> Result<Planned> {
    // One partition keeps the output in the extract's order, so that the same window
    // gives the same files; the extract, the plan and the writer still run concurrently.
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_information_schema(false);
    let runtime = bounded_runtime(memory_pool, CacheManagerConfig::default())?;
    let mut ctx = SessionContext::new_with_config_rt(config, runtime);
    register_functions(&mut ctx)?;
    let stream = RecordBatchStreamAdapter::new(
        schema.clone(),
        input.map(|r| r.map_err(datafusion::error::DataFusionError::from)),
    );
    let once = OnceStream {
        schema: schema.clone(),
        stream: Mutex::new(Some(Box::pin(stream))),
    };
    let table = StreamingTable::try_new(schema, vec![Arc::new(once)])
        .map_err(|e| Error::internal(format!("registering the extract: {e}")))?;
    ctx.register_table(SOURCE_TABLE, Arc::new(table))
        .map_err(|e| Error::internal(format!("registering the extract: {e}")))?;
    let frame = match sql {
        Some(sql) => ctx.sql(sql).await,
        None => ctx.table(SOURCE_TABLE).await,
    }
    .map_err(|e| classify_datafusion(e, "transform"))?;
    Ok(Planned { ctx, frame })
}

impl Planned {
    /// The output's columns.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(self.frame.schema().as_arrow().clone())
    }

    /// Shapes the output into the contract: each contract column from its output column
    /// (cast where the types differ; a value that does not fit fails the run) or NULL.
    pub fn conform(mut self, contract: &[crate::contract::Column], feeds: &[Feed]) -> Result<Self> {
        let schema = self.frame.schema().clone();
        let mut exprs = Vec::with_capacity(contract.len());
        for (column, feed) in contract.iter().zip(feeds) {
            let target = column.lake.arrow();
            let expr = match feed {
                Feed::Output(i) => {
                    let (qualifier, field) = schema.qualified_field(*i);
                    let expr = Expr::Column(Column::new(qualifier.cloned(), field.name()));
                    if field.data_type() == &target {
                        expr
                    } else {
                        cast(expr, target)
                    }
                }
                Feed::Null => lit(ScalarValue::try_from(&target)
                    .map_err(|e| Error::internal(format!("a NULL of {target}: {e}")))?),
            };
            exprs.push(expr.alias(&column.name));
        }
        self.frame = self
            .frame
            .select(exprs)
            .map_err(|e| classify_datafusion(e, "fitting the output to the schema contract"))?;
        Ok(self)
    }

    /// Replaces the output with `sql` run over it, where the output is the table `name`.
    pub async fn query_over(mut self, name: &str, sql: &str, doing: &str) -> Result<Self> {
        self.ctx
            .register_table(name, self.frame.into_view())
            .map_err(|e| Error::internal(format!("registering `{name}`: {e}")))?;
        self.frame = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| classify_datafusion(e, doing))?;
        Ok(self)
    }

    /// Starts the plan; batches flow as they are read.
    pub async fn execute(self) -> Result<BatchStream> {
        let output = self
            .frame
            .execute_stream()
            .await
            .map_err(|e| classify_datafusion(e, "transform"))?;
        Ok(output
            .map(|r| r.map_err(|e| classify_datafusion(e, "transform")))
            .boxed())
    }
}

/// The extract, which can be read once: a transform that reads `source` twice is refused
/// with a message instead of reading the database twice.
struct OnceStream {
    schema: SchemaRef,
    stream: Mutex<Option<SendableRecordBatchStream>>,
}

impl std::fmt::Debug for OnceStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnceStream")
    }
}

impl PartitionStream for OnceStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let taken = self.stream.lock().ok().and_then(|mut s| s.take());
        match taken {
            Some(stream) => stream,
            None => {
                let err = Error::user(
                    "the transform reads `source` more than once; sluice streams the extract once (use a WITH clause or window functions instead of a self-join)",
                );
                Box::pin(RecordBatchStreamAdapter::new(
                    self.schema.clone(),
                    futures::stream::once(async move { Err(err.into()) }),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;

    fn input() -> (SchemaRef, BatchStream) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("city", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(StringArray::from(vec!["Lyon", "Oslo", "Lyon"])),
            ],
        );
        let stream =
            futures::stream::iter(vec![batch.map_err(|e| Error::internal(e.to_string()))]).boxed();
        (schema, stream)
    }

    #[tokio::test]
    async fn sql_runs_over_the_stream() -> Result<()> {
        let (schema, stream) = input();
        let planned = plan(
            Some("SELECT id * 10 AS x, upper(city) AS city FROM source WHERE id > 1"),
            schema,
            stream,
            64 << 20,
        )
        .await?;
        assert_eq!(planned.schema().field(0).name(), "x");
        let out = planned.execute().await?;
        let batches: Vec<RecordBatch> = out.try_collect().await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2);
        Ok(())
    }

    #[tokio::test]
    async fn bad_sql_is_the_users_error() {
        let (schema, stream) = input();
        let err = plan(Some("SELECT nope FROM source"), schema, stream, 64 << 20)
            .await
            .err();
        assert!(err.is_some_and(
            |e| e.class == crate::error::ErrorClass::User && e.message.contains("nope")
        ));
    }
}
