//! A feed's record key (`source.dedup`): a record whose key a committed run loaded
//! within the window, or that repeats within the run, is skipped and counted — the same
//! GPS ping in a new SQS message, a partner's record on two pages, a bank's line in two
//! files.
//!
//! The index is in the lake: each committed run's keys (128 bits of SipHash-1-3 of the key
//! fields' values in Arrow's row format, so that types and NULLs are told apart, keyed
//! with the table's secret, `_sluice/keys/<table>/secret`, so that nobody who sends
//! records can make two keys collide) in
//! `_sluice/keys/<table>/<run key>.<unix seconds>.keys`, written before the commit and
//! named with the run key, so that a failed attempt's keys are removed with its files
//! (step 2) and a rewound run's with its data. A run reads the files of the window into
//! a [`KeySet`] (bounded memory, see `index.rs`) and removes those older than the window.

mod index;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use futures::StreamExt;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;

pub use index::KeySet;

use crate::error::{Error, Result};
use crate::job::RecordKey;
use crate::sink::{self, Lake};
use crate::transform::BatchStream;

/// Headroom of the index's filter for the run's own keys, beyond the committed ones: a
/// run of up to this many new keys never rebuilds it. Its 16 MB are zeroed pages until a
/// key touches them.
const RUN_HEADROOM: u64 = 8 << 20;

/// The record-key filter of one run.
pub struct Dedup {
    /// SipHash's keys.
    secret: (u64, u64),
    key: RecordKey,
    /// The key fields' row format (made for the first batch).
    converter: Option<RowConverter>,
    set: KeySet,
    /// The run's new keys, in the order they came, spilled to a local file (taken once).
    run: Option<RunKeys>,
    skipped: u64,
    /// Whether the run's keys are kept for later runs.
    appends: bool,
}

impl Dedup {
    /// Reads the keys committed within the window into the index, and removes the key
    /// files older than it — when the run appends to what they committed; a run that
    /// replaces the table (`appends` false) starts from no key.
    pub async fn open(
        lake: &Lake,
        table: &str,
        key: &RecordKey,
        appends: bool,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let secret = secret(lake, table).await?;
        let since = now.timestamp() - key.window.as_secs() as i64;
        let mut current = Vec::new();
        let listed = match appends {
            true => lake.list(&lake.keys_dir(table)?).await?,
            false => Vec::new(),
        };
        for object in listed {
            match object.location.filename().and_then(sink::key_file) {
                Some((_, at)) if at < since => lake.delete(&object.location).await?,
                Some(_) => current.push(object),
                None => {}
            }
        }
        let committed: u64 = current.iter().map(|o| o.size / 16).sum();
        let dir =
            std::env::temp_dir().join(format!("sluice-keys-{}", uuid::Uuid::new_v4().simple()));
        let mut set = KeySet::new(dir, committed + RUN_HEADROOM)?;
        for object in current {
            // Pieces need not end on a key: a key cut in two is completed by the next.
            let mut carry = Vec::with_capacity(16);
            lake.read_pieces(&object.location, |piece| {
                let mut piece = piece;
                if !carry.is_empty() {
                    let take = (16 - carry.len()).min(piece.len());
                    carry.extend_from_slice(&piece[..take]);
                    piece = &piece[take..];
                    if carry.len() < 16 {
                        return Ok(());
                    }
                    set.add(u128::from_le_bytes(carry[..].try_into().unwrap_or([0; 16])))?;
                    carry.clear();
                }
                let whole = piece.len() / 16 * 16;
                for chunk in piece[..whole].chunks_exact(16) {
                    set.add(u128::from_le_bytes(chunk.try_into().unwrap_or([0; 16])))?;
                }
                carry.extend_from_slice(&piece[whole..]);
                Ok(())
            })
            .await?;
            if !carry.is_empty() {
                return Err(Error::user(format!(
                    "the record-key file {} is not whole ({} bytes, not a multiple of 16): remove it to load its run's records again",
                    object.location, object.size
                )));
            }
        }
        tracing::info!(
            keys = set.len(),
            memory = set.memory(),
            "record keys committed within the window"
        );
        Ok(Self {
            secret,
            key: key.clone(),
            converter: None,
            set,
            run: Some(RunKeys::create(std::env::temp_dir().join(format!(
                "sluice-run-keys-{}",
                uuid::Uuid::new_v4().simple()
            )))?),
            skipped: 0,
            appends,
        })
    }

