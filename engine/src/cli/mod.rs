//! The command line. The help text is the manual: every option says what it does, its
//! default and its environment variable.

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{Error, ErrorClass, Result};
use crate::job::{self, JobSet};
use crate::pipeline::{self, RunSummary};
use crate::sink::Lake;
use crate::store;
use crate::telemetry::metrics::Metrics;

mod args;
mod console;
mod serve;
pub use self::args::*;
pub use self::console::{ConsoleArgs, build as build_console};
pub use self::serve::{ServeArgs, ServeEngine};

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
        Command::Console(args) => console::run(places, args).await.map(|()| None),
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
    if let Some(setting) = &places.lineage {
        ctx.lineage = crate::lineage::Lineage::parse(
            setting,
            std::env::var("SLUICE_LINEAGE_NAMESPACE").ok(),
        )?
        .map(Arc::new);
    }
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
