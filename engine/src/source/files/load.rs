//! Reading what a run planned: the fetcher runs one file ahead of the decoder, each
//! file is decoded as its pattern says in a blocking task, and the run's identities
//! and checkpoint are handed on to commit with its rows; `after_load` after the commit.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use datafusion::arrow::record_batch::RecordBatch;
use tokio::sync::mpsc;

use super::after_load;
use super::identity::Loaded;
use super::plan::Plan;
use super::read::{self, Failure, Format, Hashing};
use super::store::{self, Entry, Local, Store};
use super::{FileSource, decode};
use crate::error::{Error, Result};
use crate::job::files::FilesFeed;
use crate::source::{
    Acknowledge, BatchSize, Checkpoint, Consumed, FeedCheckpoint, Poison, Report, RunContext,
};
use crate::spec::files::{AfterLoad, FileFormat, OnBadFile};

/// One file on its way from the fetcher to the decoder.
struct Fetched {
    entry: Entry,
    local: Local,
    seconds: f64,
}

pub(super) async fn consume(
    source: FileSource,
    run: RunContext,
    tx: mpsc::Sender<Result<RecordBatch>>,
) -> Result<Consumed> {
    let FileSource {
        store,
        feed,
        batch_rows,
        plan,
    } = source;
    let Plan {
        load,
        replaces,
        keep_runs,
        mut report,
    } = plan;
    // The fetcher runs one file ahead of the decoder.
    let (fetched_tx, mut fetched) = mpsc::channel::<Result<Fetched>>(1);
    let fetcher = {
        let store = store.clone();
        let load = load.clone();
        tokio::spawn(async move {
            for entry in load {
                let started = std::time::Instant::now();
                let got = store
                    .fetch(&entry.path, entry.size)
                    .await
                    .map(|local| Fetched {
                        entry,
                        local,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                let failed = got.is_err();
                if fetched_tx.send(got).await.is_err() || failed {
                    return;
                }
            }
        })
    };
    let feed = Arc::new(feed);
    let mut keys = Vec::new();
    let mut poison = Vec::new();
    let mut loaded = Vec::new();
    let mut first = true;
    while let Some(file) = fetched.recv().await {
        let file = file?;
        if matches!(file.local, Local::Fetched(_)) {
            report.fetch_seconds += file.seconds;
        }
        if std::mem::take(&mut first) {
            crate::failpoint::reached("received").await;
        }
        let what = store.describe(&file.entry.path);
        let job = Decode {
            feed: feed.clone(),
            batch: BatchSize {
                rows: batch_rows,
                bytes: run.batches.per_batch(decode::workers()),
            },
            tx: tx.clone(),
            what: what.clone(),
        };
        let outcome = tokio::task::spawn_blocking(move || job.file(file))
            .await
            .map_err(|e| Error::internal(format!("decoding {what} failed: {e}")))??;
        report.records += outcome.records;
        report.bytes += outcome.identity.size;
        poison.extend(outcome.poison);
        if outcome.identity.bad {
            report.bad_files += 1;
        } else {
            loaded.push(outcome.entry);
        }
        keys.push(outcome.identity.key());
    }
    fetcher
        .await
        .map_err(|e| Error::internal(format!("fetching the files failed: {e}")))?;
    report.loaded = keys.len() as u64;
    report.quarantined = poison.len() as u64 - report.bad_files;
    tracing::info!(
        files = report.loaded,
        records = report.records,
        bytes = report.bytes,
        "read the files"
    );
    let mut runs = keep_runs;
    runs.push((run.run_key.clone(), Utc::now().timestamp()));
    let acknowledge: Option<Box<dyn Acknowledge>> =
        (feed.after_load != AfterLoad::Keep).then(|| {
            Box::new(AfterCommit {
                store,
                feed,
                loaded,
            }) as Box<dyn Acknowledge>
        });
    Ok(Consumed {
        checkpoint: Checkpoint {
            watermark: None,
            feed: Some(FeedCheckpoint { runs }),
            changes: None,
        },
        keys,
        poison,
        report: Report::Files(report),
        replaces,
        acknowledge,
    })
}

/// One file's decoding, in a blocking task.
struct Decode {
    feed: Arc<FilesFeed>,
    batch: BatchSize,
    tx: mpsc::Sender<Result<RecordBatch>>,
    what: String,
}

struct Decoded {
    entry: Entry,
    identity: Loaded,
    records: u64,
    poison: Vec<Poison>,
}

impl Decode {
    fn file(self, file: Fetched) -> Result<Decoded> {
        let Fetched { entry, local, .. } = file;
        let feed = self.feed.clone();
        let Some(pattern) = feed.pattern_of(&entry.path) else {
            return Err(Error::user(format!(
                "{} is to be read again (its run is reloaded) but matches none of source.files' patterns any more: give its pattern back, or set source.files.on_changed_file to `skip`",
                self.what
            )));
        };
        let fields: Vec<String> = feed.records.fields.iter().map(|f| f.name.clone()).collect();
        let format = Format {
            format: pattern.format,
            compression: pattern.compression,
            records_at: &pattern.records_at,
            delimiter: pattern.delimiter,
            fields,
        };
        let open = || {
            std::fs::File::open(local.path())
                .map_err(|e| Error::external(format!("reading {}: {e}", self.what)))
        };
        let received_at = Utc::now();
        let broken = |message: String| Poison {
            key: entry.path.clone(),
            sent_at: None,
            received_at,
            error: format!("the file cannot be read: {message}"),
            body: String::new(),
        };
        // Checked whole first, so that none of a bad file's rows are handed on.
        if feed.on_bad == OnBadFile::Quarantine {
            let mut raw = std::io::BufReader::new(open()?);
            match read::records(&mut raw, &entry.path, &format, &mut |_| Ok(())) {
                Ok(()) => {}
                Err(Failure::Broken(b)) => {
                    let read = Hashing::new(open()?)
                        .finish()
                        .map_err(|e| Error::external(format!("reading {}: {e}", self.what)))?;
                    tracing::warn!(file = %self.what, error = %b.message, "file quarantined");
                    let mut bad = broken(b.message);
                    bad.body = format!("sha256 {}, {} bytes", read.0, read.1);
                    return Ok(Decoded {
                        identity: Loaded::of(&entry, read, true),
                        entry,
                        records: 0,
                        poison: vec![bad],
                    });
                }
                Err(other) => return Err(self.failure(other, &entry)),
            }
        }
        let mut raw = Hashing::new(open()?);
        let target = decode::Target {
            records: &feed.records,
            batch: self.batch,
            tx: &self.tx,
            received_at,
        };
        let decoded = match decode::file(&mut raw, &entry.path, &format, &target) {
            Ok(decoded) => decoded,
            Err(failure) => return Err(self.failure(failure, &entry)),
        };
        let read = raw
            .finish()
            .map_err(|e| Error::external(format!("reading {}: {e}", self.what)))?;
        store::changed_while_fetched(&self.what, entry.size, read.1)?;
        if let Local::InPlace(p) = &local {
            let modified = std::fs::metadata(p)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_secs() as i64);
            if modified != Some(entry.modified) {
                return Err(Error::external(format!(
                    "{} was modified while it was read: it is still being written; the next run reads it whole (raise source.files.stable_for, or have the sender write a done_marker)",
                    self.what
                )));
            }
        }
        Ok(Decoded {
            identity: Loaded::of(&entry, read, false),
            entry,
            records: decoded.records,
            poison: decoded.poison,
        })
    }

    fn failure(&self, failure: Failure, entry: &Entry) -> Error {
        match failure {
            Failure::Stopped(e) => e,
            Failure::Io(e) => Error::external(format!("reading {}: {e}", self.what)),
            Failure::Broken(b) => Error::user(format!(
                "{} cannot be read as {}: {}. Nothing of this run is committed; fix or remove the file, or set source.files.on_bad_file to `quarantine` to record it and load the rest",
                self.what,
                format_name(&self.feed, &entry.path),
                b.message
            )),
        }
    }
}

fn format_name(feed: &FilesFeed, path: &str) -> String {
    let format = match feed.pattern_of(path).map(|p| p.format) {
        Some(FileFormat::Auto) | None => "its format (auto)",
        Some(FileFormat::Json) => "JSON",
        Some(FileFormat::Ndjson) => "NDJSON",
        Some(FileFormat::Csv) => "CSV",
    };
    if path.ends_with(".gz") || path.ends_with(".zst") {
        format!("{format}, compressed")
    } else {
        format.to_string()
    }
}

/// After the commit: `after_load` for what the run loaded.
struct AfterCommit {
    store: Arc<dyn Store>,
    feed: Arc<FilesFeed>,
    loaded: Vec<Entry>,
}

#[async_trait]
impl Acknowledge for AfterCommit {
    async fn acknowledge(self: Box<Self>) -> Result<u64> {
        after_load::apply(self.store.as_ref(), &self.feed, &self.loaded).await
    }
}
