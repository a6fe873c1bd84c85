//! The collector's HTTP API: `POST /track`, `/alias`, `/profile` and `/batch`, `GET
//! /health` (the process answers), `GET /ready` (it would take events now) and
//! `/openapi.json` (the contract the tests hold it to: docs/collect-openapi.json).
//!
//! Statuses: 200 the events are durable (`accepted`, and `duplicates` already taken), 400
//! a body that does not fit the document (the field's path, what is wrong, what is
//! valid), 401 no valid write key, 413 past 32 KiB an event or 512 KiB a request, 415 a
//! body that is not `application/json` (or `text/plain`, which browsers' `sendBeacon`
//! sends), 429 past the key's rate (with `Retry-After`), 503 when the spool is full or
//! cannot write (with `Retry-After`): the events were not taken, send them again.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::body::{self, Extras, Kind, MAX_REQUEST_BYTES, Received};
use super::keys::WriteKeys;
use super::stats::{Reason, Stats};
use super::store::{Refused, Store};
use crate::error::{Error, Result};
use crate::serve::http::Cors;
use crate::serve::refusal::Refusal;

const OPENAPI: &str = include_str!("../../../docs/collect-openapi.json");
const WRITE_KEY_HEADER: &str = "x-write-key";

/// What the collector keeps of a client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientIp {
    /// The whole address.
    Keep,
    /// The network only: the last byte of an IPv4 address, the last 80 bits of an IPv6
    /// one set to zero.
    Truncate,
    /// Nothing.
    Drop,
}

/// What the handlers share.
pub struct Collector {
    pub keys: WriteKeys,
    pub store: Box<dyn Store>,
    pub extras: Extras,
    pub client_ip: ClientIp,
    /// Take the client's address from `X-Forwarded-For` (behind a load balancer).
    pub forwarded_for: bool,
    /// Events per second of a key that names no rate (`None`: unbounded).
    pub rate: Option<f64>,
    pub stats: Arc<Stats>,
}

/// Serves on `listener` until `stop` resolves; requests in flight finish.
pub async fn serve(
    collector: Arc<Collector>,
    cors: Cors,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let mut router = Router::new()
        .route(
            "/health",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/ready", get(ready))
        .route("/openapi.json", get(openapi))
        .route("/track", post(accept))
        .route("/alias", post(accept))
        .route("/profile", post(accept))
        .route("/batch", post(accept))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(collector);
    let layer = cors.layer(
        &[Method::POST, Method::GET],
        &[
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static(WRITE_KEY_HEADER),
        ],
        &[],
    )?;
    if let Some(layer) = layer {
        router = router.layer(layer);
    }
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(stop)
    .await
    .map_err(|e| Error::external(format!("serving HTTP: {e}")))
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn ready(State(collector): State<Arc<Collector>>) -> Response {
    if collector.store.ready() {
        axum::Json(serde_json::json!({"status": "ready"})).into_response()
    } else {
        Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the collector is full or cannot write: events are not taken now",
        )
        .into_response()
    }
}

/// One request, start to answer: its events durable (200), or why not. The path names
/// the kind (`/batch`: each item's `type`).
async fn accept(
    State(collector): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: Uri,
    headers: HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let kind = match uri.path() {
        "/track" => Some(Kind::Track),
        "/alias" => Some(Kind::Alias),
        "/profile" => Some(Kind::Profile),
        _ => None,
    };
    match take(&collector, kind, peer, &headers, body).await {
        Ok(appended) => {
            collector
                .stats
                .accepted(appended.accepted, appended.duplicates, started);
            axum::Json(serde_json::json!({
                "accepted": appended.accepted,
                "duplicates": appended.duplicates,
            }))
            .into_response()
        }
        Err((reason, refusal)) => {
            collector.stats.rejected(reason, started);
            refusal.into_response()
        }
    }
}

/// A header's bytes as text, whatever they are: UTF-8 as sent, else each byte as the
/// ISO-8859-1 character HTTP/1.1 historically gave it (obs-text), so nothing is lost.
fn header_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
    }
}

