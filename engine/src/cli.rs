//! The command line. The help text is the manual: every option says what it does, its
//! default and its environment variable.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::{Error, ErrorClass, Result};
use crate::job::{self, JobSet};
use crate::pipeline::{self, RunSummary};
use crate::sink::Lake;
use crate::store;

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
    /// Folder of job files (`*.yaml`) and their `connections.yaml`.
    #[arg(long, global = true, env = "SLUICE_JOBS", default_value = "jobs")]
    pub jobs: PathBuf,

    /// The lake: a folder, or `s3://bucket/prefix`.
    #[arg(long, global = true, env = "SLUICE_LAKE", default_value = "lake")]
    pub lake: String,

    /// The state store (watermarks, leases): a folder.
    #[arg(
        long,
        global = true,
        env = "SLUICE_STATE",
        default_value = ".sluice/state"
    )]
    pub state: String,
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
    /// Checks and describes job rows.
    #[command(subcommand)]
    Jobs(JobsCommand),
    /// Runs ANSI SQL over the lake's tables and prints the result.
    Query {
        /// The SQL; lake tables are named as their folders (`SELECT * FROM orders`).
        sql: String,
    },
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
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Compiles every job row and reports every problem (no database is contacted).
    Validate {
        /// The folder of job files (default: --jobs).
        dir: Option<PathBuf>,
    },
    /// Prints the JSON Schema of a job row, for editor completion.
    Schema {
        /// Prints the schema of connections.yaml instead.
        #[arg(long)]
        connections: bool,
    },
}

/// Runs the parsed command; returns the exit class of the worst failure, if any.
pub async fn execute(cli: Cli) -> Result<Option<ErrorClass>> {
    match cli.command {
        Command::Run(args) => run(&cli.places, args).await,
        Command::Jobs(JobsCommand::Validate { dir }) => {
            validate(dir.as_deref().unwrap_or(&cli.places.jobs))
        }
        Command::Jobs(JobsCommand::Schema { connections }) => {
            let schema = if connections {
                job::connections_schema()
            } else {
                job::job_schema()
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&schema)
                    .map_err(|e| Error::internal(e.to_string()))?
            );
            Ok(None)
        }
        Command::Query { sql } => {
            let lake = Lake::open(&cli.places.lake)?;
            let batches = crate::query::query(&lake, &sql).await?;
            println!("{}", crate::query::render(&batches)?);
            Ok(None)
        }
        Command::Demo { dir } => crate::demo::run(&dir).await.map(|()| None),
    }
}

fn validate(dir: &std::path::Path) -> Result<Option<ErrorClass>> {
    let set = job::load_dir(dir)?;
    let problems = set.problems();
    for row in &set.rows {
        if let Ok(job) = &row.job {
            println!("ok  {} ({})", job.id, row.origin);
        }
    }
    if problems.is_empty() {
        println!("{} job rows, all valid", set.rows.len());
        Ok(None)
    } else {
        Err(job::config_error(&problems))
    }
}

async fn run(places: &Places, args: RunArgs) -> Result<Option<ErrorClass>> {
    let set = job::load_dir(&places.jobs)?;
    let lake = Lake::open(&places.lake)?;
    let store: Arc<dyn store::StateStore> = Arc::from(store::open(&places.state)?);
    let ctx = pipeline::Context::new(lake, store);
    let selected = select(&set, &args)?;
    if selected.is_empty() {
        eprintln!("no enabled job rows in {}", places.jobs.display());
    }
    let mut worst: Option<ErrorClass> = None;
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
        print_summary(summary, args.output)?;
    }
    Ok(worst)
}

/// The rows to run: the named ones (every name must exist), or every enabled one.
fn select<'a>(set: &'a JobSet, args: &RunArgs) -> Result<Vec<&'a job::LoadedRow>> {
    if args.all {
        return Ok(set
            .rows
            .iter()
            .filter(|r| r.job.as_ref().map_or(true, |j| j.enabled))
            .collect());
    }
    args.job_ids
        .iter()
        .map(|id| {
            set.find(id).ok_or_else(|| {
                let hint = job::shape::did_you_mean(id, set.ids().into_iter())
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_else(|| ".".into());
                Error::user(format!(
                    "no job `{id}` in {}{hint} Jobs: {}",
                    set_origin(set),
                    set.ids().join(", ")
                ))
            })
        })
        .collect()
}

fn set_origin(set: &JobSet) -> String {
    set.rows
        .first()
        .and_then(|r| {
            std::path::Path::new(&r.origin)
                .parent()
                .map(|p| p.display().to_string())
        })
        .unwrap_or_else(|| "the job folder".into())
}

/// The summary of a row that did not compile: it failed before it could run.
fn failed_summary(id: Option<&str>, error: &Error) -> RunSummary {
    let mut summary = RunSummary::named(id.unwrap_or("(row without a job id)"), "", "", "");
    summary.fail(error);
    summary
}

/// The worst outcome decides the exit code: a bug, then a user error (retrying cannot
/// help it), then a transient failure, then a busy lease.
fn worse(current: Option<ErrorClass>, new: ErrorClass) -> ErrorClass {
    let rank = |c: ErrorClass| match c {
        ErrorClass::Internal => 3,
        ErrorClass::User => 2,
        ErrorClass::External => 1,
        ErrorClass::Busy => 0,
    };
    match current {
        Some(c) if rank(c) >= rank(new) => c,
        _ => new,
    }
}

fn print_summary(mut summary: RunSummary, output: Output) -> Result<()> {
    summary.peak_rss = pipeline::summary::peak_rss();
    match output {
        Output::Text => println!("{}", summary.line()),
        Output::Json => println!(
            "{}",
            serde_json::to_string(&summary).map_err(|e| Error::internal(e.to_string()))?
        ),
    }
    Ok(())
}
