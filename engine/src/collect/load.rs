//! The collector's loads: when a segment is sealed, the three collector jobs run (file
//! feeds over the spool's `ready/` folder), each load a commit under the exactly-once
//! protocol of every job — the segments it loaded are moved to `loaded/` only after its
//! commit, and a segment whose run committed is never loaded again. A failed load (the
//! lake unreachable) is retried with a growing pause; meanwhile the segments wait in
//! `ready/` and count against the spool's buffer, which answers 503 once full.
//!
//! Each load is `sluice run --job ID` in a child process of this binary (its own process
//! group, so a signal meant for the collector does not cut it short): the server's memory
//! stays the server's (a load's decoders, writers and allocator arenas go back to the
//! system when it ends), a load is bounded by its own `--memory-limit`, and a load that
//! fails cannot take the server down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::segments::{READY, Settings, files};
use super::spool::Gauges;
use crate::error::ErrorClass;

/// The longest pause between failed loads.
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// How a load is run: this binary, with the collector's places.
#[derive(Debug, Clone)]
pub struct LoadCommand {
    pub exe: PathBuf,
    /// The global options naming the jobs, the lake, the state and the catalog.
    pub places: Vec<String>,
    /// A load's `--memory-limit`, in bytes.
    pub memory_limit: u64,
    pub lease_ttl: Duration,
}

impl LoadCommand {
    /// Runs one job to its end; the class of its failure, if it failed.
    async fn run(&self, job: &str) -> Option<ErrorClass> {
        let mut command = std::process::Command::new(&self.exe);
        command
            .args(&self.places)
            .args(["run", "--job", job, "--output", "json"])
            .arg(format!("--memory-limit={}KiB", self.memory_limit >> 10))
            .arg(format!("--lease-ttl={}s", self.lease_ttl.as_secs().max(1)))
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let ran = tokio::task::spawn_blocking(move || command.output()).await;
        let output = match ran {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                tracing::error!(job, error = %e, "could not start a load");
                return Some(ErrorClass::Internal);
            }
            Err(e) => {
                tracing::error!(job, error = %e, "a load's waiter failed");
                return Some(ErrorClass::Internal);
            }
        };
        let summary = String::from_utf8_lossy(&output.stdout);
        tracing::info!(job, summary = summary.trim(), "load");
        match output.status.code() {
            Some(0) => None,
            Some(code) => Some(
                [
                    ErrorClass::User,
                    ErrorClass::Busy,
                    ErrorClass::External,
                    ErrorClass::Internal,
                    ErrorClass::Interrupted,
                ]
                .into_iter()
                .find(|c| c.exit_code() == code)
                .unwrap_or(ErrorClass::Internal),
            ),
            // Killed by a signal: nothing of it committed.
            None => Some(ErrorClass::External),
        }
    }
}

pub struct Loader {
    pub jobs: Vec<String>,
    pub command: LoadCommand,
    pub dir: PathBuf,
    pub settings: Settings,
    pub gauges: Arc<Gauges>,
    pub sealed: Arc<tokio::sync::Notify>,
}

impl Loader {
    /// Loads each sealed segment until `stop`; then loads what the last seals left and
    /// returns whether everything was loaded. A load another process holds the lease of
    /// (the collector killed during a load, and restarted at once) is waited for, up to
    /// the lease's life.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) -> bool {
        let mut pause = Duration::from_secs(1);
        let mut last = Pass::Loaded;
        loop {
            let wait = match last {
                Pass::Loaded => self.settings.flush_age,
                Pass::More => Duration::ZERO,
                Pass::Busy | Pass::Failed => pause,
            };
            tokio::select! {
                () = self.sealed.notified() => {}
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            last = self.pass().await;
            let failed = matches!(last, Pass::Busy | Pass::Failed);
            pause = if failed {
                (pause * 2).min(MAX_PAUSE)
            } else {
                Duration::from_secs(1)
            };
        }
        let deadline =
            tokio::time::Instant::now() + self.command.lease_ttl + Duration::from_secs(5);
        loop {
            match self.pass().await {
                Pass::Loaded => return true,
                Pass::More => {}
                Pass::Busy if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return false,
            }
        }
    }

    /// Runs each job once (a run takes a few segments: `source.collect`).
    async fn pass(&self) -> Pass {
        let ready = &self.dir.join(READY);
        let before = sizes(ready);
        if before.is_empty() {
            return Pass::Loaded;
        }
        let mut outcome = Pass::Loaded;
        for job in &self.jobs {
            if let Some(class) = self.command.run(job).await {
                tracing::warn!(
                    job = %job,
                    error_class = %class,
                    "a load of the spool failed (its log is above); its segments wait in ready/ for the next"
                );
                outcome = match (outcome, class) {
                    (Pass::Failed, _) => Pass::Failed,
                    (_, ErrorClass::Busy) => Pass::Busy,
                    _ => Pass::Failed,
                };
            }
        }
        let after = sizes(ready);
        let loaded: u64 = before
            .iter()
            .filter(|(path, _)| !after.contains_key(*path))
            .map(|(_, len)| len)
            .sum();
        self.gauges.ready_bytes.fetch_sub(loaded, Ordering::Relaxed);
        if outcome == Pass::Loaded && !after.is_empty() {
            outcome = Pass::More;
        }
        let now = chrono::Utc::now().timestamp();
        if let Err(e) = super::replay::prune(&self.dir, &self.settings, now) {
            tracing::warn!(error = %e.report(), "could not remove old loaded segments");
        }
        outcome
    }
}

/// How a pass over the jobs ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Nothing waits in `ready/`.
    Loaded,
    /// Every run committed, and more segments wait.
    More,
    /// Only because another process holds a job's lease.
    Busy,
    Failed,
}

/// The sealed segments and their sizes.
fn sizes(ready: &std::path::Path) -> BTreeMap<PathBuf, u64> {
    files(ready)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
        .collect()
}
