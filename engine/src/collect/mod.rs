//! `sluice collect`: tracked events over HTTP into the lake, acknowledged only once
//! durable, never lost, never doubled.
//!
//! A request is checked against the OpenAPI document (`body`), its write key and rate
//! (`keys`), then made durable before the 2xx (`store`): appended to the spool
//! (`spool`), a write-ahead log on local disk flushed with group commit, when the jobs'
//! connection is a folder; sent to each table's SQS queue (`queue`) when it is a queue
//! (on AWS, where a task's disk does not outlive it), the jobs then loading the queues on
//! their schedule. Duplicates by (source, `messageId`) within
//! the window are answered 2xx and not written again (`dedup`, rebuilt at start by
//! `replay`). Sealed segments are loaded (`load`, in child processes) by three ordinary jobs — `collect_events`,
//! `collect_aliases`, `collect_profiles`, file feeds over the spool's folder (`load`) — so
//! each flush is a commit of the exactly-once protocol, published to the catalog like
//! any run. SIGTERM stops taking requests, lets those in flight finish, seals and loads
//! what is spooled, and exits 0. A crash loses nothing acknowledged: the next start cuts
//! a segment back to its last whole line, seals it, and the jobs load it (a segment whose
//! load had committed is recognised by the feed and not loaded twice).

pub mod body;
pub mod dedup;
pub mod http;
pub mod keys;
pub mod load;
pub mod queue;
pub mod replay;
pub mod segments;
pub mod spool;
pub mod stats;
pub mod store;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use self::body::{Extras, Kind};
use self::keys::WriteKeys;
use crate::error::{Error, Result};
use crate::job::files::FileStore;
use crate::job::{Address, From, Job, JobSet};
use crate::pipeline::Context;
use crate::spec::files::{AfterLoad, FileFormat};

/// The job that loads each kind of event.
pub fn job_id(kind: Kind) -> String {
    format!("collect_{}", kind.table())
}

#[derive(Debug, Clone, Args)]
pub struct CollectArgs {
    /// The address to listen on (port 0: any free port; the line `listening on …` says
    /// which).
    #[arg(long, env = "SLUICE_COLLECT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The write keys: a YAML list of {name, sha256, rate_per_second} (the SHA-256 of each
    /// key, never the key; `name` is the source its events come from).
    #[arg(
        long,
        env = "SLUICE_COLLECT_KEYS",
        required_unless_present = "keys_secret"
    )]
    pub keys: Option<PathBuf>,
    /// The same list in a Secrets Manager secret (name or ARN) instead of a file.
    #[arg(long, env = "SLUICE_COLLECT_KEYS_SECRET", conflicts_with = "keys")]
    pub keys_secret: Option<String>,
    /// Seal a spool segment for loading at this size …
    #[arg(long, default_value = "16MiB", value_parser = parse_size)]
    pub flush_size: u64,
    /// … or this age (Firehose's buffering hints): an event is in the lake about this
    /// long after it arrived.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub flush_interval: Duration,
    /// What the spool may hold before the lake has loaded it; past it requests get 503.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub max_buffer: u64,
    /// How long a `messageId` is remembered: a resend within it lands once.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub dedup_window: Duration,
    /// At most this many `messageId`s are remembered (about 20 bytes each); past it the
    /// oldest are forgotten before the window ends.
    #[arg(long, default_value_t = 1_000_000)]
    pub dedup_capacity: usize,
    /// What is kept of a client's address.
    #[arg(long, value_enum, env = "SLUICE_COLLECT_CLIENT_IP", default_value_t = http::ClientIp::Keep)]
    pub client_ip: http::ClientIp,
    /// Take the client's address from `X-Forwarded-For` (behind a load balancer that
    /// sets it; otherwise a client could name any address).
    #[arg(long, env = "SLUICE_COLLECT_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,
    /// Events per second each write key may send when its entry names no
    /// rate_per_second (429 past it); none: unbounded.
    #[arg(long)]
    pub rate_limit: Option<f64>,
    /// A browser origin allowed to send events (repeatable; `*` for any).
    #[arg(
        long = "cors-origin",
        env = "SLUICE_COLLECT_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
    /// What a load of the spool may hold at its peak (its `sluice run --memory-limit`; each
    /// load is a child process).
    #[arg(long, env = "SLUICE_COLLECT_LOAD_MEMORY", default_value = "112MiB", value_parser = parse_size)]
    pub load_memory_limit: u64,
    /// Print the collector's metrics each minute as CloudWatch Embedded Metric Format
    /// lines in this namespace (the ECS log driver makes them metrics).
    #[arg(long, env = "SLUICE_COLLECT_EMF_NAMESPACE")]
    pub emf_namespace: Option<String>,
}

