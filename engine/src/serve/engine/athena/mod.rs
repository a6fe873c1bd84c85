//! `--engine athena`: the same API in front of Amazon Athena, for lakes and queries that
//! outgrow one machine. A query runs in the configured workgroup on the Glue database
//! the jobs publish to; its parameters go as Athena's `ExecutionParameters` (each `$1` or
//! `$name` becomes a `?` and its value a literal that Athena parses as one value: bound,
//! never spliced); its rows are read page by page through `GetQueryResults`, the cursor
//! being the execution and Athena's own token, so a page of ours never runs the query
//! again.
//!
//! A key's allow-list holds here too: every table the statement names must be one of its
//! tables in that database (a catalog or another database is refused as a missing table),
//! and `SHOW` / `DESCRIBE`, which Athena would answer for every table, are answered by
//! `/v1/tables` instead. Values come as Athena gives them: booleans, integers and floating
//! point typed, everything else (decimals, dates, timestamps, nested values) as text.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_athena::types::{
    QueryExecutionContext, QueryExecutionState, ResultConfiguration, Row as AthenaRow,
};
use datafusion::arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::leash::Leash;
use super::{Batches, Engine, Query, Rows, TableInfo};
use crate::aws::classify_sdk;
use crate::error::Error;
use crate::serve::keys::Key;
use crate::serve::refusal::Refusal;

mod statement;
use self::statement::{allowed, bind};

/// Athena returns at most this many rows per `GetQueryResults`.
const ATHENA_PAGE: usize = 1000;

#[derive(Clone)]
pub struct Athena {
    athena: aws_sdk_athena::Client,
    glue: aws_sdk_glue::Client,
    workgroup: String,
    database: String,
    /// Where results go when the workgroup does not set it.
    output: Option<String>,
}

/// Where the next page starts: the execution, Athena's token of the page to ask for, and
/// the rows of that page already given.
#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    execution: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default)]
    skip: usize,
}

impl Athena {
    pub async fn new(workgroup: String, database: String, output: Option<String>) -> Self {
        let config = crate::aws::config().await;
        Self {
            athena: aws_sdk_athena::Client::new(config),
            glue: aws_sdk_glue::Client::new(config),
            workgroup,
            database,
            output,
        }
    }

    /// The query as Athena is sent it: its text with `?` for each parameter, and the
    /// parameters' literals; refused when it names a table the key does not see.
    fn bound(&self, key: &Key, query: &Query) -> Result<(String, Vec<String>), Refusal> {
        if query.as_of.is_some() {
            // Athena reads a Delta table at its latest version only.
            return Err(Refusal::bad(
                "as_of (time travel) is served by the local engine; this server queries Athena, which reads Delta tables at their latest version",
            ));
        }
        allowed(&query.sql, key, &self.database)?;
        bind(&query.sql, query.params.as_ref())
    }

    /// A cursor from a client (a continuation token, a ticket), when it reads the
    /// execution of this very query (so that no key reads another query's rows).
    async fn resume(&self, key: &Key, query: &Query, text: &str) -> Result<Cursor, Refusal> {
        let foreign = || Refusal::bad("`next` is not a continuation token this server gave");
        let cursor: Cursor = serde_json::from_str(text).map_err(|_| foreign())?;
        let (sql, parameters) = self.bound(key, query)?;
        let described = self
            .athena
            .get_query_execution()
            .query_execution_id(&cursor.execution)
            .send()
            .await
            .map_err(|_| foreign())?;
        let execution = described.query_execution().ok_or_else(foreign)?;
        let same = execution.query() == Some(sql.as_str())
            && execution.work_group() == Some(self.workgroup.as_str())
            && execution.execution_parameters() == parameters.as_slice();
        if same { Ok(cursor) } else { Err(foreign()) }
    }

    /// Where rows are read from: a client's cursor, or the first row of a new execution.
    async fn start(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
    ) -> Result<Cursor, Refusal> {
        Ok(match cursor {
            Some(text) => self.resume(key, query, text).await?,
            None => Cursor {
                execution: self.execute(key, query).await?,
                token: None,
                skip: 0,
            },
        })
    }

