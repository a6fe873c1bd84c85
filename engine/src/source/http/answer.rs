//! What an answer comes to: a try's outcome, the REST verdict, the body read within its
//! bound, `Retry-After`, a short excerpt for messages, and header values made secret.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue};

use url::Url;

use crate::error::{Error, Result};

/// A successful response.
pub struct Reply {
    pub url: Url,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// What a response means: the protocol (REST or SOAP) decides.
pub enum Verdict {
    Ok,
    /// May succeed later: retried.
    Retry(String),
    /// Will not: the run fails with this error.
    Fail(Error),
}

/// The most a response body may hold: a page larger than this asks for smaller pages.
const MAX_BODY: usize = 64 << 20;

/// How much of a body an error message quotes.
const EXCERPT: usize = 300;

/// What one try came to.
pub(super) enum Outcome {
    Done(Reply),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// The token was refused: fetch a new one and try again (once).
    Reauthenticate(String),
    Fail(Error),
}

impl Outcome {
    /// A 401 with an OAuth2 token: the token may have been revoked or expired early.
    pub(super) fn reauthenticate_on(self, status: u16, oauth: bool) -> Self {
        match self {
            Outcome::Fail(e) if oauth && status == 401 => Outcome::Reauthenticate(e.message),
            other => other,
        }
    }
}

/// The REST verdict: 2xx is an answer; 408, 425, 429 and 5xx may pass later; anything
/// else is the request's fault, said with its status and what the body says.
pub fn rest_verdict(status: u16, reply: &Reply) -> Verdict {
    match status {
        200..=299 => Verdict::Ok,
        408 | 425 | 429 | 500..=599 => Verdict::Retry(format!(
            "status {status}{}",
            reason(status).map(|r| format!(" {r}")).unwrap_or_default()
        )),
        _ => Verdict::Fail(Error::user(format!(
            "status {status}{}: {}{}",
            reason(status).map(|r| format!(" {r}")).unwrap_or_default(),
            excerpt(&reply.body),
            match status {
                401 | 403 => " (check the connection's auth)",
                404 => " (check the request's path and base_url)",
                _ => "",
            }
        ))),
    }
}

pub(super) fn reason(status: u16) -> Option<&'static str> {
    reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
}

/// A short, one-line excerpt of a body for messages.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "(empty body)".into();
    }
    match line.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{:?}…", &line[..cut]),
        None => format!("{line:?}"),
    }
}

pub(super) fn transport(e: reqwest::Error) -> Outcome {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail = format!("{detail}: {s}");
        source = s.source();
    }
    Outcome::Retry {
        reason: format!("{kind} ({detail})"),
        after: None,
    }
}

pub(super) async fn read_body(
    mut response: reqwest::Response,
    counter: &AtomicU64,
) -> std::result::Result<bytes::Bytes, Outcome> {
    let mut body = bytes::BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                body.extend_from_slice(&chunk);
                if body.len() > MAX_BODY {
                    return Err(Outcome::Fail(Error::user(format!(
                        "the response is larger than {} MiB: ask for smaller pages (paginate.limit or size)",
                        MAX_BODY >> 20
                    ))));
                }
            }
            Ok(None) => return Ok(body.freeze()),
            Err(e) => return Err(transport(e)),
        }
    }
}

/// `Retry-After`: seconds, or an HTTP date.
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(text).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

pub(super) fn bearer(token: &str) -> Result<HeaderValue> {
    sensitive(&format!("Bearer {token}"))
}

pub(super) fn sensitive(value: &str) -> Result<HeaderValue> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::user("a credential holds a character an HTTP header cannot"))?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO), "a date passed");
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(
            excerpt(b"  {\n \"error\": \"no\" }\n"),
            "\"{ \\\"error\\\": \\\"no\\\" }\""
        );
        assert!(excerpt(&[b'x'; 1000]).ends_with('…'));
        assert_eq!(excerpt(b""), "(empty body)");
    }
}
