//! `sluice console`'s options and how they make the console: its keys, the state store,
//! the lake and the query engine of the global places, and how "run now" runs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::{Places, parse_duration};
use crate::error::{Error, Result};
use crate::sink::Lake;

#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The address to listen on (port 0: any free port; the line `listening on …` says
    /// which).
    #[arg(long, env = "SLUICE_CONSOLE_LISTEN", default_value = "127.0.0.1:8090")]
    pub listen: std::net::SocketAddr,
    /// The console's keys: a YAML list of {name, sha256, role} (the SHA-256 of each key,
    /// never the key; role `reader` sees every page, `operator` may also run and rewind
    /// jobs).
    #[arg(
        long,
        env = "SLUICE_CONSOLE_KEYS",
        required_unless_present = "keys_secret"
    )]
    pub keys: Option<PathBuf>,
    /// The same list in a Secrets Manager secret (name or ARN) instead of a file.
    #[arg(long, env = "SLUICE_CONSOLE_KEYS_SECRET", conflicts_with = "keys")]
    pub keys_secret: Option<String>,
    /// "Run now" starts an execution of this state machine (as `sluice executions
    /// start`) instead of a local `sluice run` child process.
    #[arg(long = "state-machine", env = "SLUICE_STATE_MACHINE")]
    pub state_machine: Option<String>,
    /// The schedule the jobs run on, for their next start: an EventBridge Scheduler
    /// expression (`cron(0 * * * ? *)`, `rate(1 hour)`) for every job, or
    /// `JOB=EXPRESSION` for one (repeatable; times in UTC).
    #[arg(
        long = "schedule",
        env = "SLUICE_CONSOLE_SCHEDULES",
        value_delimiter = ';'
    )]
    pub schedules: Vec<String>,
    /// How long the job rows are reused before they are read again (a changed row shows
    /// within it).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub jobs_ttl: Duration,
    /// Marks the session cookie `Secure` (the console is reached over HTTPS, as behind
    /// the load balancer).
    #[arg(long, env = "SLUICE_CONSOLE_SECURE_COOKIE")]
    pub secure_cookie: bool,
    /// How long one query of the query box may take.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub query_timeout: Duration,
    /// Each query's memory pool (as `sluice serve --query-memory`).
    #[arg(long, default_value = "128MiB", value_parser = parse_pool)]
    pub query_memory: u64,
    /// A rewind's lease life, as `sluice state rewind --lease-ttl`.
    #[arg(long, env = "SLUICE_LEASE_TTL", default_value = "2m", value_parser = parse_duration)]
    pub lease_ttl: Duration,
    /// On SIGTERM or Ctrl-C, requests in flight have this long to finish.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
}

fn parse_pool(text: &str) -> std::result::Result<u64, String> {
    super::size_at_least(text, 16 << 20, "16MiB")
}

/// The console of `places`, ready to serve.
pub async fn build(places: &Places, args: &ConsoleArgs) -> Result<crate::console::Console> {
    use crate::console::keys::ConsoleKeys;
    let keys = match (&args.keys, &args.keys_secret) {
        (Some(path), _) => ConsoleKeys::load(path)?,
        (None, Some(secret)) => ConsoleKeys::from_secret(secret).await?,
        (None, None) => {
            return Err(Error::user(
                "give the console's keys: --keys FILE or --keys-secret ID",
            ));
        }
    };
    let schedules = crate::console::schedule::Schedules::parse(&args.schedules)
        .map_err(|m| Error::user(format!("--schedule {m}")))?;
    let lake = Lake::open(&places.lake)?;
    let store: Arc<dyn crate::store::StateStore> =
        Arc::from(crate::store::open(&places.state).await?);
    let limits = crate::serve::Limits {
        time: args.query_timeout,
        concurrent: 2,
        concurrent_per_key: 1,
        drain: args.drain,
        ..crate::serve::Limits::default()
    };
    let engine = crate::serve::engine::local::Local::new(
        lake.clone(),
        args.query_memory,
        limits.page_bytes,
        Duration::from_secs(5),
    )?;
    let service = crate::serve::Service::without_keys(Box::new(engine), limits)?;
    let runner = match &args.state_machine {
        Some(machine) => crate::console::actions::Runner::StepFunctions(
            crate::stepfn::executions::Machine::open(Some(machine)).await?,
        ),
        None => {
            let mut child_places = vec![
                format!("--jobs={}", places.jobs),
                format!("--lake={}", places.lake),
                format!("--state={}", places.state),
                format!("--catalog={}", places.catalog),
            ];
            if let Some(lineage) = &places.lineage {
                child_places.push(format!("--lineage={lineage}"));
            }
            crate::console::actions::Runner::local(
                std::env::current_exe()
                    .map_err(|e| Error::internal(format!("this program's path: {e}")))?,
                child_places,
            )
        }
    };
    Ok(crate::console::Console {
        keys,
        sessions: crate::console::auth::Sessions::default(),
        jobs: crate::console::view::JobsCache::new(places.jobs.clone(), args.jobs_ttl),
        store,
        lake,
        catalog: crate::catalog::default_database(&places.catalog)?,
        service,
        runner,
        schedules,
        secure_cookie: args.secure_cookie,
        lease_ttl: args.lease_ttl,
    })
}

/// Serves until SIGTERM or Ctrl-C, then drains.
pub async fn run(places: &Places, args: ConsoleArgs) -> Result<()> {
    let console = Arc::new(build(places, &args).await?);
    let interrupt = crate::interrupt::Interrupt::listen(
        "no new connection is taken; the requests in flight finish",
    )?;
    let listener = crate::serve::bind(args.listen).await?;
    let (stopped, mut told) = tokio::sync::watch::channel(false);
    let server = crate::console::serve(console, listener, async move {
        let _ = told.wait_for(|s| *s).await;
    });
    let mut server = std::pin::pin!(server);
    tokio::select! {
        served = &mut server => return served,
        _ = interrupt.error() => {}
    }
    let _ = stopped.send(true);
    match tokio::time::timeout(args.drain, server).await {
        Ok(served) => served,
        Err(_) => Ok(()),
    }
}
