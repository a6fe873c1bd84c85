//! File feeds: the files in the folders of an SFTP server ([`sftp`]), an S3 bucket or
//! a local folder ([`store`]), each complete file's records loaded exactly once.
//!
//! A job's patterns ([`crate::job::pattern`]) say which files, each with its format;
//! [`listing`] lists only where they can match (a folder that does not exist yet holds
//! nothing new, on every store).
//!
//! A file is identified by its path, size, modification time and the SHA-256 of its
//! bytes ([`identity`]). The identities a committed run loaded are the keys of its
//! manifest; the checkpoint lists the committed runs still remembered: a run is
//! forgotten once none of its files is listed at its path and it committed more than
//! `remember` ago, so the state holds what is in the folders (and recent history), not
//! every file ever seen.
//!
//! A run lists, and plans before it reads anything ([`plan`]):
//! - a listed file no committed run loaded is *new*; it waits while its modification
//!   time is within `stable_for`, or while its `done_marker` is missing;
//! - a loaded file listed with the same size and time is done under `identity:
//!   listing` (the default); under `identity: content` it is hashed like the next
//!   case. (Under `delete` or `move` its action was cut short by a crash: its content
//!   hash is checked, then the action is finished);
//! - a loaded file listed with another size or time is hashed: the same content was
//!   only touched; other content follows `on_changed_file` (`reload` replaces the run
//!   that loaded it: that run's files are all read again, and its files removed once
//!   this run commits).
//!
//! Files are read in path order (a retry reads the same files in the same order), at
//! most `max_files` a run ([`load`]). A remote file is fetched into the spool folder
//! first (so it is transferred once, and the next is fetched while this one is
//! decoded); a folder's is read in place. The records are decoded in a blocking task,
//! one at a time, into batches. The run's files and its checkpoint commit together;
//! after the commit `after_load` moves or deletes what the run loaded.

mod after_load;
mod decode;
mod identity;
mod listing;
mod load;
mod plan;
mod read;
mod sftp;
mod store;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::records;
use super::{Checkpoint, Extract, Ledger, Report, RunContext, Source, SourceColumn, Window};
use crate::error::{Error, Result};
use crate::job::files::{FileStore, FilesFeed};
use crate::job::{Address, Job};
use plan::Plan;
use store::{Objects, Store};

/// Connects to the job's store.
pub async fn open(
    job: &Job,
    feed: &FilesFeed,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn Source>> {
    let Address::Files(store) = &job.connection.address else {
        return Err(Error::internal("a file feed without a file store"));
    };
    let name = &job.connection.name;
    let store: Arc<dyn Store> = match store.as_ref() {
        FileStore::Sftp(spec) => Arc::new(sftp::Sftp::connect(name, spec, env).await?),
        FileStore::S3 { bucket, prefix } => {
            let (bucket, _) = super::resolve_url(bucket, name, env)?;
            Arc::new(Objects::s3(&bucket, prefix)?)
        }
        FileStore::Folder(dir) => {
            Arc::new(Objects::folder(dir).map_err(|e| e.context(format!("connection `{name}`")))?)
        }
    };
    Ok(Box::new(FileSource {
        store,
        feed: feed.clone(),
        batch_rows: job.batch_rows,
        plan: Plan::default(),
    }))
}

/// A file feed run's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FilesReport {
    /// Files the patterns matched.
    pub listed: u64,
    /// Loaded files listed again whose content was hashed to tell whether it changed:
    /// those listed with another size or time, or every one under `identity: content`.
    #[serde(default)]
    pub hashed: u64,
    /// Files the run loaded (a reloaded run's files included).
    pub loaded: u64,
    /// New files still being written (within `stable_for`, or without their marker),
    /// or beyond `max_files`: left for a later run.
    pub waiting: u64,
    /// Loaded files whose content changed, left as they were (`on_changed_file: skip`).
    pub changed_skipped: u64,
    /// Earlier runs whose rows this run replaced (`on_changed_file: reload`).
    pub reloaded_runs: u64,
    /// Files that could not be read as their format, recorded in the quarantine table.
    pub bad_files: u64,
    /// Records the files held.
    pub records: u64,
    /// Records moved to the quarantine table.
    pub quarantined: u64,
    /// Bytes read (as stored, compressed or not).
    pub bytes: u64,
    /// Seconds spent fetching remote files to this machine (overlapping the decoding
    /// of the one before; 0 for a folder, read in place).
    pub fetch_seconds: f64,
    /// Files moved or deleted after the commit (`after_load`), this run's and those a
    /// crash left to it.
    pub after_load: u64,
}

struct FileSource {
    store: Arc<dyn Store>,
    feed: FilesFeed,
    batch_rows: usize,
    plan: Plan,
}

#[async_trait]
impl Source for FileSource {
    async fn columns(&mut self) -> Result<Vec<SourceColumn>> {
        Ok(records::columns(&self.feed.records))
    }

    async fn plan(
        &mut self,
        _: &[SourceColumn],
        committed: &Checkpoint,
        ledger: &dyn Ledger,
        now: DateTime<Utc>,
    ) -> Result<Option<Window>> {
        self.plan = plan::plan(self.store.as_ref(), &self.feed, committed, ledger, now).await?;
        Ok((!self.plan.load.is_empty()).then(Window::everything))
    }

    fn planned(&self) -> Report {
        Report::Files(self.plan.report.clone())
    }

    fn extract(self: Box<Self>, _: Vec<SourceColumn>, _: Window, run: RunContext) -> Extract {
        super::produced("the files", move |tx| load::consume(*self, run, tx))
    }
}
