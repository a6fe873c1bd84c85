//! `sluice console`: the operators' web page over the whole lake — every job's health
//! (freshness, last outcome, quality, quarantine), runs, checkpoint, contract, lineage,
//! the lake's tables and a query box — and the two actions operators take from it: run
//! now and rewind.
//!
//! It is the CLI's code paths, not a second implementation: job rows come from
//! `job::load`, runs and state from the `StateStore` (`view`), runs start as `sluice run`
//! or `executions start` do and a rewind is `sluice state rewind` (`actions`), queries run
//! on `serve`'s engine with its guard and limits. Pages are HTML rendered on the server
//! (`pages`, with one `html::escape`), readable with JavaScript off; htmx, built into
//! the binary (`assets`), refreshes what changes while a run is in flight. Keys and
//! roles come from a keys file like the other servers' (`keys`), sessions and CSRF
//! protection from `auth`; `health` and `schedule` are pure.

pub mod actions;
pub mod assets;
pub mod auth;
pub mod health;
pub mod html;
pub mod keys;
pub mod pages;
pub mod routes;
pub mod schedule;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use self::auth::Viewer;
use self::keys::ConsoleKeys;
use crate::error::{Error, Result};
use crate::serve::Service;
use crate::sink::Lake;
use crate::store::StateStore;

/// What the handlers share.
pub struct Console {
    pub keys: ConsoleKeys,
    pub sessions: auth::Sessions,
    pub jobs: view::JobsCache,
    pub store: Arc<dyn StateStore>,
    pub lake: Lake,
    /// The Glue database runs publish to (a rewind's context, as the CLI's).
    pub catalog: Option<String>,
    /// The query box's engine, guard and limits: `serve`'s.
    pub service: Service,
    pub runner: actions::Runner,
    pub schedules: schedule::Schedules,
    /// Cookies only over HTTPS (behind a TLS load balancer).
    pub secure_cookie: bool,
    pub lease_ttl: Duration,
}

impl Console {
    /// A console over a local folder of jobs, a lake and a state store, with `keys`,
    /// `serve`'s default limits, and "run now" as a child `exe run` (the demo's).
    pub fn local(
        keys: ConsoleKeys,
        places: [String; 3],
        lake: Lake,
        store: Arc<dyn StateStore>,
        exe: std::path::PathBuf,
    ) -> Result<Self> {
        let [jobs, lake_at, state] = places;
        let limits = crate::serve::Limits::default();
        let engine = crate::serve::engine::local::Local::new(
            lake.clone(),
            128 << 20,
            limits.page_bytes,
            Duration::from_secs(5),
        )?;
        Ok(Self {
            keys,
            sessions: auth::Sessions::default(),
            jobs: view::JobsCache::new(jobs.clone(), Duration::from_secs(5)),
            store,
            lake,
            catalog: None,
            service: Service::without_keys(Box::new(engine), limits)?,
            runner: actions::Runner::local(
                exe,
                vec![
                    format!("--jobs={jobs}"),
                    format!("--lake={lake_at}"),
                    format!("--state={state}"),
                ],
            ),
            schedules: schedule::Schedules::default(),
            secure_cookie: false,
            lease_ttl: crate::pipeline::DEFAULT_LEASE_TTL,
        })
    }

    /// The context a rewind runs in, as `sluice state rewind` makes it.
    pub fn context(&self) -> crate::pipeline::Context {
        let mut ctx = crate::pipeline::Context::new(self.lake.clone(), self.store.clone());
        ctx.lease_ttl = self.lease_ttl;
        ctx.catalog = self.catalog.clone();
        ctx
    }

    /// The key the query box asks as: the operator's name, every table.
    pub fn query_key(&self, viewer: &Viewer) -> crate::serve::keys::Key {
        crate::serve::keys::Key::new(format!("console:{}", viewer.who.name), vec!["*".into()])
    }

    /// A Delta table's latest version (`None`: not a Delta table, or unreadable).
    pub async fn delta_version(&self, table: &str) -> Option<String> {
        match crate::sink::delta::open(&self.lake, table, crate::sink::delta::AsOf::Latest).await {
            Ok(Some(t)) => t.version().map(|v| v.to_string()),
            _ => None,
        }
    }

    /// Up to 20 rows of the table's quarantine, as HTML, when it has one.
    pub async fn quarantine_sample(&self, viewer: &Viewer, table: &str) -> Option<String> {
        let quarantine = crate::quality::quarantine_table(table);
        let key = self.query_key(viewer);
        let listed = self.service.tables(&key, Some(&quarantine)).await.ok()?;
        if listed.is_empty() {
            return None;
        }
        let query = crate::serve::engine::Query {
            sql: format!("SELECT * FROM \"{quarantine}\" LIMIT 20"),
            params: None,
            as_of: None,
        };
        match self.service.page(&key, &query, None, 20).await {
            Ok(rows) => Some(pages::lake::rows(&rows)),
            Err(refusal) => Some(format!(
                "<p class=\"problem\">{}</p>",
                html::escape(&refusal.message)
            )),
        }
    }
}

/// Serves the console on `listener` until `stop` resolves (requests in flight finish).
pub async fn serve(
    console: Arc<Console>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let address = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("the listening address: {e}")))?;
    crate::outln!(
        "listening on http://{address} ({} keys; run now starts {})",
        console.keys.len(),
        console.runner.describe()
    );
    axum::serve(listener, routes::router(console))
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| Error::external(format!("serving HTTP: {e}")))
}
