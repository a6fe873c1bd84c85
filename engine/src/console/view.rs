//! What the pages show, read the way the CLI reads it: the job rows through
//! `job::load` (as `sluice jobs validate`), runs through `StateStore::runs` (as `sluice
//! state history`), state and lease through `load` and `lease_holder` (as `sluice state
//! show`). Nothing here reads the store or the rows another way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::health::{self, Health};
use super::schedule::Schedules;
use crate::error::Result;
use crate::job::{self, JobSet, LoadedRow};
use crate::lineage::{Dataset, naming};
use crate::store::StateStore;
use crate::summary::{RunStatus, RunSummary};

/// Runs read per job for its health: enough to find the last success behind a streak of
/// failures.
pub const RUNS_FOR_HEALTH: usize = 20;
/// Jobs whose state is read at once.
const READ_AT_ONCE: usize = 16;

/// The job rows, loaded again when older than the TTL (`--jobs-ttl`): a new or changed row
/// shows within it.
pub struct JobsCache {
    location: String,
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<JobSet>)>>,
}

impl JobsCache {
    pub fn new(location: String, ttl: Duration) -> Self {
        Self {
            location,
            ttl,
            cached: tokio::sync::Mutex::new(None),
        }
    }

    /// The rows as `job::load` reads them (a broken row is in the set with its problems).
    pub async fn get(&self) -> Result<Arc<JobSet>> {
        let mut cached = self.cached.lock().await;
        if let Some((at, set)) = cached.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(set.clone());
        }
        let set = Arc::new(job::load(&self.location).await?);
        *cached = Some((Instant::now(), set.clone()));
        Ok(set)
    }

    /// Forgets the rows, so that the next page reads them again.
    pub async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}

/// One job as the home page lists it.
pub struct JobLine {
    pub id: String,
    pub origin: String,
    /// `table`, `feed`, `collector load`, or `broken` for a row that does not compile.
    pub kind: &'static str,
    pub table: Option<String>,
    pub enabled: bool,
    /// The newest run record.
    pub last: Option<RunSummary>,
    /// Seconds since the newest run that did not fail ended.
    pub data_age: Option<i64>,
    /// Who holds the job's lease (a run in flight).
    pub lease: Option<String>,
    /// The schedule expression and the next start.
    pub next: Option<(String, Option<DateTime<Utc>>)>,
    pub freshness: Option<Duration>,
    pub health: Health,
}

/// The kind of job a row is.
pub fn kind(row: &LoadedRow) -> &'static str {
    match &row.job {
        Err(_) => "broken",
        Ok(_) if !row.value["source"]["collect"].is_null() => "collector load",
        Ok(job) if matches!(job.from, job::From::Relation(_)) => "table",
        Ok(_) => "feed",
    }
}

/// When a run ended (its start and its duration).
pub fn ended(run: &RunSummary) -> DateTime<Utc> {
    run.started_at + chrono::Duration::milliseconds((run.seconds.total * 1000.0) as i64)
}

/// Seconds since the newest run among `runs` (newest first) that did not fail ended.
pub fn data_age(runs: &[RunSummary], now: DateTime<Utc>) -> Option<i64> {
    runs.iter()
        .find(|r| r.status != RunStatus::Failed)
        .map(|r| (now - ended(r)).num_seconds())
}

/// Every job of the set, with its last run, lease, next start and health.
pub async fn lines(
    set: &JobSet,
    store: &dyn StateStore,
    schedules: &Schedules,
    now: DateTime<Utc>,
) -> Vec<JobLine> {
    // The futures made first (they start when polled): a stream of them holds no
    // closure over a borrowed row, which a handler's future could not be sent with.
    let reads: Vec<_> = set
        .rows
        .iter()
        .map(|row| line(row, store, schedules, now))
        .collect();
    futures::stream::iter(reads)
        .buffered(READ_AT_ONCE)
        .collect()
        .await
}

