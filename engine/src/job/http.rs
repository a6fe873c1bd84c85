//! The API side of a job row, compiled: an `http` connection (base URL, auth, limits)
//! and a REST or SOAP feed (requests, records, pages, parent, window). Pure, like the
//! rest of compilation: placeholders stay templates until the job connects.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::feed::{self, Records};
use crate::contract::Column;
use crate::jsonpath::Path;
use crate::lake_type::LakeType;
use crate::spec::http::{
    AuthKind, AuthSpec, HttpMethod, KeyLocation, PaginateKind, PaginateSpec, PasswordType,
    RequestSpec, SoapSpec, SoapVersion, WindowSpec,
};
use crate::spec::units::parse_duration;
use crate::spec::{ConnectionSpec, JobSpec, Mode};

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_CONCURRENCY: usize = 4;
pub const DEFAULT_ATTEMPTS: u32 = 6;
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(60);
pub const DEFAULT_MAX_PAGES: u64 = 100_000;

/// An API connection. Strings may still hold `${VAR}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConnection {
    pub base_url: String,
    /// A Secrets Manager secret whose keys fill placeholders before the environment.
    pub secret: Option<String>,
    pub auth: Option<Auth>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub per_second: Option<f64>,
    pub concurrency: usize,
    pub retry: Retry,
    pub ca_bundle: Option<PathBuf>,
}

/// How requests authenticate.
#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    Bearer {
        token: String,
    },
    ApiKey {
        name: String,
        value: String,
        in_query: bool,
    },
    Basic {
        username: String,
        password: String,
    },
    OAuth2 {
        token_url: String,
        client_id: String,
        client_secret: String,
        scope: Option<String>,
        audience: Option<String>,
    },
    WsSecurity {
        username: String,
        password: String,
        digest: bool,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retry {
    pub attempts: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

/// An API feed, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFeed {
    pub records: Records,
    pub call: Call,
    pub parent: Option<Parent>,
    /// Incremental jobs: the cursor field and how its window is asked for.
    pub window: Option<ApiWindow>,
}

/// What a page is asked with.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Rest(Box<Request>),
    Soap(Soap),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub post: bool,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub records: Path,
    pub paginate: Paginate,
}

