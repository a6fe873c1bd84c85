//! `sluice serve`: SQL over the lake for third parties and analysts, over HTTP. Read-only
//! (`guard`), authenticated by API keys each allowed a list of tables (`keys`), bounded per
//! query (a memory pool, a time limit, a page size) and in concurrency; results as JSON,
//! NDJSON, CSV, Arrow or Parquet (`format`), paged by an opaque continuation token. Every
//! request sees the lake as it is then: the tables are listed again per query, so new files
//! and new tables need no restart.
//!
//! Statuses: 400 a bad request or refused SQL, 401 no valid key, 406 no format the client
//! accepts, 408 past the time limit, 413 past the memory limit, 415 a body that is not
//! JSON, 503 (with `Retry-After`) when every query slot is busy.

pub mod format;
pub mod guard;
pub mod keys;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::context::SQLOptions;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::scalar::ScalarValue;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use self::format::Format;
use self::keys::{Key, Keys};
use crate::error::{Error, ErrorClass, Result};
use crate::sink::Lake;

/// The OpenAPI document of the API (the contract the tests hold the server to).
const OPENAPI: &str = include_str!("../../../docs/serve-openapi.json");
/// The header that carries the continuation token in every format.
const NEXT_HEADER: &str = "sluice-next";

/// What one query may take (the defaults are `sluice serve`'s).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Rows in a page when the request names none.
    pub page: usize,
    /// The most rows a page may have.
    pub max_page: usize,
    pub time: Duration,
    /// Each query's memory pool (sorts, aggregates, joins beyond it fail with 413).
    pub memory: u64,
    /// Queries running at once; more wait up to `queue_wait`, then get 503.
    pub concurrent: usize,
    pub queue_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            page: 1000,
            max_page: 100_000,
            time: Duration::from_secs(30),
            memory: 256 << 20,
            concurrent: 4,
            queue_wait: Duration::from_secs(1),
        }
    }
}

struct App {
    lake: Lake,
    keys: Keys,
    limits: Limits,
    slots: Semaphore,
}

/// Listens on `address` (port 0: a free one).
pub async fn bind(address: SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .map_err(|e| Error::user(format!("cannot listen on {address}: {e}")))
}

/// Serves on `listener` until `stop` resolves (requests in flight finish).
pub async fn serve(
    lake: Lake,
    keys: Keys,
    limits: Limits,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    if keys.is_empty() {
        return Err(Error::user(
            "the keys file has no key: nobody could query; add an entry {name, sha256, tables}",
        ));
    }
    let bound = listener
        .local_addr()
        .map_err(|e| Error::internal(format!("the listening address: {e}")))?;
    crate::outln!(
        "listening on http://{bound} (lake {}, {} keys)",
        lake.url(),
        keys.len()
    );
    let app = Arc::new(App {
        slots: Semaphore::new(limits.concurrent.max(1)),
        lake,
        keys,
        limits,
    });
    let router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi))
        .route("/v1/tables", get(tables))
        .route("/v1/tables/{name}", get(table))
        .route("/v1/query", get(query_get).post(query_post))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| Error::external(format!("serving on {bound}: {e}")))
}

/// An answer that is not a result: its status, a stable code and what to do.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A sluice error as an answer: the user's is the request's fault, anything else ours.
impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        match e.class {
            ErrorClass::User => Self::bad(e.message),
            ErrorClass::External => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("the lake could not be read: {}", e.message),
            ),
            _ => {
                tracing::error!(error = %e.report(), "query failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the query failed inside sluice (logged)",
                )
            }
        }
    }
}

type Answer = std::result::Result<Response, Refusal>;

fn authenticate<'a>(app: &'a App, headers: &HeaderMap) -> std::result::Result<&'a Key, Refusal> {
    app.keys.authenticate(headers).ok_or_else(|| {
        Refusal::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "no valid API key: send `Authorization: Bearer KEY` or `X-Api-Key: KEY`",
        )
    })
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// A query as a request gives it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: Option<String>,
    /// Positional (`[…]` for `$1`, `$2`, …) or named (`{…}` for `$name`) parameters.
    params: Option<serde_json::Value>,
    format: Option<String>,
    limit: Option<usize>,
    /// The continuation token of the previous page.
    next: Option<String>,
}

/// What a continuation token holds: the query and where the next page starts.
#[derive(Debug, Serialize, Deserialize)]
struct Page {
    sql: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<serde_json::Value>,
    offset: usize,
    limit: usize,
}

impl Page {
    fn token(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn from_token(token: &str) -> std::result::Result<Self, Refusal> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .ok()
            .and_then(|json| serde_json::from_slice(&json).ok())
            .ok_or_else(|| Refusal::bad("`next` is not a continuation token this server gave"))
    }
}

