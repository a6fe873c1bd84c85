//! File feeds: the files in a folder of an SFTP server ([`sftp`]), an S3 bucket or a
//! local folder ([`store`]), each complete file's records loaded exactly once.
//!
//! A file is identified by its path, size, modification time and the SHA-256 of its
//! bytes. The identities a committed run loaded are the keys of its manifest; the
//! checkpoint lists the committed runs still remembered: a run is forgotten once none
//! of its files is in the folder and it committed more than `remember` ago, so the
//! state holds what is in the folder (and recent history), not every file ever seen.
//!
//! A run lists the folder, and plans before it reads anything:
//! - a listed file no committed run loaded is *new*; it waits while its modification
//!   time is within `stable_for`, or while its `done_marker` is missing;
//! - a loaded file listed with the same size and time is done (under `delete` or `move`
//!   its action was cut short by a crash: its content hash is checked, then the action
//!   is finished);
//! - a loaded file listed with another size or time is hashed: the same content was
//!   only touched; other content follows `on_changed_file` (`reload` replaces the run
//!   that loaded it: that run's files are all read again, and its files removed once
//!   this run commits).
//!
//! Files are read in path order (a retry reads the same files in the same order), at
//! most `max_files` a run. A remote file is fetched into the spool folder first (so it
//! is transferred once, and the next is fetched while this one is decoded); a
//! folder's is read in place. The records are decoded in a blocking task, one at a
//! time, into batches. The run's files and its checkpoint commit together; after the
//! commit `after_load` moves or deletes what the run loaded.

mod decode;
mod read;
mod sftp;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::records;
use super::{
    Acknowledge, BatchSize, Checkpoint, Consumed, Extract, FeedCheckpoint, Ledger, Poison, Report,
    RunContext, Source, SourceColumn, Window,
};
use crate::error::{Error, Result};
use crate::job::files::{FileStore, FilesFeed};
use crate::job::{Address, Job};
use crate::spec::files::{AfterLoad, OnBadFile, OnChangedFile};
use read::{Failure, Format, Hashing};
use store::{Entry, Local, Objects, Store, join};

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
    /// Files the pattern matched.
    pub listed: u64,
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

/// A loaded file's identity, as a committed run's manifest keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Loaded {
    hash: String,
    size: u64,
    modified: i64,
    path: String,
    /// Recorded in the quarantine table, not loaded: never moved or deleted.
    bad: bool,
}

impl Loaded {
    fn key(&self) -> String {
        format!(
            "{}{} {} {} {}",
            if self.bad { "bad:" } else { "" },
            self.hash,
            self.size,
            self.modified,
            self.path
        )
    }

    fn parse(key: &str) -> Option<Loaded> {
        let (bad, key) = match key.strip_prefix("bad:") {
            Some(rest) => (true, rest),
            None => (false, key),
        };
        let mut parts = key.splitn(4, ' ');
        Some(Loaded {
            hash: parts.next()?.to_string(),
            size: parts.next()?.parse().ok()?,
            modified: parts.next()?.parse().ok()?,
            path: parts.next()?.to_string(),
            bad,
        })
    }

    /// The identity of `entry` as read: its hash and byte count.
    fn of(entry: &Entry, (hash, size): (String, u64), bad: bool) -> Loaded {
        Loaded {
            hash,
            size,
            modified: entry.modified,
            path: entry.path.clone(),
            bad,
        }
    }

    fn same_listing(&self, entry: &Entry) -> bool {
        self.size == entry.size && self.modified == entry.modified
    }
}

/// What a run reads, fixed when it plans.
#[derive(Default)]
struct Plan {
    load: Vec<Entry>,
    /// Committed runs this run's commit replaces (`reload`).
    replaces: Vec<String>,
    /// The committed runs still remembered after this run.
    keep_runs: Vec<(String, i64)>,
    report: FilesReport,
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
        self.plan = plan(self.store.as_ref(), &self.feed, committed, ledger, now).await?;
        Ok((!self.plan.load.is_empty()).then(Window::everything))
    }

    fn planned(&self) -> Report {
        Report::Files(self.plan.report.clone())
    }

    fn extract(self: Box<Self>, _: Vec<SourceColumn>, _: Window, run: RunContext) -> Extract {
        super::produced("the files", move |tx| consume(*self, run, tx))
    }
}

