//! The command line. The help text is the manual: every option says what it does, its
//! default and its environment variable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, ErrorClass, Result};
use crate::job::{self, JobSet};
use crate::pipeline::{self, RunSummary};
use crate::sink::Lake;
use crate::store;
use crate::telemetry::metrics::{Metrics, MetricsOutput};

mod serve;
pub use self::serve::{ServeArgs, ServeEngine};

/// sluice: copies tables from relational databases into a Parquet data lake, driven by
/// job rows.
///
/// Exit codes: 0 ok; 2 the job row, SQL, schema or data is wrong (not retryable);
/// 3 the job is already running (retry later); 75 a database, network or storage failure
/// (retryable); 70 a bug in sluice.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, long_about = None, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub places: Places,

    /// Log format on stderr: `auto` is human on a terminal and JSON otherwise.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Auto, env = "SLUICE_LOG_FORMAT")]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// Where jobs, the lake and the state are.
#[derive(Debug, Clone, Args)]
pub struct Places {
    /// The job rows: a folder of job files (`*.yaml` and `connections.yaml`), or
    /// `dynamodb://TABLE`.
    #[arg(long, global = true, env = "SLUICE_JOBS", default_value = "jobs")]
    pub jobs: String,

    /// The lake: a folder, or `s3://bucket/prefix`.
    #[arg(long, global = true, env = "SLUICE_LAKE", default_value = "lake")]
    pub lake: String,