async fn query_get(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(request): Query<std::collections::HashMap<String, String>>,
) -> Answer {
    let params = match request.get("params") {
        Some(text) => Some(
            serde_json::from_str(text)
                .map_err(|e| Refusal::bad(format!("params is not JSON: {e}")))?,
        ),
        None => None,
    };
    let limit = match request.get("limit") {
        Some(text) => Some(text.parse().map_err(|_| {
            Refusal::bad(format!(
                "limit must be a positive whole number, not `{text}`"
            ))
        })?),
        None => None,
    };
    if let Some(unknown) = request
        .keys()
        .find(|k| !["sql", "params", "format", "limit", "next"].contains(&k.as_str()))
    {
        return Err(Refusal::bad(format!(
            "unknown parameter `{unknown}`: the query takes sql, params, format, limit, next"
        )));
    }
    let request = QueryRequest {
        sql: request.get("sql").cloned(),
        params,
        format: request.get("format").cloned(),
        limit,
        next: request.get("next").cloned(),
    };
    answer(&app, &headers, request).await
}

async fn query_post(State(app): State<Arc<App>>, headers: HeaderMap, body: Bytes) -> Answer {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        });
    if !json {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the query as application/json: {\"sql\": \"SELECT …\"}",
        ));
    }
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        Refusal::bad(format!(
            "the body is not a query: {e}; send {{\"sql\": \"SELECT …\", \"params\": [...], \"format\": \"json\", \"limit\": 1000}}"
        ))
    })?;
    answer(&app, &headers, request).await
}

async fn answer(app: &App, headers: &HeaderMap, request: QueryRequest) -> Answer {
    let key = authenticate(app, headers)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::choose(request.format.as_deref(), accept)
        .map_err(|m| Refusal::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", m))?;
    let page = match (request.next, request.sql) {
        (Some(token), _) => Page::from_token(&token)?,
        (None, Some(sql)) => {
            let limit = request.limit.unwrap_or(app.limits.page);
            if limit == 0 || limit > app.limits.max_page {
                return Err(Refusal::bad(format!(
                    "limit must be between 1 and {} (the server's page size limit)",
                    app.limits.max_page
                )));
            }
            Page {
                sql,
                params: request.params,
                offset: 0,
                limit,
            }
        }
        (None, None) => return Err(Refusal::bad("no sql: send {\"sql\": \"SELECT …\"}")),
    };
    if let Some(why) = guard::refusal(&page.sql) {
        return Err(Refusal::new(StatusCode::BAD_REQUEST, "refused", why));
    }
    let _slot = tokio::time::timeout(app.limits.queue_wait, app.slots.acquire())
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                format!(
                    "all {} query slots are busy; try again",
                    app.limits.concurrent
                ),
            )
        })?
        .map_err(|_| Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "busy", "shutting down"))?;
    let run = run_page(app, key, &page);
    let (schema, batches, more) = tokio::time::timeout(app.limits.time, run)
        .await
        .map_err(|_| {
            Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "time_limit",
                format!(
                    "the query ran past the time limit ({:?}); narrow it (a partition filter, fewer columns) or page it",
                    app.limits.time
                ),
            )
        })??;
    let next = more.then(|| {
        Page {
            offset: page.offset + page.limit,
            ..page
        }
        .token()
    });
    let body = format::encode(format, &schema, &batches, next.as_deref())?;
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.media_type()),
    );
    if let Some(next) = next.and_then(|n| HeaderValue::from_str(&n).ok()) {
        headers.insert(NEXT_HEADER, next);
    }
    Ok(response)
}

/// The page's rows (and whether more follow), over a session with only the key's tables.
async fn run_page(
    app: &App,
    key: &Key,
    page: &Page,
) -> std::result::Result<
    (
        datafusion::arrow::datatypes::SchemaRef,
        Vec<RecordBatch>,
        bool,
    ),
    Refusal,
> {
    let ctx = session(app, key).await?;
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let mut frame = ctx
        .sql_with_options(&page.sql, options)
        .await
        .map_err(|e| Refusal::from(crate::query::planning_error(&app.lake, &ctx, e)))?;
    if let Some(params) = &page.params {
        frame = frame
            .with_param_values(param_values(params)?)
            .map_err(|e| Refusal::bad(format!("the parameters do not fit the query: {e}")))?;
    }
    let schema = frame.schema().inner().clone();
    let mut stream = frame.execute_stream().await.map_err(executing)?;
    let (mut skip, mut want) = (page.offset, page.limit);
    let mut batches = Vec::new();
    while let Some(batch) = stream.next().await {
        let mut batch = batch.map_err(executing)?;
        if skip > 0 {
            let dropped = skip.min(batch.num_rows());
            skip -= dropped;
            batch = batch.slice(dropped, batch.num_rows() - dropped);
        }
        if batch.num_rows() == 0 {
            continue;
        }
        if want == 0 {
            return Ok((schema, batches, true));
        }
        let taken = want.min(batch.num_rows());
        want -= taken;
        let more = taken < batch.num_rows();
        batches.push(batch.slice(0, taken));
        if more {
            return Ok((schema, batches, true));
        }
    }
    Ok((schema, batches, false))
}

