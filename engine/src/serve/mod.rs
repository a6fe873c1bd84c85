//! `sluice serve`: SQL over the lake for third parties and analysts, over HTTP (`http`)
//! and Arrow Flight SQL (`flight`). Both front ends hand every query to one `Service`,
//! which holds what they share: the API keys, each allowed a list of tables (`keys`); the
//! read-only guard (`guard`); the limits of a query (a memory pool in the engine, a time
//! limit, a row limit, the page size) and of concurrency; and the engine that answers
//! (`engine`: DataFusion in this process). A refusal is the same for both (`refusal`),
//! as an HTTP status or its gRPC code.

pub mod engine;
pub mod flight;
pub mod format;
pub mod guard;
pub mod http;
pub mod keys;
pub mod refusal;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use self::engine::{Batches, Engine, Query, Rows, TableInfo};
use self::keys::{Key, Keys};
use self::refusal::Refusal;
use crate::error::{Error, Result};

/// What one query may take (the defaults are `sluice serve`'s).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rows in a page when the request names none.
    pub page: usize,
    /// The most rows a page may have.
    pub max_page: usize,
    /// The most rows a streamed answer (NDJSON without a limit, Flight SQL) may have.
    pub max_rows: usize,
    pub time: Duration,
    /// Queries running at once; more wait up to `queue_wait`, then get 503.
    pub concurrent: usize,
    pub queue_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            page: 1000,
            max_page: 100_000,
            max_rows: 10_000_000,
            time: Duration::from_secs(30),
            concurrent: 4,
            queue_wait: Duration::from_secs(1),
        }
    }
}

/// What both front ends ask: who a key is, and the answers to its queries within the
/// limits.
pub struct Service {
    engine: Box<dyn Engine>,
    keys: Keys,
    limits: Limits,
    slots: Arc<Semaphore>,
}

impl Service {
    pub fn new(engine: Box<dyn Engine>, keys: Keys, limits: Limits) -> Result<Self> {
        if keys.is_empty() {
            return Err(Error::user(
                "the keys file has no key: nobody could query; add an entry {name, sha256, tables}",
            ));
        }
        Ok(Self {
            slots: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            engine,
            keys,
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

    /// The guard, then a query slot (waiting for one up to `queue_wait`).
    async fn admit(&self, query: &Query) -> std::result::Result<OwnedSemaphorePermit, Refusal> {
        if let Some(why) = guard::refusal(&query.sql) {
            return Err(Refusal::new(
                axum::http::StatusCode::BAD_REQUEST,
                "refused",
                why,
            ));
        }
        tokio::time::timeout(self.limits.queue_wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Refusal::busy(self.limits.concurrent))?
            .map_err(|_| Refusal::busy(self.limits.concurrent))
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
        let answered = async {
            let _slot = self.admit(query).await?;
            tokio::time::timeout(
                self.limits.time,
                self.engine.page(key, query, cursor, limit),
            )
            .await
            .map_err(|_| Refusal::time_limit(self.limits.time))?
        }
        .await;
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
        let _slot = self.admit(query).await?;
        tokio::time::timeout(self.limits.time, self.engine.schema(key, query))
            .await
            .map_err(|_| Refusal::time_limit(self.limits.time))?
    }

    /// Every row of the answer as it comes, holding its query slot until the stream ends;
    /// past the time or row limit the stream ends with that refusal.
    pub async fn stream(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
    ) -> std::result::Result<(SchemaRef, Batches), Refusal> {
        let started = std::time::Instant::now();
        let time = self.limits.time;
        let deadline = tokio::time::Instant::now() + time;
        let opened = async {
            let slot = self.admit(query).await?;
            let (schema, rows) =
                tokio::time::timeout_at(deadline, self.engine.stream(key, query, cursor))
                    .await
                    .map_err(|_| Refusal::time_limit(time))??;
            Ok((slot, schema, rows))
        }
        .await;
        log(key, query, started, opened.as_ref().map(|_| 0));
        let (slot, schema, rows) = opened?;
        let max_rows = self.limits.max_rows;
        let state = Some((rows, slot, 0usize));
        let rows = futures::stream::unfold(state, move |state| async move {
            let (mut rows, slot, seen) = state?;
            match tokio::time::timeout_at(deadline, rows.next()).await {
                Err(_) => Some((Err(Refusal::time_limit(time)), None)),
                Ok(None) => None,
                Ok(Some(Err(refusal))) => Some((Err(refusal), None)),
                Ok(Some(Ok(batch))) => {
                    let seen = seen + batch.num_rows();
                    if seen > max_rows {
                        Some((Err(Refusal::row_limit(max_rows)), None))
                    } else {
                        Some((Ok(batch), Some((rows, slot, seen))))
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

/// One line per query for the operators: who asked what, how it ended, how long it took
/// (the key's name, never the key; a stream's line is written when its rows start, so
/// it counts none).
fn log(
    key: &Key,
    query: &Query,
    started: std::time::Instant,
    rows: std::result::Result<usize, &Refusal>,
) {
    let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match rows {
        Ok(rows) => tracing::info!(key = %key.name, sql = %query.sql, rows, ms, "query answered"),
        Err(refusal) => tracing::info!(
            key = %key.name,
            sql = %query.sql,
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
/// resolves; requests in flight finish.
pub async fn serve(
    service: Service,
    cors: http::Cors,
    listener: tokio::net::TcpListener,
    flight: Option<tokio::net::TcpListener>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let service = Arc::new(service);
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
    servers.await
}
