//! Step 5 of a run: extract → transform → contract → quality → write, then the manifests.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use futures::future::BoxFuture;

use super::{Context, RunSummary};
use crate::budget::MemoryBudget;
use crate::contract::{self, Column};
use crate::error::{Error, Result};
use crate::job::{Job, Target, mode_name};
use crate::quality::{self, Evaluator};
use crate::sink::{self, Manifest, PartitionedWriter};
use crate::source::{Consumed, Poison, Window};
use crate::transform::{self, BatchStream};

/// What the run reads: the extract, what it consumed once it ended, and the contract in
/// force (`None`: freeze this run's).
pub struct Input {
    pub schema: SchemaRef,
    pub extract: BatchStream,
    pub done: BoxFuture<'static, Result<Consumed>>,
    pub contract: Option<Vec<Column>>,
    /// The run's memory budget, whose batches' share the extract was given.
    pub budget: MemoryBudget,
}

/// Where the run writes.
pub struct Run<'a> {
    pub window: &'a Window,
    pub run_key: &'a str,
    /// A leading partition every row gets (`snapshot=2024-05-01`).
    pub snapshot: Option<String>,
}

/// The name the quality flags see the output under.
const OUTPUT_TABLE: &str = "output";

/// Writes the run's output and its manifests. Returns the table's manifest, the
/// contract after the run, and what the extract consumed. Nothing is committed here; on
/// error the caller removes whatever was written.
pub async fn write(
    job: &Job,
    ctx: &Context,
    input: Input,
    run: Run<'_>,
    summary: &mut RunSummary,
) -> Result<(Manifest, Vec<Column>, Consumed)> {
    let read_rows = Arc::new(AtomicU64::new(0));
    let counter = read_rows.clone();
    let bar = crate::telemetry::progress::rows(&job.id);
    let shown = bar.clone();
    let extract = input
        .extract
        .inspect(move |b| {
            if let Ok(b) = b {
                counter.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                if let Some(bar) = &shown {
                    bar.inc(b.num_rows() as u64);
                }
            }
        })
        .boxed();
    let budget = input.budget;
    let (mut output, resolution, mut evaluator) = plan(
        job,
        budget.pool(),
        (input.schema, extract),
        input.contract,
        summary,
    )
    .await?;
    let data_schema = lake_schema(&resolution.contract);
    let writer = PartitionedWriter::new(
        ctx.lake.clone(),
        &job.target,
        run.run_key,
        &data_schema,
        run.snapshot.clone(),
        budget.writer(),
    )?;
    let quarantine = match evaluator.quarantine_schema() {
        None => None,
        Some(schema) => Some(PartitionedWriter::new(
            ctx.lake.clone(),
            &quarantine_target(&job.target),
            run.run_key,
            &schema,
            run.snapshot.clone(),
            budget.writer().quarter(),
        )?),
    };
    // The writer runs on its own task, so that encoding overlaps the transform; two
    // batches in flight between them at most.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let writing = tokio::spawn(write_all(writer, quarantine, rx));
    let mut waiting = Duration::ZERO;
    let fed = feed(
        &mut output,
        (&mut evaluator, &data_schema),
        &tx,
        summary,
        &mut waiting,
    )
    .await;
    drop(tx);
    // Wait for the writer even when feeding failed: no file may still be written while
    // the failed attempt's files are removed.
    let written = writing
        .await
        .map_err(|e| Error::internal(format!("the writer task failed: {e}")))?;
    fed?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let (files, quarantined, writing) = written?;
    let (results, failure) = evaluator.finish(Utc::now());
    for result in results.iter().filter(|r| !r.passed) {
        tracing::warn!(rule = %result.rule, on_fail = ?result.on_fail, failed_rows = result.failed_rows, detail = %result.detail, "quality rule failed");
    }
    summary.quality = results;
    if let Some(failure) = failure {
        return Err(failure);
    }
    summary.rows_read = read_rows.load(Ordering::Relaxed);
    summary.files = files.len();
    summary.bytes = files.iter().map(|f| f.bytes).sum();
    summary.partitions = files
        .iter()
        .map(|f| f.partition.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    summary.seconds.extract_transform = waiting.as_secs_f64();
    summary.seconds.write = writing.as_secs_f64();
    let mut consumed = input.done.await?;
    let quarantined = if quarantined.is_empty() {
        quarantine_poison(job, ctx, &run, (&consumed.poison, budget.writer()), summary).await?
    } else {
        quarantined
    };
    if !quarantined.is_empty() {
        let table = quality::quarantine_table(&job.target.table);
        let rows = summary.quarantined;
        write_manifest(
            job,
            ctx,
            &run,
            (&table, rows, quarantined),
            Vec::new(),
            summary,
        )
        .await?;
    }
    let manifest = write_manifest(
        job,
        ctx,
        &run,
        (&job.target.table, summary.rows, files),
        std::mem::take(&mut consumed.keys),
        summary,
    )
    .await?;
    consumed.keys = manifest.consumed.clone();
    Ok((manifest, resolution.contract, consumed))
}

/// Writes a feed's undecodable messages to its quarantine table; returns the files.
async fn quarantine_poison(
    job: &Job,
    ctx: &Context,
    run: &Run<'_>,
    (poison, writer): (&[Poison], crate::budget::WriterBudget),
    summary: &mut RunSummary,
) -> Result<Vec<sink::WrittenFile>> {
    if poison.is_empty() {
        return Ok(Vec::new());
    }
    let schema = crate::source::records::poison_schema();
    let micros = |t: &chrono::DateTime<Utc>| t.timestamp_micros();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(poison.iter().map(|p| &p.key))),
        Arc::new(
            TimestampMicrosecondArray::from(
                poison
                    .iter()
                    .map(|p| p.sent_at.as_ref().map(micros))
                    .collect::<Vec<_>>(),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                poison.iter().map(|p| micros(&p.received_at)),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            poison.iter().map(|p| &p.error),
        )),
        Arc::new(StringArray::from_iter_values(
            poison.iter().map(|p| &p.body),
        )),
        Arc::new(StringArray::from_iter_values(
            poison.iter().map(|_| &summary.run_id),
        )),
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| Error::internal(format!("the quarantine batch: {e}")))?;
    let target = Target {
        partition_by: Vec::new(),
        ..quarantine_target(&job.target)
    };
    let mut writer = PartitionedWriter::new(
        ctx.lake.clone(),
        &target,
        run.run_key,
        &schema,
        None,
        writer,
    )?;
    writer.write(&batch).await?;
    summary.quarantined += poison.len() as u64;
    writer.finish().await
}

