//! A file's records into Arrow batches on every core at once, in order.
//!
//! The reader (this thread) finds the records and cuts them into chunks (at most a
//! batch's rows, or 4 MiB of their text); chunk `k` goes to worker `k mod n`, each with
//! a record builder of its own; a collector takes the workers' batches back in chunk
//! order and hands them on. Every channel holds one chunk or batch, so memory is a few
//! chunks whatever the file's size, and the same file gives the same batches.

use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use super::read::{self, Failure, Format, Record};
use crate::error::{Error, Result};
use crate::job::Records;
use crate::source::BatchSize;
use crate::source::Poison;
use crate::source::records::{FileFacts, RecordBuilder};

/// A chunk's text at most (a record longer than this is a chunk of its own).
const CHUNK_BYTES: usize = 4 << 20;

/// Threads decoding one file, each into batches of its own: one per core, up to four.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}
/// Bytes of a record kept in the quarantine table at most.
const BODY_LIMIT: usize = 64 << 10;

/// One record of a chunk: where its text is in the chunk, or its CSV values.
enum Item {
    Json { start: usize, end: usize },
    Csv(Vec<Option<String>>),
    Misfit(String),
}

#[derive(Default)]
struct Chunk {
    text: Vec<u8>,
    items: Vec<(Item, u64, u64)>,
}

/// A worker's answer for one chunk: its batch and its records that did not fit.
type Decoded = Result<(RecordBatch, Vec<Poison>)>;

/// What decoding one file gave besides its batches.
pub struct Outcome {
    pub records: u64,
    pub poison: Vec<Poison>,
}

/// Where a file's records go, and what they are decoded into.
pub struct Target<'a> {
    pub records: &'a Records,
    pub batch: BatchSize,
    pub tx: &'a mpsc::Sender<Result<RecordBatch>>,
    pub received_at: DateTime<Utc>,
}

/// Reads `raw` as `format` and hands its batches to `target.tx`, in record order.
pub fn file(
    raw: &mut dyn std::io::Read,
    path: &str,
    format: &Format<'_>,
    target: &Target<'_>,
) -> std::result::Result<Outcome, Failure> {
    let workers = workers();
    std::thread::scope(|scope| {
        let mut chunks = Vec::with_capacity(workers);
        let mut results = Vec::with_capacity(workers);
        for _ in 0..workers {
            let (chunk_tx, chunk_rx) = sync_channel::<Chunk>(1);
            let (result_tx, result_rx) = sync_channel(1);
            chunks.push(chunk_tx);
            results.push(result_rx);
            scope.spawn(move || work(chunk_rx, result_tx, path, target));
        }
        let collector = scope.spawn(move || collect(results, target.tx));
        let mut chunk = Chunk::default();
        let mut sent = 0usize;
        let mut records = 0u64;
        let send = |chunk: Chunk, sent: &mut usize| {
            let to = &chunks[*sent % chunks.len()];
            *sent += 1;
            to.send(chunk)
                .map_err(|_| Error::internal("the decoding of the file stopped"))
        };
        let outcome = read::records(raw, path, format, &mut |located| {
            records += 1;
            let item = match located.record {
                Record::Json(text) => {
                    let start = chunk.text.len();
                    chunk.text.extend_from_slice(text);
                    Item::Json {
                        start,
                        end: chunk.text.len(),
                    }
                }
                Record::Csv(values) => {
                    Item::Csv(values.iter().map(|v| v.map(str::to_string)).collect())
                }
                Record::Misfit(why) => Item::Misfit(why.to_string()),
            };
            chunk.items.push((item, located.line, located.index));
            if chunk.items.len() >= target.batch.rows || chunk.text.len() >= CHUNK_BYTES {
                send(std::mem::take(&mut chunk), &mut sent)?;
            }
            Ok(())
        });
        let ended = match outcome {
            Ok(()) if !chunk.items.is_empty() => send(chunk, &mut sent).map_err(Failure::Stopped),
            other => other,
        };
        drop(chunks);
        let collected = collector.join().unwrap_or_else(|_| {
            Err(Error::internal(
                "the collector of the file's batches failed",
            ))
        });
        match (ended, collected) {
            // What the workers or the run met comes first: the reader only stopped.
            (_, Err(e)) => Err(Failure::Stopped(e)),
            (Err(failure), Ok(_)) => Err(failure),
            (Ok(()), Ok(poison)) => Ok(Outcome { records, poison }),
        }
    })
}

/// One worker: decodes the chunks it is given into batches.
fn work(chunks: Receiver<Chunk>, results: SyncSender<Decoded>, path: &str, target: &Target<'_>) {
    let mut builder = RecordBuilder::new(target.records, target.batch);
    for chunk in chunks {
        let result = decode(&mut builder, &chunk, path, target.received_at);
        if results.send(result).is_err() {
            return;
        }
    }
}

fn decode(
    builder: &mut RecordBuilder,
    chunk: &Chunk,
    path: &str,
    received_at: DateTime<Utc>,
) -> Decoded {
    let mut poison = Vec::new();
    for (item, line, index) in &chunk.items {
        let facts = FileFacts {
            path,
            line: *line,
            record: *index,
        };
        let fits = match item {
            Item::Json { start, end } => {
                let text = &chunk.text[*start..*end];
                builder
                    .append_json_object(text, &facts)
                    .map_err(|e| (e, String::from_utf8_lossy(text).into_owned()))
            }
            Item::Csv(values) => {
                let values: Vec<Option<&str>> = values.iter().map(Option::as_deref).collect();
                builder.append_text(&values, &facts).map_err(|e| {
                    let line: Vec<&str> = values.iter().map(|v| v.unwrap_or("")).collect();
                    (e, line.join(","))
                })
            }
            Item::Misfit(why) => Err((why.clone(), String::new())),
        };
        if let Err((error, mut body)) = fits {
            if body.len() > BODY_LIMIT {
                let mut end = BODY_LIMIT;
                while !body.is_char_boundary(end) {
                    end -= 1;
                }
                body.truncate(end);
            }
            poison.push(Poison {
                key: format!("{path}:{line}"),
                sent_at: None,
                received_at,
                error: format!("record {index} (line {line}): {error}"),
                body,
            });
        }
    }
    Ok((builder.finish()?, poison))
}

/// Takes the workers' batches in chunk order and hands them on; returns the poison.
fn collect(
    results: Vec<Receiver<Decoded>>,
    tx: &mpsc::Sender<Result<RecordBatch>>,
) -> Result<Vec<Poison>> {
    let mut poison = Vec::new();
    for k in 0.. {
        // A worker that has no next chunk has ended: every chunk is in.
        let Ok(result) = results[k % results.len()].recv() else {
            break;
        };
        let (batch, bad) = result?;
        poison.extend(bad);
        if batch.num_rows() > 0 && tx.blocking_send(Ok(batch)).is_err() {
            return Err(Error::internal(
                "the run stopped reading the files' batches",
            ));
        }
    }
    Ok(poison)
}