    /// The batch without the records whose key the index holds; their keys are added.
    fn filter(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .key
            .fields
            .iter()
            .map(|name| {
                batch.column_by_name(name).cloned().ok_or_else(|| {
                    Error::internal(format!(
                        "the record key's field `{name}` is not in the batch"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        // The batches share one schema: the row format is made once, for the first.
        if self.converter.is_none() {
            let fields = columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect();
            self.converter = Some(
                RowConverter::new(fields)
                    .map_err(|e| Error::internal(format!("the record key: {e}")))?,
            );
        }
        let converter = self
            .converter
            .as_ref()
            .ok_or_else(|| Error::internal("the record key's row format"))?;
        let rows = converter
            .convert_columns(&columns)
            .map_err(|e| Error::internal(format!("the record key: {e}")))?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for row in rows.iter() {
            let mut hasher = SipHasher13::new_with_keys(self.secret.0, self.secret.1);
            hasher.write(row.as_ref());
            let key = hasher.finish128().as_u128();
            let new = self.set.insert(key)?;
            if new {
                if let Some(run) = self.run.as_mut() {
                    run.push(key)?;
                }
            } else {
                self.skipped += 1;
            }
            keep.push(new);
        }
        if keep.iter().all(|k| *k) {
            return Ok(batch);
        }
        filter_record_batch(&batch, &BooleanArray::from(keep))
            .map_err(|e| Error::internal(format!("skipping repeated records: {e}")))
    }

    /// Records skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// The run's new keys, to keep for later runs: none for a run that replaces the
    /// table, or that loaded no new record.
    pub fn take_run(&mut self) -> Option<RunKeys> {
        match self.appends && self.run.as_ref().is_some_and(|r| r.count > 0) {
            true => self.run.take(),
            false => None,
        }
    }
}

/// The table's key secret: made (a random UUID's 16 bytes) before its first key file,
/// read after.
async fn secret(lake: &Lake, table: &str) -> Result<(u64, u64)> {
    let path = lake.path(&format!("_sluice/keys/{table}/secret"))?;
    let bytes = match lake.get(&path).await? {
        Some(bytes) => bytes,
        None => {
            if lake
                .list(&lake.keys_dir(table)?)
                .await?
                .iter()
                .any(|o| o.location.filename().and_then(sink::key_file).is_some())
            {
                return Err(Error::user(format!(
                    "{path} is missing while record-key files are there: they cannot be read without it; remove _sluice/keys/{table} to start the index again"
                )));
            }
            let fresh = uuid::Uuid::new_v4().as_bytes().to_vec();
            match lake.create(&path, fresh.clone()).await {
                Ok(()) => fresh,
                // Another run made it first: take that one.
                Err(e) => lake.get(&path).await?.ok_or(e)?,
            }
        }
    };
    match <[u8; 16]>::try_from(bytes.as_slice()) {
        Ok(b) => {
            let half = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
            Ok((half(0), half(8)))
        }
        Err(_) => Err(Error::user(format!(
            "{path} is not 16 bytes: remove _sluice/keys/{table} to start the index again"
        ))),
    }
}

/// A run's new keys, appended to a local file as they come (removed when dropped).
pub struct RunKeys {
    path: PathBuf,
    file: BufWriter<File>,
    count: u64,
}

impl RunKeys {
    fn create(path: PathBuf) -> Result<Self> {
        let file = File::create(&path).map_err(|e| local(&path, &e))?;
        Ok(Self {
            path,
            file: BufWriter::new(file),
            count: 0,
        })
    }

    fn push(&mut self, key: u128) -> Result<()> {
        self.count += 1;
        self.file
            .write_all(&key.to_le_bytes())
            .map_err(|e| local(&self.path, &e))
    }

    /// Writes the keys to the lake, beside the run's files (before its commit).
    pub async fn save(
        mut self,
        lake: &Lake,
        table: &str,
        run_key: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.file.flush().map_err(|e| local(&self.path, &e))?;
        let path = lake.path(&format!(
            "_sluice/keys/{table}/{run_key}.{}.keys",
            now.timestamp()
        ))?;
        lake.upload(&path, &self.path).await
    }
}

impl Drop for RunKeys {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn local(path: &Path, e: &std::io::Error) -> Error {
    Error::external(format!("the record-key index at {}: {e}", path.display()))
}

/// Wraps the extract's batches in the run's record-key filter: a stage of its own (a
/// task, the filter on a blocking thread) that runs while the batches before it are
/// transformed and written, one batch ahead.
pub fn filtered(batches: BatchStream, dedup: Arc<Mutex<Dedup>>) -> BatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(1);
    tokio::spawn(async move {
        let mut batches = batches;
        while let Some(batch) = batches.next().await {
            let dedup = dedup.clone();
            let filtered = match batch {
                Ok(batch) => tokio::task::spawn_blocking(move || {
                    dedup
                        .lock()
                        .map_err(|_| Error::internal("the record-key filter's lock"))?
                        .filter(batch)
                })
                .await
                .unwrap_or_else(|e| Err(Error::internal(format!("the record-key filter: {e}")))),
                Err(e) => Err(e),
            };
            let failed = filtered.is_err();
            // The run stopped reading (it failed): the extract is dropped with this task.
            if tx.send(filtered).await.is_err() || failed {
                break;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|batch| (batch, rx))
    })
    .boxed()
}