    /// The state store (watermarks, leases, run records): a folder, or
    /// `dynamodb://TABLE`.
    #[arg(
        long,
        global = true,
        env = "SLUICE_STATE",
        default_value = ".sluice/state"
    )]
    pub state: String,

    /// Where runs publish their tables for Athena: `glue://DATABASE` (the Glue Data
    /// Catalog; a job's `target.catalog.database` overrides the database) or `none`.
    #[arg(long, global = true, env = "SLUICE_CATALOG", default_value = "none")]
    pub catalog: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs jobs: extract, transform, write Parquet, commit the watermark.
    Run(RunArgs),
    /// Checks, describes and syncs job rows.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Shows and changes job state: watermarks, leases, run records.
    #[command(subcommand)]
    State(StateCommand),
    /// Creates the DynamoDB tables named by --jobs and --state (dynamodb://TABLE) with the
    /// keys and settings Terraform gives them, and the Glue database of --catalog. Safe
    /// to run again.
    Init,
    /// Publishes lake tables in the Glue catalog.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Prints the Athena CREATE EXTERNAL TABLE of a job's table (and of its quarantine
    /// table), with the contract's columns.
    Ddl {
        #[arg(long)]
        job: String,
    },
    /// Reads schemas from source databases.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Runs ANSI SQL over the lake's tables and prints the result.
    Query {
        /// The SQL; lake tables are named as their folders (`SELECT * FROM orders`).
        sql: String,
        /// Reads the Delta tables the query names as of an earlier version (`3`) or time
        /// (`2024-05-01T12:00:00Z`, `2024-05-01`); other tables, and Parquet tables, are
        /// read as they are. A table's first load is its version 0; a version a named
        /// table does not have is an error naming the versions it has.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Packs the small files of a job's Delta table into files of its `target.file_size`:
    /// one commit with the same rows (readers of older versions keep reading theirs).
    /// Holds the job's lease: a run of the job waits for it.
    Optimize {
        #[arg(long)]
        job: String,
        #[command(flatten)]
        lease: LeaseArgs,
    },
    /// Removes the files of a job's Delta table that no version younger than --retain
    /// reads (replaced, packed or deleted files, and files of runs that never committed).
    /// Holds the job's lease.
    Vacuum {
        #[arg(long)]
        job: String,
        /// How far back time travel must still work: `7d` (the default), `24h`, `0s`.
        #[arg(long, default_value = "7d", value_parser = parse_duration)]
        retain: Duration,
        /// Lists every file that would be removed, without removing it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        lease: LeaseArgs,
    },
    /// Serves SQL over the lake on HTTP for API keys (read-only; each key sees its tables):
    /// `POST /v1/query`, `GET /v1/query?sql=`, `GET /v1/tables`, `GET /openapi.json`.
    Serve(ServeArgs),
    /// Takes tracked events over HTTP into the lake (`POST /track`, `/alias`, `/profile`,
    /// `/batch`; `GET /openapi.json`): each answered 200 only once it is on disk, loaded
    /// by the jobs collect_events, collect_aliases and collect_profiles.
    Collect {
        #[command(flatten)]
        args: crate::collect::CollectArgs,
        #[command(flatten)]
        lease: LeaseArgs,
    },
    /// Starts, follows and explains the state machine's executions (AWS Step Functions):
    /// reruns and backfills without the console, and what each job of a run did.
    #[command(subcommand)]
    Executions(ExecutionsCommand),
    /// Builds a demo database (a logistics company), runs the demo jobs into a local
    /// lake, changes the source, runs them again incrementally and queries the result.
    Demo {
        /// Folder for the demo's database, jobs, lake and state (made anew).
        #[arg(long, default_value = "sluice-demo")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job to run (repeatable).
    #[arg(
        long = "job",
        id = "job",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub job_ids: Vec<String>,

    /// Runs every enabled job, one after the other; a broken job fails alone.
    #[arg(long)]
    pub all: bool,

    /// `json` prints one summary object per job on stdout.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,

    /// Where run metrics go: CloudWatch `PutMetricData` (sent once at the end), EMF lines
    /// on stdout (for the awslogs driver), or nowhere.
    #[arg(long, value_enum, env = "SLUICE_METRICS", default_value_t = MetricsOutput::Off)]
    pub metrics: MetricsOutput,

    /// The CloudWatch namespace of the metrics.
    #[arg(long, env = "SLUICE_METRICS_NAMESPACE", default_value = "Sluice")]
    pub metrics_namespace: String,

    /// The run's peak memory (RSS): the process, the transform's pool, the row groups and
    /// files being written (the largest row group is flushed, the least recently written
    /// file closed, beyond their shares) and the batches in flight, each bounded in bytes.
    /// A job that cannot be read within it is refused before reading, with what it needs.
    /// Units: KiB, MiB, GiB.
    #[arg(long, env = "SLUICE_MEMORY_LIMIT", default_value = "256MiB", value_parser = parse_memory)]
    pub memory_limit: u64,

    /// What started the run (the Step Functions execution sets its name), kept in the
    /// run record and the run's log span.
    #[arg(long, env = "SLUICE_TRIGGER")]
    pub trigger: Option<String>,

    #[command(flatten)]
    pub lease: LeaseArgs,

    /// The Step Functions task token, which the state machine puts in the task's
    /// environment: the run heartbeats while it runs and reports its summary (or its error
    /// name: Sluice.User, Sluice.Retryable, Sluice.Busy, Sluice.Internal) to the
    /// execution. Names one job. Without it nothing is reported.
    #[arg(long, env = "SLUICE_TASK_TOKEN", hide_env_values = true)]
    pub task_token: Option<String>,

    /// How often a run with a task token heartbeats: well under the state's
    /// HeartbeatSeconds (Terraform passes a quarter of it).
    #[arg(long, env = "SLUICE_HEARTBEAT_EVERY", default_value = "30s", value_parser = parse_duration)]
    pub heartbeat_every: Duration,
}

#[derive(Debug, Args)]
pub struct LeaseArgs {
    /// How long a job's lease lasts without renewal (renewed every third of it while the
    /// run is alive): after a killed run, the job can run again this much later.
    #[arg(long, env = "SLUICE_LEASE_TTL", default_value = "2m", value_parser = parse_duration)]
    pub lease_ttl: Duration,
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    crate::spec::units::parse_duration(text)
}

fn parse_memory(text: &str) -> std::result::Result<u64, String> {
    size_at_least(text, 32 << 20, "32MiB")
}

fn size_at_least(text: &str, least: u64, named: &str) -> std::result::Result<u64, String> {
    match crate::spec::units::parse_size(text)? {
        n if n >= least => Ok(n),
        _ => Err(format!("{text} is too small: give at least {named}")),
    }
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Compiles every job row and reports every problem (no database is contacted).
    Validate {
        /// The folder of job files or dynamodb://TABLE (default: --jobs).
        location: Option<String>,
    },
    /// Prints the JSON Schema of a job row, for editor completion.
    Schema {
        /// Prints the schema of connections.yaml instead.
        #[arg(long)]
        connections: bool,
    },
    /// Writes the folder's job rows and connections to the table named by --jobs. A row
    /// changed in the table since this folder last synced is not overwritten.
    Push {
        /// The folder of job files.
        dir: PathBuf,
        /// Overwrites rows that changed in the table since the last sync.
        #[arg(long)]
        force: bool,
        /// Deletes rows that are in the table but not in the folder.
        #[arg(long)]
        prune: bool,
    },
    /// Writes the table's rows into the folder as YAML (one file per job row). Refuses
    /// if the folder holds changes that were never pushed.
    Pull {
        /// The folder to write (created if missing).
        dir: PathBuf,
        /// Discards changes in the folder that were never pushed.
        #[arg(long)]
        force: bool,
    },
    /// Shows how the folder and the table differ, field by field.
    Diff {
        /// The folder of job files.
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct MachineArgs {
    /// The state machine that runs the jobs (terraform output state_machine_arn).
    #[arg(long = "state-machine", env = "SLUICE_STATE_MACHINE")]
    pub state_machine: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ExecutionsCommand {
    /// Starts the state machine for the named jobs, or for every enabled job row (--all),
    /// and prints the execution's ARN and console page: a rerun, or a backfill after
    /// `sluice state rewind`.
    Start {
        #[command(flatten)]
        machine: MachineArgs,
        /// A job to run (repeatable).
        #[arg(
            long = "job",
            id = "job",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        job_ids: Vec<String>,
        /// Every enabled job row, as the schedule runs them.
        #[arg(long)]
        all: bool,
        /// The execution's name (default: manual-TIME-XXXX); the runs keep it as their
        /// trigger.
        #[arg(long)]
        name: Option<String>,
        /// Follows the execution as `watch` does; the exit code is its outcome.
        #[arg(long)]
        watch: bool,
    },
    /// Follows an execution (its name or ARN): one line per job as it finishes, then the
    /// outcome. Exit code: 0 when it succeeded, else the worst failed job's class.
    Watch {
        #[command(flatten)]
        machine: MachineArgs,
        execution: String,
    },
    /// Lists the newest executions: start, status, duration, name.
    List {
        #[command(flatten)]
        machine: MachineArgs,
        #[arg(long, default_value_t = 20)]
        limit: i32,
    },
    /// Shows an execution (its name or ARN) and, per job: status, attempts, duration,
    /// rows, error name and message. Exit code as `watch`'s.
    Show {
        #[command(flatten)]
        machine: MachineArgs,
        execution: String,
        /// `json` prints the execution and its jobs (with their run summaries) as one
        /// object.
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Creates or updates the jobs' Glue tables and brings their partitions in line with
    /// the lake (what every run does after its commit). Changes nothing when in line.
    Sync {
        /// The job (repeatable); default: every job.
        #[arg(long = "job", id = "job")]
        job_ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Prints a ready job row for a source table, with its schema contract (types from
    /// the one type mapping, NOT NULL and primary key from the database's catalog).
    Infer {
        /// A connection in the job set's connections.
        #[arg(long)]
        connection: String,
        /// The table, as `table` or `schema.table`.
        #[arg(long)]
        table: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// Prints a job's state: watermark, attempt in flight, last commit, lease holder.
    Show { job: String },
    /// Lists a job's runs, newest first.
    History {
        job: String,
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Moves an incremental job's watermark back, so the next run reads again what came
    /// after VALUE. The files of the runs that read past VALUE are taken out of the lake
    /// table (so no row is duplicated), and the watermark goes back to the start of the
    /// earliest of them.
    Rewind {
        job: String,
        /// The new watermark, in the cursor's type (`2024-05-01 00:00:00`, `1500`, …), or
        /// `start` to read everything again.
        #[arg(long)]
        to: String,
        /// Shows what would change without changing it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        lease: LeaseArgs,
    },
}

/// Runs the parsed command; returns the exit class of the worst failure, if any.
pub async fn execute(cli: Cli) -> Result<Option<ErrorClass>> {
    let places = &cli.places;
    match cli.command {
        Command::Run(args) => run(places, args).await,
        Command::Jobs(JobsCommand::Validate { location }) => {
            validate(location.as_deref().unwrap_or(&places.jobs)).await
        }
        Command::Jobs(JobsCommand::Schema { connections }) => {
            let schema = if connections {
                job::connections_schema()
            } else {
                job::job_schema()
            };
            print_json(&schema, true)?;
            Ok(None)
        }
        Command::Jobs(JobsCommand::Push { dir, force, prune }) => {
            print_lines(job::sync::push(&dir, &places.jobs, force, prune).await?)
        }
        Command::Jobs(JobsCommand::Pull { dir, force }) => {
            print_lines(job::sync::pull(&dir, &places.jobs, force).await?)
        }
        Command::Jobs(JobsCommand::Diff { dir }) => {
            print_lines(job::sync::diff(&dir, &places.jobs).await?)
        }
        Command::State(command) => state(places, command).await,
        Command::Init => init(places).await,
        Command::Catalog(CatalogCommand::Sync { job_ids }) => {
            let set = job::load(&places.jobs).await?;
            let selected = compiled(&set, &job_ids)?;
            let lake = Lake::open(&places.lake)?;
            let store = store::open(&places.state).await?;
            let database = crate::catalog::default_database(&places.catalog)?;
            print_lines(
                crate::catalog::commands::sync(
                    &selected,
                    &lake,
                    store.as_ref(),
                    database.as_deref(),
                )
                .await?,
            )
        }
        Command::Ddl { job: id } => {
            let job = &compiled_one(places, &id).await?;
            let lake = Lake::open(&places.lake)?;
            let store = store::open(&places.state).await?;
            let database = crate::catalog::default_database(&places.catalog)?;
            let ddl =
                crate::catalog::commands::ddl(job, &lake, store.as_ref(), database.as_deref())
                    .await?;
            crate::out!("{ddl}");
            Ok(None)
        }
        Command::Schema(SchemaCommand::Infer { connection, table }) => {
            let set = job::load(&places.jobs).await?;
            let dir = (!places.jobs.contains("://")).then(|| PathBuf::from(&places.jobs));
            crate::out!(
                "{}",
                crate::infer::infer(&set, dir, &connection, &table).await?
            );
            Ok(None)
        }
        Command::Optimize { job: id, lease } => {
            let job = compiled_one(places, &id).await?;
            let ctx = context(places, &lease).await?;
            print_lines(pipeline::maintain::optimize(&job, &ctx).await?)
        }
        Command::Vacuum {
            job: id,
            retain,
            dry_run,
            lease,
        } => {
            let job = compiled_one(places, &id).await?;
            let ctx = context(places, &lease).await?;
            print_lines(pipeline::maintain::vacuum(&job, &ctx, retain, dry_run).await?)
        }
        Command::Query { sql, as_of } => {
            let lake = Lake::open(&places.lake)?;
            let as_of = match as_of {
                Some(text) => crate::sink::delta::AsOf::parse(&text)?,
                None => crate::sink::delta::AsOf::Latest,
            };
            let batches = crate::query::query(&lake, &sql, as_of).await?;
            crate::outln!("{}", crate::query::render(&batches)?);
            Ok(None)
        }
        Command::Executions(command) => executions(command).await,
        Command::Serve(args) => serve::run(places, args).await.map(|()| None),
        Command::Collect { args, lease } => {
            let set = job::load(&places.jobs).await?;
            let ctx = context(places, &lease).await?;
            let loads = vec![
                format!("--jobs={}", places.jobs),
                format!("--lake={}", places.lake),
                format!("--state={}", places.state),
                format!("--catalog={}", places.catalog),
            ];
            crate::collect::run(&set, ctx, loads, args)
                .await
                .map(|()| None)
        }
        Command::Demo { dir } => crate::demo::run(&dir).await.map(|()| None),
    }
}

async fn executions(command: ExecutionsCommand) -> Result<Option<ErrorClass>> {
    use crate::stepfn::executions::Machine;
    match command {
        ExecutionsCommand::Start {
            machine,
            job_ids,
            all: _,
            name,
            watch,
        } => {
            let machine = Machine::open(machine.state_machine.as_deref()).await?;
            let execution = machine.start(&job_ids, name.as_deref()).await?;
            if watch {
                return machine.watch(&execution.arn()).await;
            }
            Ok(None)
        }
        ExecutionsCommand::Watch { machine, execution } => {
            Machine::open(machine.state_machine.as_deref())
                .await?
                .watch(&execution)
                .await
        }
        ExecutionsCommand::List { machine, limit } => {
            let machine = Machine::open(machine.state_machine.as_deref()).await?;
            print_lines(machine.list(limit).await?)
        }
        ExecutionsCommand::Show {
            machine,
            execution,
            output,
        } => {
            let machine = Machine::open(machine.state_machine.as_deref()).await?;
            let shown = machine.show(&execution).await?;
            match output {
                Output::Text => print_lines(shown.lines())?,
                Output::Json => {
                    print_json(&shown, true)?;
                    None
                }
            };
            Ok(shown.class)
        }
    }
}

fn print_lines(lines: Vec<String>) -> Result<Option<ErrorClass>> {
    for line in lines {
        crate::outln!("{line}");
    }
    Ok(None)
}

fn print_json(value: &impl serde::Serialize, pretty: bool) -> Result<()> {
    let text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    };
    crate::outln!("{}", text.map_err(|e| Error::internal(e.to_string()))?);
    Ok(())
}

async fn validate(location: &str) -> Result<Option<ErrorClass>> {
    let set = job::load(location).await?;
    let problems = set.problems();
    for row in &set.rows {
        if let Ok(job) = &row.job {
            crate::outln!("ok  {} ({})", job.id, row.origin);
        }
    }
    if problems.is_empty() {
        crate::outln!("{} job rows, all valid", set.rows.len());
        Ok(None)
    } else {
        Err(job::config_error(&problems))
    }
}

async fn context(places: &Places, lease: &LeaseArgs) -> Result<pipeline::Context> {
    let lake = Lake::open(&places.lake)?;
    let store: Arc<dyn store::StateStore> = Arc::from(store::open(&places.state).await?);
    let mut ctx = pipeline::Context::new(lake, store);
    ctx.lease_ttl = lease.lease_ttl;
    ctx.catalog = crate::catalog::default_database(&places.catalog)?;
    Ok(ctx)
}

async fn run(places: &Places, args: RunArgs) -> Result<Option<ErrorClass>> {
    let interrupt = crate::interrupt::Interrupt::listen(crate::interrupt::RUN_STOPPING)?;
    let Some(token) = args.task_token.clone() else {
        return run_jobs(places, &args, interrupt)
            .await
            .map(|(_, worst)| worst);
    };
    let task =
        crate::stepfn::task::Task::start(token, args.heartbeat_every, interrupt.clone()).await;
    let outcome = match (args.all, args.job_ids.len()) {
        (false, 1) => run_jobs(places, &args, interrupt).await,
        _ => Err(Error::user(
            "a run with a task token (SLUICE_TASK_TOKEN) reports one job to its state machine: name exactly one --job",
        )),
    };
    task.report(outcome.as_ref().map(|(summaries, _)| summaries.as_slice()))
        .await;
    outcome.map(|(_, worst)| worst)
}

/// Runs the selected jobs one after the other; their summaries and the worst outcome.
async fn run_jobs(
    places: &Places,
    args: &RunArgs,
    interrupt: crate::interrupt::Interrupt,
) -> Result<(Vec<RunSummary>, Option<ErrorClass>)> {
    let set = job::load(&places.jobs).await?;
    let mut ctx = context(places, &args.lease).await?;
    ctx.trigger = args.trigger.clone();
    ctx.memory_limit = args.memory_limit;
    ctx.interrupt = interrupt;
    let selected = select(&set, &args.job_ids, args.all)?;
    if selected.is_empty() {
        eprintln!("no enabled job rows in {}", set.origin);
    }
    let mut metrics = Metrics::new(args.metrics, &args.metrics_namespace);
    let mut worst: Option<ErrorClass> = None;
    let mut summaries = Vec::with_capacity(selected.len());
    for row in selected {
        let summary = match &row.job {
            Ok(job) => {
                if !job.enabled && !args.all {
                    tracing::warn!(job = %job.id, "the job is disabled; running it because it was named");
                }
                pipeline::run_job(job, &ctx).await
            }
            Err(problems) => failed_summary(row.id.as_deref(), &job::config_error(problems)),
        };
        if let Some(class) = summary.error_class {
            worst = Some(worse(worst, class));
        }
        metrics.record(&summary);
        print_summary(&summary, args.output)?;
        summaries.push(summary);
        if let Some(signal) = ctx.interrupt.received() {
            tracing::warn!(signal, "interrupted: the jobs after this one do not start");
            break;
        }
    }
    if let Err(e) = metrics.flush().await {
        // The runs' outcome stands; missing metrics show as a gap and in this log line.
        tracing::error!(error = %e.report(), "could not send the run metrics");
    }
    Ok((summaries, worst))
}

async fn state(places: &Places, command: StateCommand) -> Result<Option<ErrorClass>> {
    match command {
        StateCommand::Show { job } => {
            let store = store::open(&places.state).await?;
            let state = store.load(&job).await?;
            if state.version == 0 {
                eprintln!("job `{job}` has no state in {} yet", store.describe());
            }
            print_json(
                &serde_json::json!({
                    "job": job,
                    "store": store.describe(),
                    "version": state.version,
                    "state": state.value,
                    "lease": store.lease_holder(&job).await?,
                }),
                true,
            )?;
        }
        StateCommand::History { job, limit } => {
            let store = store::open(&places.state).await?;
            let runs = store.runs(&job, limit).await?;
            if runs.is_empty() {
                eprintln!("no runs of job `{job}` in {}", store.describe());
            }
            for run in runs {
                crate::outln!(
                    "{} {}  {}",
                    run.started_at.format("%Y-%m-%d %H:%M:%S"),
                    run.run_id,
                    run.line()
                );
            }
        }
        StateCommand::Rewind {
            job: id,
            to,
            dry_run,
            lease,
        } => {
            let set = job::load(&places.jobs).await?;
            let row = select(&set, std::slice::from_ref(&id), false)?
                .into_iter()
                .next()
                .ok_or_else(|| Error::internal("selected no row"))?;
            let job = row.job.as_ref().map_err(|p| job::config_error(p))?;
            let ctx = context(places, &lease).await?;
            print_lines(pipeline::rewind::rewind(job, &ctx, &to, dry_run).await?)?;
        }
    }
    Ok(None)
}

async fn init(places: &Places) -> Result<Option<ErrorClass>> {
    use crate::aws::dynamo::{self, Created, JOBS_TABLE, STATE_TABLE};
    let tables = [(&places.jobs, JOBS_TABLE), (&places.state, STATE_TABLE)];
    let database = crate::catalog::default_database(&places.catalog)?;
    if tables.iter().all(|(l, _)| dynamo::table_name(l).is_none()) && database.is_none() {
        return Err(Error::user(
            "nothing to create: name the tables with --jobs dynamodb://TABLE and/or --state dynamodb://TABLE, or the catalog with --catalog glue://DATABASE",
        ));
    }
    if let Some(database) = &database {
        let glue = crate::catalog::glue::client().await;
        let verb = if crate::catalog::glue::ensure_database(&glue, database).await? {
            "created"
        } else {
            "exists"
        };
        crate::outln!("{verb}: Glue database `{database}`");
    }
    let client = dynamo::client().await;
    for (location, def) in tables {
        if dynamo::table_name(location).is_none() {
            continue;
        }
        let name = dynamo::check_table_name(location)?;
        let outcome = dynamo::ensure_table(&client, name, def).await?;
        let verb = match outcome {
            Created::Created => "created",
            Created::Existed => "exists",
        };
        crate::outln!("{verb}: {} table `{name}`", def.what);
    }
    Ok(None)
}

/// The rows to run: the named ones (every name must exist), or every enabled one.
fn select<'a>(set: &'a JobSet, ids: &[String], all: bool) -> Result<Vec<&'a job::LoadedRow>> {
    if all {
        return Ok(set
            .rows
            .iter()
            .filter(|r| r.job.as_ref().map_or(true, |j| j.enabled))
            .collect());
    }
    ids.iter()
        .map(|id| {
            set.find(id).ok_or_else(|| {
                let hint = crate::spec::shape::did_you_mean(id, set.ids().into_iter())
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_else(|| ".".into());
                Error::user(format!(
                    "no job `{id}` in {}{hint} Jobs: {} (`sluice jobs validate` lists each with its file)",
                    set.origin,
                    set.ids().join(", ")
                ))
            })
        })
        .collect()
}

/// The named jobs (every job when none is named), compiled; a broken row is an error.
fn compiled<'a>(set: &'a JobSet, ids: &[String]) -> Result<Vec<&'a job::Job>> {
    let rows: Vec<&job::LoadedRow> = if ids.is_empty() {
        set.rows.iter().collect()
    } else {
        select(set, ids, false)?
    };
    rows.into_iter()
        .map(|row| row.job.as_ref().map_err(|p| job::config_error(p)))
        .collect()
}

/// The job row `id`, compiled.
async fn compiled_one(places: &Places, id: &str) -> Result<job::Job> {
    let set = job::load(&places.jobs).await?;
    compiled(&set, &[id.to_string()])?
        .into_iter()
        .next()
        .cloned()
        .ok_or_else(|| Error::internal("selected no row"))
}

/// The summary of a row that did not compile: it failed before it could run.
fn failed_summary(id: Option<&str>, error: &Error) -> RunSummary {
    let mut summary = RunSummary::named(id.unwrap_or("(row without a job id)"), "", "", "");
    summary.fail(error);
    summary
}

/// The worst outcome decides the exit code (`ErrorClass::severity`).
fn worse(current: Option<ErrorClass>, new: ErrorClass) -> ErrorClass {
    match current {
        Some(c) if c.severity() >= new.severity() => c,
        _ => new,
    }
}

fn print_summary(summary: &RunSummary, output: Output) -> Result<()> {
    match output {
        Output::Text => crate::outln!("{}", summary.line()),
        Output::Json => crate::outln!(
            "{}",
            serde_json::to_string(&summary).map_err(|e| Error::internal(e.to_string()))?
        ),
    }
    Ok(())
}