/// How the pages of a request are followed.
#[derive(Debug, Clone, PartialEq)]
pub struct Paginate {
    pub next: Next,
    pub has_more: Option<Path>,
    pub total: Option<Path>,
    pub max_pages: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// One page.
    Single,
    Offset {
        param: String,
        limit_param: Option<String>,
        limit: Option<u32>,
        start: u64,
    },
    Page {
        param: String,
        start: u64,
        size_param: Option<String>,
        size: Option<u32>,
    },
    Cursor {
        param: String,
        from: CursorFrom,
    },
    NextUrl {
        from: Path,
    },
    Link,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CursorFrom {
    Body(Path),
    Header(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Soap {
    pub v12: bool,
    pub action: Option<String>,
    pub path: Option<String>,
    pub envelope: String,
    pub records: Vec<String>,
    pub next_token: Option<Vec<String>>,
    pub max_pages: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Parent {
    pub request: Request,
    pub fields: Vec<(String, Path)>,
}

/// The window over the cursor field, as the API is asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiWindow {
    pub cursor: String,
    pub lake: LakeType,
    pub since: Option<String>,
    pub until: Option<String>,
    pub format: BoundFormat,
    pub start: Option<String>,
    pub step: Option<Duration>,
}

/// How a window bound is written in a request.
#[derive(Debug, Clone, PartialEq)]
pub enum BoundFormat {
    Rfc3339,
    Unix,
    UnixMs,
    Date,
    Pattern(String),
}

/// The placeholders a window fills.
pub const SINCE: &str = "since";
pub const UNTIL: &str = "until";
/// The placeholder a SOAP envelope's page token fills.
pub const PAGE_TOKEN: &str = "page_token";

/// Compiles an `http` connection.
pub fn compile_connection(
    spec: &ConnectionSpec,
    base_dir: Option<&FsPath>,
    problem: &mut impl FnMut(&str, String),
) -> HttpConnection {
    for (field, given) in [
        ("url", spec.url.is_some()),
        ("queue_url", spec.queue_url.is_some()),
    ] {
        if given {
            problem(
                field,
                "an http connection gives `base_url` (and `auth`, `headers`, …), not a database or queue URL".into(),
            );
        }
    }
    let base_url = spec.base_url.clone().unwrap_or_else(|| {
        problem(
            "base_url",
            "missing: give the API's base URL, e.g. `https://api.example.com/v2`".into(),
        );
        String::new()
    });
    if !base_url.is_empty() {
        if let Err(p) = super::compile::check_placeholders(&base_url) {
            problem("base_url", p);
        } else if !(base_url.starts_with("https://")
            || base_url.starts_with("http://")
            || base_url.starts_with("${"))
        {
            problem(
                "base_url",
                format!("{base_url:?} is not an HTTP URL: it starts with https:// or http://"),
            );
        }
    }
    let auth = spec
        .auth
        .as_ref()
        .and_then(|a| compile_auth(a, &mut |f, m| problem(&format!("auth.{f}"), m)));
    let mut headers = Vec::new();
    for (name, value) in spec.headers.iter().flatten() {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            problem(
                &format!("headers.{name}"),
                "is not an HTTP header name (letters, digits and `-`)".into(),
            );
        }
        if let Err(p) = super::compile::check_placeholders(value) {
            problem(&format!("headers.{name}"), p);
        }
        headers.push((name.clone(), value.clone()));
    }
    let mut duration = |field: &str, text: Option<&String>, default: Duration| {
        let Some(text) = text else { return default };
        match parse_duration(text) {
            Ok(d) if !d.is_zero() && d <= Duration::from_secs(3600) => d,
            Ok(_) => {
                problem(
                    field,
                    format!("{text} is out of range (more than 0s, at most 1h)"),
                );
                default
            }
            Err(m) => {
                problem(field, m);
                default
            }
        }
    };
    let timeout = duration("timeout", spec.timeout.as_ref(), DEFAULT_TIMEOUT);
    let connect_timeout = duration(
        "connect_timeout",
        spec.connect_timeout.as_ref(),
        DEFAULT_CONNECT_TIMEOUT,
    );
    let retry_spec = spec.retry.clone().unwrap_or(crate::spec::http::RetrySpec {
        attempts: None,
        backoff: None,
        max_backoff: None,
    });
    let backoff = duration(
        "retry.backoff",
        retry_spec.backoff.as_ref(),
        DEFAULT_BACKOFF,
    );
    let max_backoff = duration(
        "retry.max_backoff",
        retry_spec.max_backoff.as_ref(),
        DEFAULT_MAX_BACKOFF,
    );
    let attempts = retry_spec.attempts.unwrap_or(DEFAULT_ATTEMPTS);
    if !(1..=20).contains(&attempts) {
        problem(
            "retry.attempts",
            format!("{attempts} is out of range (1 to 20)"),
        );
    }
    let limits = spec.rate_limit.clone();
    let per_second = limits.as_ref().and_then(|l| l.per_second);
    if let Some(rate) = per_second
        && !(rate > 0.0 && rate <= 10_000.0)
    {
        problem(
            "rate_limit.per_second",
            format!("{rate} is out of range (more than 0, at most 10000)"),
        );
    }
    let concurrency = limits
        .and_then(|l| l.concurrency)
        .map_or(DEFAULT_CONCURRENCY, |n| n as usize);
    if !(1..=64).contains(&concurrency) {
        problem(
            "rate_limit.concurrency",
            format!("{concurrency} is out of range (1 to 64)"),
        );
    }
    let ca_bundle = spec.ca_bundle.as_ref().map(|p| {
        let path = PathBuf::from(p);
        match base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        }
    });
    HttpConnection {
        base_url,
        secret: spec.secret.clone(),
        auth,
        headers,
        timeout,
        connect_timeout,
        per_second,
        concurrency,
        retry: Retry {
            attempts,
            backoff,
            max_backoff,
        },
        ca_bundle,
    }
}

fn compile_auth(spec: &AuthSpec, problem: &mut impl FnMut(&str, String)) -> Option<Auth> {
    let kind = spec.kind;
    let given: [(&str, bool); 12] = [
        ("token", spec.token.is_some()),
        ("name", spec.name.is_some()),
        ("value", spec.value.is_some()),
        ("in", spec.location.is_some()),
        ("username", spec.username.is_some()),
        ("password", spec.password.is_some()),
        ("password_type", spec.password_type.is_some()),
        ("token_url", spec.token_url.is_some()),
        ("client_id", spec.client_id.is_some()),
        ("client_secret", spec.client_secret.is_some()),
        ("scope", spec.scope.is_some()),
        ("audience", spec.audience.is_some()),
    ];
    let (required, optional): (&[&str], &[&str]) = match kind {
        AuthKind::Bearer => (&["token"], &[]),
        AuthKind::ApiKey => (&["name", "value"], &["in"]),
        AuthKind::Basic => (&["username", "password"], &[]),
        AuthKind::Oauth2 => (
            &["token_url", "client_id", "client_secret"],
            &["scope", "audience"],
        ),
        AuthKind::WsSecurity => (&["username", "password"], &["password_type"]),
    };
    let mut complete = true;
    for (field, is_given) in given {
        let takes = required.contains(&field) || optional.contains(&field);
        if is_given && !takes {
            problem(
                field,
                format!(
                    "is not a field of auth kind `{}` (it takes {})",
                    kind.name(),
                    required
                        .iter()
                        .chain(optional)
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
        if !is_given && required.contains(&field) {
            problem(
                field,
                format!("missing: auth kind `{}` needs it", kind.name()),
            );
            complete = false;
        }
    }
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    for value in [
        &spec.token,
        &spec.value,
        &spec.username,
        &spec.password,
        &spec.client_id,
        &spec.client_secret,
        &spec.token_url,
    ]
    .into_iter()
    .flatten()
    {
        if let Err(p) = super::compile::check_placeholders(value) {
            problem(kind.name(), p);
            complete = false;
        }
    }
    if !complete {
        return None;
    }
    Some(match kind {
        AuthKind::Bearer => Auth::Bearer {
            token: text(&spec.token),
        },
        AuthKind::ApiKey => Auth::ApiKey {
            name: text(&spec.name),
            value: text(&spec.value),
            in_query: spec.location == Some(KeyLocation::Query),
        },
        AuthKind::Basic => Auth::Basic {
            username: text(&spec.username),
            password: text(&spec.password),
        },
        AuthKind::Oauth2 => Auth::OAuth2 {
            token_url: text(&spec.token_url),
            client_id: text(&spec.client_id),
            client_secret: text(&spec.client_secret),
            scope: spec.scope.clone(),
            audience: spec.audience.clone(),
        },
        AuthKind::WsSecurity => Auth::WsSecurity {
            username: text(&spec.username),
            password: text(&spec.password),
            digest: spec.password_type != Some(PasswordType::Text),
        },
    })
}

/// Compiles an API job's source. `schema` is `target.schema`, which stands in for the
/// record when there is no transform.
pub fn compile_http(
    spec: &JobSpec,
    schema: Option<&[Column]>,
    connection: &HttpConnection,
    bad: &mut impl FnMut(&str, String),
) -> Option<HttpFeed> {
    let source = &spec.source;
    if spec.mode == Some(Mode::Incremental) && source.cursor.is_none() {
        bad(
            "source.cursor",
            "missing: an incremental API job names the record field its window is over (a timestamp, date or growing id)".into(),
        );
    }
    if spec
        .mode
        .is_some_and(|m| !matches!(m, Mode::Incremental | Mode::Merge))
        && source.cursor.is_some()
    {
        bad(
            "source.cursor",
            "is for modes `incremental` and `merge`: a full or snapshot API job reads everything each run"
                .into(),
        );
    }
    let records = feed::record(spec, schema, Vec::new(), "an API job", bad)?;
    let window = source
        .cursor
        .as_ref()
        .and_then(|cursor| api_window(spec, cursor, &records.fields, bad));
    if source.window.is_some() && source.cursor.is_none() {
        bad(
            "source.window",
            "needs `source.cursor`, the record field the window is over".into(),
        );
    }
    if let Some(lag) = &source.lag
        && let Err(m) = parse_duration(lag)
    {
        bad("source.lag", m);
    }
    let parent = source.parent.as_ref().and_then(|p| {
        let request = request(&p.request, "source.parent.request", &[SINCE, UNTIL], bad);
        let mut fields = Vec::new();
        for (name, path) in &p.fields {
            if !super::is_identifier(name) {
                bad(
                    &format!("source.parent.fields.{name}"),
                    "a parent field's name is letters, digits and `_`".into(),
                );
            }
            match Path::parse(path) {
                Ok(path) => fields.push((name.clone(), path)),
                Err(m) => bad(&format!("source.parent.fields.{name}"), m),
            }
        }
        if p.fields.is_empty() {
            bad(
                "source.parent.fields",
                "is empty: name the parent's values the child request uses, e.g. `{tag_id: $.id}`"
                    .into(),
            );
        }
        Some(Parent {
            request: request?,
            fields,
        })
    });
    let mut known: Vec<&str> = vec![SINCE, UNTIL];
    if let Some(p) = &source.parent {
        known.extend(p.fields.keys().map(String::as_str));
    }
    let call = match (&source.request, &source.soap) {
        (Some(r), None) => Call::Rest(Box::new(request(r, "source.request", &known, bad)?)),
        (None, Some(s)) => {
            if source.parent.is_some() {
                bad(
                    "source.parent",
                    "is for REST requests; a SOAP job calls one operation".into(),
                );
            }
            Call::Soap(soap(s, bad)?)
        }
        (Some(_), Some(_)) => {
            bad(
                "source.soap",
                "give either `request` (REST) or `soap`, not both".into(),
            );
            return None;
        }
        (None, None) => {
            bad(
                "source.request",
                "missing: an http connection's job gives a REST `request` (path, records, paginate) or a `soap` operation".into(),
            );
            return None;
        }
    };
    if matches!(call, Call::Rest(_)) && matches!(connection.auth, Some(Auth::WsSecurity { .. })) {
        bad(
            "source.request",
            "the connection authenticates with `ws_security`, a SOAP header: give a `soap` operation, or another auth kind for a REST API".into(),
        );
    }
    if let Some(w) = &window
        && w.since.is_none()
        && w.until.is_none()
        && !mentions_window(&call)
    {
        bad(
            "source.window",
            "the API is never told the window: name its `since` (and `until`) parameter, or use `{since}` / `{until}` in the request".into(),
        );
    }
    Some(HttpFeed {
        // SOAP's XML has no types but text: its fields are read from text.
        records: match call {
            Call::Soap(_) => records.from_text(),
            Call::Rest(_) => records,
        },
        call,
        parent,
        window,
    })
}

fn mentions_window(call: &Call) -> bool {
    let text = match call {
        Call::Rest(r) => format!("{} {:?} {:?}", r.path, r.params, r.body),
        Call::Soap(s) => s.envelope.clone(),
    };
    placeholders(&text)
        .iter()
        .any(|p| *p == SINCE || *p == UNTIL)
}

fn api_window(
    spec: &JobSpec,
    cursor: &str,
    fields: &[Column],
    bad: &mut impl FnMut(&str, String),
) -> Option<ApiWindow> {
    let Some(field) = fields.iter().find(|f| f.name == cursor) else {
        bad(
            "source.cursor",
            format!(
                "`{cursor}` is not a field of the record (its fields: {})",
                feed::field_names(fields)
            ),
        );
        return None;
    };
    let time = matches!(
        field.lake,
        LakeType::Date | LakeType::Timestamp | LakeType::TimestampUtc
    );
    let id = matches!(
        field.lake,
        LakeType::Int8 | LakeType::Int16 | LakeType::Int32 | LakeType::Int64 | LakeType::String
    );
    if !time && !id {
        bad(
            "source.cursor",
            format!(
                "`{cursor}` is {}; a cursor is a timestamp, date, integer or text field",
                field.lake.athena()
            ),
        );
        return None;
    }
    let w = spec.source.window.clone().unwrap_or_default();
    if !time {
        for (what, given) in [
            ("until", w.until.is_some()),
            ("step", w.step.is_some()),
            ("lag", spec.source.lag.is_some()),
        ] {
            if given {
                bad(
                    &if what == "lag" {
                        "source.lag".to_string()
                    } else {
                        format!("source.window.{what}")
                    },
                    format!(
                        "needs a timestamp or date cursor; `{cursor}` is {} (its window has no upper bound: each run reads past the last value committed)",
                        field.lake.athena()
                    ),
                );
            }
        }
    }
    let format = bound_format(&w, bad);
    let step = w.step.as_ref().and_then(|s| match parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => Some(d),
        Ok(_) => {
            bad("source.window.step", "must be at least 1s".into());
            None
        }
        Err(m) => {
            bad("source.window.step", m);
            None
        }
    });
    if let Some(start) = &w.start {
        let ok = match field.lake {
            LakeType::Date => chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").is_ok(),
            LakeType::Timestamp | LakeType::TimestampUtc => {
                chrono::DateTime::parse_from_rfc3339(start).is_ok()
            }
            LakeType::String => true,
            _ => start.parse::<i64>().is_ok(),
        };
        if !ok {
            bad(
                "source.window.start",
                format!(
                    "{start:?} is not a value of `{cursor}` ({}): e.g. {}",
                    field.lake.athena(),
                    match field.lake {
                        LakeType::Date => "2024-01-01",
                        LakeType::Timestamp | LakeType::TimestampUtc => "2024-01-01T00:00:00Z",
                        _ => "0",
                    }
                ),
            );
        }
    }
    Some(ApiWindow {
        cursor: cursor.to_string(),
        lake: field.lake,
        since: w.since,
        until: w.until,
        format,
        start: w.start,
        step,
    })
}

fn bound_format(w: &WindowSpec, bad: &mut impl FnMut(&str, String)) -> BoundFormat {
    match w.format.as_deref() {
        None | Some("rfc3339") => BoundFormat::Rfc3339,
        Some("unix") => BoundFormat::Unix,
        Some("unix_ms") => BoundFormat::UnixMs,
        Some("date") => BoundFormat::Date,
        Some(pattern) => {
            let broken = chrono::format::StrftimeItems::new(pattern)
                .any(|item| matches!(item, chrono::format::Item::Error));
            if broken || !pattern.contains('%') {
                bad(
                    "source.window.format",
                    format!(
                        "{pattern:?} is not a bound format: `rfc3339`, `unix`, `unix_ms`, `date`, or a chrono pattern such as `%Y-%m-%dT%H:%M:%S`"
                    ),
                );
            }
            BoundFormat::Pattern(pattern.to_string())
        }
    }
}

/// Compiles one REST request; `known` are the placeholders it may use.
fn request(
    spec: &RequestSpec,
    at: &str,
    known: &[&str],
    bad: &mut impl FnMut(&str, String),
) -> Option<Request> {
    let post = spec.method == Some(HttpMethod::Post);
    if spec.body.is_some() && !post {
        bad(
            &format!("{at}.body"),
            "a body is sent with `method: POST`".into(),
        );
    }
    let mut texts = vec![(format!("{at}.path"), spec.path.clone())];
    for (k, v) in spec.params.iter().flatten() {
        texts.push((format!("{at}.params.{k}"), v.clone()));
    }
    if let Some(body) = &spec.body {
        texts.push((format!("{at}.body"), body.to_string()));
    }
    for (path, text) in &texts {
        for name in placeholders(text) {
            if !known.contains(&name) {
                bad(
                    path,
                    format!(
                        "placeholder `{{{name}}}` is not known here (known: {})",
                        known
                            .iter()
                            .map(|k| format!("{{{k}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
    }
    let records = match spec.records.as_deref() {
        None => Some(Path::root()),
        Some(text) => Path::parse(text)
            .map_err(|m| bad(&format!("{at}.records"), m))
            .ok(),
    };
    let paginate = match &spec.paginate {
        None => Some(Paginate {
            next: Next::Single,
            has_more: None,
            total: None,
            max_pages: DEFAULT_MAX_PAGES,
        }),
        Some(p) => paginate(p, &format!("{at}.paginate"), bad),
    };
    Some(Request {
        post,
        path: spec.path.clone(),
        params: spec
            .params
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        headers: spec
            .headers
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        body: spec.body.clone(),
        records: records?,
        paginate: paginate?,
    })
}

fn paginate(spec: &PaginateSpec, at: &str, bad: &mut impl FnMut(&str, String)) -> Option<Paginate> {
    let kind = spec.kind;
    let given: [(&str, bool); 9] = [
        ("param", spec.param.is_some()),
        ("limit_param", spec.limit_param.is_some()),
        ("limit", spec.limit.is_some()),
        ("size_param", spec.size_param.is_some()),
        ("size", spec.size.is_some()),
        ("start", spec.start.is_some()),
        ("from", spec.from.is_some()),
        ("header", spec.header.is_some()),
        ("total", spec.total.is_some()),
    ];
    let takes: &[&str] = match kind {
        PaginateKind::Offset => &["param", "limit_param", "limit", "start", "total"],
        PaginateKind::Page => &["param", "size_param", "size", "start", "total"],
        PaginateKind::Cursor => &["param", "from", "header"],
        PaginateKind::NextUrl => &["from"],
        PaginateKind::Link => &[],
    };
    for (field, is_given) in given {
        if is_given && !takes.contains(&field) {
            bad(
                &format!("{at}.{field}"),
                format!(
                    "is not a field of paginator `{}`{}",
                    kind.name(),
                    if takes.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (it takes {})",
                            takes
                                .iter()
                                .map(|f| format!("`{f}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                ),
            );
        }
    }
    let mut path = |field: &str, text: &Option<String>| {
        text.as_ref().and_then(|t| {
            Path::parse(t)
                .map_err(|m| bad(&format!("{at}.{field}"), m))
                .ok()
        })
    };
    let has_more = path("has_more", &spec.has_more);
    let total = path("total", &spec.total);
    let from = path("from", &spec.from);
    let mut param = || {
        spec.param.clone().or_else(|| {
            bad(
                &format!("{at}.param"),
                format!(
                    "missing: paginator `{}` needs the parameter that carries the {}",
                    kind.name(),
                    match kind {
                        PaginateKind::Offset => "offset (e.g. `offset`)",
                        PaginateKind::Page => "page number (e.g. `page`)",
                        _ => "cursor (e.g. `cursor`)",
                    }
                ),
            );
            None
        })
    };
    let next = match kind {
        PaginateKind::Offset => {
            let param = param()?;
            if spec.limit.is_some() != spec.limit_param.is_some() {
                bad(
                    &format!("{at}.limit"),
                    "`limit` and `limit_param` go together: the page size and the parameter that asks for it".into(),
                );
            }
            Next::Offset {
                param,
                limit_param: spec.limit_param.clone(),
                limit: spec.limit,
                start: spec.start.unwrap_or(0),
            }
        }
        PaginateKind::Page => {
            let param = param()?;
            if spec.size_param.is_some() && spec.size.is_none() {
                bad(
                    &format!("{at}.size"),
                    "missing: `size_param` asks for a page size; give it as `size`".into(),
                );
            }
            Next::Page {
                param,
                start: spec.start.unwrap_or(1),
                size_param: spec.size_param.clone(),
                size: spec.size,
            }
        }
        PaginateKind::Cursor => {
            let param = param()?;
            let from = match (from, &spec.header) {
                (Some(p), None) => CursorFrom::Body(p),
                (None, Some(h)) => CursorFrom::Header(h.clone()),
                _ => {
                    bad(
                        &format!("{at}.from"),
                        "paginator `cursor` takes the next cursor `from` a JSONPath in the body or from a `header` (one of them)".into(),
                    );
                    return None;
                }
            };
            Next::Cursor { param, from }
        }
        PaginateKind::NextUrl => Next::NextUrl {
            from: from.or_else(|| {
                bad(
                    &format!("{at}.from"),
                    "missing: paginator `next_url` needs the JSONPath of the next page's URL, e.g. `$.links.next`".into(),
                );
                None
            })?,
        },
        PaginateKind::Link => Next::Link,
    };
    let max_pages = spec.max_pages.unwrap_or(DEFAULT_MAX_PAGES);
    if max_pages == 0 {
        bad(&format!("{at}.max_pages"), "must be at least 1".into());
    }
    Some(Paginate {
        next,
        has_more,
        total,
        max_pages,
    })
}

fn soap(spec: &SoapSpec, bad: &mut impl FnMut(&str, String)) -> Option<Soap> {
    let envelope = spec.envelope.trim();
    if !envelope.contains("Envelope") || !envelope.contains("Body") {
        bad(
            "source.soap.envelope",
            "is not a SOAP envelope: it needs an `Envelope` element with a `Body`".into(),
        );
    }
    for name in placeholders(envelope) {
        if ![SINCE, UNTIL, PAGE_TOKEN].contains(&name) {
            bad(
                "source.soap.envelope",
                format!(
                    "placeholder `{{{name}}}` is not known (known: {{since}}, {{until}}, {{page_token}})"
                ),
            );
        }
    }
    let element_path = |field: &str, text: &str, bad: &mut dyn FnMut(&str, String)| {
        let parts: Vec<String> = text
            .trim_matches('/')
            .split('/')
            .map(|p| p.rsplit(':').next().unwrap_or(p).trim().to_string())
            .collect();
        if parts
            .iter()
            .any(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            bad(
                &format!("source.soap.{field}"),
                format!(
                    "{text:?} is not an element path: local names from the Body, separated by `/`, e.g. `GetTransactionsResponse/Transaction`"
                ),
            );
        }
        // A path may start at the Envelope or its Body; the search starts in the Body.
        let skip = parts
            .iter()
            .take_while(|p| p.as_str() == "Envelope" || p.as_str() == "Body")
            .count();
        parts[skip..].to_vec()
    };
    let records = element_path("records", &spec.records, bad);
    let next_token = spec
        .next_token
        .as_ref()
        .map(|t| element_path("next_token", t, bad));
    if next_token.is_some() && !envelope.contains("{page_token}") {
        bad(
            "source.soap.envelope",
            "has no `{page_token}` placeholder, but `next_token` pages the response: put it where the request takes the token".into(),
        );
    }
    if records.is_empty() {
        bad(
            "source.soap.records",
            "is empty: give the path of the record elements from the Body".into(),
        );
    }
    Some(Soap {
        v12: spec.version == Some(SoapVersion::V12),
        action: spec.action.clone(),
        path: spec.path.clone(),
        envelope: envelope.to_string(),
        records,
        next_token,
        max_pages: spec.max_pages.unwrap_or(DEFAULT_MAX_PAGES),
    })
}

/// The `{name}` placeholders of a template (names of letters, digits and `_`).
pub fn placeholders(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len > 0
            && after[len..].starts_with('}')
            && open.checked_sub(1).is_none_or(|i| &rest[i..open] != "$")
        {
            out.push(&after[..len]);
        }
        rest = after;
    }
    out
}

/// Fills `{name}` placeholders from `values`, passing each through `escape`.
pub fn fill(
    text: &str,
    values: &BTreeMap<String, String>,
    escape: impl Fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        match values.get(&after[..len]) {
            Some(value) if len > 0 && after[len..].starts_with('}') => {
                out.push_str(&escape(value));
                rest = &after[len + 1..];
            }
            _ => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_found_and_filled() {
        assert_eq!(
            placeholders("/tags/{tag_id}/tx?from={since}&x=${ENV}&j={\"a\":1}"),
            ["tag_id", "since"]
        );
        let values = BTreeMap::from([("since".to_string(), "a&b".to_string())]);
        assert_eq!(
            fill("q={since}&{other}", &values, |v| v.replace('&', "%26")),
            "q=a%26b&{other}"
        );
    }
}
