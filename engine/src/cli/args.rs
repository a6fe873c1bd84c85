//! The command's arguments, subcommands and options, as clap reads them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::{ConsoleArgs, ServeArgs};
use crate::telemetry::metrics::MetricsOutput;

/// sluice: an ETL engine driven by job rows. It loads a lake of Parquet or Delta Lake
/// tables (queried by Athena, DuckDB or `sluice query`) from database tables and their
/// change capture (PostgreSQL, MySQL/MariaDB logs), feeds (an SQS queue, a partner's REST or
/// SOAP API, files on SFTP, S3 or a folder) and tracked events (`collect`); it serves SQL
/// over the lake (`serve`) and an operators' console (`console`).
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

    /// Where runs send their OpenLineage events (a START and a COMPLETE or FAIL per run):
    /// an HTTP endpoint (Marquez: `http://HOST:5000/api/v1/lineage`; a bearer token from
    /// SLUICE_LINEAGE_API_KEY), a file (`file:///path` or a path; one event a line), or
    /// `none`. The job namespace is SLUICE_LINEAGE_NAMESPACE (default `sluice`).
    #[arg(long, global = true, env = "SLUICE_LINEAGE")]
    pub lineage: Option<String>,
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
    /// The operators' web page: every job's health, runs, checkpoint, contract, quality,
    /// quarantine and lineage, the lake's tables and a query box; operators run jobs
    /// now and rewind them from it. Keys and roles from --keys.
    Console(ConsoleArgs),
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

pub(super) fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    crate::spec::units::parse_duration(text)
}

fn parse_memory(text: &str) -> std::result::Result<u64, String> {
    size_at_least(text, 32 << 20, "32MiB")
}

pub(super) fn size_at_least(
    text: &str,
    least: u64,
    named: &str,
) -> std::result::Result<u64, String> {
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
