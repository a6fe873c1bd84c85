//! `sluice serve`: SQL over the lake for third parties and analysts, over HTTP (`http`)
//! and Arrow Flight SQL (`flight`). Both front ends hand every query to one `Service`,
//! which holds what they share: the API keys, each allowed a list of tables (`keys`); the
//! guard (`guard`: read-only, size, depth); the limits of everything a client controls
//! (`limits`); the query threads and slots (`pool`), apart from the threads that answer
//! requests; and the engine that answers (`engine`: DataFusion in this process, or
//! Athena). A refusal is the same for both (`refusal`), as an HTTP status or its gRPC
//! code.

pub mod engine;
pub mod flight;
pub mod format;
pub mod guard;
pub mod http;
pub mod keys;
pub mod limits;
pub mod pool;
pub mod refusal;

use std::net::SocketAddr;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;

use self::engine::leash::{Leash, StopOnDrop};
use self::engine::{Batches, Engine, Query, Rows, TableInfo};
use self::keys::{Key, Keys};
pub use self::limits::Limits;
use self::pool::Pool;
use self::refusal::Refusal;
use crate::error::{Error, Result};

/// What both front ends ask: who a key is, and the answers to its queries within the
/// limits.
pub struct Service {
    engine: Arc<dyn Engine>,
    keys: Keys,
    limits: Limits,
    pool: Pool,
}

impl Service {
    pub fn new(engine: Box<dyn Engine>, keys: Keys, limits: Limits) -> Result<Self> {
        if keys.is_empty() {
            return Err(Error::user(
                "the keys file has no key: nobody could query; add an entry {name, sha256, tables}",
            ));
        }
        Ok(Self {
            pool: Pool::new(&limits)?,
            engine: Arc::from(engine),
            keys,
            limits,
        })
    }

    /// A service whose callers are authenticated elsewhere: the console, whose keys and
    /// roles are its own, asks its queries as a [`Key`] it makes for the operator (every
    /// table); the guard, the limits and the query threads are the same as `serve`'s.
    pub fn without_keys(engine: Box<dyn Engine>, limits: Limits) -> Result<Self> {
        Ok(Self {
            pool: Pool::new(&limits)?,
            engine: Arc::from(engine),
            keys: Keys::none(),
            limits,
        })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether the engine tells a query's columns without running it.
    pub fn plans(&self) -> bool {
        self.engine.plans()
    }

    /// The key presented in an `Authorization` or `X-Api-Key` value.
    pub fn key(
        &self,
        authorization: Option<&str>,
        api_key: Option<&str>,
    ) -> std::result::Result<&Key, Refusal> {
        self.keys
            .authenticate(authorization, api_key)
            .ok_or_else(Refusal::unauthorized)
    }

    /// Starts `work` on the query threads once the statement's size is allowed and a
    /// slot is free; the guard runs first there. The leash's clock starts at admission.
    async fn start<T: Send + 'static, F>(
        &self,
        key: &Key,
        query: &Query,
        answer_bytes: usize,
        work: impl FnOnce(Arc<dyn Engine>, Key, Query, Leash) -> F,
    ) -> std::result::Result<(pool::Running<T>, Leash), Refusal>
    where
        F: std::future::Future<Output = std::result::Result<T, Refusal>> + Send + 'static,
    {
        guard::size(&query.sql, &self.limits)?;
        let slots = self.pool.admit(&key.name).await?;
        let leash = Leash::new(self.limits.time, answer_bytes);
        let work = work(
            self.engine.clone(),
            key.clone(),
            query.clone(),
            leash.clone(),
        );
        let limits = self.limits.clone();
        let sql = query.sql.clone();
        let running = self.pool.spawn(async move {
            let _slots = slots;
            guard::check(&sql, &limits)?;
            work.await
        });
        Ok((running, leash))
    }

