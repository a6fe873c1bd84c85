//! The HTTP side of the job row: a partner API's connection (kind `http`) and what a job
//! asks of it, over REST (`source.request`) or SOAP (`source.soap`).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How requests to an API authenticate. Every value may hold `${VAR}` placeholders,
/// filled from the connection's `secret` or the environment, and scrubbed from messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    /// `bearer` (`token`), `api_key` (`name`, `value`, `in`), `basic` (`username`,
    /// `password`), `oauth2` (client credentials: `token_url`, `client_id`,
    /// `client_secret`, optional `scope` and `audience`) or `ws_security` (a SOAP
    /// UsernameToken: `username`, `password`, `password_type`).
    pub kind: AuthKind,
    /// `bearer`: the token sent as `Authorization: Bearer <token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `api_key`: the header or query parameter that carries the key, e.g. `X-API-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `api_key`: the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// `api_key`: `header` (the default) or `query`.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub location: Option<KeyLocation>,
    /// `basic`, `ws_security`: the user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// `basic`, `ws_security`: the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// `ws_security`: `digest` (the default: Base64(SHA-1(nonce + created + password)),
    /// the password never sent) or `text`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_type: Option<PasswordType>,
    /// `oauth2`: the token endpoint (absolute, or relative to `base_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_url: Option<String>,
    /// `oauth2`: the client id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `oauth2`: the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// `oauth2`: the scopes asked for, space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `oauth2`: the audience some providers require.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
}

/// The kinds of API authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthKind {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// A key in a header or a query parameter.
    ApiKey,
    /// HTTP Basic.
    Basic,
    /// OAuth 2.0 client credentials: a token fetched from `token_url`, cached until it
    /// expires, fetched again on expiry or on a 401.
    Oauth2,
    /// WS-Security UsernameToken in the SOAP header.
    WsSecurity,
}

impl AuthKind {
    pub fn name(self) -> &'static str {
        match self {
            AuthKind::Bearer => "bearer",
            AuthKind::ApiKey => "api_key",
            AuthKind::Basic => "basic",
            AuthKind::Oauth2 => "oauth2",
            AuthKind::WsSecurity => "ws_security",
        }
    }
}

/// Where an API key goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyLocation {
    Header,
    Query,
}

/// How a WS-Security password is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PasswordType {
    /// PasswordDigest: Base64(SHA-1(nonce + created + password)).
    Digest,
    /// PasswordText: the password itself (only over HTTPS).
    Text,
}

/// How fast a job may call the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests started per second at most (e.g. `10`, `0.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_second: Option<f64>,
    /// Requests in flight at once at most (1 to 64, default 4): child requests of a
    /// parent run this many at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

/// How failed requests are retried: 429, 5xx, a SOAP server fault, a timeout or a
/// dropped connection, with exponential backoff and jitter, honouring `Retry-After`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Tries per request, the first included (1 to 20, default 6); then the run fails
    /// as retryable (exit 75).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    /// The first wait (default `1s`); it doubles with each retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<String>,
    /// The longest wait, also for a `Retry-After` (default `60s`); a server that asks
    /// for longer fails the run as retryable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff: Option<String>,
}

/// A REST request: the job's records, or a parent's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestSpec {
    /// `GET` (the default) or `POST`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<HttpMethod>,
    /// The path, relative to the connection's `base_url` (or an absolute URL), e.g.
    /// `/v2/tags/{tag_id}/transactions`. `{name}` placeholders: a parent's field, the
    /// window's `{since}`, `{until}` and `{before}`.
    pub path: String,
    /// Query parameters; values may hold `{name}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<BTreeMap<String, String>>,
    /// Headers of this request (beside the connection's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// A JSON body (for `POST`); its string values may hold `{name}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// A JSONPath (RFC 9535) to the records in the response, e.g. `$.data[*]` or
    /// `$.data` (an array). Default `$`: the body is the array of records (or one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<String>,
    /// How the response's pages are followed (default: one page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paginate: Option<PaginateSpec>,
}

/// HTTP methods a request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
}

/// How pages are followed. Every kind stops at a page without records, at `has_more`
/// false, at `total` reached, and after `max_pages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PaginateSpec {
    /// `offset` (`param`, `limit_param`, `limit`), `page` (`param`, `start`, optional
    /// `size_param` and `size`), `cursor` (`param`, and the next cursor `from` a
    /// JSONPath or a `header`), `next_url` (the next page's URL `from` a JSONPath) or
    /// `link` (the `Link: <…>; rel="next"` header).
    pub kind: PaginateKind,
    /// `offset`, `page`, `cursor`: the query parameter (or, for a POST, the body field)
    /// that carries the offset, page number or cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// `offset`: the parameter that carries the page size (e.g. `limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_param: Option<String>,
    /// `offset`: the page size asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// `page`: the parameter that carries the page size (e.g. `per_page`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_param: Option<String>,
    /// `page`: the page size asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
    /// `offset`: the first offset (default 0); `page`: the first page number (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<u64>,
    /// `cursor`, `next_url`: a JSONPath to the next cursor or URL in the body (null,
    /// empty or absent ends the pages).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `cursor`: the response header that carries the next cursor, instead of `from`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
    /// A JSONPath to a boolean in the body: `false` ends the pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_more: Option<String>,
    /// `offset`, `page`: a JSONPath to the total number of records; the pages end once
    /// that many were read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    /// The most pages one request follows (default 100000): a paginator that never
    /// stops fails the run instead of looping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<u64>,
}