/// Lists the folder and decides what the run loads (see the module's text).
async fn plan(
    store: &dyn Store,
    feed: &FilesFeed,
    committed: &Checkpoint,
    ledger: &dyn Ledger,
    now: DateTime<Utc>,
) -> Result<Plan> {
    let listing = store.list(&feed.folder).await?;
    let names: BTreeSet<&str> = listing.iter().map(|e| e.path.as_str()).collect();
    let is_marker = |path: &str| {
        feed.done_marker
            .as_deref()
            .is_some_and(|m| path.ends_with(m) && names.contains(&path[..path.len() - m.len()]))
    };
    let mut candidates: Vec<&Entry> = listing
        .iter()
        .filter(|e| {
            let name = e.path.rsplit('/').next().unwrap_or(&e.path);
            feed.matcher.matches(name) && !is_marker(&e.path)
        })
        .collect();
    candidates.sort_by(|a, b| a.path.cmp(&b.path));

    // What the remembered runs loaded, path → (identity, run); a later run's wins.
    let runs = committed
        .feed
        .as_ref()
        .map(|f| f.runs.clone())
        .unwrap_or_default();
    let mut loaded: BTreeMap<String, (Loaded, String)> = BTreeMap::new();
    let mut by_run: BTreeMap<String, Vec<Loaded>> = BTreeMap::new();
    for (run_key, _) in &runs {
        let keys = ledger.keys(run_key).await.map_err(|e| {
            e.context(format!(
                "reading the files committed run {run_key} loaded (its manifest)"
            ))
        })?;
        for key in keys {
            let Some(file) = Loaded::parse(&key) else {
                return Err(Error::user(format!(
                    "the manifest of run {run_key} lists {key:?}, which is not a loaded file's identity; was the job's source changed from another feed? (rewind the job's state)"
                )));
            };
            by_run
                .entry(run_key.clone())
                .or_default()
                .push(file.clone());
            loaded.insert(file.path.clone(), (file, run_key.clone()));
        }
    }

    let mut report = FilesReport {
        listed: candidates.len() as u64,
        ..FilesReport::default()
    };
    let stable_before = now.timestamp() - feed.stable_for.as_secs() as i64;
    let mut new = Vec::new();
    let mut changed: Vec<(&Entry, &Loaded, &String)> = Vec::new();
    let mut unfinished = Vec::new();
    // A new file is loaded once it is complete: not modified within `stable_for`, and
    // marked when the job waits for markers.
    let mut admit = |entry: &Entry, report: &mut FilesReport| {
        let marked = feed
            .done_marker
            .as_deref()
            .is_none_or(|m| names.contains(format!("{}{m}", entry.path).as_str()));
        if entry.modified <= stable_before && marked {
            new.push(entry.clone());
        } else {
            report.waiting += 1;
        }
    };
    for entry in candidates {
        let Some((old, run_key)) = loaded.get(&entry.path) else {
            admit(entry, &mut report);
            continue;
        };
        let moves = feed.after_load != AfterLoad::Keep;
        match (old.same_listing(entry), moves) {
            // Under keep, a listed file loaded as it is: done.
            (true, false) => {}
            // Moved or deleted after its commit, yet here: the action was cut short, or
            // the sender put a file of the same size and time there. The hash tells.
            (true, true) => {
                if old.bad || hash_of(store, entry).await? == old.hash {
                    if !old.bad {
                        unfinished.push(entry.clone());
                    }
                } else {
                    admit(entry, &mut report);
                }
            }
            // Loaded, then moved away: a file listed there now is a new one.
            (false, true) => admit(entry, &mut report),
            (false, false) => {
                if hash_of(store, entry).await? == old.hash {
                    // Touched only: loaded as it is.
                } else if old.bad {
                    // A bad file sent again: it loaded no rows, so it is simply new.
                    admit(entry, &mut report);
                } else {
                    changed.push((entry, old, run_key));
                }
            }
        }
    }
    // Actions a crash cut short are finished before anything else.
    report.after_load += after_load(store, feed, &unfinished).await?;

    let mut replaces = BTreeSet::new();
    let mut refused = Vec::new();
    for (entry, old, run_key) in &changed {
        match feed.on_changed {
            OnChangedFile::Skip => report.changed_skipped += 1,
            OnChangedFile::Fail => refused.push(format!(
                "{} ({} bytes, modified {} when run {run_key} loaded it; now {} bytes, modified {})",
                entry.path,
                old.size,
                seconds(old.modified),
                entry.size,
                seconds(entry.modified)
            )),
            OnChangedFile::Reload => {
                replaces.insert((*run_key).clone());
            }
        }
    }
    if !refused.is_empty() {
        return Err(Error::user(format!(
            "{} loaded file{} changed since: {}. source.files.on_changed_file is `fail`: set it to `reload` (replace the rows of the run that loaded it) or `skip` (ignore the new content), or put the file back",
            refused.len(),
            if refused.len() == 1 { "" } else { "s" },
            refused.join("; ")
        )));
    }
    // A replaced run's files are all read again: each must still be listed.
    let listed: BTreeMap<&str, &Entry> = listing.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut reload = Vec::new();
    for run_key in &replaces {
        // Its bad files too: the quarantine rows of that run leave with it.
        for file in by_run.get(run_key).into_iter().flatten() {
            let Some(entry) = listed.get(file.path.as_str()) else {
                return Err(Error::user(format!(
                    "cannot reload run {run_key}: it also loaded {}, which is no longer in the folder, so replacing that run's rows would lose that file's; put it back, or set source.files.on_changed_file to `skip`",
                    store.describe(&file.path)
                )));
            };
            reload.push((*entry).clone());
        }
    }
    report.reloaded_runs = replaces.len() as u64;
    let room = feed.max_files.saturating_sub(reload.len());
    report.waiting += new.len().saturating_sub(room) as u64;
    new.truncate(room);
    let mut load = reload;
    load.extend(new);
    load.sort_by(|a, b| a.path.cmp(&b.path));
    load.dedup_by(|a, b| a.path == b.path);

    // A run is remembered while one of its files is listed, or for `remember`.
    let forget_before = now.timestamp() - feed.remember.as_secs() as i64;
    let keep_runs = runs
        .into_iter()
        .filter(|(run_key, at)| {
            !replaces.contains(run_key)
                && (*at >= forget_before
                    || by_run.get(run_key).into_iter().flatten().any(|f| {
                        listed
                            .get(f.path.as_str())
                            .is_some_and(|e| f.same_listing(e))
                    }))
        })
        .collect();
    Ok(Plan {
        load,
        replaces: replaces.into_iter().collect(),
        keep_runs,
        report,
    })
}