    /// The outcome of a query `start`ed, by its deadline, else `time_limit` (and the
    /// work is stopped and aborted).
    async fn answer<T: Send + 'static>(
        started: (pool::Running<T>, Leash),
    ) -> std::result::Result<T, Refusal> {
        let (running, leash) = started;
        let _stop = StopOnDrop(leash.clone());
        tokio::time::timeout_at(leash.deadline(), running)
            .await
            .unwrap_or_else(|_| Err(Refusal::time_limit(leash.time())))
    }

    /// One page of the answer, from `cursor`.
    pub async fn page(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
        limit: usize,
    ) -> std::result::Result<Rows, Refusal> {
        let started = std::time::Instant::now();
        let cursor = cursor.map(str::to_string);
        let started_query = self.start(
            key,
            query,
            self.limits.page_bytes,
            |engine, key, query, leash| async move {
                engine
                    .page(&key, &query, cursor.as_deref(), limit, &leash)
                    .await
            },
        );
        let answered = match started_query.await {
            Ok(running) => Self::answer(running).await,
            Err(refusal) => Err(refusal),
        };
        let rows = answered
            .as_ref()
            .map(|page| page.batches.iter().map(|b| b.num_rows()).sum::<usize>());
        log(key, query, started, rows);
        answered
    }

    /// The answer's columns, and where its rows are read from when the engine had to run
    /// the query to know them (`Engine::schema`).
    pub async fn schema(
        &self,
        key: &Key,
        query: &Query,
    ) -> std::result::Result<(SchemaRef, Option<String>), Refusal> {
        let running = self
            .start(
                key,
                query,
                self.limits.page_bytes,
                |engine, key, query, leash| async move { engine.schema(&key, &query, &leash).await },
            )
            .await?;
        Self::answer(running).await
    }

    /// Every row of the answer as it comes, the query running on the query threads and
    /// holding its slot until the stream ends; past the time, row or byte limit the
    /// stream ends with that refusal.
    pub async fn stream(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
    ) -> std::result::Result<(SchemaRef, Batches), Refusal> {
        let started = std::time::Instant::now();
        let cursor = cursor.map(str::to_string);
        let (opened_tx, opened) = tokio::sync::oneshot::channel();
        // One batch in hand, one on the way: a slow client holds the query back, not
        // its rows in memory.
        let (rows_tx, rows) = tokio::sync::mpsc::channel(1);
        let started_query = self
            .start(
                key,
                query,
                self.limits.answer_bytes,
                |engine, key, query, leash| async move {
                    let (schema, mut batches) =
                        match engine.stream(&key, &query, cursor.as_deref(), &leash).await {
                            Ok(opened) => opened,
                            Err(refusal) => {
                                let _ = opened_tx.send(Err(refusal));
                                return Ok(());
                            }
                        };
                    if opened_tx.send(Ok(schema)).is_err() {
                        return Ok(());
                    }
                    while let Some(batch) = batches.next().await {
                        if rows_tx.send(batch).await.is_err() {
                            break;
                        }
                    }
                    Ok(())
                },
            )
            .await;
        let opened = match started_query {
            Ok((running, leash)) => {
                let stop = StopOnDrop(leash.clone());
                match tokio::time::timeout_at(leash.deadline(), opened).await {
                    Ok(Ok(Ok(schema))) => Ok((schema, running, stop)),
                    Ok(Ok(Err(refusal))) => Err(refusal),
                    // The task ended without a word: its outcome says why.
                    Ok(Err(_)) => Err(running.await.err().unwrap_or_else(|| {
                        Refusal::from(Error::internal("the query ended before it opened"))
                    })),
                    Err(_) => Err(Refusal::time_limit(leash.time())),
                }
            }
            Err(refusal) => Err(refusal),
        };
        log(key, query, started, opened.as_ref().map(|_| 0));
        let (schema, running, stop) = opened?;
        let max_rows = self.limits.max_rows;
        let state = Some((rows, running, stop, 0usize));
        let rows = futures::stream::unfold(state, move |state| async move {
            let (mut rows, running, stop, seen) = state?;
            let leash = stop.0.clone();
            match tokio::time::timeout_at(leash.deadline(), rows.recv()).await {
                Err(_) => Some((Err(Refusal::time_limit(leash.time())), None)),
                Ok(None) => match running.await {
                    Ok(()) => None,
                    Err(refusal) => Some((Err(refusal), None)),
                },
                Ok(Some(Err(refusal))) => Some((Err(refusal), None)),
                Ok(Some(Ok(batch))) => {
                    let seen = seen + batch.num_rows();
                    if seen > max_rows {
                        Some((Err(Refusal::row_limit(max_rows)), None))
                    } else if let Err(refusal) = leash.answer(&batch) {
                        Some((Err(refusal), None))
                    } else {
                        Some((Ok(batch), Some((rows, running, stop, seen))))
                    }
                }
            }
        })
        .boxed();
        Ok((schema, rows))
    }

    /// The tables the key sees (quarantine tables marked with the table they belong to),
    /// or only the one named.
    pub async fn tables(
        &self,
        key: &Key,
        only: Option<&str>,
    ) -> std::result::Result<Vec<TableInfo>, Refusal> {
        tokio::time::timeout(self.limits.time, self.engine.tables(key, only))
            .await
            .map_err(|_| Refusal::time_limit(self.limits.time))?
    }
}

