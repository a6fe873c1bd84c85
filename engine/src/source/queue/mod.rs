//! The queue feed: an Amazon SQS queue (fed directly or by an SNS topic) into the lake,
//! exactly once.
//!
//! A run long-polls with several receivers (10 messages a call), keeps what it received
//! hidden from other consumers while it works (extending the visibility where the run
//! outlives it), decodes each body (one JSON object or an array; an SNS envelope is
//! unwrapped, raw delivery is read as it is), and yields the records. A message that
//! cannot be decoded is *poison*: it goes to the quarantine table with its raw body. A
//! message whose key an earlier committed run (or this one) consumed is a *duplicate*:
//! skipped. Nothing is deleted until the pipeline has committed the run's files and
//! checkpoint; then every message the run received is deleted. A crash anywhere before
//! that leaves the messages in the queue, and the next run skips those whose keys are
//! committed.
//!
//! A receive that fails after the SDK's retries ends receiving for the run, and the run
//! commits what it received so far: failing it instead would return every received
//! message to the queue with its receive count raised, and a flaky network would walk
//! good messages into the dead-letter queue one failed run at a time. A run that took
//! nothing new before the failure fails (retryable) after deleting what it received,
//! all of it committed before; it never reports a failing queue as up to date.
//!
//! The keys of a committed run are in its manifest; the checkpoint lists the committed
//! runs for as long as the queue keeps a message (its retention period), so that a
//! redelivery days later is still recognised. A run reads only the manifests of runs
//! that committed after the messages it received were sent.
//!
//! The parts: [`client`] (the queue and SQS's limits), [`receive`] (the receivers and
//! when they stop), [`decode`] (messages into records, duplicates skipped), [`hold`] (the
//! held messages kept hidden, then deleted); this file wires them into a run.

mod client;
mod decode;
mod hold;
mod receive;

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::{mpsc, watch};

use self::client::Queue;
use self::decode::{Decoder, SKEW};
use self::hold::{Delete, Holding, Keeper};
use self::receive::{Budget, Drain, Received, Receiver, Start};
use super::records::{self, RecordBuilder};
use super::{
    Acknowledge, Checkpoint, Consumed, Extract, FeedCheckpoint, Ledger, Report, RunContext, Source,
    SourceColumn, Window, resolve_url,
};
use crate::aws::classify_sdk;
use crate::error::{Error, Result};
use crate::job::{Address, Job, QueueFeed};

/// Opens the job's queue: resolves its URL and reads how long it keeps messages.
pub async fn open(
    job: &Job,
    feed: &QueueFeed,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn Source>> {
    let connection = &job.connection.name;
    let Address::Url(template) = &job.connection.address else {
        return Err(Error::internal("a queue connection without a queue URL"));
    };
    let (url, _) = resolve_url(template, connection, env)?;
    let client = Client::new(crate::aws::config().await);
    let attributes = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::MessageRetentionPeriod)
        .send()
        .await
        .map_err(|e| {
            classify_sdk(e, &format!("reading queue {url}"))
                .context(format!("connection `{connection}`"))
        })?;
    let retention = attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::MessageRetentionPeriod))
        .and_then(|v| v.parse::<i64>().ok())
        // SQS's greatest retention, when the queue does not say.
        .unwrap_or(14 * 86_400);
    Ok(Box::new(QueueSource {
        queue: Arc::new(Queue { client, url }),
        feed: feed.clone(),
        batch_rows: job.batch_rows,
        retention,
    }))
}

struct QueueSource {
    queue: Arc<Queue>,
    feed: QueueFeed,
    batch_rows: usize,
    /// Seconds the queue keeps a message.
    retention: i64,
}

#[async_trait]
impl Source for QueueSource {
    async fn columns(&mut self) -> Result<Vec<SourceColumn>> {
        Ok(records::columns(&self.feed.records))
    }

    async fn plan(
        &mut self,
        _: &[SourceColumn],
        _: &Checkpoint,
        _: &dyn Ledger,
        _: DateTime<Utc>,
    ) -> Result<Option<Window>> {
        // What is in the queue is known only by receiving it.
        Ok(Some(Window::everything()))
    }

    /// Receiving starts when the batches are first read: a run that fails while it
    /// plans (a transform, the contract, a partition column) has not touched the queue,
    /// so its messages do not creep toward the dead-letter queue.
    fn extract(self: Box<Self>, _: Vec<SourceColumn>, _: Window, run: RunContext) -> Extract {
        super::produced("the queue", move |tx| consume(*self, run, tx))
    }
}