fn seconds(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0).map_or_else(|| unix.to_string(), |t| t.to_rfc3339())
}

/// The SHA-256 of a listed file's bytes.
async fn hash_of(store: &dyn Store, entry: &Entry) -> Result<String> {
    let local = store.fetch(&entry.path, entry.size).await?;
    let path = local.path().to_path_buf();
    let what = store.describe(&entry.path);
    tokio::task::spawn_blocking(move || {
        let _local = local;
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::external(format!("reading {what}: {e}")))?;
        Hashing::new(file)
            .finish()
            .map(|(hash, _)| hash)
            .map_err(|e| Error::external(format!("reading {what}: {e}")))
    })
    .await
    .map_err(|e| Error::internal(format!("hashing a file failed: {e}")))?
}

/// `after_load` for `files` (and their markers); returns how many files it moved or
/// deleted.
async fn after_load(store: &dyn Store, feed: &FilesFeed, files: &[Entry]) -> Result<u64> {
    let mut done = 0;
    for entry in files {
        let mut paths = vec![entry.path.clone()];
        if let Some(marker) = &feed.done_marker {
            paths.push(format!("{}{marker}", entry.path));
        }
        for (i, path) in paths.iter().enumerate() {
            match &feed.after_load {
                AfterLoad::Keep => continue,
                AfterLoad::Delete => store.delete(path).await?,
                AfterLoad::Move(to) => {
                    let name = path.rsplit('/').next().unwrap_or(path);
                    // A marker already moved (or never made) is not missing.
                    if i > 0 {
                        let _ = store.rename(path, &join(to, name)).await;
                        continue;
                    }
                    store.rename(path, &join(to, name)).await?
                }
            }
            if i == 0 {
                done += 1;
            }
        }
    }
    Ok(done)
}

/// One file on its way from the fetcher to the decoder.
struct Fetched {
    entry: Entry,
    local: Local,
    seconds: f64,
}

