//! The HTTP front end: `POST /v1/query` and `GET /v1/query?sql=`, `GET /v1/tables` and
//! `/v1/tables/{name}`, `/openapi.json` and `/health`. Results as JSON, NDJSON, CSV, Arrow
//! or Parquet (`format`), paged by an opaque continuation token; NDJSON without a `limit`
//! streams the whole answer (up to the row limit; a refusal met on the way is its last
//! line). CORS for the configured origins only.
//!
//! Statuses: 400 a bad request or refused SQL (`too_deep` past the nesting limit), 401 no
//! valid key, 404 no such table, 406 no format the client accepts, 408 past the time
//! limit, 413 past the statement, body, memory, row or answer-bytes limit, 415 a body that
//! is not JSON, 429 (with `Retry-After`) when the key runs as many queries as one key may,
//! 503 (with `Retry-After`) when every query slot is busy.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query as UrlQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::Service;
use super::engine::{Batches, Query};
use super::format::{self, Format};
use super::keys::Key;
use super::refusal::Refusal;
use crate::error::{Error, Result};

/// The OpenAPI document of the API (the contract the tests hold the server to).
const OPENAPI: &str = include_str!("../../../docs/serve-openapi.json");
/// The header that carries the continuation token in every format.
const NEXT_HEADER: &str = "sluice-next";

/// The browser origins that may call the API (none: no CORS headers, so browsers refuse
/// cross-origin calls; `*`: any origin).
#[derive(Debug, Clone, Default)]
pub struct Cors {
    pub origins: Vec<String>,
}

impl Cors {
    /// The layer for a server whose requests use `methods` and send `headers`, and whose
    /// answers carry `expose` for scripts to read.
    pub fn layer(
        &self,
        methods: &[Method],
        headers: &[header::HeaderName],
        expose: &[header::HeaderName],
    ) -> Result<Option<tower_http::cors::CorsLayer>> {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        if self.origins.is_empty() {
            return Ok(None);
        }
        let origin = if self.origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            let list = self
                .origins
                .iter()
                .map(|o| {
                    HeaderValue::from_str(o.trim_end_matches('/')).map_err(|_| {
                        Error::user(format!(
                            "--cors-origin `{o}` is not an origin; give one like https://app.example.com"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            AllowOrigin::list(list)
        };
        Ok(Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods(methods.to_vec())
                .allow_headers(headers.to_vec())
                .expose_headers(expose.to_vec())
                .max_age(std::time::Duration::from_secs(600)),
        ))
    }
}

/// Serves on `listener` until `stop` resolves (requests in flight finish).
pub async fn serve(
    service: Arc<Service>,
    cors: Cors,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let body_limit = body_limit(service.limits());
    let mut router = Router::new()
        .route("/health", get(|| async { "ok" }))
        .route("/openapi.json", get(openapi))
        .route("/v1/tables", get(tables))
        .route("/v1/tables/{name}", get(table))
        .route("/v1/query", get(query_get).post(query_post))
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .with_state(service);
    let layer = cors.layer(
        &[Method::GET, Method::POST],
        &[
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::HeaderName::from_static("x-api-key"),
        ],
        &[header::HeaderName::from_static(NEXT_HEADER)],
    )?;
    if let Some(layer) = layer {
        router = router.layer(layer);
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| Error::external(format!("serving HTTP: {e}")))
}

type Answer = std::result::Result<Response, Refusal>;

fn authenticate<'a>(
    service: &'a Service,
    headers: &HeaderMap,
) -> std::result::Result<&'a Key, Refusal> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    service.key(value(header::AUTHORIZATION.as_str()), value("x-api-key"))
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
    /// Time travel for the Delta tables the query names: a version (`3` or `"3"`) or a
    /// time (`"2024-05-01T12:00:00Z"`, `"2024-05-01"`).
    as_of: Option<serde_json::Value>,
}

/// The request's `as_of`, checked: a version (a whole number, or its digits) or a time.
fn as_of_text(value: Option<serde_json::Value>) -> std::result::Result<Option<String>, Refusal> {
    let text = match value {
        None => return Ok(None),
        Some(serde_json::Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(serde_json::Value::String(s)) => s,
        Some(other) => return Err(Refusal::bad(as_of_refused(&other.to_string()))),
    };
    match crate::sink::delta::AsOf::parse(&text) {
        Ok(_) => Ok(Some(text)),
        Err(_) => Err(Refusal::bad(as_of_refused(&format!("{text:?}")))),
    }
}

fn as_of_refused(given: &str) -> String {
    format!(
        "as_of is a table version (0, 1, …) or a time (2024-05-01T12:00:00Z or 2024-05-01), not {given}"
    )
}

/// What a continuation token holds: the query, the engine's cursor and the page size.
#[derive(Debug, Serialize, Deserialize)]
struct Page {
    #[serde(flatten)]
    query: Query,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
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
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    UrlQuery(request): UrlQuery<std::collections::HashMap<String, String>>,
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
        .find(|k| !["sql", "params", "format", "limit", "next", "as_of"].contains(&k.as_str()))
    {
        return Err(Refusal::bad(format!(
            "unknown parameter `{unknown}`: the query takes sql, params, format, limit, next, as_of"
        )));
    }
    let request = QueryRequest {
        sql: request.get("sql").cloned(),
        params,
        format: request.get("format").cloned(),
        limit,
        next: request.get("next").cloned(),
        as_of: request.get("as_of").cloned().map(serde_json::Value::String),
    };
    answer(&service, &headers, request).await
}

/// The most bytes a query's body may have: the statement's limit and room for its
/// parameters (the console's forms take the same).
pub(crate) fn body_limit(limits: &super::Limits) -> usize {
    limits.statement_bytes.saturating_add(1 << 20)
}

async fn query_post(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Answer {
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
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the body is larger than {} bytes, the most a query's body may have (the statement's limit, --max-statement-bytes, and 1 MiB of parameters)",
                    body_limit(service.limits())
                ),
            )
        } else {
            Refusal::bad(format!("the body could not be read: {rejection}"))
        }
    })?;
    let request: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        Refusal::bad(format!(
            "the body is not a query: {e}; send {{\"sql\": \"SELECT …\", \"params\": [...], \"format\": \"json\", \"limit\": 1000}}"
        ))
    })?;
    answer(&service, &headers, request).await
}