/// Fits the output to the contract and adds the quality flags. Fails before any row is
/// written when the output breaks the contract under the job's policy.
async fn plan(
    job: &Job,
    pool: u64,
    (schema, extract): (SchemaRef, BatchStream),
    contract: Option<Vec<Column>>,
    summary: &mut RunSummary,
) -> Result<(BatchStream, contract::Resolution, Evaluator)> {
    let (planned, out_schema, extract) = match &job.transform {
        Some(sql) => {
            let planned = transform::plan(Some(sql), schema.clone(), extract, pool).await?;
            let out = planned.schema();
            (Some(planned), out, None)
        }
        None => (None, schema.clone(), Some(extract)),
    };
    let output = contract::output_columns(&out_schema)?;
    let resolution = contract::resolve(contract.as_deref(), job.target.on_schema_change, &output)?;
    for drift in &resolution.drift {
        tracing::warn!(column = %drift.column, change = ?drift.change, action = %drift.action, "schema drift");
    }
    summary.schema_changes = resolution.drift.clone();
    let mut rules = quality::contract_rules(&resolution.contract);
    rules.extend(job.quality.iter().cloned());
    let evaluator = Evaluator::new(rules, lake_schema(&resolution.contract), &summary.run_id)?;
    let flags = evaluator.flag_sql(OUTPUT_TABLE);
    let exact = out_schema
        .fields()
        .iter()
        .zip(&resolution.contract)
        .all(|(f, c)| f.name() == &c.name && f.data_type() == &c.lake.arrow());
    let stream = match (planned, extract) {
        // Nothing to do between the extract and the writer: no plan at all.
        (None, Some(extract)) if resolution.identity && exact && flags.is_none() => extract,
        (planned, extract) => {
            let planned = match (planned, extract) {
                (Some(p), _) => p,
                (None, Some(extract)) => transform::plan(None, schema, extract, pool).await?,
                (None, None) => return Err(Error::internal("no plan and no extract")),
            };
            let mut planned = planned.conform(&resolution.contract, &resolution.feeds)?;
            if let Some(sql) = flags {
                planned = planned
                    .query_over(OUTPUT_TABLE, &sql, "planning the quality rules")
                    .await?;
            }
            planned.execute().await?
        }
    };
    Ok((stream, resolution, evaluator))
}

