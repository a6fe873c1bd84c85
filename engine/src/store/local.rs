//! State in a local folder: `<job>.json` replaced atomically (write, fsync, rename), a
//! compare-and-set under an exclusive file lock, the lease as an exclusive lock on
//! `<job>.lease` that the OS drops when the process ends, however it ends, and the run
//! records as JSON lines appended to `<job>.runs.jsonl`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{JobState, Lease, StateStore, Versioned};
use crate::error::{Error, Result};
use crate::summary::RunSummary;

pub struct LocalStore {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Stored {
    version: u64,
    state: JobState,
}

impl LocalStore {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::user(format!(
                "cannot create the state folder {}: {e}",
                dir.display()
            ))
        })?;
        Ok(Self { dir })
    }

    fn file(&self, job: &str) -> PathBuf {
        self.dir.join(format!("{job}.json"))
    }

    fn read(&self, job: &str) -> Result<Versioned<JobState>> {
        let path = self.file(job);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| {
                    Error::user(format!(
                        "state file {} is not valid: {e}; restore it or remove it to start the job from scratch",
                        path.display()
                    ))
                })?;
                Ok(Versioned {
                    value: stored.state,
                    version: stored.version,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Versioned {
                value: JobState::default(),
                version: 0,
            }),
            Err(e) => Err(io_error(&path, e)),
        }
    }

    fn write_atomically(&self, job: &str, stored: &Stored) -> Result<()> {
        let path = self.file(job);
        let tmp = self.dir.join(format!(".{job}.json.tmp"));
        let bytes = serde_json::to_vec_pretty(stored)
            .map_err(|e| Error::internal(format!("encoding state: {e}")))?;
        let mut f = File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        f.write_all(&bytes).map_err(|e| io_error(&tmp, e))?;
        f.sync_all().map_err(|e| io_error(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_error(&self.dir, e))
    }

    fn runs_file(&self, job: &str) -> PathBuf {
        self.dir.join(format!("{job}.runs.jsonl"))
    }

    fn lock_file(&self, name: &str) -> Result<File> {
        let path = self.dir.join(name);
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))
    }
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::external(format!("state file {}: {e}", path.display()))
}

/// How much of a runs file is read at a time, from its end.
const TAIL_BLOCK: u64 = 64 << 10;

/// The newest `limit` records of a runs file, newest first, read from its end a block at
/// a time: the last run of a job with a long history costs one block, not the file (the
/// console asks it of every job on its home page). A line cut short by a crash is
/// skipped; every complete line is a record.
fn newest_lines(mut file: File, limit: usize) -> std::io::Result<Vec<RunSummary>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut end = file.seek(SeekFrom::End(0))?;
    let mut out = Vec::new();
    // Bytes after the last newline seen, belonging to the line that block ends in.
    let mut carry: Vec<u8> = Vec::new();
    while end > 0 && out.len() < limit {
        let start = end.saturating_sub(TAIL_BLOCK);
        let mut block = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        block.extend_from_slice(&carry);
        // The first piece may be the tail of a line that starts in an earlier block.
        let mut pieces: Vec<&[u8]> = block.split(|b| *b == b'\n').collect();
        let first = if start > 0 {
            pieces.remove(0).to_vec()
        } else {
            Vec::new()
        };
        for line in pieces.into_iter().rev() {
            if out.len() == limit {
                break;
            }
            if let Ok(run) = serde_json::from_slice::<RunSummary>(line) {
                out.push(run);
            }
        }
        carry = first;
        end = start;
    }
    Ok(out)
}

struct LocalLease {
    _file: File,
}

#[async_trait]
impl Lease for LocalLease {
    async fn release(self: Box<Self>) -> Result<()> {
        // Closing the file drops the lock.
        Ok(())
    }
}

#[async_trait]
impl StateStore for LocalStore {
    async fn load(&self, job: &str) -> Result<Versioned<JobState>> {
        self.read(job)
    }

    async fn save(&self, job: &str, state: &JobState, expected: u64) -> Result<u64> {
        let guard = self.lock_file(&format!(".{job}.json.lock"))?;
        guard.lock().map_err(|e| io_error(&self.dir, e))?;
        let current = self.read(job)?.version;
        if current != expected {
            return Err(Error::busy(format!(
                "the state of job `{job}` changed under this run (version {current}, expected {expected}); another run wrote it"
            )));
        }
        let version = expected + 1;
        self.write_atomically(
            job,
            &Stored {
                version,
                state: state.clone(),
            },
        )?;
        Ok(version)
    }