/// An execution error: past the memory pool is 413, the rest as classified.
fn executing(e: datafusion::error::DataFusionError) -> Refusal {
    if matches!(
        e.find_root(),
        datafusion::error::DataFusionError::ResourcesExhausted(_)
    ) {
        return Refusal::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "memory_limit",
            format!(
                "the query needs more memory than a query may take ({}); aggregate or filter more, or page a plain SELECT",
                e.find_root()
            ),
        );
    }
    Refusal::from(crate::error::classify_datafusion(e, "query"))
}

/// A session over the lake as it is now, with the key's tables only and the per-query
/// memory pool.
async fn session(app: &App, key: &Key) -> std::result::Result<SessionContext, Refusal> {
    let config = SessionConfig::new().with_information_schema(true);
    let runtime = crate::transform::bounded_runtime(app.limits.memory)?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    Ok(crate::query::register_tables(&app.lake, ctx, |name| key.allows(name)).await?)
}

/// JSON parameters as DataFusion's: a list for `$1…`, an object for `$name`.
fn param_values(
    params: &serde_json::Value,
) -> std::result::Result<datafusion::common::ParamValues, Refusal> {
    let scalar = |v: &serde_json::Value| -> std::result::Result<ScalarValue, Refusal> {
        Ok(match v {
            serde_json::Value::Null => ScalarValue::Null,
            serde_json::Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => ScalarValue::Int64(Some(i)),
                None => ScalarValue::Float64(n.as_f64()),
            },
            serde_json::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
            other => {
                return Err(Refusal::bad(format!(
                    "a parameter is a string, number, boolean or null, not {other}"
                )));
            }
        })
    };
    match params {
        serde_json::Value::Array(list) => Ok(list
            .iter()
            .map(scalar)
            .collect::<std::result::Result<Vec<_>, _>>()?
            .into()),
        serde_json::Value::Object(map) => Ok(map
            .iter()
            .map(|(k, v)| Ok((k.clone(), scalar(v)?)))
            .collect::<std::result::Result<Vec<_>, Refusal>>()?
            .into()),
        _ => Err(Refusal::bad(
            "params is a list (for $1, $2, …) or an object (for $name)",
        )),
    }
}

/// A table as `/v1/tables` describes it.
#[derive(Debug, Serialize)]
struct TableInfo {
    name: String,
    columns: Vec<serde_json::Value>,
    partition_columns: Vec<String>,
    partitions: usize,
    files: usize,
    bytes: u64,
}

async fn tables(State(app): State<Arc<App>>, headers: HeaderMap) -> Answer {
    let key = authenticate(&app, &headers)?;
    let ctx = session(&app, key).await?;
    let names = crate::query::table_names(&ctx);
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        out.push(describe(&app, &ctx, &name).await?);
    }
    Ok(axum::Json(serde_json::json!({"tables": out})).into_response())
}

async fn table(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Answer {
    let key = authenticate(&app, &headers)?;
    let ctx = session(&app, key).await?;
    if !crate::query::table_names(&ctx).contains(&name) {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no table `{name}` (GET /v1/tables lists the ones there are)"),
        ));
    }
    Ok(axum::Json(describe(&app, &ctx, &name).await?).into_response())
}

async fn describe(
    app: &App,
    ctx: &SessionContext,
    name: &str,
) -> std::result::Result<TableInfo, Refusal> {
    let provider = ctx
        .table_provider(name)
        .await
        .map_err(|e| Refusal::from(crate::error::classify_datafusion(e, "describing a table")))?;
    let dir = app.lake.table_dir(name)?;
    let objects = app.lake.list(&dir).await?;
    let parquet: Vec<_> = objects
        .iter()
        .filter(|o| o.location.as_ref().ends_with(".parquet"))
        .collect();
    let mut folders: Vec<String> = parquet
        .iter()
        .filter_map(|o| {
            let path = o.location.as_ref();
            path.rsplit_once('/').map(|(dir, _)| dir.to_string())
        })
        .collect();
    folders.sort();
    folders.dedup();
    let schema = provider.schema();
    // The `name=value` folders between the table's folder and a file.
    let partition_columns: Vec<String> = parquet
        .first()
        .and_then(|o| o.location.as_ref().strip_prefix(dir.as_ref()))
        .map(|inside| {
            inside
                .split('/')
                .filter_map(|part| part.split_once('=').map(|(k, _)| k.to_string()))
                .collect()
        })
        .unwrap_or_default();
    Ok(TableInfo {
        name: name.to_string(),
        columns: schema
            .fields()
            .iter()
            .map(|f| {
                serde_json::json!({
                    "name": f.name(),
                    "type": f.data_type().to_string(),
                    "nullable": f.is_nullable(),
                })
            })
            .collect(),
        partitions: if partition_columns.is_empty() {
            0
        } else {
            folders.len()
        },
        partition_columns,
        files: parquet.len(),
        bytes: parquet.iter().map(|o| o.size).sum(),
    })
}
