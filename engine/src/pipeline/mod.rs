//! One run of one job: the only place the stages are wired together.
//!
//! The commit protocol, whose invariants the tests check:
//! 1. The run takes the job's lease: no other run of the job writes state or files until
//!    it ends.
//! 2. If the state records a pending attempt, that attempt failed: its files (all named
//!    with its run key) and its manifest are removed, then the pending mark is cleared.
//! 3. The source plans the run from the committed checkpoint: a table's window
//!    `(lo, hi]` (`lo` the watermark, `hi` the greatest cursor not after now − lag); a
//!    feed's is unbounded (what it consumes is known when its extract ends). The run key
//!    is a hash of the job and window for incremental table runs (a retry of the same
//!    window writes the same file names), else of the run id.
//! 4. The attempt is recorded as pending (compare-and-set) before any file is written.
//! 5. Files are written and closed; then the manifests (a feed's lists the keys of the
//!    messages it consumed; its undecodable messages are in the quarantine table).
//! 6. Commit: one compare-and-set moves the checkpoint (the watermark, or the feed's
//!    list of committed runs), records the run, and clears the pending mark. Until this
//!    succeeds the files are not part of the table's history, and step 2 of the next
//!    run removes them. Only then does a feed acknowledge (delete) what it received: a
//!    message redelivered after a crash here is skipped by its committed key.
//! 7. Full and snapshot runs then remove the files they replace (older run keys in the
//!    table, or in the day's snapshot partition). A crash here is finished by the next
//!    run's step 2b.
//!
//! Steps 2, 4, 6 and 7 are the table's ([`crate::table`]), in its format: a Parquet
//! table's commit is the compare-and-set alone; a Delta table's is a Delta commit
//! between two saves of the state (the pending attempt records the state the commit
//! makes, the commit carries the job's transaction version, and step 2 asks the log
//! whether a pending attempt's commit happened: then it takes that state, else it
//! removes the files), and its step 7 leaves the replaced files to readers of older
//! versions until `sluice vacuum`. The pipeline never asks which format it is.

mod dedup;
pub mod maintain;
mod output;
pub mod rewind;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tracing::Instrument;

pub use crate::summary::{RunStatus, RunSummary};

use crate::budget::MemoryBudget;
use crate::contract;
use crate::error::Result;
use crate::interrupt::Interrupt;
use crate::job::{Job, Mode, mode_name};
use crate::sink::{self, Lake};
use crate::source::{self, Consumed, Ledger, RunContext, Window};
use crate::store::{Attempt, CommittedRun, JobState, StateStore, Versioned};
use crate::table::{self, LakeTable, MergeBy, Recovered, Scope};

/// Reads an environment variable (for connection URL placeholders).
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a run needs besides its job.
pub struct Context {
    pub lake: Lake,
    pub store: Arc<dyn StateStore>,
    /// Reads environment variables (connection URL placeholders).
    pub env: Env,
    /// How long a lease lasts without renewal, where the store expires leases: the time
    /// after which a killed run's job can run again.
    pub lease_ttl: Duration,
    /// What started the runs (a Step Functions execution), for the run records.
    pub trigger: Option<String>,
    /// What the run's process may hold at its peak (see [`crate::budget`]).
    pub memory_limit: u64,
    /// The Glue database runs publish their tables in (`None`: no publishing).
    pub catalog: Option<String>,
    /// SIGINT / SIGTERM: a run in progress stops uncommitted and releases its lease.
    pub interrupt: Interrupt,
    /// Where the runs' OpenLineage events go (`None`: nowhere).
    pub lineage: Option<Arc<crate::lineage::Lineage>>,
    /// Whether each run's record is also appended to the lake table `_sluice_runs`.
    pub runs_table: bool,
}

/// The default memory budget of a run.
pub const DEFAULT_MEMORY_LIMIT: u64 = 256 << 20;

/// The default lease life: a held lease is renewed every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(120);

impl Context {
    pub fn new(lake: Lake, store: Arc<dyn StateStore>) -> Self {
        Self {
            lake,
            store,
            env: Arc::new(|k| std::env::var(k).ok()),
            lease_ttl: DEFAULT_LEASE_TTL,
            trigger: None,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            catalog: None,
            interrupt: Interrupt::never(),
            lineage: crate::lineage::Lineage::from_env().map(Arc::new),
            runs_table: true,
        }
    }
}