/// How much of a statement a log line holds: a statement may be as long as the statement
/// limit; its hash names it whole.
const LOGGED_SQL: usize = 300;

/// A statement for a log line: its first `LOGGED_SQL` bytes (cut at a character) and,
/// when cut, its length.
fn logged_sql(sql: &str) -> std::borrow::Cow<'_, str> {
    if sql.len() <= LOGGED_SQL {
        return sql.into();
    }
    let mut end = LOGGED_SQL;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &sql[..end], sql.len()).into()
}

/// One line per query for the operators: who asked what (a bounded prefix of the
/// statement and the SHA-256 of all of it), how it ended, how long it took (the key's
/// name, never the key; a stream's line is written when its rows start, so it counts
/// none).
fn log(
    key: &Key,
    query: &Query,
    started: std::time::Instant,
    rows: std::result::Result<usize, &Refusal>,
) {
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let sql = logged_sql(&query.sql);
    let sql_sha256 = &crate::keyfile::sha256_hex(&query.sql)[..16];
    match rows {
        Ok(rows) => {
            tracing::info!(key = %key.name, sql = %sql, sql_sha256, rows, ms, "query answered")
        }
        Err(refusal) => tracing::info!(
            key = %key.name,
            sql = %sql,
            sql_sha256,
            code = refusal.code,
            status = refusal.status.as_u16(),
            ms,
            "query refused: {}",
            refusal.message
        ),
    }
}

/// Listens on `address` (port 0: a free one).
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Error::user(format!("cannot listen on {address}: {e}")))
}

/// Serves HTTP on `listener` and Flight SQL on `flight` (when given) until `stop`
/// resolves; then no connection is taken, and requests in flight have up to the drain
/// (`Limits::drain`) to finish before this returns.
pub async fn serve(
    service: Service,
    cors: http::Cors,
    listener: tokio::net::TcpListener,
    flight: Option<tokio::net::TcpListener>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let service = Arc::new(service);
    let drain = service.limits.drain;
    let address = |l: &tokio::net::TcpListener| {
        l.local_addr()
            .map_err(|e| Error::internal(format!("the listening address: {e}")))
    };
    crate::outln!(
        "listening on http://{} ({} engine, {} keys)",
        address(&listener)?,
        service.engine.name(),
        service.keys.len()
    );
    let (stopped, _) = tokio::sync::watch::channel(false);
    let on_stop = |stopped: &tokio::sync::watch::Sender<bool>| {
        let mut told = stopped.subscribe();
        async move {
            let _ = told.wait_for(|s| *s).await;
        }
    };
    let http = http::serve(service.clone(), cors, listener, on_stop(&stopped));
    let flight = match flight {
        Some(listener) => {
            crate::outln!("Flight SQL on grpc://{}", address(&listener)?);
            Some(flight::serve(service, listener, on_stop(&stopped)))
        }
        None => None,
    };
    let servers = async {
        match flight {
            Some(flight) => tokio::try_join!(http, flight).map(|_| ()),
            None => http.await,
        }
    };
    let mut servers = std::pin::pin!(servers);
    tokio::select! {
        // A server that ends by itself failed: nothing to wait for.
        served = &mut servers => return served,
        () = stop => {}
    }
    let _ = stopped.send(true);
    match tokio::time::timeout(drain, servers).await {
        Ok(served) => served,
        Err(_) => {
            tracing::warn!(
                drain_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
                "stopping with requests still in flight: the drain (--drain) is over"
            );
            Ok(())
        }
    }
}
