//! What a run reports: printed at the end, or as JSON with `--output json`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorClass};
use crate::job::{Job, mode_name};
use crate::source::Window;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Files written and the watermark moved.
    Committed,
    /// Nothing new in the source: no files, no state change.
    UpToDate,
    /// The run failed; nothing it wrote is part of the table.
    Failed,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Seconds {
    /// Waiting for rows from the source and the transform (they run concurrently).
    pub extract_transform: f64,
    /// Encoding Parquet and uploading.
    pub write: f64,
    /// Recording the commit and removing replaced files.
    pub commit: f64,
    pub total: f64,
}

/// What a run reports, and what the state store keeps of it as the run record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub job: String,
    pub run_id: String,
    /// The key in the names of the files the run wrote (absent when it wrote none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_key: Option<String>,
    pub started_at: DateTime<Utc>,
    /// What started the run (the Step Functions execution), when it was not a person.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    pub mode: String,
    pub table: String,
    pub status: RunStatus,
    pub window: Window,
    /// Rows read from the source.
    pub rows_read: u64,
    /// Rows written to the lake (after the transform).
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub partitions: usize,
    /// Files of earlier runs that a full or snapshot run replaced.
    pub replaced_files: usize,
    pub seconds: Seconds,
    /// Peak resident memory of the process, in bytes (Linux).
    pub peak_rss: Option<u64>,
    /// How the output differed from the schema contract, and what the run did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schema_changes: Vec<crate::contract::Drift>,
    /// The data-quality rules' results.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quality: Vec<crate::quality::RuleResult>,
    /// Rows moved to the quarantine table.
    #[serde(default)]
    pub quarantined: u64,
    /// Source columns read as text because the database gives no type for them (a
    /// query's computed columns) and `target.schema` does not pin.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub typeless: Vec<String>,
    /// A feed with a record key (`source.dedup`): the records it skipped because a
    /// committed run, or this one, had loaded their key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_duplicates: Option<u64>,
    /// A feed's messages: received, duplicates skipped, quarantined, deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feed: Option<crate::source::FeedReport>,
    /// An API feed's calls: requests, retries, bytes received, records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api: Option<crate::source::ApiReport>,
    /// A file feed's files: listed, loaded, waiting, bad, moved or deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_files: Option<crate::source::files::FilesReport>,
    /// A Delta table's commit: the version that holds the run, and what a merge did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<DeltaReport>,
    /// Change capture: what the run read of the log, and how much log the source keeps
    /// for the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<crate::source::changes::ChangeReport>,
    /// What publishing in the Glue catalog did (absent when the run does not publish).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
}

/// What a run's Delta commit did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeltaReport {
    /// The table version that holds the run.
    pub version: u64,
    /// Merge: rows of the table the run's keys replaced or deleted.
    #[serde(default)]
    pub matched: u64,
    /// Merge: rows of the run that were deletes (`delete_when`).
    #[serde(default)]
    pub deletes: u64,
    /// Merge: files of the table rewritten without the run's keys.
    #[serde(default)]
    pub rewritten_files: usize,
    /// Merge: keys whose newest rows in the run shared the cursor value (ties).
    #[serde(default)]
    pub ties: u64,
    /// Merge: of those ties, the ones `source.tie_break` did not decide (all of them
    /// without one): the delete won over an upsert, then the greatest row by the other
    /// columns in order.
    #[serde(default)]
    pub ties_by_rule: u64,
}

impl RunSummary {
    pub fn new(job: &Job, run_id: &str) -> Self {
        Self::named(&job.id, mode_name(job.mode), &job.target.table, run_id)
    }

    pub fn named(job: &str, mode: &str, table: &str, run_id: &str) -> Self {
        Self {
            job: job.to_string(),
            run_id: run_id.to_string(),
            run_key: None,
            started_at: Utc::now(),
            trigger: None,
            mode: mode.to_string(),
            table: table.to_string(),
            status: RunStatus::Failed,
            window: Window::everything(),
            rows_read: 0,
            rows: 0,
            files: 0,
            bytes: 0,
            partitions: 0,
            replaced_files: 0,
            seconds: Seconds::default(),
            peak_rss: None,
            schema_changes: Vec::new(),
            quality: Vec::new(),
            quarantined: 0,
            typeless: Vec::new(),
            record_duplicates: None,
            feed: None,
            api: None,
            delta: None,
            changes: None,
            source_files: None,
            catalog: None,
            error: None,
            error_class: None,
        }
    }

    /// Keeps the source's counts.
    pub fn report(&mut self, report: crate::source::Report) {
        use crate::source::Report;
        match report {
            Report::Table => {}
            Report::Queue(r) => self.feed = Some(r),
            Report::Api(r) => self.api = Some(r),
            Report::Files(r) => self.source_files = Some(r),
            Report::Changes(r) => self.changes = Some(r),
        }
    }