/// The run's side of the queue: receives, decodes, yields batches; returns what it
/// consumed once the queue is drained, the budget spent, the time up or a receive
/// failed (see the module's documentation for the last).
async fn consume(
    source: QueueSource,
    run: RunContext,
    tx: mpsc::Sender<Result<RecordBatch>>,
) -> Result<Consumed> {
    let feed = &source.feed;
    let holding = Holding::default();
    let keeper = Keeper::start(source.queue.clone(), holding.clone(), feed.visibility);
    let budget = Arc::new(Budget::new(
        feed.max_messages,
        Instant::now() + feed.max_duration,
    ));
    let drain = Arc::new(Drain::default());
    let (start_tx, start_rx) = watch::channel(Start::Waiting);
    let (msg_tx, mut msg_rx) = mpsc::channel::<Result<Received>>(feed.receivers * 2);
    for n in 0..feed.receivers {
        tokio::spawn(receive::receive(
            n,
            Receiver {
                queue: source.queue.clone(),
                budget: budget.clone(),
                drain: drain.clone(),
                visibility: feed.visibility,
                wait: feed.wait,
            },
            (start_tx.clone(), start_rx.clone()),
            msg_tx.clone(),
        ));
    }
    drop((start_tx, msg_tx));

    let mut decoder = Decoder::new(
        RecordBuilder::new(
            &feed.records,
            super::BatchSize {
                rows: source.batch_rows,
                bytes: run.batches.per_batch(1),
            },
        ),
        feed.dedup,
        &run,
    );
    // The first receive that failed: it ended receiving (the others count in the report).
    let mut failed: Option<Error> = None;
    let mut first = true;
    // Until every receiver has stopped: after a failure, the calls still in flight
    // answer, and what they return is held and decoded like the rest.
    while let Some(received) = msg_rx.recv().await {
        let Received { messages, hidden } = match received {
            Ok(r) => r,
            Err(e) => {
                decoder.report.receive_failures += 1;
                tracing::warn!(
                    error = %e.report(),
                    received = decoder.report.received,
                    "a receive failed after the SDK's retries: receiving ends here, the run commits what it received, the rest waits in the queue for the next run"
                );
                failed.get_or_insert(e);
                continue;
            }
        };
        let received_at = Utc::now();
        holding.hold(&messages, hidden);
        if first {
            first = false;
            crate::failpoint::reached("received").await;
        }
        for message in &messages {
            decoder.message(message, received_at, &run).await?;
            if decoder.builder.is_full() && tx.send(decoder.builder.finish()).await.is_err() {
                // The run stopped reading: it failed, and keeps nothing of this.
                return Err(Error::internal("the run stopped reading the queue"));
            }
        }
    }
    let delete = Delete::new(source.queue.clone(), holding, keeper);
    if let Some(error) = failed.filter(|_| !decoder.took_anything()) {
        return Err(nothing_new_before(error, decoder.report.received, delete).await);
    }
    if decoder.builder.rows() > 0 && tx.send(decoder.builder.finish()).await.is_err() {
        return Err(Error::internal("the run stopped reading the queue"));
    }
    drop(tx);
    decoder.report.quarantined = decoder.poison.len() as u64;
    tracing::info!(
        received = decoder.report.received,
        duplicates = decoder.report.duplicates,
        quarantined = decoder.report.quarantined,
        receive_failures = decoder.report.receive_failures,
        "queue drained for this run"
    );
    let now = Utc::now().timestamp();
    let mut runs: Vec<(String, i64)> = run
        .committed
        .feed
        .map(|f| f.runs)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, at)| *at >= now - source.retention - SKEW)
        .collect();
    if !decoder.keys.is_empty() {
        runs.push((run.run_key.clone(), now));
    }
    Ok(Consumed {
        checkpoint: Checkpoint {
            watermark: None,
            feed: Some(FeedCheckpoint { runs }),
            changes: None,
        },
        keys: decoder.keys,
        poison: decoder.poison,
        report: Report::Queue(decoder.report),
        replaces: Vec::new(),
        acknowledge: Some(Box::new(delete)),
    })
}

/// A receive failed before the run took anything new: the run fails with that error
/// (retryable when the network or SQS failed), so that it is not taken for an empty
/// queue. What it received, every message a committed run's, is deleted first, so that
/// its receive count stops where it is.
async fn nothing_new_before(error: Error, received: u64, delete: Delete) -> Error {
    if received > 0 {
        match Box::new(delete).acknowledge().await {
            Ok(deleted) => tracing::info!(
                deleted,
                "deleted the received messages, all committed by earlier runs"
            ),
            Err(e) => tracing::warn!(
                error = %e.report(),
                "the received messages, all committed by earlier runs, were not deleted; their redeliveries will be skipped"
            ),
        }
    }
    let what = if received == 0 {
        "nothing was received".to_string()
    } else {
        format!("the {received} messages received were all committed before")
    };
    error.context(format!("receiving ended before anything new ({what})"))
}