fn parse_size(text: &str) -> std::result::Result<u64, String> {
    crate::spec::units::parse_size(text)
}

fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    crate::spec::units::parse_duration(text)
}

/// Where the collector keeps what it accepts, from its jobs' connection.
enum Destination {
    /// The spool in this folder, loaded by the collector.
    Spool(PathBuf),
    /// A queue per table, loaded by the jobs on their schedule.
    Queues(BTreeMap<Kind, String>),
}

/// The spool's folder, when a file feed reads exactly `kind`'s sealed segments from a
/// local folder (as `source.collect` makes it); else what differs.
fn spool_folder(
    feed: &crate::job::files::FilesFeed,
    store: &FileStore,
    kind: Kind,
) -> std::result::Result<PathBuf, String> {
    let FileStore::Folder(dir) = store else {
        return Err("its connection is not a folder on this machine".into());
    };
    let [pattern] = feed.patterns.as_slice() else {
        return Err(format!(
            "its {} patterns are not the spool's segments of {}",
            feed.patterns.len(),
            kind.table()
        ));
    };
    let name = |k: Kind| {
        format!(
            "{}/{}-00000000000000000001.ndjson",
            segments::READY,
            k.table()
        )
    };
    let only_its_own = Kind::ALL
        .iter()
        .all(|&k| pattern.glob.matches(&name(k)) == (k == kind));
    let moved =
        matches!(&feed.after_load, AfterLoad::Move(to) if to.trim_matches('/') == segments::LOADED);
    let in_ready = pattern.glob.folder() == segments::READY && !pattern.glob.is_deep();
    if !in_ready || !only_its_own || pattern.format != FileFormat::Ndjson || !moved {
        return Err(format!(
            "its files `{}` are not the spool's segments of {}",
            pattern.glob.text(),
            kind.table()
        ));
    }
    Ok(dir.clone())
}

