//! A feed's record key (`source.dedup`): a record whose key a committed run loaded
//! within the window, or that repeats within the run, is skipped and counted — the same
//! GPS ping in a new SQS message, a partner's record on two pages, a bank's line in two
//! files.
//!
//! The index is in the lake: each committed run's keys (128 bits of a SHA-256 of the key
//! fields' values, in Arrow's row format so that types and NULLs are told apart) in
//! `_sluice/keys/<table>/<run key>.<unix seconds>.keys`, written before the commit and
//! named with the run key, so that a failed attempt's keys are removed with its files
//! (step 2) and a rewound run's with its data. A run reads the files of the window into
//! a [`KeySet`] (bounded memory, see `index.rs`) and removes those older than the window.

mod index;

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use futures::StreamExt;
use sha2::{Digest, Sha256};

pub use index::KeySet;

use crate::error::{Error, Result};
use crate::job::RecordKey;
use crate::sink::{self, Lake};
use crate::transform::BatchStream;

/// Headroom of the index for the run's own keys, beyond the committed ones.
const RUN_HEADROOM: u64 = 1 << 20;

/// The record-key filter of one run.
pub struct Dedup {
    key: RecordKey,
    set: KeySet,
    /// The run's new keys, in the order they came.
    run: Vec<u128>,
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
            let Some(bytes) = lake.get(&object.location).await? else {
                continue;
            };
            if bytes.len() % 16 != 0 {
                return Err(Error::user(format!(
                    "the record-key file {} is not whole ({} bytes, not a multiple of 16): remove it to load its run's records again",
                    object.location,
                    bytes.len()
                )));
            }
            for chunk in bytes.chunks_exact(16) {
                set.add(u128::from_le_bytes(chunk.try_into().unwrap_or([0; 16])))?;
            }
        }
        tracing::info!(
            keys = set.len(),
            memory = set.memory(),
            "record keys committed within the window"
        );
        Ok(Self {
            key: key.clone(),
            set,
            run: Vec::new(),
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
        let converter = RowConverter::new(
            columns
                .iter()
                .map(|c| SortField::new(c.data_type().clone()))
                .collect(),
        )
        .map_err(|e| Error::internal(format!("the record key: {e}")))?;
        let rows = converter
            .convert_columns(&columns)
            .map_err(|e| Error::internal(format!("the record key: {e}")))?;
        let mut keep = Vec::with_capacity(batch.num_rows());
        for row in rows.iter() {
            let digest = Sha256::digest(row.as_ref());
            let key = u128::from_le_bytes(digest[..16].try_into().unwrap_or([0; 16]));
            let new = self.set.insert(key)?;
            if new {
                self.run.push(key);
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

    /// The run's new keys, to keep for later runs (taken once; none for a run that
    /// replaces the table).
    pub fn take_run(&mut self) -> Vec<u128> {
        match self.appends {
            true => std::mem::take(&mut self.run),
            false => Vec::new(),
        }
    }
}

/// Writes a run's keys to the lake (before its commit), if it has any.
pub async fn save(
    lake: &Lake,
    table: &str,
    run_key: &str,
    keys: Vec<u128>,
    now: DateTime<Utc>,
) -> Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let mut bytes = Vec::with_capacity(keys.len() * 16);
    for key in &keys {
        bytes.extend_from_slice(&key.to_le_bytes());
    }
    let path = lake.path(&format!(
        "_sluice/keys/{table}/{run_key}.{}.keys",
        now.timestamp()
    ))?;
    lake.create(&path, bytes).await
}

/// Wraps the extract's batches in the run's record-key filter.
pub fn filtered(batches: BatchStream, dedup: Arc<Mutex<Dedup>>) -> BatchStream {
    batches
        .map(move |batch| {
            let batch = batch?;
            dedup
                .lock()
                .map_err(|_| Error::internal("the record-key filter's lock"))?
                .filter(batch)
        })
        .boxed()
}
