//! One version of a Delta table as a DataFusion table: the version's live files, each
//! with its partition values, read by DataFusion's Parquet scan (the files hold no
//! partition columns, as on plain Parquet).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, BooleanArray};
use datafusion::arrow::datatypes::{FieldRef, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake_core::DeltaTable;

use super::{AsOf, classify, partition_values};
use crate::error::{Error, Result};
use crate::sink::{Lake, WrittenFile};

/// A live file of a version.
#[derive(Debug, Clone)]
pub struct LiveFile {
    /// Relative to the table's folder, as the log records it (decoded).
    pub path: String,
    pub size: u64,
    pub rows: Option<u64>,
    pub partition_values: std::collections::HashMap<String, Option<String>>,
    /// Its Delta statistics (`minValues`, `maxValues`, `nullCount`), where written.
    pub stats: Option<serde_json::Value>,
}

impl LiveFile {
    /// The bounds its statistics give an integer column, if they give them.
    pub fn bounds(&self, column: &str) -> Option<(i64, i64)> {
        let stats = self.stats.as_ref()?;
        let lo = stats.get("minValues")?.get(column)?.as_i64()?;
        let hi = stats.get("maxValues")?.get(column)?.as_i64()?;
        Some((lo, hi))
    }
}

/// A Delta table version's files and schema.
#[derive(Debug)]
pub struct DeltaFiles {
    /// The table's columns in the table's order, partition columns included.
    schema: SchemaRef,
    partition_columns: Vec<String>,
    store_url: ObjectStoreUrl,
    files: Vec<(LiveFile, object_store::path::Path)>,
}

impl DeltaFiles {
    /// The table at `as_of`; `None` when the lake has no Delta table by that name.
    pub async fn open(lake: &Lake, table: &str, as_of: AsOf) -> Result<Option<DeltaFiles>> {
        let Some(delta) = super::open(lake, table, as_of).await? else {
            return Ok(None);
        };
        Self::of(lake, table, &delta).map(Some)
    }

    /// The files of the version `delta` is loaded at.
    pub fn of(lake: &Lake, table: &str, delta: &DeltaTable) -> Result<DeltaFiles> {
        let state = delta
            .snapshot()
            .map_err(|e| classify(e, &format!("the Delta table {table}")))?;
        let files = state
            .log_data()
            .iter()
            .map(|view| LiveFile {
                path: view.path().to_string(),
                size: u64::try_from(view.size()).unwrap_or(0),
                rows: view.num_records().map(|n| n as u64),
                partition_values: view.partition_values_map(),
                stats: view.stats().and_then(|s| serde_json::from_str(&s).ok()),
            })
            .collect();
        Self::from_parts(
            lake,
            table,
            state.snapshot().arrow_schema(),
            state.metadata().partition_columns().to_vec(),
            files,
        )
    }

    /// A run's written files (in no version yet) as a table of `schema`.
    pub fn written(
        lake: &Lake,
        table: &str,
        schema: SchemaRef,
        partition_by: &[String],
        files: &[WrittenFile],
    ) -> Result<DeltaFiles> {
        let live = files
            .iter()
            .map(|f| LiveFile {
                path: f
                    .path
                    .strip_prefix(&format!("{table}/"))
                    .unwrap_or(&f.path)
                    .to_string(),
                size: f.bytes,
                rows: Some(f.rows),
                partition_values: partition_values(&f.partition),
                stats: f.stats.clone(),
            })
            .collect();
        DeltaFiles::from_parts(lake, table, schema, partition_by.to_vec(), live)
    }

    fn from_parts(
        lake: &Lake,
        table: &str,
        schema: SchemaRef,
        partition_columns: Vec<String>,
        live: Vec<LiveFile>,
    ) -> Result<DeltaFiles> {
        let (store_url, _) = lake.scan_location(table)?;
        let files = live
            .into_iter()
            .map(|f| {
                let (_, location) = lake.scan_location(&format!("{table}/{}", f.path))?;
                Ok((f, location))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(DeltaFiles {
            schema,
            partition_columns,
            store_url: ObjectStoreUrl::parse(&store_url)
                .map_err(|e| Error::internal(format!("lake store url: {e}")))?,
            files,
        })
    }

    pub fn files(&self) -> impl Iterator<Item = &LiveFile> {
        self.files.iter().map(|(f, _)| f)
    }

    pub fn partition_columns(&self) -> &[String] {
        &self.partition_columns
    }

    /// The same table restricted to `keep`'s files (a merge reads the files it may
    /// rewrite, an optimize the ones it bin-packs).
    pub fn only(&self, keep: impl Fn(&LiveFile) -> bool) -> DeltaFiles {
        self.with_files(
            self.files
                .iter()
                .filter(|(f, _)| keep(f))
                .cloned()
                .collect(),
        )
    }

    /// Each file as a table of its own, with the file.
    pub fn each_file(&self) -> impl Iterator<Item = (&LiveFile, DeltaFiles)> {
        self.files
            .iter()
            .map(|file| (&file.0, self.with_files(vec![file.clone()])))
    }

    fn with_files(&self, files: Vec<(LiveFile, object_store::path::Path)>) -> DeltaFiles {
        DeltaFiles {
            schema: self.schema.clone(),
            partition_columns: self.partition_columns.clone(),
            store_url: self.store_url.clone(),
            files,
        }
    }

    fn on_partitions(&self, filter: &Expr) -> bool {
        let columns = filter.column_refs();
        !columns.is_empty()
            && columns
                .iter()
                .all(|c| self.partition_columns.iter().any(|p| p == &c.name))
    }

    fn partition_fields(&self) -> Vec<FieldRef> {
        self.partition_columns
            .iter()
            .filter_map(|c| self.schema.field_with_name(c).ok())
            .map(|f| Arc::new(f.clone()))
            .collect()
    }

    fn file_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.schema
                .fields()
                .iter()
                .filter(|f| !self.partition_columns.contains(f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        ))
    }

    fn partitioned_file(
        &self,
        file: &LiveFile,
        location: &object_store::path::Path,
        fields: &[FieldRef],
    ) -> datafusion::error::Result<PartitionedFile> {
        let values = fields
            .iter()
            .map(
                |f| match file.partition_values.get(f.name()).cloned().flatten() {
                    Some(text) => ScalarValue::try_from_string(text, f.data_type()),
                    None => ScalarValue::try_from(f.data_type()),
                },
            )
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        // The location as the store names the object: `PartitionedFile::new` would take
        // it as text and encode it again (`%` as `%25`, `ã` as `%C3%A3`), naming a file
        // that is not there for any partition value Hive escaping touched.
        let mut scanned = PartitionedFile::new(location.to_string(), file.size);
        scanned.object_meta.location = location.clone();
        Ok(scanned.with_partition_values(values))
    }
}

#[async_trait]
impl TableProvider for DeltaFiles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Filters on partition columns only choose the files (as Athena prunes partitions);
    /// DataFusion still applies them to the rows.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.on_partitions(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        if self.files.is_empty() {
            let projected = self.schema.project(&wanted)?;
            return Ok(Arc::new(EmptyExec::new(Arc::new(projected))));
        }
        let file_schema = self.file_schema();
        let partition_fields = self.partition_fields();
        // The scan gives the file's columns, then the partition columns: map the
        // table's column order onto that.
        let scan_index = |name: &str| -> datafusion::error::Result<usize> {
            file_schema
                .index_of(name)
                .ok()
                .or_else(|| {
                    partition_fields
                        .iter()
                        .position(|f| f.name() == name)
                        .map(|i| file_schema.fields().len() + i)
                })
                .ok_or_else(|| DataFusionError::Internal(format!("column {name} is not scanned")))
        };
        let indices = wanted
            .iter()
            .map(|&i| scan_index(self.schema.field(i).name()))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let files = self
            .files
            .iter()
            .map(|(f, location)| self.partitioned_file(f, location, &partition_fields))
            .collect::<datafusion::error::Result<Vec<_>>>()?;
        let files = prune(state, files, &partition_fields, filters)?;
        if files.is_empty() {
            let projected = self.schema.project(&wanted)?;
            return Ok(Arc::new(EmptyExec::new(Arc::new(projected))));
        }
        let source = Arc::new(ParquetSource::new(
            TableSchema::builder(file_schema)
                .with_table_partition_cols(partition_fields)
                .build(),
        ));
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_file_group(FileGroup::new(files))
            .with_limit(limit)
            .with_projection_indices(Some(indices))?
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// The files whose partition values every filter holds for (a NULL result drops the file).
fn prune(
    state: &dyn Session,
    files: Vec<PartitionedFile>,
    fields: &[FieldRef],
    filters: &[Expr],
) -> datafusion::error::Result<Vec<PartitionedFile>> {
    if filters.is_empty() || fields.is_empty() || files.is_empty() {
        return Ok(files);
    }
    let schema = Arc::new(Schema::new(fields.to_vec()));
    let columns = (0..fields.len())
        .map(|i| ScalarValue::iter_to_array(files.iter().map(|f| f.partition_values[i].clone())))
        .collect::<datafusion::error::Result<Vec<_>>>()?;
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
    let mut keep = vec![true; files.len()];
    for filter in filters {
        let filter = datafusion::logical_expr::expr_rewriter::unnormalize_col(filter.clone());
        let expr = state.create_physical_expr(filter, &df_schema)?;
        let result = expr.evaluate(&batch)?.into_array(files.len())?;
        let Some(result) = result.as_any().downcast_ref::<BooleanArray>() else {
            continue;
        };
        for (i, k) in keep.iter_mut().enumerate() {
            *k = *k && result.is_valid(i) && result.value(i);
        }
    }
    Ok(files
        .into_iter()
        .zip(keep)
        .filter_map(|(f, k)| k.then_some(f))
        .collect())
}