/// Runs one job once. Never fails: a failure is in the summary, classified, and logged
/// inside the run's span.
pub async fn run_job(job: &Job, ctx: &Context) -> RunSummary {
    let started = Instant::now();
    let now = Utc::now();
    let run_id = format!(
        "{}-{}",
        now.format("%Y%m%dT%H%M%SZ"),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let trigger = ctx.trigger.as_deref().unwrap_or("");
    let span = tracing::info_span!("run", job = %job.id, run_id = %run_id, trigger);
    let mut summary = RunSummary::new(job, &run_id);
    summary.started_at = now;
    summary.trigger = ctx.trigger.clone();
    if let Some(lineage) = &ctx.lineage {
        let event = crate::lineage::start_event(&lineage.namespace, job, ctx.lake.url(), &summary);
        lineage.send(&event).instrument(span.clone()).await;
    }
    let outcome = leased(job, ctx, now, &mut summary)
        .instrument(span.clone())
        .await;
    if let Err(e) = outcome {
        span.in_scope(
            || tracing::error!(error_class = %e.class, error = %e.report(), "run failed"),
        );
        summary.fail(&e);
    }
    summary.seconds.total = started.elapsed().as_secs_f64();
    summary.peak_rss = crate::summary::peak_rss();
    if let Err(e) = ctx.store.record_run(&summary).await {
        span.in_scope(|| tracing::warn!(error = %e.report(), "could not keep the run record"));
    }
    if ctx.runs_table {
        runs_as_data(ctx, &summary).instrument(span.clone()).await;
    }
    if let Some(lineage) = &ctx.lineage {
        let event = crate::lineage::end_event(&lineage.namespace, job, ctx.lake.url(), &summary);
        lineage.send(&event).instrument(span).await;
    }
    summary
}

/// Appends the run's record to the lake table `_sluice_runs` and, when runs publish,
/// keeps that table in the catalog. An audit copy: a failure is a warning (the record is
/// in the state store), never the run's outcome.
async fn runs_as_data(ctx: &Context, summary: &RunSummary) {
    if let Err(e) = crate::runs_table::append(&ctx.lake, summary).await {
        tracing::warn!(error = %e.report(), table = crate::runs_table::TABLE, "could not append the run record to the runs table");
        return;
    }
    if let Some(database) = &ctx.catalog
        && let Err(e) = crate::runs_table::publish(&ctx.lake, database).await
    {
        tracing::warn!(error = %e.report(), table = crate::runs_table::TABLE, "could not publish the runs table in the Glue catalog");
    }
}

/// The source columns read as text for want of a type that `target.schema` leaves
/// unpinned.
fn typeless(job: &Job, columns: &[source::types::SourceColumn]) -> Vec<String> {
    let pinned = |name: &str| job.target.schema.iter().flatten().any(|c| c.name == name);
    columns
        .iter()
        .filter(|c| c.typeless && !pinned(&c.lake_name))
        .map(|c| c.lake_name.clone())
        .collect()
}

/// Holds the job's lease around the attempt, and releases it however the attempt ends.
async fn leased(
    job: &Job,
    ctx: &Context,
    now: DateTime<Utc>,
    summary: &mut RunSummary,
) -> Result<()> {
    let lease = ctx
        .store
        .lease(&job.id, &summary.run_id, ctx.lease_ttl)
        .await?;
    // An interruption drops the attempt where it is: what it wrote is referenced by no
    // commit, as after a crash, and the lease is released below instead of expiring.
    let outcome = tokio::select! {
        outcome = attempt(job, ctx, now, summary) => outcome,
        e = ctx.interrupt.error() => Err(e),
    };
    if let (Ok(Some(contract)), Some(database)) = (&outcome, &ctx.catalog) {
        publish(job, ctx, contract, database, summary).await;
    }
    if let Err(e) = lease.release().await {
        // The lease expires on its own; the next run only waits longer.
        tracing::warn!(error = %e.report(), "could not release the job's lease");
    }
    outcome.map(|_| ())
}

/// Runs `work` holding the job's lease as `owner` — work that must not overlap a run of
/// the job (a rewind, an optimize, a vacuum) — and releases the lease however it ends.
pub(crate) async fn holding_lease<T>(
    job: &Job,
    ctx: &Context,
    owner: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let lease = ctx.store.lease(&job.id, owner, ctx.lease_ttl).await?;
    let outcome = work.await;
    lease.release().await?;
    outcome
}

/// Publishes the job's tables in the catalog after a commit (or an up-to-date run, which
/// repairs a publish that failed before). A failure leaves the commit standing and makes
/// the run's exit code say what it was (retryable or not), so that the scheduler retries.
async fn publish(
    job: &Job,
    ctx: &Context,
    contract: &[contract::Column],
    database: &str,
    summary: &mut RunSummary,
) {
    match crate::catalog::publish(job, &ctx.lake, contract, database).await {
        Ok(note) => {
            tracing::info!(catalog = %note, "published");
            summary.catalog = Some(note);
        }
        Err(e) => {
            let e = e.context("publishing in the Glue catalog (the run's data is committed)");
            tracing::error!(error_class = %e.class, error = %e.report(), "catalog publish failed");
            summary.catalog = Some(format!("failed: {}", e.message));
            summary.error = Some(e.report());
            summary.error_class = Some(e.class);
        }
    }
}

/// One attempt; returns the table's contract after it (none before a first commit).
async fn attempt(
    job: &Job,
    ctx: &Context,
    now: DateTime<Utc>,
    summary: &mut RunSummary,
) -> Result<Option<Vec<contract::Column>>> {
    let run_id = summary.run_id.clone();
    let mut state = ctx.store.load(&job.id).await?;
    recover(job, ctx, &mut state).await?;

    let mut source = source::open(job, ctx.env.as_ref()).await?;
    let columns = source.columns().await?;
    summary.typeless = typeless(job, &columns);
    let committed = state.value.checkpoint();
    let ledger: Arc<dyn Ledger> = Arc::new(ManifestLedger {
        lake: ctx.lake.clone(),
        table: job.target.table.clone(),
    });
    let Some(window) = source
        .plan(&columns, &committed, ledger.as_ref(), now)
        .await?
    else {
        tracing::info!("no new rows");
        summary.status = RunStatus::UpToDate;
        summary.report(source.planned());
        summary.window = Window {
            cursor: job.cursor.clone(),
            lo: state.value.watermark.clone(),
            hi: state.value.watermark.clone(),
        };
        return contract::effective(job.target.schema.as_deref(), state.value.contract.as_ref());
    };
    summary.window = window.clone();
    let run_key = run_key(job, &window, &run_id);
    summary.run_key = Some(run_key.clone());

    let lake_table = table::open(&ctx.lake, job);
    let mut pending = Attempt::new(
        (run_id.as_str(), run_key.as_str()),
        &job.target.table,
        window.clone(),
        now,
    );
    lake_table.begin(&mut pending).await?;
    state.value.pending = Some(pending);
    state.version = ctx.store.save(&job.id, &state.value, state.version).await?;

    let contract =
        contract::effective(job.target.schema.as_deref(), state.value.contract.as_ref())?;
    let budget = MemoryBudget::new(ctx.memory_limit, columns.len(), ctx.lake.upload_part())?;
    let schema = source::types::arrow_schema(&columns);
    let extract = source.extract(
        columns,
        window.clone(),
        RunContext {
            run_key: run_key.clone(),
            committed,
            ledger,
            batches: budget.batches(),
        },
    );
    let dedup = match job.records().and_then(|r| r.key.as_ref()) {
        Some(key) => {
            // A run that replaces the table (full, snapshot) is deduplicated within itself.
            let appends = matches!(job.mode, Mode::Incremental | Mode::Merge);
            let opened = dedup::Dedup::open(&ctx.lake, &job.target.table, key, appends, now).await;
            match opened {
                Ok(d) => Some(Arc::new(std::sync::Mutex::new(d))),
                Err(e) => {
                    abandon(&*lake_table, ctx, (job.id.as_str(), &mut state), &run_key).await;
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let batches = match &dedup {
        Some(d) => dedup::filtered(extract.batches, d.clone()),
        None => extract.batches,
    };
    let scope = match job.mode {
        Mode::Full => Some(Scope::Table),
        Mode::Snapshot => Some(Scope::snapshot(now)),
        Mode::Incremental | Mode::Merge => None,
    };
    let snapshot = match &scope {
        Some(s @ Scope::Snapshot(_)) => Some(s.folder()),
        _ => None,
    };
    let written = output::write(
        job,
        ctx,
        output::Input {
            schema,
            extract: batches,
            done: extract.done,
            contract,
            budget,
        },
        output::Run {
            window: &window,
            run_key: &run_key,
            snapshot,
        },
        summary,
    )
    .await;
    let (manifest, contract, mut consumed) = match written {
        Ok(m) => m,
        Err(e) => {
            abandon(&*lake_table, ctx, (job.id.as_str(), &mut state), &run_key).await;
            return Err(e);
        }
    };
    let nothing_new = consumed.is_empty();
    summary.report(std::mem::take(&mut consumed.report));
    if let Some(d) = dedup {
        let saved = save_keys(&d, ctx, &job.target.table, &run_key, summary).await;
        if nothing_new {
            // Nothing is committed: neither are its keys (removed with its files below).
        } else if let Err(e) = saved {
            abandon(&*lake_table, ctx, (job.id.as_str(), &mut state), &run_key).await;
            return Err(e);
        }
    }
    if nothing_new {
        // A feed that took nothing new: whatever it received was committed before.
        tracing::info!("nothing new in the feed");
        abandon(&*lake_table, ctx, (job.id.as_str(), &mut state), &run_key).await;
        // Change capture that read no change may still have moved its position (over
        // other tables' WAL): saved alone — no table commit — before the slot follows.
        if let Some(position) = consumed.checkpoint.changes.take()
            && state.value.changes.as_ref() != Some(&position)
        {
            state.value.changes = Some(position);
            state.version = ctx.store.save(&job.id, &state.value, state.version).await?;
            crate::failpoint::reached("committed").await;
        }
        acknowledge(consumed, summary).await;
        summary.status = RunStatus::UpToDate;
        return Ok(Some(contract));
    }
    crate::failpoint::reached("written").await;
    let commit_started = Instant::now();
    let mut next = state.value.clone();
    next.pending = None;
    next.advance(std::mem::take(&mut consumed.checkpoint));
    // Runs this one replaces leave the table with its commit (their files are removed
    // just after, or by the next run's recovery if this process dies first).
    next.discard.extend(std::mem::take(&mut consumed.replaces));
    next.committed = Some(CommittedRun {
        run_id: run_id.clone(),
        run_key: run_key.clone(),
        mode: mode_name(job.mode).to_string(),
        window: window.clone(),
        rows: manifest.rows,
        files: manifest.files.len(),
        bytes: manifest.bytes,
        finished_at: Utc::now(),
    });
    next.contract = Some(contract::StoredContract::new(
        &contract,
        job.target.schema.as_deref().map(contract::fingerprint),
    ));
    let run = table::Written {
        manifest: &manifest,
        schema: output::lake_schema(&contract),
        budget,
    };
    let staged = match (&scope, job.mode) {
        (Some(scope), _) => lake_table.replace(run, scope).await,
        (None, Mode::Merge) => lake_table.merge(run, &MergeBy::of(job)).await,
        (None, _) => lake_table.append(run).await,
    };
    let staged = match staged {
        Ok(s) => s,
        Err(e) => {
            abandon(&*lake_table, ctx, (job.id.as_str(), &mut state), &run_key).await;
            return Err(e);
        }
    };
    let commit = table::Commit {
        store: ctx.store.as_ref(),
        job_id: &job.id,
        state: &mut state,
        next,
    };
    staged.commit(commit, summary).await?;
    crate::failpoint::reached("committed").await;
    if !state.value.discard.is_empty() {
        recover(job, ctx, &mut state).await?;
    }
    acknowledge(consumed, summary).await;
    summary.replaced_files = match &scope {
        Some(scope) => lake_table.remove_replaced(scope, &run_key).await?,
        None => 0,
    };
    summary.seconds.commit = commit_started.elapsed().as_secs_f64();
    summary.status = RunStatus::Committed;
    tracing::info!(rows = summary.rows, files = summary.files, "committed");
    Ok(Some(contract))
}

/// Counts the records the key skipped and writes the run's keys beside its files.
async fn save_keys(
    dedup: &std::sync::Mutex<dedup::Dedup>,
    ctx: &Context,
    table: &str,
    run_key: &str,
    summary: &mut RunSummary,
) -> Result<()> {
    let (skipped, run) = {
        let mut d = dedup
            .lock()
            .map_err(|_| crate::error::Error::internal("the record-key filter's lock"))?;
        (d.skipped(), d.take_run())
    };
    summary.record_duplicates = Some(skipped);
    match run {
        Some(keys) => keys.save(&ctx.lake, table, run_key, Utc::now()).await,
        None => Ok(()),
    }
}

/// After the commit: lets the source forget what the run consumed (a queue deletes the
/// messages). A failure leaves the commit standing: what was not acknowledged comes
/// back, and its committed key makes the next run skip it.
async fn acknowledge(consumed: Consumed, summary: &mut RunSummary) {
    let Some(ack) = consumed.acknowledge else {
        return;
    };
    match ack.acknowledge().await {
        Ok(n) => summary.acknowledged(n),
        Err(e) => {
            tracing::warn!(error = %e.report(), "could not acknowledge what the run consumed; its redelivery will be skipped")
        }
    }
}

/// The keys committed runs consumed, from their manifests in the lake.
struct ManifestLedger {
    lake: Lake,
    table: String,
}

#[async_trait::async_trait]
impl Ledger for ManifestLedger {
    async fn keys(&self, run_key: &str) -> Result<Vec<String>> {
        Ok(sink::manifest(&self.lake, &self.table, run_key)
            .await?
            .map(|m| m.consumed)
            .unwrap_or_default())
    }
}

/// Step 2: removes a failed attempt's files (and those a rewind discarded); 2b: finishes
/// a replacement a crash cut short.
pub async fn recover(job: &Job, ctx: &Context, state: &mut Versioned<JobState>) -> Result<()> {
    let lake_table = table::open(&ctx.lake, job);
    if !state.value.discard.is_empty() {
        for run_key in &state.value.discard {
            let removed = lake_table.abandon(run_key).await?;
            tracing::info!(run_key = %run_key, removed, "removed the files of a rewound run");
        }
        state.value.discard.clear();
        state.version = ctx.store.save(&job.id, &state.value, state.version).await?;
    }
    if let Some(attempt) = state.value.pending.clone() {
        match table::of_attempt(&ctx.lake, job, &attempt)
            .recover(&attempt)
            .await?
        {
            Recovered::Committed(committed) => {
                // Its commit is in the table, its state was not saved: finish it.
                tracing::warn!(run = %attempt.run_id, "finished the commit of a run that stopped after its Delta commit");
                state.value = *committed;
            }
            Recovered::Removed(removed) => {
                tracing::warn!(failed_run = %attempt.run_id, removed, "removed the files of a failed attempt");
                state.value.pending = None;
            }
        }
        state.version = ctx.store.save(&job.id, &state.value, state.version).await?;
    }
    if let Some(committed) = &state.value.committed
        && committed.mode == mode_name(job.mode)
        && job.mode == Mode::Full
    {
        lake_table
            .remove_replaced(&Scope::Table, &committed.run_key)
            .await?;
    }
    Ok(())
}

/// After a failure: removes what the attempt wrote, right away if possible. If this fails
/// too, the pending mark stays and the next run removes the files (step 2).
async fn abandon(
    lake_table: &dyn LakeTable,
    ctx: &Context,
    (job_id, state): (&str, &mut Versioned<JobState>),
    run_key: &str,
) {
    match lake_table.abandon(run_key).await {
        Ok(_) => {
            state.value.pending = None;
            if let Ok(v) = ctx.store.save(job_id, &state.value, state.version).await {
                state.version = v;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e.report(), "could not remove the failed attempt's files; the next run will")
        }
    }
}

/// 16 hex digits: of the job, table and window for incremental table runs (a retry of
/// the same window writes the same names), of the run id otherwise.
fn run_key(job: &Job, window: &Window, run_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(job.id.as_bytes());
    h.update([0]);
    h.update(job.target.table.as_bytes());
    h.update([0]);
    match (job.mode, &window.cursor) {
        (Mode::Incremental | Mode::Merge, Some(_)) => {
            h.update(serde_json::to_vec(window).unwrap_or_default())
        }
        // Full and snapshot runs, and feeds (whose every window is unbounded).
        _ => h.update(run_id.as_bytes()),
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}
