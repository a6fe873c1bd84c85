//! The API client: one per run. It authenticates (refreshing an OAuth2 token when it
//! expires or is refused), keeps to the rate limit, retries what may succeed later
//! (429, 5xx, a server fault, a timeout, a dropped connection) with backoff and jitter,
//! honouring `Retry-After`, and says what is wrong with the rest — the URL without its
//! secrets, the status and a short excerpt of the body.
//!
//! Every attempt is a new request: its token is the current one (fetched anew after a
//! 401), and a body that must not be replayed (a WS-Security header's nonce and
//! timestamp) is made for each attempt ([`Body::PerAttempt`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;
use url::Url;

use crate::error::{Error, Result};
use crate::job::http::{Auth, HttpConnection, Retry};
use crate::source::{ApiReport, redact, resolve_secret, resolve_url};

use super::answer::{Outcome, bearer, read_body, retry_after, sensitive, transport};
pub use super::answer::{Reply, Verdict, excerpt, rest_verdict};

/// A request to send.
pub struct Call {
    pub post: bool,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<Body>,
}

pub enum Body {
    Json(Value),
    Text {
        content_type: String,
        text: String,
    },
    /// Text made anew for each attempt, retries included: what a server refuses to see
    /// twice (a WS-Security nonce and `Created`) is never replayed.
    PerAttempt {
        content_type: String,
        make: Box<dyn Fn() -> Result<String> + Send + Sync>,
    },
}

/// The connection's auth with its placeholders filled.
enum Credentials {
    None,
    Header(HeaderName, HeaderValue),
    Query(String, String),
    OAuth2 {
        token_url: Url,
        form: Vec<(&'static str, String)>,
    },
    /// WS-Security: the SOAP side adds it to the envelope.
    WsSecurity,
}

struct Token {
    value: HeaderValue,
    /// When it is fetched again: before it expires by a margin that scales with its
    /// lifetime (see [`refresh_margin`]); never for a token without `expires_in`.
    refresh_at: Option<Instant>,
}

/// The longest and the shortest margin before a token's expiry at which it is fetched
/// again.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(30);
const MIN_REFRESH_MARGIN: Duration = Duration::from_secs(1);

/// How long before its expiry a token of this lifetime is fetched again: a tenth of its
/// lifetime, between 1 s and 30 s, and never more than half of it — so that an hour's
/// token is renewed 30 s early, and a 30-second token serves 27 s of requests instead of
/// none (a fixed 30 s margin would fetch one before every request).
fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10)
        .clamp(MIN_REFRESH_MARGIN, MAX_REFRESH_MARGIN)
        .min(lifetime / 2)
}

pub struct Client {
    http: reqwest::Client,
    pub base: Url,
    credentials: Credentials,
    /// The connection's auth as compiled (for WS-Security's fields).
    pub auth: Option<Auth>,
    token: Mutex<Option<Token>>,
    retry: Retry,
    interval: Option<Duration>,
    next_start: Mutex<Instant>,
    slots: Semaphore,
    pub concurrency: usize,
    secrets: Vec<String>,
    connection: String,
    requests: AtomicU64,
    retries: AtomicU64,
    bytes: AtomicU64,
}