/// The kinds of pagination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaginateKind {
    Offset,
    Page,
    Cursor,
    NextUrl,
    Link,
}

impl PaginateKind {
    pub fn name(self) -> &'static str {
        match self {
            PaginateKind::Offset => "offset",
            PaginateKind::Page => "page",
            PaginateKind::Cursor => "cursor",
            PaginateKind::NextUrl => "next_url",
            PaginateKind::Link => "link",
        }
    }
}

/// The parent of a child request: its records are listed first, and the child request
/// runs once per parent record, with the parent's `fields` as `{name}` placeholders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ParentSpec {
    /// The request that lists the parents (it is not windowed).
    pub request: RequestSpec,
    /// Values taken from each parent record: name → JSONPath, e.g. `{tag_id: $.id}`.
    /// They fill the child request's placeholders, and a record field of the same name
    /// takes its parent's value when the child record has none.
    pub fields: BTreeMap<String, String>,
}

/// An incremental API job's window `(lo, hi]` over `source.cursor`, and how it is
/// passed to the API. The run fixes `hi` when it starts (now − `lag`), so that a retry
/// asks for the same records; records outside the window are dropped as they arrive.
/// With `lookback`, each run asks again for the recent part of the window already read,
/// `(lo − lookback, hi]`, for records the partner publishes late.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// The query parameter that takes the lower bound, e.g. `updated_since` (also the
    /// `{since}` placeholder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The query parameter that takes the upper bound, inclusive (also `{until}`): the
    /// API returns records at or before it. Only for a timestamp or date cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// The query parameter that takes the upper bound, exclusive (also `{before}`), for
    /// APIs that return records strictly before it: the first instant after the window
    /// that the bound's format can write (`until` + 1s for `rfc3339` and `unix`, + 1ms
    /// for `unix_ms`, the next day for `date`, the next value of a pattern), so that a
    /// record exactly on the bound is read once — by this run — and not lost. Records
    /// past the window that it lets through are left for the next run. Only for a
    /// timestamp or date cursor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// How bounds are written: `rfc3339` (the default: `2024-05-01T12:00:00Z`),
    /// `unix` (seconds), `unix_ms`, `date` (`2024-05-01`) or a chrono format string
    /// such as `%Y%m%d%H%M%S`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// The first run's lower bound (exclusive), e.g. `2024-01-01T00:00:00Z` or `0`;
    /// without it the first run asks for everything up to its upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    /// Asks for a long window in steps of this length (e.g. `1d`), one after another,
    /// for APIs that limit a request's range; a timestamp or date cursor only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Each run reads again this far before the committed watermark (e.g. `6h`; 1s to
    /// 400d), so that records the partner publishes later than `lag` after their
    /// timestamp are still picked up. The records read again that an earlier run
    /// committed are dropped by the record key, so each lands once: it needs
    /// `source.dedup` (whose `window` must be longer than the lookback plus the time
    /// between runs) or mode `merge`. A timestamp or date cursor only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookback: Option<String>,
}

/// A SOAP operation: the envelope sent, and where the records and the next page token
/// are in the response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SoapSpec {
    /// `"1.1"` (the default: `text/xml`, a `SOAPAction` header) or `"1.2"`
    /// (`application/soap+xml; action=…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<SoapVersion>,
    /// The operation's SOAP action (from the WSDL's `soapAction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The service's path, relative to `base_url` (default: `base_url` itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The request envelope, with `{since}`, `{until}` (the window's upper bound,
    /// inclusive), `{before}` (the same bound, exclusive: see `source.window.before`) and
    /// `{page_token}` placeholders (XML-escaped when filled). A `ws_security` connection
    /// adds its header to it, signed anew for every attempt.
    pub envelope: String,
    /// The path of the record elements from the response's `Body`, by local names, e.g.
    /// `GetTransactionsResponse/GetTransactionsResult/Transaction`. Each element's
    /// children become the record's fields (nested ones as JSON text unless mapped).
    pub records: String,
    /// The path of the next page token from the `Body`; an absent or empty token ends
    /// the pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// The most pages a run follows (default 100000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<u64>,
}

/// SOAP versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SoapVersion {
    #[serde(rename = "1.1")]
    V11,
    #[serde(rename = "1.2")]
    V12,
}