async fn consume(
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
        let fields: Vec<String> = feed.records.fields.iter().map(|f| f.name.clone()).collect();
        let format = Format {
            format: feed.format,
            compression: feed.compression,
            records_at: &feed.records_at,
            delimiter: feed.delimiter,
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
    use crate::spec::files::FileFormat;
    let format = match feed.format {
        FileFormat::Auto => "its format (auto)",
        FileFormat::Json => "JSON",
        FileFormat::Ndjson => "NDJSON",
        FileFormat::Csv => "CSV",
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
        after_load(self.store.as_ref(), &self.feed, &self.loaded).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys committed runs consumed, as their manifests would hold them.
    struct Manifests(BTreeMap<String, Vec<String>>);

    #[async_trait]
    impl Ledger for Manifests {
        async fn keys(&self, run_key: &str) -> Result<Vec<String>> {
            Ok(self.0.get(run_key).cloned().unwrap_or_default())
        }
    }

    fn feed(max_files: usize) -> FilesFeed {
        let spec: crate::spec::JobSpec = serde_yaml::from_str(
            "job: bank\nsource:\n  connection: bank\n  files: {pattern: 'in/*.json'}\ntarget:\n  table: bank\n  schema: [{name: id, type: bigint}]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let schema = crate::contract::compile(spec.target.schema.as_deref().unwrap_or_default())
            .unwrap_or_default();
        let mut feed =
            crate::job::files::compile_feed(&spec, Some(&schema), &mut |p, m| panic!("{p}: {m}"))
                .unwrap_or_else(|| panic!("no feed"));
        feed.max_files = max_files;
        feed
    }

    #[tokio::test]
    async fn plans_keep_what_is_listed_forget_the_rest_and_leave_the_unstable_waiting() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("in")).unwrap_or_else(|e| panic!("{e}"));
        let touch = |name: &str, seconds_ago: u64| {
            std::fs::File::options()
                .write(true)
                .open(dir.path().join(format!("in/{name}.json")))
                .and_then(|f| {
                    f.set_modified(
                        std::time::SystemTime::now() - std::time::Duration::from_secs(seconds_ago),
                    )
                })
                .unwrap_or_else(|e| panic!("{e}"));
        };
        for name in ["a", "b", "c", "d"] {
            std::fs::write(dir.path().join(format!("in/{name}.json")), "[]")
                .unwrap_or_else(|e| panic!("{e}"));
            touch(name, 120);
        }
        let store = Objects::folder(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let listing = store.list("in").await.unwrap_or_else(|e| panic!("{e}"));
        let entry = |name: &str| {
            listing
                .iter()
                .find(|e| e.path == format!("in/{name}.json"))
                .cloned()
                .unwrap_or_else(|| panic!("{name} not listed"))
        };
        let hash = Hashing::new(&b"[]"[..]).finish().unwrap_or_default();
        let loaded = |name: &str| Loaded::of(&entry(name), hash.clone(), false).key();
        let gone = Loaded {
            path: "in/gone.json".into(),
            ..Loaded::of(&entry("a"), hash.clone(), false)
        };
        let now = Utc::now();
        let old = now.timestamp() - 40 * 86_400;
        let ledger = Manifests(BTreeMap::from([
            ("r-old-listed".to_string(), vec![loaded("a")]),
            ("r-old-gone".to_string(), vec![gone.key()]),
            ("r-new-gone".to_string(), vec![gone.key()]),
        ]));
        let committed = Checkpoint {
            watermark: None,
            feed: Some(FeedCheckpoint {
                runs: vec![
                    ("r-old-listed".into(), old),
                    ("r-old-gone".into(), old),
                    ("r-new-gone".into(), now.timestamp()),
                ],
            }),
        };
        // b, c, d are new; one a run fits; a is loaded.
        let first = plan(&store, &feed(2), &committed, &ledger, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let paths: Vec<&str> = first.load.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["in/b.json", "in/c.json"]);
        assert_eq!((first.report.listed, first.report.waiting), (4, 1));
        let kept: Vec<&str> = first.keep_runs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kept, ["r-old-listed", "r-new-gone"]);

        // Modified just now: within stable_for (60s), d waits.
        touch("d", 0);
        let later = now + chrono::Duration::seconds(1);
        let second = plan(&store, &feed(10), &committed, &ledger, later)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let paths: Vec<&str> = second.load.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["in/b.json", "in/c.json"]);
        assert_eq!(second.report.waiting, 1);
    }

    #[test]
    fn identities_round_trip_through_manifest_keys() {
        let file = Loaded {
            hash: "ab".repeat(32),
            size: 120,
            modified: 1_714_564_800,
            path: "incoming/bank 05.json".into(),
            bad: false,
        };
        assert_eq!(Loaded::parse(&file.key()), Some(file.clone()));
        let bad = Loaded { bad: true, ..file };
        assert_eq!(Loaded::parse(&bad.key()), Some(bad));
        assert_eq!(Loaded::parse("3f2a-message-id"), None);
    }
}
