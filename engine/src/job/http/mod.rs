//! The API side of a job row, compiled: an `http` connection (base URL, auth, limits;
//! [`connection`]) and a REST or SOAP feed (requests, records, pages, parent; [`request`]),
//! with its window ([`window`]). Pure, like the rest of compilation: placeholders stay
//! templates until the job connects.

mod connection;
mod request;
mod window;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::feed::{self, Records};
use crate::contract::Column;
use crate::jsonpath::Path;
use crate::lake_type::LakeType;
use crate::spec::JobSpec;
use crate::spec::Mode;
use crate::spec::units::parse_duration;

pub use connection::{api_fields, compile_connection};
pub use request::{fill, placeholders};
use request::{request, soap};
use window::{api_window, check_lookback};

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
    /// The parameters of the lower bound, the inclusive upper bound and the exclusive
    /// upper bound (`{since}`, `{until}`, `{before}`).
    pub since: Option<String>,
    pub until: Option<String>,
    pub before: Option<String>,
    pub format: BoundFormat,
    pub start: Option<String>,
    pub step: Option<Duration>,
    /// How far before the committed watermark each run reads again, for records the
    /// partner publishes late; the record key (or a merge) drops what was committed.
    pub lookback: Option<Duration>,
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

/// The placeholders a window fills: its lower bound, its upper bound (inclusive: the
/// window is `(since, until]`), and the first instant after it at the bound format's
/// precision (exclusive: records before it), for APIs that read their upper bound as
/// "before".
pub const SINCE: &str = "since";
pub const UNTIL: &str = "until";
pub const BEFORE: &str = "before";
/// The placeholder a SOAP envelope's page token fills.
pub const PAGE_TOKEN: &str = "page_token";

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
        let request = request(
            &p.request,
            "source.parent.request",
            &[SINCE, UNTIL, BEFORE],
            bad,
        );
        let mut fields = Vec::new();
        for (name, path) in &p.fields {
            if !crate::job::is_identifier(name) {
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
    let mut known: Vec<&str> = vec![SINCE, UNTIL, BEFORE];
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
        && w.before.is_none()
        && !mentions_window(&call)
    {
        bad(
            "source.window",
            "the API is never told the window: name its `since` (and `until` or `before`) parameter, or use `{since}` / `{until}` / `{before}` in the request".into(),
        );
    }
    if let Some(w) = &window {
        check_lookback(spec, w, records.key.as_ref(), bad);
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
        .any(|p| [SINCE, UNTIL, BEFORE].contains(p))
}