    /// Keeps what the source acknowledged after the commit: the messages a queue
    /// deleted, the files a file feed moved or deleted.
    pub fn acknowledged(&mut self, n: u64) {
        if let Some(feed) = self.feed.as_mut() {
            feed.deleted = n;
        }
        if let Some(files) = self.source_files.as_mut() {
            files.after_load += n;
        }
    }

    /// Marks the run failed with `error`'s class and message.
    pub fn fail(&mut self, error: &Error) {
        self.status = RunStatus::Failed;
        self.error = Some(error.report());
        self.error_class = Some(error.class);
    }

    /// The run's outcome as a result: `Err` with the recorded class when it failed.
    pub fn outcome(&self) -> Result<(), Error> {
        match (self.status, self.error_class) {
            (RunStatus::Failed, class) => Err(Error::new(
                class.unwrap_or(ErrorClass::Internal),
                format!(
                    "job {}: {}",
                    self.job,
                    self.error.as_deref().unwrap_or("failed")
                ),
            )),
            _ => Ok(()),
        }
    }

    /// One line for people.
    pub fn line(&self) -> String {
        let window = match (&self.window.lo, &self.window.hi) {
            (None, None) => String::new(),
            (lo, Some(hi)) => format!(
                " window ({}, {hi}]",
                lo.as_ref().map_or("start".to_string(), ToString::to_string)
            ),
            (Some(lo), None) => format!(" after {lo}"),
        };
        match self.status {
            RunStatus::Committed => format!(
                "{}: {} rows → {} ({} files, {} partitions, {}) in {:.2}s{window}{}",
                self.job,
                self.rows,
                self.table,
                self.files,
                self.partitions,
                human_bytes(self.bytes),
                self.seconds.total,
                self.notes()
            ),
            RunStatus::UpToDate => match (&self.window.lo, &self.source_files) {
                (_, Some(files)) => format!(
                    "{}: up to date, no new complete file{}",
                    self.job,
                    if files.waiting > 0 {
                        format!(
                            " ({} waiting: still being written, unmarked, or beyond max_files)",
                            files.waiting
                        )
                    } else {
                        String::new()
                    }
                ),
                (Some(watermark), None) => {
                    format!("{}: up to date, nothing new after {watermark}", self.job)
                }
                (None, None) => format!("{}: up to date, the source has no rows", self.job),
            },
            RunStatus::Failed => format!(
                "{}: FAILED ({}): {}",
                self.job,
                self.error_class
                    .map_or("unknown".to_string(), |c| c.to_string()),
                self.error.as_deref().unwrap_or("")
            ),
        }
    }
}

impl RunSummary {
    /// Drift, quality warnings and quarantined rows, for the one-line report.
    fn notes(&self) -> String {
        let mut notes = Vec::new();
        if self.quarantined > 0 {
            notes.push(format!("{} rows quarantined", self.quarantined));
        }
        if let Some(feed) = self.feed.as_ref().filter(|f| f.receive_failures > 0) {
            notes.push(format!(
                "receiving ended early: {} receive call{} failed after retries (the rest waits in the queue for the next run)",
                feed.receive_failures,
                if feed.receive_failures == 1 { "" } else { "s" }
            ));
        }
        if let Some(files) = &self.source_files {
            let mut note = format!(
                "from {} file{}",
                files.loaded,
                if files.loaded == 1 { "" } else { "s" }
            );
            for (n, what) in [
                (files.waiting, "waiting"),
                (files.bad_files, "bad (in the quarantine table)"),
                (files.reloaded_runs, "earlier runs replaced"),
                (files.after_load, "moved or deleted"),
            ] {
                if n > 0 {
                    note.push_str(&format!(", {n} {what}"));
                }
            }
            notes.push(note);
        }
        if let Some(delta) = &self.delta {
            let mut note = format!("Delta version {}", delta.version);
            if delta.matched > 0 || delta.deletes > 0 {
                note.push_str(&format!(
                    ": {} rows replaced or deleted, {} deletes, {} files rewritten",
                    delta.matched, delta.deletes, delta.rewritten_files
                ));
            }
            if delta.ties > 0 {
                note.push_str(&format!(
                    "; {} keys tied on the cursor: {} decided by source.tie_break, {} by the rule (a delete over an upsert, then the greatest row by the other columns)",
                    delta.ties,
                    delta.ties.saturating_sub(delta.ties_by_rule),
                    delta.ties_by_rule
                ));
            }
            notes.push(note);
        }
        for rule in self.quality.iter().filter(|r| !r.passed) {
            notes.push(format!("quality `{}` failed: {}", rule.rule, rule.detail));
        }
        if !self.typeless.is_empty() {
            notes.push(format!(
                "read as text, the source gives no type: {} (target.schema can pin them)",
                self.typeless.join(", ")
            ));
        }
        for drift in &self.schema_changes {
            notes.push(format!("schema: {drift}: {}", drift.action));
        }
        if notes.is_empty() {
            String::new()
        } else {
            format!("; {}", notes.join("; "))
        }
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Peak resident set size of this process (`VmHWM` in /proc/self/status).
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
