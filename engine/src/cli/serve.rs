//! `sluice serve`'s options and how they make the server: the keys, the limits, the
//! engine, the listeners.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::{Places, parse_duration, size_at_least};
use crate::error::{Error, Result};
use crate::sink::Lake;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: any free port; the line `listening on …` says
    /// which).
    #[arg(long, env = "SLUICE_SERVE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The API keys: a YAML list of {name, sha256, tables} (the SHA-256 of each key, never
    /// the key; tables it may read, or ["*"]).
    #[arg(
        long,
        env = "SLUICE_SERVE_KEYS",
        required_unless_present = "keys_secret"
    )]
    pub keys: Option<PathBuf>,
    /// The same list in a Secrets Manager secret (name or ARN) instead of a file.
    #[arg(long, env = "SLUICE_SERVE_KEYS_SECRET", conflicts_with = "keys")]
    pub keys_secret: Option<String>,
    /// What answers the queries: DataFusion over the lake in this process, or Athena
    /// (the Glue database the jobs publish to, in a workgroup).
    #[arg(long, value_enum, env = "SLUICE_SERVE_ENGINE", default_value_t = ServeEngine::Local)]
    pub engine: ServeEngine,
    /// With --engine athena: the workgroup the queries run in (its limits apply).
    #[arg(long, env = "SLUICE_ATHENA_WORKGROUP", default_value = "primary")]
    pub athena_workgroup: String,
    /// With --engine athena: the Glue database of the lake's tables.
    #[arg(
        long,
        env = "SLUICE_ATHENA_DATABASE",
        required_if_eq("engine", "athena")
    )]
    pub athena_database: Option<String>,
    /// With --engine athena: where Athena writes results, when the workgroup sets no
    /// place (s3://bucket/prefix/).
    #[arg(long, env = "SLUICE_ATHENA_OUTPUT")]
    pub athena_output: Option<String>,
    /// Rows in a page when a query names no limit.
    #[arg(long, default_value_t = 1000)]
    pub page_rows: usize,
    /// The most rows a page may have.
    #[arg(long, default_value_t = 100_000)]
    pub max_page_rows: usize,
    /// The most bytes a page's rows may hold (as Arrow holds them; 413 `answer_limit`
    /// beyond it).
    #[arg(long, default_value = "16MiB", value_parser = parse_bytes)]
    pub max_page_bytes: usize,
    /// How long one query may take from its admission, planning included (408
    /// `time_limit` beyond it; its work stops at its next batch).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub query_timeout: Duration,
    /// Each query's memory: its pool for sorts, aggregates and joins, its page's rows,
    /// and the most any one step of it may make at once (413 `memory_limit` beyond it).
    #[arg(long, default_value = "128MiB", value_parser = parse_pool)]
    pub query_memory: u64,
    /// Queries running at once; others wait up to a second, then get 503.
    #[arg(long, default_value_t = 4)]
    pub max_concurrent: usize,
    /// Queries of one key running at once; its others wait up to a second, then get 429.
    #[arg(long, default_value_t = 2)]
    pub max_concurrent_per_key: usize,
    /// The most rows a streamed answer may have (NDJSON without a limit, Flight SQL);
    /// past it the stream ends with a `row_limit` error.
    #[arg(long, default_value_t = 10_000_000)]
    pub max_rows: usize,
    /// The most bytes a streamed answer's rows may hold (as Arrow holds them); past it the
    /// stream ends with an `answer_limit` error.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub max_answer_bytes: usize,
    /// The most bytes a statement may have (413 `statement_too_large`).
    #[arg(long, default_value = "256KiB", value_parser = parse_bytes)]
    pub max_statement_bytes: usize,
    /// How deep a statement may nest: each operator of a chain like `a AND b AND …`, each
    /// subquery, each UNION branch is a level (400 `too_deep`).
    #[arg(long, default_value_t = 200)]
    pub max_sql_depth: usize,
    /// Threads that run the queries, apart from those that answer requests (default:
    /// one per core).
    #[arg(long)]
    pub query_threads: Option<usize>,
    /// On SIGTERM or Ctrl-C: no new connection is taken, and requests in flight have this
    /// long to finish before the server exits.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain: Duration,
    /// How long a listing of the lake's tables is reused (a new table shows within it; a
    /// new file in a known table shows at once).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub listing_ttl: Duration,
    /// Also serves Arrow Flight SQL (ADBC, JDBC, DBeaver) on this address, with the same
    /// keys and limits.
    #[arg(long, env = "SLUICE_SERVE_FLIGHT_LISTEN")]
    pub flight_listen: Option<std::net::SocketAddr>,
    /// A browser origin allowed to call the HTTP API (repeatable; `*` for any). Without
    /// one, browsers refuse cross-origin calls.
    #[arg(
        long = "cors-origin",
        env = "SLUICE_SERVE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ServeEngine {
    Local,
    Athena,
}

/// A query's memory pool (at least 16 MiB).
fn parse_pool(text: &str) -> std::result::Result<u64, String> {
    size_at_least(text, 16 << 20, "16MiB")
}

/// A byte limit of a client's request or answer (at least a KiB).
fn parse_bytes(text: &str) -> std::result::Result<usize, String> {
    let bytes = size_at_least(text, 1 << 10, "1KiB")?;
    usize::try_from(bytes).map_err(|_| format!("{text} is more than this machine can address"))
}

/// Serves until SIGTERM or Ctrl-C, then drains.
pub async fn run(places: &Places, args: ServeArgs) -> Result<()> {
    let keys = match (&args.keys, &args.keys_secret) {
        (Some(path), _) => crate::serve::keys::Keys::load(path)?,
        (None, Some(secret)) => crate::serve::keys::Keys::from_secret(secret).await?,
        (None, None) => {
            return Err(Error::user(
                "give the API keys: --keys FILE or --keys-secret ID",
            ));
        }
    };
    let defaults = crate::serve::Limits::default();
    let limits = crate::serve::Limits {
        page: args.page_rows,
        max_page: args.max_page_rows,
        page_bytes: args.max_page_bytes,
        max_rows: args.max_rows,
        answer_bytes: args.max_answer_bytes,
        time: args.query_timeout,
        statement_bytes: args.max_statement_bytes,
        sql_depth: args.max_sql_depth,
        concurrent: args.max_concurrent,
        concurrent_per_key: args.max_concurrent_per_key,
        query_threads: args.query_threads.unwrap_or(defaults.query_threads),
        drain: args.drain,
        ..defaults
    };
    let engine: Box<dyn crate::serve::engine::Engine> = match args.engine {
        ServeEngine::Local => Box::new(crate::serve::engine::local::Local::new(
            Lake::open(&places.lake)?,
            args.query_memory,
            args.max_page_bytes,
            args.listing_ttl,
        )?),
        ServeEngine::Athena => Box::new(
            crate::serve::engine::athena::Athena::new(
                args.athena_workgroup,
                args.athena_database.unwrap_or_default(),
                args.athena_output,
            )
            .await,
        ),
    };
    let service = crate::serve::Service::new(engine, keys, limits)?;
    let cors = crate::serve::http::Cors {
        origins: args.cors_origins,
    };
    let interrupt = crate::interrupt::Interrupt::listen(
        "no new connection is taken; the requests in flight finish",
    )?;
    let stop = async move {
        interrupt.error().await;
    };
    let listener = crate::serve::bind(args.listen).await?;
    let flight = match args.flight_listen {
        Some(address) => Some(crate::serve::bind(address).await?),
        None => None,
    };
    crate::serve::serve(service, cors, listener, flight, stop).await
}