async fn take(
    collector: &Collector,
    kind: Option<Kind>,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: std::result::Result<Bytes, BytesRejection>,
) -> std::result::Result<super::store::Appended, (Reason, Refusal)> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let key = collector
        .keys
        .authenticate(value(header::AUTHORIZATION.as_str()), value(WRITE_KEY_HEADER))
        .ok_or_else(|| {
            let refusal = Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "no valid write key: send it as the user of `Authorization: Basic` (base64 of `KEY:`), as `Authorization: Bearer KEY`, or as `X-Write-Key: KEY`",
            );
            (Reason::Unauthorized, refusal)
        })?;
    let media = value(header::CONTENT_TYPE.as_str())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase());
    if !matches!(media.as_deref(), Some("application/json" | "text/plain")) {
        return Err((
            Reason::MediaType,
            Refusal::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the events as application/json (text/plain is taken too, for sendBeacon)",
            ),
        ));
    }
    let body = body.map_err(|rejection| {
        let too_large = rejection.status() == StatusCode::PAYLOAD_TOO_LARGE;
        if too_large {
            (
                Reason::TooLarge,
                Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "the request is larger than {MAX_REQUEST_BYTES} bytes (512 KiB); send fewer events per batch"
                    ),
                ),
            )
        } else {
            (
                Reason::BadRequest,
                Refusal::bad(format!("the body could not be read: {rejection}")),
            )
        }
    })?;
    let received = Received {
        at: chrono::Utc::now(),
        source: key.name.clone(),
        ip: client_ip(collector, peer, headers),
        user_agent: headers
            .get(header::USER_AGENT)
            .map(|v| header_text(v.as_bytes())),
    };
    let events = body::parse(&body, kind, &received, &collector.extras).map_err(|invalid| {
        let (reason, status, code) = if invalid.too_large {
            (Reason::TooLarge, StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        } else {
            (Reason::BadRequest, StatusCode::BAD_REQUEST, "bad_request")
        };
        (reason, Refusal::new(status, code, invalid.to_string()))
    })?;
    key.take(events.len(), collector.rate).map_err(|wait| {
        let refusal = Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "the write key `{}` is past its rate of events per second; send again in {wait} s",
                key.name
            ),
        )
        .retry_after(wait);
        (Reason::RateLimited, refusal)
    })?;
    collector
        .store
        .append(events, received.at.timestamp())
        .await
        .map_err(|refused| {
            let message = match refused {
                Refused::Full => {
                    "the collector holds as much as it may until the lake has loaded it; send again shortly"
                }
                Refused::Failed => {
                    "the collector could not make the events durable (logged); send again shortly"
                }
            };
            (
                Reason::Unavailable,
                Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
                    .retry_after(1),
            )
        })
}

/// The client's address as the policy keeps it: the peer's, or (behind a load balancer)
/// the last address `X-Forwarded-For` lists — the one the balancer saw.
fn client_ip(collector: &Collector, peer: SocketAddr, headers: &HeaderMap) -> Option<String> {
    let forwarded = collector
        .forwarded_for
        .then(|| {
            headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok())
        })
        .flatten();
    let ip = forwarded.unwrap_or(peer.ip());
    match collector.client_ip {
        ClientIp::Keep => Some(ip.to_string()),
        ClientIp::Drop => None,
        ClientIp::Truncate => Some(truncate(ip).to_string()),
    }
}

fn truncate(ip: std::net::IpAddr) -> std::net::IpAddr {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::V4(Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            for s in segments.iter_mut().skip(3) {
                *s = 0;
            }
            IpAddr::V6(Ipv6Addr::from(segments))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_address_keeps_the_network_only() {
        let ip = |s: &str| {
            s.parse::<std::net::IpAddr>()
                .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0]))
        };
        assert_eq!(truncate(ip("203.0.113.77")), ip("203.0.113.0"));
        assert_eq!(
            truncate(ip("2001:db8:85a3:8d3:1319:8a2e:370:7348")),
            ip("2001:db8:85a3::")
        );
    }

    #[test]
    fn a_header_keeps_every_byte_as_text() {
        assert_eq!(header_text(b"curl/8.5"), "curl/8.5");
        assert_eq!(
            header_text("Mozilla/5.0 (Ünïcødé; 日本)".as_bytes()),
            "Mozilla/5.0 (Ünïcødé; 日本)"
        );
        // Not UTF-8: ISO-8859-1, byte for byte.
        assert_eq!(header_text(b"agent \xe9\xff"), "agent \u{e9}\u{ff}");
    }
}