/// The collector's jobs, checked to fit one destination, and the extra columns they
/// declare.
fn jobs(
    set: &JobSet,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(Vec<Job>, Destination, Extras)> {
    let mut jobs = Vec::new();
    let mut folder: Option<PathBuf> = None;
    let mut queues = BTreeMap::new();
    let mut extras = Extras::default();
    for kind in Kind::ALL {
        let id = job_id(kind);
        let row = set.find(&id).ok_or_else(|| {
            Error::user(format!(
                "there is no job `{id}` in {}: the collector's events are loaded by collect_events, collect_aliases and collect_profiles (see jobs/collect_*.yaml)",
                set.origin
            ))
        })?;
        let job = row
            .job
            .as_ref()
            .map_err(|problems| crate::job::config_error(problems))?;
        let bad = |what: &str| {
            Error::user(format!(
                "job `{id}` ({}): {what}; the collector's jobs give `source.collect: {}` over one connection, a folder (the spool) or a queue per table (see jobs/collect_{}.yaml)",
                job.origin,
                kind.table(),
                kind.table()
            ))
        };
        let records = match (&job.from, &job.connection.address) {
            (From::Files(feed), Address::Files(store)) => {
                let dir = spool_folder(feed, store, kind).map_err(|what| bad(&what))?;
                match &folder {
                    Some(first) if first != &dir => {
                        return Err(bad(&format!(
                            "its folder {} is not the other jobs' {}",
                            dir.display(),
                            first.display()
                        )));
                    }
                    _ => folder = Some(dir),
                }
                &feed.records
            }
            (From::Queue(feed), Address::Url(template)) => {
                let (url, _) = crate::source::resolve_url(template, &job.connection.name, env)?;
                queues.insert(kind, url);
                &feed.records
            }
            _ => return Err(bad("it is neither a file feed nor a queue feed")),
        };
        let standard = body::standard_columns(kind);
        let own: Vec<String> = records
            .fields
            .iter()
            .map(|f| f.name.clone())
            .filter(|name| !standard.contains(&name.as_str()))
            .collect();
        match kind {
            Kind::Track => extras.events = own,
            Kind::Profile => extras.profiles = own,
            Kind::Alias if !own.is_empty() => {
                return Err(bad(&format!(
                    "aliases have no extra fields, and it declares {}",
                    own.join(", ")
                )));
            }
            Kind::Alias => {}
        }
        jobs.push(job.clone());
    }
    let destination = match (folder, queues.len()) {
        (Some(dir), 0) => Destination::Spool(dir),
        (None, n) if n == Kind::ALL.len() => Destination::Queues(queues),
        _ => {
            return Err(Error::user(
                "the collector's jobs mix a folder and queues: give all three the same kind of connection",
            ));
        }
    };
    Ok((jobs, destination, extras))
}

/// Runs the collector until SIGINT or SIGTERM, then loads what it holds; `places` are the
/// global options its loads are run with.
pub async fn run(set: &JobSet, ctx: Context, places: Vec<String>, args: CollectArgs) -> Result<()> {
    let keys = match (&args.keys, &args.keys_secret) {
        (Some(path), _) => WriteKeys::load(path)?,
        (None, Some(secret)) => WriteKeys::from_secret(secret).await?,
        (None, None) => {
            return Err(Error::user(
                "give the write keys: --keys FILE or --keys-secret ID",
            ));
        }
    };
    let listener = crate::serve::bind(args.listen).await?;
    let interrupt = crate::interrupt::Interrupt::listen(
        "no new request is taken; those in flight finish, and what is spooled is loaded",
    )?;
    collect(set, ctx, places, keys, args, listener, async move {
        interrupt.error().await;
    })
    .await
}

/// Takes events on `listener` with `keys` until `stop` resolves; then lets the requests
/// in flight finish, seals the spool and loads it.
pub async fn collect(
    set: &JobSet,
    ctx: Context,
    places: Vec<String>,
    keys: WriteKeys,
    args: CollectArgs,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let (jobs, destination, extras) = jobs(set, ctx.env.as_ref())?;
    if args.rate_limit.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(Error::user(
            "--rate-limit must be a positive number of events per second",
        ));
    }
    let settings = segments::Settings {
        flush_bytes: args.flush_size,
        flush_age: args.flush_interval,
        max_buffer: args.max_buffer,
        dedup_window: args.dedup_window,
        dedup_capacity: args.dedup_capacity,
    };
    let stats = Arc::new(stats::Stats::default());
    let (loaded_all, stopped) = tokio::sync::watch::channel(false);
    let stopped_loads = stopped.clone();
    // The spool's appender thread and loader, which end after the server.
    let (store, appender, loader, gauges): (Box<dyn store::Store>, _, _, _) = match destination {
        Destination::Spool(dir) => {
            let sealed = Arc::new(tokio::sync::Notify::new());
            let (spool, appender) = spool::Spool::open(&dir, &settings, sealed.clone())?;
            let gauges = spool.gauges.clone();
            let exe = std::env::current_exe()
                .map_err(|e| Error::internal(format!("this program's path: {e}")))?;
            let loader = load::Loader {
                jobs: jobs.iter().map(|j| j.id.clone()).collect(),
                command: load::LoadCommand {
                    exe,
                    places,
                    memory_limit: args.load_memory_limit,
                    lease_ttl: ctx.lease_ttl,
                },
                dir,
                settings,
                gauges: gauges.clone(),
                sealed,
            };
            (Box::new(spool), Some(appender), Some(loader), gauges)
        }
        Destination::Queues(urls) => {
            let seen = dedup::Seen::new(settings.dedup_window, settings.dedup_capacity);
            let queues = queue::Queues::new(urls, seen).await;
            (Box::new(queues), None, None, Arc::default())
        }
    };
    let reporter = tokio::spawn(stats::report(
        stats.clone(),
        gauges,
        Duration::from_secs(60),
        args.emf_namespace,
        stopped,
    ));
    let address = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("the listening address: {e}")))?;
    crate::outln!(
        "listening on http://{address} ({} write keys; {})",
        keys.len(),
        store.describe()
    );
    let collector = Arc::new(http::Collector {
        keys,
        store,
        extras,
        client_ip: args.client_ip,
        forwarded_for: args.trust_forwarded_for,
        rate: args.rate_limit,
        stats,
    });
    let cors = crate::serve::http::Cors {
        origins: args.cors_origins,
    };
    let loading = async {
        match loader {
            Some(loader) => Some(loader.run(stopped_loads).await),
            None => None,
        }
    };
    let serving = async {
        let served = http::serve(collector, cors, listener, stop).await;
        // Every handle to the spool is gone with the server: the appender seals what is
        // open and ends; then the loader loads it and ends.
        let appended = match appender {
            Some(appender) => tokio::task::spawn_blocking(move || appender.join())
                .await
                .map_err(|e| Error::internal(format!("the spool's thread: {e}")))?
                .map_err(|_| Error::internal("the spool's thread panicked")),
            None => Ok(()),
        };
        let _ = loaded_all.send(true);
        served.and(appended)
    };
    // Together in this task: a run's future is not `Send`.
    let (served, loaded) = tokio::join!(serving, loading);
    let _ = reporter.await;
    served?;
    match loaded {
        None => {
            crate::outln!("stopped: every accepted event is in its queue");
            Ok(())
        }
        Some(true) => {
            crate::outln!("stopped: every accepted event is in the lake");
            Ok(())
        }
        Some(false) => Err(Error::external(
            "stopped with events not yet in the lake (the load failed; logged): they are kept in the spool's ready/ folder and loaded by the next start, or by `sluice run --job collect_events` (and collect_aliases, collect_profiles)",
        )),
    }
}