/// The Arrow schema of the contract's columns: every field nullable, so that files of
/// different runs stay readable together as the contract evolves.
pub(super) fn lake_schema(contract: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        contract
            .iter()
            .map(|c| Field::new(&c.name, c.lake.arrow(), true))
            .collect::<Vec<_>>(),
    ))
}

fn quarantine_target(target: &Target) -> Target {
    Target {
        table: quality::quarantine_table(&target.table),
        ..target.clone()
    }
}

async fn write_manifest(
    job: &Job,
    ctx: &Context,
    run: &Run<'_>,
    (table, rows, files): (&str, u64, Vec<sink::WrittenFile>),
    consumed: Vec<String>,
    summary: &RunSummary,
) -> Result<Manifest> {
    let manifest = Manifest {
        job: job.id.clone(),
        table: table.to_string(),
        run_id: summary.run_id.clone(),
        run_key: run.run_key.to_string(),
        mode: mode_name(job.mode).to_string(),
        window: run.window.clone(),
        rows,
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        written_at: Utc::now(),
        consumed,
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| Error::internal(format!("encoding the manifest: {e}")))?;
    ctx.lake
        .create(&ctx.lake.manifest_path(table, run.run_key)?, json)
        .await?;
    Ok(manifest)
}

/// What the writer task gets: rows for the table, and rows for the quarantine table.
type Routed = (RecordBatch, Option<RecordBatch>);

/// Moves the output to the writer task until either ends, through the quality rules.
async fn feed(
    output: &mut BatchStream,
    (evaluator, schema): (&mut Evaluator, &SchemaRef),
    tx: &tokio::sync::mpsc::Sender<Routed>,
    summary: &mut RunSummary,
    waiting: &mut Duration,
) -> Result<()> {
    loop {
        let t = Instant::now();
        let Some(batch) = output.next().await else {
            return Ok(());
        };
        *waiting += t.elapsed();
        let (main, quarantined) = evaluator.route(&batch?)?;
        // The contract's field names and nullability, whatever the plan said.
        let main = RecordBatch::try_new(schema.clone(), main.columns().to_vec())
            .map_err(|e| Error::internal(format!("the output's schema: {e}")))?;
        summary.rows += main.num_rows() as u64;
        summary.quarantined += quarantined.as_ref().map_or(0, |q| q.num_rows() as u64);
        if tx.send((main, quarantined)).await.is_err() {
            // The writer stopped; its error is the one to report.
            return Ok(());
        }
    }
}

/// The writer task: writes every batch it receives, then closes the files. Returns the
/// table's and the quarantine table's files with the time spent encoding and uploading.
async fn write_all(
    mut writer: PartitionedWriter,
    mut quarantine: Option<PartitionedWriter>,
    mut rx: tokio::sync::mpsc::Receiver<Routed>,
) -> Result<(Vec<sink::WrittenFile>, Vec<sink::WrittenFile>, Duration)> {
    let mut busy = Duration::ZERO;
    while let Some((batch, quarantined)) = rx.recv().await {
        let t = Instant::now();
        if batch.num_rows() > 0 {
            writer.write(&batch).await?;
        }
        if let (Some(q), Some(rows)) = (quarantine.as_mut(), quarantined) {
            q.write(&rows).await?;
        }
        busy += t.elapsed();
    }
    let t = Instant::now();
    let files = writer.finish().await?;
    let quarantined = match quarantine {
        Some(q) => q.finish().await?,
        None => Vec::new(),
    };
    Ok((files, quarantined, busy + t.elapsed()))
}