    async fn lease(&self, job: &str, owner: &str, _ttl: Duration) -> Result<Box<dyn Lease>> {
        let mut file = self.lock_file(&format!("{job}.lease"))?;
        match file.try_lock() {
            Ok(()) => {
                let _ = file.set_len(0);
                let _ = writeln!(file, "{owner} since {}", chrono::Utc::now().to_rfc3339());
                Ok(Box::new(LocalLease { _file: file }))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(self.dir.join(format!("{job}.lease")))
                    .unwrap_or_default();
                Err(Error::busy(format!(
                    "job `{job}` is already running ({}); try again when it has finished",
                    holder.trim()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => Err(io_error(&self.dir, e)),
        }
    }

    async fn lease_holder(&self, job: &str) -> Result<Option<String>> {
        let file = self.lock_file(&format!("{job}.lease"))?;
        match file.try_lock() {
            Ok(()) => Ok(None),
            Err(std::fs::TryLockError::WouldBlock) => Ok(Some(
                std::fs::read_to_string(self.dir.join(format!("{job}.lease")))
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(io_error(&self.dir, e)),
        }
    }

    async fn record_run(&self, run: &RunSummary) -> Result<()> {
        let path = self.runs_file(&run.job);
        let mut line = serde_json::to_vec(run)
            .map_err(|e| Error::internal(format!("encoding the run record: {e}")))?;
        line.push(b'\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_error(&path, e))?;
        f.write_all(&line).map_err(|e| io_error(&path, e))?;
        f.sync_all().map_err(|e| io_error(&path, e))
    }

    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunSummary>> {
        let path = self.runs_file(job);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&path, e)),
        };
        newest_lines(file, limit).map_err(|e| io_error(&path, e))
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;
    use crate::source::CursorValue;

    #[tokio::test]
    async fn compare_and_set_refuses_stale_versions() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        let store = LocalStore::open(dir.path())?;
        let first = store.load("j").await?;
        assert_eq!(first.version, 0);
        let state = JobState {
            watermark: Some(CursorValue::Int(5)),
            ..Default::default()
        };
        assert_eq!(store.save("j", &state, 0).await?, 1);
        let stale = store.save("j", &state, 0).await;
        assert!(stale.is_err_and(|e| e.class == ErrorClass::Busy));
        let read = store.load("j").await?;
        assert_eq!((read.version, read.value), (1, state));
        Ok(())
    }

    #[tokio::test]
    async fn one_lease_per_job() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        let store = LocalStore::open(dir.path())?;
        let held = store.lease("j", "run-1", Duration::from_secs(60)).await?;
        let second = store.lease("j", "run-2", Duration::from_secs(60)).await;
        assert!(second.is_err_and(|e| e.class == ErrorClass::Busy && e.message.contains("run-1")));
        assert!(
            store
                .lease("other", "run-3", Duration::from_secs(60))
                .await
                .is_ok()
        );
        drop(held);
        assert!(
            store
                .lease("j", "run-4", Duration::from_secs(60))
                .await
                .is_ok()
        );
        Ok(())
    }

    #[tokio::test]
    async fn runs_are_read_from_the_end_across_blocks() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        let store = LocalStore::open(dir.path())?;
        // Long enough lines that the records span many blocks.
        for i in 0..400 {
            let mut run = RunSummary::named("j", "full", "t", &format!("run-{i:04}"));
            run.error = Some("x".repeat(300 + i % 7));
            store.record_run(&run).await?;
        }
        // A line cut short by a crash at the end is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("j.runs.jsonl"))
            .and_then(|mut f| f.write_all(b"{\"job\": \"j\", \"run"))
            .map_err(|e| Error::internal(e.to_string()))?;
        let ids = |runs: Vec<RunSummary>| runs.into_iter().map(|r| r.run_id).collect::<Vec<_>>();
        assert_eq!(ids(store.runs("j", 2).await?), ["run-0399", "run-0398"]);
        let all = ids(store.runs("j", 1000).await?);
        assert_eq!(all.len(), 400);
        assert_eq!(all.last().map(String::as_str), Some("run-0000"));
        assert!(all.windows(2).all(|w| w[0] > w[1]));
        assert!(store.runs("none", 5).await?.is_empty());
        Ok(())
    }
}