impl Client {
    /// Builds the client: fills placeholders (from the connection's secret, then the
    /// environment), reads the CA bundle, sets timeouts and default headers.
    pub async fn open(
        connection: &str,
        spec: &HttpConnection,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Arc<Self>> {
        let placeholders =
            crate::source::secret::Placeholders::read(spec.secret.as_deref(), connection, env)
                .await?;
        let lookup = |name: &str| placeholders.get(name);
        let mut secrets: Vec<String> = Vec::new();
        let mut derived: Vec<String> = Vec::new();
        // Only secrets are scrubbed from messages: a URL's user-info and query, and the
        // values of secret fields (`secret` true: a header, a token, a key, a password, a
        // client secret), so that an error still names the host that failed.
        let mut fill = |template: &str, secret: bool| -> Result<String> {
            let (value, found) = if secret {
                resolve_secret(template, connection, &lookup)?
            } else {
                resolve_url(template, connection, &lookup)?
            };
            secrets.extend(found);
            Ok(value)
        };
        let base_text = fill(&spec.base_url, false)?;
        let mut base = Url::parse(&base_text).map_err(|e| {
            Error::user(format!(
                "connection `{connection}`: base_url {:?} is not a URL: {e}",
                spec.base_url
            ))
        })?;
        if !base.path().ends_with('/') {
            // So that a relative path joins below the base, not beside its last segment.
            base.set_path(&format!("{}/", base.path()));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            // A header may carry a key: its placeholders' values are secrets.
            let value = fill(value, true)?;
            headers.insert(
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| Error::user(format!("connection `{connection}`: header {name:?} is not a header name")))?,
                HeaderValue::from_str(&value).map_err(|_| {
                    Error::user(format!(
                        "connection `{connection}`: header `{name}` holds a character a header cannot"
                    ))
                })?,
            );
        }
        let credentials = match &spec.auth {
            None => Credentials::None,
            Some(Auth::Bearer { token }) => {
                Credentials::Header(reqwest::header::AUTHORIZATION, bearer(&fill(token, true)?)?)
            }
            Some(Auth::ApiKey {
                name,
                value,
                in_query,
            }) => {
                let value = fill(value, true)?;
                if *in_query {
                    Credentials::Query(name.clone(), value)
                } else {
                    Credentials::Header(
                        HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                            Error::user(format!(
                                "connection `{connection}`: auth.name {name:?} is not a header name"
                            ))
                        })?,
                        sensitive(&value)?,
                    )
                }
            }
            Some(Auth::Basic { username, password }) => {
                use base64::Engine;
                let pair = format!("{}:{}", fill(username, false)?, fill(password, true)?);
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                derived.push(encoded.clone());
                Credentials::Header(
                    reqwest::header::AUTHORIZATION,
                    sensitive(&format!("Basic {encoded}"))?,
                )
            }
            Some(Auth::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
            }) => {
                let token_url = base.join(&fill(token_url, false)?).map_err(|e| {
                    Error::user(format!(
                        "connection `{connection}`: auth.token_url is not a URL: {e}"
                    ))
                })?;
                let mut form = vec![
                    ("grant_type", "client_credentials".to_string()),
                    ("client_id", fill(client_id, false)?),
                    ("client_secret", fill(client_secret, true)?),
                ];
                if let Some(scope) = scope {
                    form.push(("scope", scope.clone()));
                }
                if let Some(audience) = audience {
                    form.push(("audience", audience.clone()));
                }
                Credentials::OAuth2 { token_url, form }
            }
            Some(Auth::WsSecurity {
                username, password, ..
            }) => {
                fill(username, false)?;
                fill(password, true)?;
                Credentials::WsSecurity
            }
        };
        let auth = match &spec.auth {
            Some(Auth::WsSecurity {
                username,
                password,
                digest,
            }) => Some(Auth::WsSecurity {
                username: fill(username, false)?,
                password: fill(password, true)?,
                digest: *digest,
            }),
            other => other.clone(),
        };
        let mut builder = reqwest::Client::builder()
            .timeout(spec.timeout)
            .connect_timeout(spec.connect_timeout)
            .default_headers(headers)
            .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(spec.concurrency);
        if let Some(path) = &spec.ca_bundle {
            let pem = std::fs::read(path).map_err(|e| {
                Error::user(format!(
                    "connection `{connection}`: cannot read ca_bundle {}: {e}",
                    path.display()
                ))
            })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::user(format!(
                    "connection `{connection}`: ca_bundle {} is not a PEM bundle: {e}",
                    path.display()
                ))
            })?;
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder
            .build()
            .map_err(|e| Error::internal(format!("building the HTTP client: {e}")))?;
        secrets.extend(derived);
        secrets.retain(|s| s.len() >= 3);
        Ok(Arc::new(Self {
            http,
            base,
            credentials,
            auth,
            token: Mutex::new(None),
            retry: spec.retry.clone(),
            interval: spec.per_second.map(|r| Duration::from_secs_f64(1.0 / r)),
            next_start: Mutex::new(Instant::now()),
            slots: Semaphore::new(spec.concurrency),
            concurrency: spec.concurrency,
            secrets,
            connection: connection.to_string(),
            requests: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }))
    }

    /// A URL relative to the base (or absolute), with the API key when it goes in the
    /// query.
    pub fn url(&self, path: &str) -> Result<Url> {
        let relative = path.trim_start_matches('/');
        self.base.join(relative).map_err(|e| {
            Error::user(format!(
                "connection `{}`: {path:?} does not make a URL with base_url: {e}",
                self.connection
            ))
        })
    }

    /// The counts so far.
    pub fn report(&self) -> ApiReport {
        ApiReport {
            requests: self.requests.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            ..ApiReport::default()
        }
    }

    /// Scrubs the connection's secrets from an error.
    pub fn redact(&self, err: Error) -> Error {
        redact(err, &self.secrets)
    }

    /// Sends `call` until it succeeds, `verdict` refuses it, or the tries run out.
    pub async fn send(
        &self,
        call: &Call,
        verdict: impl Fn(u16, &Reply) -> Verdict,
    ) -> Result<Reply> {
        let shown = self.shown(&call.url);
        let method = if call.post { "POST" } else { "GET" };
        let what = format!("{method} {shown}");
        let mut reauthenticated = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            // The token of this attempt: after a 401 or an expiry, a fresh one.
            let token = match self.authorization().await {
                Ok(token) => token,
                Err(e) => return Err(self.redact(e.context(&what))),
            };
            let outcome = self.once(call, token.clone(), &verdict).await;
            let (reason, after) = match outcome {
                Outcome::Done(reply) => return Ok(reply),
                Outcome::Fail(e) => return Err(self.redact(e.context(&what))),
                Outcome::Reauthenticate(_) if !reauthenticated => {
                    reauthenticated = true;
                    self.forget(token.as_ref()).await;
                    tracing::info!(request = %what, "the API refused the token; fetching a new one");
                    attempt -= 1;
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Outcome::Reauthenticate(reason) => {
                    return Err(self.redact(Error::user(format!(
                        "{what}: {reason}, also with a newly fetched OAuth2 token: check the client's grants"
                    ))));
                }
                Outcome::Retry { reason, after } => (reason, after),
            };
            if attempt >= self.retry.attempts {
                return Err(self.redact(Error::external(format!(
                    "{what}: {reason}; gave up after {attempt} tries (connection `{}` retry.attempts)",
                    self.connection
                ))));
            }
            let wait = match after {
                Some(after) if after > self.retry.max_backoff => {
                    return Err(self.redact(Error::external(format!(
                        "{what}: {reason}; the API asks to wait {}s (Retry-After), more than retry.max_backoff ({}s): try the run later",
                        after.as_secs(),
                        self.retry.max_backoff.as_secs()
                    ))));
                }
                Some(after) => after,
                None => self.backoff(attempt),
            };
            tracing::warn!(request = %what, reason = %reason, attempt, wait_ms = wait.as_millis() as u64, "retrying");
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(wait).await;
        }
    }

    /// Exponential backoff with full jitter: a random wait up to backoff × 2^(n−1),
    /// capped at max_backoff.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self
            .retry
            .backoff
            .saturating_mul(1 << (attempt - 1).min(16))
            .min(self.retry.max_backoff);
        let random = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as f64 / 1_000_000.0;
        ceiling.mul_f64(0.5 + random / 2.0)
    }

    /// The URL as messages show it: without the API key of a query.
    fn shown(&self, url: &Url) -> String {
        let mut shown = url.clone();
        shown.set_password(None).ok();
        shown.to_string()
    }

    async fn once(
        &self,
        call: &Call,
        token: Option<HeaderValue>,
        verdict: &impl Fn(u16, &Reply) -> Verdict,
    ) -> Outcome {
        let _slot = self.slots.acquire().await;
        self.pace().await;
        let mut url = call.url.clone();
        if let Credentials::Query(name, value) = &self.credentials {
            url.query_pairs_mut().append_pair(name, value);
        }
        let mut request = if call.post {
            self.http.post(url.clone())
        } else {
            self.http.get(url.clone())
        };
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Credentials::Header(name, value) = &self.credentials {
            request = request.header(name, value);
        }
        if let Some(token) = token {
            request = request.header(reqwest::header::AUTHORIZATION, token);
        }
        request = match &call.body {
            Some(Body::Json(v)) => request.json(v),
            Some(Body::Text { content_type, text }) => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(text.clone()),
            Some(Body::PerAttempt { content_type, make }) => match make() {
                Ok(text) => request
                    .header(reqwest::header::CONTENT_TYPE, content_type)
                    .body(text),
                Err(e) => return Outcome::Fail(e),
            },
            None => request,
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return transport(e),
        };
        let status = response.status();
        let after = retry_after(response.headers());
        let headers = response.headers().clone();
        let body = match read_body(response, &self.bytes).await {
            Ok(b) => b,
            Err(outcome) => return outcome,
        };
        let reply = Reply {
            url: call.url.clone(),
            headers,
            body,
        };
        let code = status.as_u16();
        match verdict(code, &reply) {
            Verdict::Ok => Outcome::Done(reply),
            Verdict::Fail(e) => Outcome::Fail(e),
            Verdict::Retry(reason) => Outcome::Retry { reason, after },
        }
        .reauthenticate_on(code, matches!(self.credentials, Credentials::OAuth2 { .. }))
    }

    /// Waits for the request's turn under `rate_limit.per_second`.
    async fn pace(&self) {
        let Some(interval) = self.interval else {
            return;
        };
        let at = {
            let mut next = self.next_start.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + interval;
            at
        };
        tokio::time::sleep_until(at).await;
    }

    /// The OAuth2 token's header, fetched when there is none or it is about to expire.
    async fn authorization(&self) -> Result<Option<HeaderValue>> {
        let Credentials::OAuth2 { token_url, form } = &self.credentials else {
            return Ok(None);
        };
        let mut token = self.token.lock().await;
        let fresh = token
            .as_ref()
            .is_some_and(|t| t.refresh_at.is_none_or(|at| at > Instant::now()));
        if !fresh {
            *token = Some(self.fetch_token(token_url, form).await?);
        }
        Ok(token.as_ref().map(|t| t.value.clone()))
    }

    /// Drops the refused token, so that the next attempt fetches a new one — unless
    /// another request has already replaced it.
    async fn forget(&self, refused: Option<&HeaderValue>) {
        let mut token = self.token.lock().await;
        if token.as_ref().map(|t| &t.value) == refused {
            *token = None;
        }
    }

    async fn fetch_token(&self, url: &Url, form: &[(&'static str, String)]) -> Result<Token> {
        let what = format!("POST {} (the OAuth2 token endpoint)", self.shown(url));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let _slot = self.slots.acquire().await;
            self.pace().await;
            self.requests.fetch_add(1, Ordering::Relaxed);
            let outcome = match self.http.post(url.clone()).form(form).send().await {
                Err(e) => transport(e),
                Ok(response) => {
                    let status = response.status();
                    let after = retry_after(response.headers());
                    match read_body(response, &self.bytes).await {
                        Err(outcome) => outcome,
                        Ok(body) => match status.as_u16() {
                            200..=299 => return self.parse_token(&what, &body),
                            429 | 500..=599 => Outcome::Retry {
                                reason: format!("status {status}"),
                                after,
                            },
                            _ => Outcome::Fail(Error::user(format!(
                                "the token endpoint refused the client credentials (status {status}): {}",
                                excerpt(&body)
                            ))),
                        },
                    }
                }
            };
            match outcome {
                Outcome::Retry { reason, after } if attempt < self.retry.attempts => {
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    let wait = after
                        .unwrap_or_else(|| self.backoff(attempt))
                        .min(self.retry.max_backoff);
                    tracing::warn!(request = %what, reason = %reason, "retrying");
                    tokio::time::sleep(wait).await;
                }
                Outcome::Retry { reason, .. } => {
                    return Err(self.redact(Error::external(format!(
                        "{what}: {reason}; gave up after {attempt} tries"
                    ))));
                }
                Outcome::Fail(e) => return Err(self.redact(e.context(&what))),
                Outcome::Done(_) | Outcome::Reauthenticate(_) => {
                    return Err(Error::internal("unexpected token outcome"));
                }
            }
        }
    }

    fn parse_token(&self, what: &str, body: &[u8]) -> Result<Token> {
        let value: Value = serde_json::from_slice(body).map_err(|_| {
            Error::user(format!("{what}: the answer is not JSON: {}", excerpt(body)))
        })?;
        let token = value
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::user(format!("{what}: the answer has no `access_token`")))?;
        // The lifetime as the endpoint states it when the token is fetched: the margin
        // before its expiry scales with it.
        let lifetime = value
            .get("expires_in")
            .and_then(|v| {
                v.as_u64()
                    .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            })
            .map(Duration::from_secs);
        let refresh_at = lifetime.and_then(|l| Instant::now().checked_add(l - refresh_margin(l)));
        Ok(Token {
            value: bearer(token)?,
            refresh_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_margin_scales_with_the_tokens_lifetime() {
        let s = Duration::from_secs;
        assert_eq!(
            refresh_margin(s(3600)),
            s(30),
            "an hour's token: 30 s early"
        );
        assert_eq!(refresh_margin(s(300)), s(30));
        assert_eq!(refresh_margin(s(30)), s(3), "a 30-second token serves 27 s");
        assert_eq!(refresh_margin(s(5)), s(1), "at least a second");
        assert_eq!(
            refresh_margin(s(1)),
            Duration::from_millis(500),
            "at most half"
        );
        assert_eq!(refresh_margin(s(0)), s(0));
    }
}