async fn line(
    row: &LoadedRow,
    store: &dyn StateStore,
    schedules: &Schedules,
    now: DateTime<Utc>,
) -> JobLine {
    let id = row
        .id
        .clone()
        .unwrap_or_else(|| "(row without a job id)".to_string());
    let compiled = row.job.as_ref().ok();
    let (runs, lease) = match &row.id {
        Some(id) => {
            let runs = store.runs(id, RUNS_FOR_HEALTH).await.unwrap_or_else(|e| {
                tracing::warn!(job = %id, error = %e.report(), "could not read the job's runs");
                Vec::new()
            });
            let lease = store.lease_holder(id).await.unwrap_or(None);
            (runs, lease)
        }
        None => (Vec::new(), None),
    };
    let enabled = compiled.is_none_or(|j| j.enabled);
    let freshness = compiled.and_then(|j| j.freshness);
    let age = data_age(&runs, now);
    let health = health::judge(health::Facts {
        valid: compiled.is_some(),
        enabled,
        last: runs.first(),
        data_age: age,
        freshness,
    });
    JobLine {
        next: enabled.then(|| schedules.next(&id, now)).flatten(),
        id,
        origin: row.origin.clone(),
        kind: kind(row),
        table: compiled.map(|j| j.target.table.clone()),
        enabled,
        last: runs.into_iter().next(),
        data_age: age,
        lease,
        freshness,
        health,
    }
}

/// A job's neighbours: what it reads and who writes that; what it writes and who reads
/// that — over every compiled job of the set, by OpenLineage dataset names.
pub struct Neighbours {
    pub reads: Dataset,
    pub writes: Vec<Dataset>,
    /// Jobs that write what this job reads.
    pub upstream: Vec<String>,
    /// Jobs that read what this job writes.
    pub downstream: Vec<String>,
}

pub fn neighbours(set: &JobSet, job: &job::Job, lake_url: &str) -> Neighbours {
    let writes_of = |j: &job::Job| {
        vec![
            naming::lake_table(lake_url, &j.target.table),
            naming::lake_table(lake_url, &crate::quality::quarantine_table(&j.target.table)),
        ]
    };
    let reads = naming::source(job);
    let writes = writes_of(job);
    let others = set
        .rows
        .iter()
        .filter_map(|r| r.job.as_ref().ok())
        .filter(|j| j.id != job.id);
    let mut upstream = Vec::new();
    let mut downstream = Vec::new();
    for other in others {
        if writes_of(other).contains(&reads) {
            upstream.push(other.id.clone());
        }
        if writes.contains(&naming::source(other)) {
            downstream.push(other.id.clone());
        }
    }
    Neighbours {
        reads,
        writes,
        upstream,
        downstream,
    }
}

/// The job row as written, with every value that could be a secret replaced: a key
/// naming a password, secret, token, key or authorization keeps its name, not its value.
pub fn redacted(value: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    const SECRET: [&str; 7] = [
        "password",
        "secret",
        "token",
        "key",
        "authorization",
        "private",
        "credential",
    ];
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let lower = k.to_ascii_lowercase();
                    let hidden = SECRET.iter().any(|s| lower.contains(s))
                        && lower != "primary_key"
                        && !matches!(v, Value::Array(_) | Value::Object(_) | Value::Bool(_));
                    let v = if hidden {
                        Value::String("(hidden)".into())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        Value::String(s) => Value::String(naming::without_userinfo(s)),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_reach_a_page() {
        let row = serde_json::json!({
            "job": "x",
            "source": {"connection": "api", "primary_key": ["id"],
                       "request": {"headers": {"Authorization": "Bearer abc", "X-Api-Key": "k"},
                                   "params": {"token": "t", "page": "1"}}},
            "target": {"table": "tbl"},
            "note": "postgres://u:pw@h/db"
        });
        let shown = redacted(&row).to_string();
        for secret in ["Bearer abc", "\"k\"", "\"t\"", ":pw@"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("\"primary_key\":[\"id\"]"));
        assert!(shown.contains("\"page\":\"1\""));
        assert!(shown.contains("postgres://h/db"));
    }

    #[test]
    fn the_data_age_is_that_of_the_newest_success() {
        let now = Utc::now();
        let mut failed = RunSummary::named("j", "full", "t", "2");
        failed.started_at = now - chrono::Duration::seconds(60);
        let mut ok = RunSummary::named("j", "full", "t", "1");
        ok.status = RunStatus::Committed;
        ok.started_at = now - chrono::Duration::seconds(3600);
        ok.seconds.total = 600.0;
        assert_eq!(data_age(&[failed.clone(), ok], now), Some(3000));
        assert_eq!(data_age(&[failed], now), None);
    }
}