async fn answer(service: &Service, headers: &HeaderMap, request: QueryRequest) -> Answer {
    let key = authenticate(service, headers)?;
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::choose(request.format.as_deref(), accept)
        .map_err(|m| Refusal::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", m))?;
    let limits = service.limits();
    let page = match (request.next, request.sql) {
        (Some(token), _) => Page::from_token(&token)?,
        (None, Some(sql)) => {
            let query = Query {
                sql,
                params: request.params,
                as_of: as_of_text(request.as_of)?,
            };
            if format == Format::Ndjson && request.limit.is_none() {
                return Ok(streamed(service.stream(key, &query, None).await?.1));
            }
            let limit = request.limit.unwrap_or(limits.page);
            if limit == 0 || limit > limits.max_page {
                return Err(Refusal::bad(format!(
                    "limit must be between 1 and {} (the server's page size limit)",
                    limits.max_page
                )));
            }
            Page {
                query,
                cursor: None,
                limit,
            }
        }
        (None, None) => return Err(Refusal::bad("no sql: send {\"sql\": \"SELECT …\"}")),
    };
    let rows = service
        .page(key, &page.query, page.cursor.as_deref(), page.limit)
        .await?;
    let next = rows.next.map(|cursor| {
        Page {
            cursor: Some(cursor),
            query: page.query,
            limit: page.limit,
        }
        .token()
    });
    let body = format::encode(format, &rows.schema, &rows.batches, next.as_deref())?;
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

/// The whole answer as NDJSON, a batch's lines at a time; a refusal on the way (the time
/// or row limit, a failure) is the last line, `{"error": …}`.
fn streamed(rows: Batches) -> Response {
    let lines = rows.map(|batch| {
        let text = batch.and_then(|batch| {
            format::encode(Format::Ndjson, &batch.schema(), &[batch], None).map_err(Refusal::from)
        });
        Ok::<_, std::convert::Infallible>(Bytes::from(match text {
            Ok(text) => text,
            Err(refusal) => {
                let mut line = refusal.json().to_string().into_bytes();
                line.push(b'\n');
                line
            }
        }))
    });
    let mut response = Response::new(Body::from_stream(lines));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(Format::Ndjson.media_type()),
    );
    response
}

async fn tables(State(service): State<Arc<Service>>, headers: HeaderMap) -> Answer {
    let key = authenticate(&service, &headers)?;
    let tables = service.tables(key, None).await?;
    Ok(axum::Json(serde_json::json!({"tables": tables})).into_response())
}

async fn table(
    State(service): State<Arc<Service>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Answer {
    let key = authenticate(&service, &headers)?;
    let table = service
        .tables(key, Some(&name))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no table `{name}` (GET /v1/tables lists the ones there are)"),
            )
        })?;
    Ok(axum::Json(table).into_response())
}