    /// Starts the query in the workgroup and waits for it to succeed.
    async fn execute(&self, key: &Key, query: &Query) -> Result<String, Refusal> {
        let (sql, parameters) = self.bound(key, query)?;
        let started = self
            .athena
            .start_query_execution()
            .query_string(sql)
            .work_group(&self.workgroup)
            .query_execution_context(
                QueryExecutionContext::builder()
                    .database(&self.database)
                    .build(),
            )
            .set_execution_parameters((!parameters.is_empty()).then_some(parameters))
            .set_result_configuration(
                self.output
                    .as_ref()
                    .map(|o| ResultConfiguration::builder().output_location(o).build()),
            )
            .send()
            .await
            .map_err(|e| Refusal::from(classify_sdk(e, "starting the Athena query")))?;
        let id = started
            .query_execution_id()
            .ok_or_else(|| Refusal::from(Error::external("Athena gave the query no id")))?
            .to_string();
        // Dropped before Athena is done (the query's time limit): Athena stops it too.
        let mut running = Running {
            athena: self.athena.clone(),
            id: id.clone(),
            done: false,
        };
        let mut wait = Duration::from_millis(100);
        loop {
            let described = self
                .athena
                .get_query_execution()
                .query_execution_id(&id)
                .send()
                .await
                .map_err(|e| Refusal::from(classify_sdk(e, "watching the Athena query")))?;
            let status = described.query_execution().and_then(|q| q.status());
            let state = status.and_then(|s| s.state());
            running.done = matches!(
                state,
                Some(
                    QueryExecutionState::Succeeded
                        | QueryExecutionState::Failed
                        | QueryExecutionState::Cancelled
                )
            );
            match state {
                Some(QueryExecutionState::Succeeded) => return Ok(id),
                Some(QueryExecutionState::Failed) | Some(QueryExecutionState::Cancelled) => {
                    let reason = status
                        .and_then(|s| s.state_change_reason())
                        .unwrap_or("no reason given");
                    return Err(Refusal::bad(format!("Athena refused the query: {reason}")));
                }
                _ => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Up to `limit` rows from `cursor` (one `GetQueryResults` call at most per 1,000).
    async fn read(&self, mut cursor: Cursor, limit: usize) -> Result<Page, Refusal> {
        let mut schema: Option<SchemaRef> = None;
        let mut rows: Vec<AthenaRow> = Vec::new();
        loop {
            let want = (limit - rows.len()).min(ATHENA_PAGE);
            let first = cursor.token.is_none();
            let got = self
                .athena
                .get_query_results()
                .query_execution_id(&cursor.execution)
                .set_next_token(cursor.token.clone())
                .max_results(
                    i32::try_from((cursor.skip + want + 1).min(ATHENA_PAGE)).unwrap_or(1000),
                )
                .send()
                .await
                .map_err(|e| Refusal::from(classify_sdk(e, "reading the Athena results")))?;
            let Some(set) = got.result_set() else {
                break;
            };
            let columns = set
                .result_set_metadata()
                .map(|m| m.column_info())
                .unwrap_or_default();
            let this_schema = schema
                .get_or_insert_with(|| {
                    Arc::new(Schema::new(
                        columns
                            .iter()
                            .map(|c| Field::new(c.name(), arrow_type(c.r#type()), true))
                            .collect::<Vec<_>>(),
                    ))
                })
                .clone();
            let mut page: Vec<&AthenaRow> = set.rows().iter().collect();
            // The first row of a SELECT's first page is its header.
            if first && page.first().is_some_and(|r| is_header(r, &this_schema)) {
                page.remove(0);
            }
            let available = page.len().saturating_sub(cursor.skip);
            let taken = available.min(limit - rows.len());
            rows.extend(page.into_iter().skip(cursor.skip).take(taken).cloned());
            if taken < available {
                cursor.skip += taken;
                return page_of(this_schema, &rows, Some(cursor));
            }
            match got.next_token() {
                Some(token) => {
                    cursor = Cursor {
                        execution: cursor.execution,
                        token: Some(token.to_string()),
                        skip: 0,
                    };
                    if rows.len() == limit {
                        return page_of(this_schema, &rows, Some(cursor));
                    }
                }
                None => return page_of(this_schema, &rows, None),
            }
        }
        page_of(
            schema.unwrap_or_else(|| Arc::new(Schema::empty())),
            &rows,
            None,
        )
    }
}

/// An Athena query this server started and waits for: dropped before it ended (the
/// query's time limit cut the wait), it is stopped in Athena, so that it neither runs on
/// nor bills beyond the answer its client was refused.
struct Running {
    athena: aws_sdk_athena::Client,
    id: String,
    done: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (athena, id) = (self.athena.clone(), std::mem::take(&mut self.id));
        runtime.spawn(async move {
            match athena
                .stop_query_execution()
                .query_execution_id(&id)
                .send()
                .await
            {
                Ok(_) => tracing::info!(execution = %id, "stopped the Athena query past its time"),
                Err(e) => tracing::warn!(
                    execution = %id,
                    error = %classify_sdk(e, "stopping the Athena query").message,
                    "the Athena query past its time could not be stopped"
                ),
            }
        });
    }
}

/// A page of Athena's rows as one batch, and the cursor of the rest.
struct Page {
    schema: SchemaRef,
    batch: RecordBatch,
    next: Option<Cursor>,
}

impl Page {
    /// The page as the API gives it, the cursor as its client keeps it.
    fn rows(self) -> Result<Rows, Refusal> {
        Ok(Rows {
            schema: self.schema,
            batches: vec![self.batch],
            next: self.next.as_ref().map(Cursor::encode).transpose()?,
        })
    }
}

fn page_of(schema: SchemaRef, rows: &[AthenaRow], next: Option<Cursor>) -> Result<Page, Refusal> {
    Ok(Page {
        batch: batch(&schema, rows)?,
        schema,
        next,
    })
}

impl Cursor {
    fn encode(&self) -> Result<String, Refusal> {
        serde_json::to_string(self)
            .map_err(|e| Refusal::from(Error::internal(format!("a cursor: {e}"))))
    }
}

/// Athena's column type as the Arrow type the rows are given in.
fn arrow_type(athena: &str) -> DataType {
    match athena.to_ascii_lowercase().as_str() {
        "boolean" => DataType::Boolean,
        "tinyint" | "smallint" | "integer" | "int" | "bigint" => DataType::Int64,
        "double" | "float" | "real" => DataType::Float64,
        _ => DataType::Utf8,
    }
}

fn is_header(row: &AthenaRow, schema: &Schema) -> bool {
    row.data().len() == schema.fields().len()
        && row
            .data()
            .iter()
            .zip(schema.fields())
            .all(|(d, f)| d.var_char_value() == Some(f.name().as_str()))
}

/// Athena's text values as a batch of `schema`; a value that does not read as its
/// column's type is the engine's fault, said as such.
fn batch(schema: &SchemaRef, rows: &[AthenaRow]) -> Result<RecordBatch, Refusal> {
    let value = |row: &AthenaRow, i: usize| {
        row.data()
            .get(i)
            .and_then(|d| d.var_char_value())
            .map(str::to_string)
    };
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        let texts = rows.iter().map(|r| value(r, i));
        let unreadable = |text: &str| {
            Refusal::from(Error::external(format!(
                "Athena gave `{text}` for column {} of type {}",
                field.name(),
                field.data_type()
            )))
        };
        let array: ArrayRef = match field.data_type() {
            DataType::Boolean => Arc::new(
                texts
                    .map(|t| t.map(|t| t.eq_ignore_ascii_case("true")))
                    .collect::<BooleanArray>(),
            ),
            DataType::Int64 => Arc::new(
                texts
                    .map(|t| {
                        t.map(|t| t.parse::<i64>().map_err(|_| unreadable(&t)))
                            .transpose()
                    })
                    .collect::<Result<Int64Array, Refusal>>()?,
            ),
            DataType::Float64 => Arc::new(
                texts
                    .map(|t| {
                        t.map(|t| t.parse::<f64>().map_err(|_| unreadable(&t)))
                            .transpose()
                    })
                    .collect::<Result<Float64Array, Refusal>>()?,
            ),
            _ => Arc::new(texts.collect::<StringArray>()),
        };
        columns.push(array);
    }
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &datafusion::arrow::record_batch::RecordBatchOptions::new()
            .with_row_count(Some(rows.len())),
    )
    .map_err(|e| Refusal::from(Error::internal(format!("an Athena page: {e}"))))
}

#[async_trait::async_trait]
impl Engine for Athena {
    fn name(&self) -> &'static str {
        "athena"
    }

    async fn page(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
        limit: usize,
        leash: &Leash,
    ) -> Result<Rows, Refusal> {
        let from = self.start(key, query, cursor).await?;
        let rows = self.read(from, limit).await?.rows()?;
        for batch in &rows.batches {
            leash.answer(batch)?;
        }
        Ok(rows)
    }

    fn plans(&self) -> bool {
        false
    }

    /// Athena cannot plan without running: the query runs, and the cursor of its first
    /// row goes with the columns.
    async fn schema(
        &self,
        key: &Key,
        query: &Query,
        _leash: &Leash,
    ) -> Result<(SchemaRef, Option<String>), Refusal> {
        let start = Cursor {
            execution: self.execute(key, query).await?,
            token: None,
            skip: 0,
        };
        let cursor = start.encode()?;
        let schema = self.read(start, 1).await?.schema;
        Ok((schema, Some(cursor)))
    }

    async fn stream(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
        _leash: &Leash,
    ) -> Result<(SchemaRef, Batches), Refusal> {
        let from = self.start(key, query, cursor).await?;
        let first = self.read(from, ATHENA_PAGE).await?;
        let schema = first.schema.clone();
        let engine = self.clone();
        let batches = futures::stream::unfold(Some(Ok(first)), move |state| {
            let engine = engine.clone();
            async move {
                let page = match state? {
                    Ok(page) => page,
                    Err(refusal) => return Some((Err(refusal), None)),
                };
                let next = match page.next {
                    Some(cursor) => Some(engine.read(cursor, ATHENA_PAGE).await),
                    None => None,
                };
                Some((Ok(page.batch), next))
            }
        });
        Ok((schema, batches.boxed()))
    }

    async fn tables(&self, key: &Key, only: Option<&str>) -> Result<Vec<TableInfo>, Refusal> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let got = self
                .glue
                .get_tables()
                .database_name(&self.database)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| Refusal::from(classify_sdk(e, "listing the Glue tables")))?;
            for table in got.table_list() {
                if !key.allows(table.name()) || only.is_some_and(|o| o != table.name()) {
                    continue;
                }
                let column = |c: &aws_sdk_glue::types::Column| {
                    serde_json::json!({
                        "name": c.name(),
                        "type": c.r#type().unwrap_or("unknown"),
                        "nullable": true,
                    })
                };
                let glue_columns: Vec<&aws_sdk_glue::types::Column> = table
                    .storage_descriptor()
                    .map(|s| s.columns().iter().collect::<Vec<_>>())
                    .unwrap_or_default()
                    .into_iter()
                    .chain(table.partition_keys())
                    .collect();
                let columns = glue_columns.iter().map(|c| column(c)).collect();
                let schema = Arc::new(Schema::new(
                    glue_columns
                        .iter()
                        .map(|c| Field::new(c.name(), arrow_type(c.r#type().unwrap_or("")), true))
                        .collect::<Vec<_>>(),
                ));
                out.push(TableInfo {
                    name: table.name().to_string(),
                    columns,
                    partition_columns: table
                        .partition_keys()
                        .iter()
                        .map(|c| c.name().to_string())
                        .collect(),
                    partitions: None,
                    files: None,
                    bytes: None,
                    quarantine_of: TableInfo::quarantine_of(table.name()),
                    schema,
                });
            }
            token = got.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn athena_text_values_become_typed_columns() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![
            Field::new("n", arrow_type("bigint"), true),
            Field::new("x", arrow_type("double"), true),
            Field::new("b", arrow_type("boolean"), true),
            Field::new("d", arrow_type("decimal(12,2)"), true),
        ]));
        let row = |values: [Option<&str>; 4]| {
            let mut builder = AthenaRow::builder();
            for v in values {
                let mut datum = aws_sdk_athena::types::Datum::builder();
                if let Some(v) = v {
                    datum = datum.var_char_value(v);
                }
                builder = builder.data(datum.build());
            }
            builder.build()
        };
        let header = row([Some("n"), Some("x"), Some("b"), Some("d")]);
        assert!(is_header(&header, &schema));
        let rows = [
            row([Some("7"), Some("1.5"), Some("true"), Some("10.25")]),
            row([None, None, None, None]),
        ];
        let made = match batch(&schema, &rows) {
            Ok(made) => made,
            Err(refusal) => panic!("{}", refusal.message),
        };
        assert_eq!(made.num_rows(), 2);
        assert_eq!(made.column(3).data_type(), &DataType::Utf8);
        assert_eq!(made.column(0).null_count(), 1);
        // Athena's fault, not the client's: a 503 whose detail is logged.
        let bad = [row([Some("seven"), None, None, None])];
        let code = batch(&schema, &bad)
            .err()
            .map(|r| (r.status.as_u16(), r.code));
        assert_eq!(code, Some((503, "unavailable")));
    }
}
