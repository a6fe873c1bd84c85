//! Who is asking, and whether they may act. A browser signs in once with its key (the
//! login form) and gets a session cookie (`HttpOnly`, `SameSite=Strict`, `Secure` behind
//! TLS) and a CSRF token that every action's form carries back; a script presents its key
//! in `Authorization: Bearer` or `X-Api-Key` on each request, which a browser never adds
//! by itself, so it needs no token. An action also refuses a request whose `Origin` or
//! `Sec-Fetch-Site` says it came from another site.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, header};

use super::keys::{ConsoleKeys, Operator, Role};
use crate::serve::refusal::Refusal;

/// The session cookie's name.
pub const COOKIE: &str = "sluice_console";
/// How long a session lasts without signing in again.
pub const SESSION_LIFE: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once (the oldest go first).
const MAX_SESSIONS: usize = 10_000;

/// How a request was authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser's session, with the token its forms must carry.
    Session { csrf: String },
    /// A key in a header on this request.
    Header,
}

/// The person or script asking.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub who: Operator,
    pub via: Via,
}

impl Viewer {
    /// The hidden field an action's form carries (empty for a key in a header).
    pub fn csrf_field(&self) -> String {
        match &self.via {
            Via::Session { csrf } => format!(
                "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
                super::html::escape(csrf)
            ),
            Via::Header => String::new(),
        }
    }
}

struct Session {
    who: Operator,
    csrf: String,
    expires: Instant,
}

/// The signed-in browsers, in memory (a restart signs everyone out).
#[derive(Default)]
pub struct Sessions(Mutex<HashMap<String, Session>>);

fn token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl Sessions {
    /// A new session for `who`: its cookie value.
    pub fn open(&self, who: Operator) -> String {
        let id = token();
        let mut sessions = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                who,
                csrf: token(),
                expires: now + SESSION_LIFE,
            },
        );
        id
    }

    pub fn close(&self, id: &str) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    fn find(&self, id: &str) -> Option<Viewer> {
        let sessions = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let session = sessions.get(id).filter(|s| s.expires > Instant::now())?;
        Some(Viewer {
            who: session.who.clone(),
            via: Via::Session {
                csrf: session.csrf.clone(),
            },
        })
    }
}

/// The value of the request's cookie `name`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name).then_some(v)
        })
}

/// Who the request is from: a key in a header (a wrong one is refused, 401), else a
/// session cookie; `Ok(None)` when neither (the page asks to sign in).
pub fn viewer(
    keys: &ConsoleKeys,
    sessions: &Sessions,
    headers: &HeaderMap,
) -> Result<Option<Viewer>, Refusal> {
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let authorization = value(header::AUTHORIZATION.as_str());
    let api_key = value("x-api-key");
    if authorization.is_some() || api_key.is_some() {
        // The same presentation as serve's keys: a bearer token or X-Api-Key. (Basic is
        // refused: a browser would resend it by itself, which CSRF protection relies on
        // not happening.)
        let presented = match authorization.and_then(crate::keyfile::credentials) {
            Some(crate::keyfile::Credentials::Bearer(token)) => Some(token),
            Some(crate::keyfile::Credentials::Basic { .. }) => None,
            None if authorization.is_none() => api_key.map(|k| k.trim().to_string()),
            None => None,
        };
        let who = presented
            .and_then(|key| keys.find(&key).cloned())
            .ok_or_else(Refusal::unauthorized)?;
        return Ok(Some(Viewer {
            who,
            via: Via::Header,
        }));
    }
    Ok(cookie(headers, COOKIE).and_then(|id| sessions.find(id)))
}

/// Refuses an action of a viewer who is not an operator (403).
pub fn operator(viewer: &Viewer) -> Result<(), Refusal> {
    if viewer.who.role >= Role::Operator {
        return Ok(());
    }
    Err(Refusal::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "{} has the {} role: running and rewinding jobs need a key with role: operator",
            viewer.who.name,
            viewer.who.role.name()
        ),
    ))
}

/// Refuses an action that a page of this console did not send (403 `csrf`): a session's
/// form must carry its token, and no action comes from another site.
pub fn same_site(viewer: &Viewer, token: Option<&str>, headers: &HeaderMap) -> Result<(), Refusal> {
    let refused = |why: &str| {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            "csrf",
            format!(
                "{why}: actions are taken from the console's own pages; reload the page and try again"
            ),
        ))
    };
    let Via::Session { csrf } = &viewer.via else {
        return Ok(());
    };
    let value = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if value("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none") {
        return refused("the request came from another site");
    }
    if let (Some(origin), Some(host)) = (value("origin"), value("host")) {
        let own = origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(host));
        if !own {
            return refused("the request came from another origin");
        }
    }
    match token {
        Some(token) if constant_time_eq(token.as_bytes(), csrf.as_bytes()) => Ok(()),
        _ => refused("the form's CSRF token is missing or not this session's"),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys() -> crate::error::Result<ConsoleKeys> {
        ConsoleKeys::parse(&format!(
            "- {{name: ann, sha256: {}, role: reader}}\n- {{name: bob, sha256: {}, role: operator}}\n",
            crate::keyfile::sha256_hex("r-key"),
            crate::keyfile::sha256_hex("o-key")
        ))
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.append(*k, v);
            }
        }
        h
    }

    #[test]
    fn keys_sessions_and_roles() -> crate::error::Result<()> {
        let keys = keys()?;
        let sessions = Sessions::default();
        let bearer = viewer(
            &keys,
            &sessions,
            &headers(&[("authorization", "Bearer r-key")]),
        );
        assert!(
            bearer
                .as_ref()
                .is_ok_and(|v| v.as_ref().is_some_and(|v| v.via == Via::Header))
        );
        assert!(viewer(&keys, &sessions, &headers(&[("x-api-key", "nope")])).is_err());
        // A browser's Basic credentials are not taken.
        assert!(
            viewer(
                &keys,
                &sessions,
                &headers(&[("authorization", "Basic eDpyLWtleQ==")])
            )
            .is_err()
        );
        assert!(viewer(&keys, &sessions, &headers(&[])).is_ok_and(|v| v.is_none()));

        let id = sessions.open(Operator {
            name: "ann".into(),
            role: Role::Reader,
        });
        let cookie = format!("other=1; {COOKIE}={id}");
        let ann = viewer(&keys, &sessions, &headers(&[("cookie", cookie.as_str())]))
            .ok()
            .flatten()
            .ok_or_else(|| crate::error::Error::internal("no session"))?;
        assert!(operator(&ann).is_err_and(|r| r.status == StatusCode::FORBIDDEN));
        let Via::Session { csrf } = ann.via.clone() else {
            return Err(crate::error::Error::internal("not a session"));
        };
        let page = headers(&[
            ("origin", "http://127.0.0.1:8090"),
            ("host", "127.0.0.1:8090"),
        ]);
        assert!(same_site(&ann, Some(&csrf), &page).is_ok());
        assert!(same_site(&ann, None, &page).is_err_and(|r| r.code == "csrf"));
        assert!(same_site(&ann, Some("forged"), &page).is_err());
        let evil = headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8090"),
        ]);
        assert!(same_site(&ann, Some(&csrf), &evil).is_err());
        let cross = headers(&[("sec-fetch-site", "cross-site")]);
        assert!(same_site(&ann, Some(&csrf), &cross).is_err());
        sessions.close(&id);
        assert!(
            viewer(&keys, &sessions, &headers(&[("cookie", cookie.as_str())]))
                .is_ok_and(|v| v.is_none())
        );
        Ok(())
    }
}
