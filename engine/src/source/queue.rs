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
//! The keys of a committed run are in its manifest; the checkpoint lists the committed
//! runs for as long as the queue keeps a message (its retention period), so that a
//! redelivery days later is still recognised. A run reads only the manifests of runs
//! that committed after the messages it received were sent.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageSystemAttributeName, QueueAttributeName,
};
use chrono::{DateTime, TimeZone, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use super::records::{self, MessageFacts, RecordBuilder};
use super::{
    Acknowledge, Checkpoint, Consumed, Extract, FeedCheckpoint, FeedReport, Ledger, Poison, Report,
    RunContext, Source, SourceColumn, Window, resolve_url,
};
use crate::aws::classify_sdk;
use crate::error::{Error, Result};
use crate::job::{Address, Job, QueueFeed};
use crate::spec::Dedup;

/// Messages a receive call takes at most (the SQS limit), and entries per batch call.
const PER_CALL: usize = 10;
/// Empty receives in a row after which a receiver takes the queue as drained.
const EMPTY_POLLS: usize = 2;
/// Batch calls (delete, change visibility) in flight at once.
const CALLS_IN_FLIGHT: usize = 8;
/// How much earlier than a message's send time a committed run may have taken it, in
/// seconds: clock skew between SQS, SNS and this machine, and (for `dedup: body`) a
/// producer resending a body up to this long after the first send was committed.
const SKEW: i64 = 900;

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

struct Queue {
    client: Client,
    url: String,
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

/// A received message the run holds until it deletes it.
struct Held {
    receipt: String,
    /// Until when SQS hides it from other receivers.
    hidden_until: Instant,
}

/// The messages the run holds, shared with the task that keeps them hidden.
type Holding = Arc<Mutex<Vec<Held>>>;

fn lock(holding: &Holding) -> std::sync::MutexGuard<'_, Vec<Held>> {
    holding
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The receivers' go-ahead: receiver 0 long-polls alone until the queue yields something.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Start {
    Waiting,
    Go,
    Stop,
}

/// The run's budget: messages left to take, and the time to stop receiving.
struct Budget {
    left: AtomicU64,
    deadline: Instant,
}

impl Budget {
    /// Takes up to 10 messages of the run's budget; 0 when it is spent or time is up.
    fn take(&self) -> usize {
        if Instant::now() >= self.deadline {
            return 0;
        }
        let mut left = self.left.load(Ordering::Relaxed);
        loop {
            let n = left.min(PER_CALL as u64);
            if n == 0 {
                return 0;
            }
            match self
                .left
                .compare_exchange(left, left - n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return n as usize,
                Err(now) => left = now,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.left.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Seconds left until the deadline.
    fn seconds_left(&self) -> u64 {
        self.deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
    }
}

/// The run's side of the queue: receives, decodes, yields batches; returns what it
/// consumed once the queue is drained, the budget spent or the time up.
async fn consume(
    source: QueueSource,
    run: RunContext,
    tx: mpsc::Sender<Result<RecordBatch>>,
) -> Result<Consumed> {
    let feed = &source.feed;
    let holding: Holding = Arc::default();
    let keeper = Keeper::start(source.queue.clone(), holding.clone(), feed.visibility);
    let budget = Arc::new(Budget {
        left: AtomicU64::new(feed.max_messages),
        deadline: Instant::now() + feed.max_duration,
    });
    let (start_tx, start_rx) = watch::channel(Start::Waiting);
    let (msg_tx, mut msg_rx) = mpsc::channel::<Result<Received>>(feed.receivers * 2);
    for n in 0..feed.receivers {
        tokio::spawn(receive(
            n,
            Receiver {
                queue: source.queue.clone(),
                budget: budget.clone(),
                visibility: feed.visibility,
                wait: feed.wait,
            },
            (start_tx.clone(), start_rx.clone()),
            msg_tx.clone(),
        ));
    }
    drop((start_tx, msg_tx));

    let mut decoder = Decoder {
        builder: RecordBuilder::new(
            &feed.records,
            super::BatchSize {
                rows: source.batch_rows,
                bytes: run.batches.per_batch(1),
            },
        ),
        dedup: feed.dedup,
        ledger: Remembered::new(&run),
        taken: HashSet::new(),
        keys: Vec::new(),
        poison: Vec::new(),
        report: FeedReport::default(),
    };
    let mut first = true;
    while let Some(received) = msg_rx.recv().await {
        let Received { messages, hidden } = received?;
        let received_at = Utc::now();
        {
            let mut held = lock(&holding);
            let hidden_until = Instant::now() + hidden;
            for m in &messages {
                if let Some(receipt) = m.receipt_handle() {
                    held.push(Held {
                        receipt: receipt.to_string(),
                        hidden_until,
                    });
                }
            }
        }
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
    if decoder.builder.rows() > 0 && tx.send(decoder.builder.finish()).await.is_err() {
        return Err(Error::internal("the run stopped reading the queue"));
    }
    drop(tx);
    decoder.report.quarantined = decoder.poison.len() as u64;
    tracing::info!(
        received = decoder.report.received,
        duplicates = decoder.report.duplicates,
        quarantined = decoder.report.quarantined,
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
        },
        keys: decoder.keys,
        poison: decoder.poison,
        report: Report::Queue(decoder.report),
        replaces: Vec::new(),
        acknowledge: Some(Box::new(Delete {
            queue: source.queue,
            holding,
            keeper,
        })),
    })
}

/// Turns messages into records, skipping what was consumed before.
struct Decoder {
    builder: RecordBuilder,
    dedup: Dedup,
    ledger: Remembered,
    /// Keys this run took.
    taken: HashSet<String>,
    keys: Vec<String>,
    poison: Vec<Poison>,
    report: FeedReport,
}

impl Decoder {
    async fn message(
        &mut self,
        message: &Message,
        received_at: DateTime<Utc>,
        run: &RunContext,
    ) -> Result<()> {
        self.report.received += 1;
        let body = message.body().unwrap_or_default();
        let sent_at = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        let unwrapped = Unwrapped::of(body, message.message_id().unwrap_or_default(), sent_at);
        let key = match self.dedup {
            Dedup::MessageId => unwrapped.id.to_string(),
            Dedup::Body => body_key(&unwrapped.payload),
        };
        let origin = unwrapped.sent_at.unwrap_or(received_at);
        if self.taken.contains(&key) || self.ledger.contains(&key, origin, run).await? {
            self.report.duplicates += 1;
            return Ok(());
        }
        let facts = MessageFacts {
            key: &key,
            sent_at: unwrapped.sent_at,
            received_at,
        };
        if let Err(error) = self.builder.append_json(&unwrapped.payload, &facts) {
            tracing::warn!(message_id = %key, %error, "message quarantined");
            self.poison.push(Poison {
                key: key.clone(),
                sent_at: unwrapped.sent_at,
                received_at,
                error,
                body: body.to_string(),
            });
        }
        self.taken.insert(key.clone());
        self.keys.push(key);
        Ok(())
    }
}

/// The SHA-256 of a payload, as the key of `dedup: body` (32 hex digits).
fn body_key(payload: &str) -> String {
    Sha256::digest(payload.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A body with its SNS envelope taken off, when it has one.
struct Unwrapped<'a> {
    payload: Cow<'a, str>,
    id: &'a str,
    sent_at: Option<DateTime<Utc>>,
}

/// The fields of an SNS notification that sluice reads.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    message_id: &'a str,
    topic_arn: &'a str,
    #[serde(borrow)]
    message: Cow<'a, str>,
    timestamp: Option<&'a str>,
}

impl<'a> Unwrapped<'a> {
    fn of(body: &'a str, sqs_id: &'a str, sent_at: Option<DateTime<Utc>>) -> Unwrapped<'a> {
        // Cheap test first: raw records rarely hold the envelope's field names.
        let envelope = (body.contains("\"TopicArn\"") && body.contains("\"Notification\""))
            .then(|| serde_json::from_str::<Envelope<'a>>(body).ok())
            .flatten()
            .filter(|e| e.kind == "Notification" && e.topic_arn.starts_with("arn:"));
        match envelope {
            Some(e) => Unwrapped {
                payload: e.message,
                id: e.message_id,
                sent_at: e
                    .timestamp
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .or(sent_at),
            },
            None => Unwrapped {
                payload: Cow::Borrowed(body),
                id: sqs_id,
                sent_at,
            },
        }
    }
}

/// The keys of committed runs, read from their manifests as far back as needed.
struct Remembered {
    /// (run key, commit time), oldest first.
    runs: Vec<(String, i64)>,
    /// Runs from this index on are loaded.
    loaded_from: usize,
    keys: HashSet<String>,
}

impl Remembered {
    fn new(run: &RunContext) -> Self {
        let runs = run
            .committed
            .feed
            .as_ref()
            .map(|f| f.runs.clone())
            .unwrap_or_default();
        Self {
            loaded_from: runs.len(),
            runs,
            keys: HashSet::new(),
        }
    }

    /// Whether a run that committed after `origin` (less the skew) consumed `key`.
    async fn contains(
        &mut self,
        key: &str,
        origin: DateTime<Utc>,
        run: &RunContext,
    ) -> Result<bool> {
        let since = origin.timestamp() - SKEW;
        let first = self.runs.partition_point(|(_, at)| *at < since);
        while self.loaded_from > first {
            self.loaded_from -= 1;
            let run_key = &self.runs[self.loaded_from].0;
            let keys = run.ledger.keys(run_key).await.map_err(|e| {
                e.context(format!(
                    "reading the keys committed run {run_key} consumed (its manifest)"
                ))
            })?;
            self.keys.extend(keys);
        }
        Ok(self.keys.contains(key))
    }
}

/// One receive call's messages, and how long SQS hides them.
struct Received {
    messages: Vec<Message>,
    hidden: Duration,
}

struct Receiver {
    queue: Arc<Queue>,
    budget: Arc<Budget>,
    visibility: Duration,
    wait: Duration,
}

/// One receiver: long-polls until the queue is drained (its first long poll, or
/// `EMPTY_POLLS` later receives in a row, return nothing), the budget is spent or the
/// time is up.
async fn receive(
    n: usize,
    receiver: Receiver,
    (start_tx, mut start_rx): (watch::Sender<Start>, watch::Receiver<Start>),
    out: mpsc::Sender<Result<Received>>,
) {
    if n > 0 {
        // The others join once receiver 0 has found messages.
        match start_rx.wait_for(|s| *s != Start::Waiting).await {
            Ok(s) if *s == Start::Go => {}
            _ => return,
        }
    }
    let mut first = n == 0;
    let mut empty = 0;
    loop {
        let want = receiver.budget.take();
        if want == 0 {
            break;
        }
        let wait = if first { receiver.wait.as_secs() } else { 1 };
        // Hidden until the run's deadline, and a visibility period beyond it: the
        // keeper then extends only what outlives that.
        let hidden = (receiver.budget.seconds_left() + receiver.visibility.as_secs()).min(43_200);
        let response = receiver
            .queue
            .client
            .receive_message()
            .queue_url(&receiver.queue.url)
            .max_number_of_messages(want as i32)
            .wait_time_seconds(wait as i32)
            .visibility_timeout(hidden as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match response {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(e) => {
                let _ = start_tx.send(Start::Stop);
                let _ = out
                    .send(Err(classify_sdk(
                        e,
                        &format!("receiving from {}", receiver.queue.url),
                    )))
                    .await;
                return;
            }
        };
        receiver.budget.give_back(want - messages.len());
        if first && n == 0 {
            let _ = start_tx.send(if messages.is_empty() {
                Start::Stop
            } else {
                Start::Go
            });
        }
        if messages.is_empty() {
            // The first long poll found nothing: the queue is empty. Later, a few empty
            // polls in a row: drained (one alone may miss what is on its way).
            empty += 1;
            if first || empty >= EMPTY_POLLS {
                break;
            }
            continue;
        }
        empty = 0;
        first = false;
        let received = Received {
            messages,
            hidden: Duration::from_secs(hidden),
        };
        if out.send(Ok(received)).await.is_err() {
            return;
        }
    }
}

/// Keeps the held messages hidden while the run works: every third of the visibility
/// period, what would become visible within half of it is hidden for another period.
struct Keeper(tokio::task::JoinHandle<()>);

impl Keeper {
    fn start(queue: Arc<Queue>, holding: Holding, visibility: Duration) -> Keeper {
        Keeper(tokio::spawn(async move {
            let mut tick = tokio::time::interval(visibility / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = Instant::now();
                let due: Vec<String> = lock(&holding)
                    .iter_mut()
                    .filter(|h| h.hidden_until < now + visibility / 2)
                    .map(|h| {
                        h.hidden_until = now + visibility;
                        h.receipt.clone()
                    })
                    .collect();
                if due.is_empty() {
                    continue;
                }
                let extended = extend(&queue, due, visibility).await;
                tracing::debug!(extended, "kept the received messages hidden");
            }
        }))
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// ChangeMessageVisibilityBatch over `receipts`; returns how many were extended.
async fn extend(queue: &Arc<Queue>, receipts: Vec<String>, visibility: Duration) -> usize {
    let seconds = visibility.as_secs() as i32;
    let calls = batches(receipts).into_iter().map(|chunk| {
        let queue = Arc::clone(queue);
        async move {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(seconds)
                        .build()
                        .ok()
                })
                .collect();
            match queue
                .client
                .change_message_visibility_batch()
                .queue_url(&queue.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out.successful().len(),
                Err(e) => {
                    let e = classify_sdk(e, "extending the visibility of received messages");
                    tracing::warn!(error = %e.report(), "messages may become visible before the run ends; a redelivery is skipped by its key");
                    0
                }
            }
        }
    });
    futures::stream::iter(calls)
        .buffer_unordered(CALLS_IN_FLIGHT)
        .fold(0, |n, k| async move { n + k })
        .await
}

/// Receipts in batches of at most 10, for the batch calls.
fn batches(receipts: Vec<String>) -> Vec<Vec<String>> {
    let mut out = Vec::with_capacity(receipts.len().div_ceil(PER_CALL));
    let mut rest = receipts.into_iter().peekable();
    while rest.peek().is_some() {
        out.push(rest.by_ref().take(PER_CALL).collect());
    }
    out
}

/// After the commit: deletes every message the run received.
struct Delete {
    queue: Arc<Queue>,
    holding: Holding,
    keeper: Keeper,
}

#[async_trait]
impl Acknowledge for Delete {
    async fn acknowledge(self: Box<Self>) -> Result<u64> {
        let receipts: Vec<String> = lock(&self.holding).drain(..).map(|h| h.receipt).collect();
        let calls = batches(receipts).into_iter().map(|chunk| {
            let queue = Arc::clone(&self.queue);
            async move {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .build()
                            .ok()
                    })
                    .collect();
                let out = queue
                    .client
                    .delete_message_batch()
                    .queue_url(&queue.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| classify_sdk(e, "deleting the committed messages"))?;
                for failed in out.failed() {
                    tracing::warn!(
                        code = failed.code(),
                        message = failed.message().unwrap_or(""),
                        "a committed message was not deleted; its redelivery will be skipped"
                    );
                }
                Ok::<u64, Error>(out.successful().len() as u64)
            }
        });
        let results: Vec<Result<u64>> = futures::stream::iter(calls)
            .buffer_unordered(CALLS_IN_FLIGHT)
            .collect()
            .await;
        drop(self.keeper);
        let mut deleted = 0;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(n) => deleted += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if deleted == 0 => Err(e),
            Some(e) => {
                tracing::warn!(error = %e.report(), deleted, "some committed messages were not deleted; their redeliveries will be skipped");
                Ok(deleted)
            }
            None => Ok(deleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_envelopes_are_unwrapped_and_keyed_by_the_sns_message_id() {
        let body = r#"{"Type":"Notification","MessageId":"sns-1","TopicArn":"arn:aws:sns:eu-west-1:1:gps","Message":"{\"truck_id\":\"T1\"}","Timestamp":"2024-05-01T12:00:00.000Z","SignatureVersion":"1"}"#;
        let u = Unwrapped::of(body, "sqs-1", None);
        assert_eq!(u.id, "sns-1");
        assert_eq!(u.payload, r#"{"truck_id":"T1"}"#);
        let plain = Unwrapped::of(
            r#"{"Type":"Notification","MessageId":"sns-2","TopicArn":"arn:aws:sns:eu-west-1:1:gps","Message":"plain text"}"#,
            "sqs-2",
            None,
        );
        assert_eq!((plain.id, plain.payload.as_ref()), ("sns-2", "plain text"));
        assert_eq!(u.sent_at.map(|t| t.timestamp()), Some(1_714_564_800));
        let raw = Unwrapped::of(r#"{"truck_id":"T1"}"#, "sqs-1", None);
        assert_eq!(
            (raw.id, raw.payload.as_ref()),
            ("sqs-1", r#"{"truck_id":"T1"}"#)
        );
    }

    #[test]
    fn body_keys_are_the_same_for_the_same_body() {
        assert_eq!(body_key("a"), body_key("a"));
        assert_ne!(body_key("a"), body_key("b"));
        assert_eq!(body_key("a").len(), 32);
    }
}
