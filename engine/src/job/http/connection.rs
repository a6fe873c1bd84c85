//! An `http` connection, compiled: its base URL, auth, timeouts, rate limit and retries.

use std::path::{Path as FsPath, PathBuf};
use std::time::Duration;

use super::{
    Auth, DEFAULT_ATTEMPTS, DEFAULT_BACKOFF, DEFAULT_CONCURRENCY, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_MAX_BACKOFF, DEFAULT_TIMEOUT, HttpConnection, Retry,
};
use crate::spec::ConnectionSpec;
use crate::spec::http::{AuthKind, AuthSpec, KeyLocation, PasswordType};
use crate::spec::units::parse_duration;

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
        if let Err(p) = crate::job::check::check_placeholders(&base_url) {
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
        if let Err(p) = crate::job::check::check_placeholders(value) {
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
        if let Err(p) = crate::job::check::check_placeholders(value) {
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

/// The connection fields only APIs take, and whether the row gives each.
pub fn api_fields(spec: &ConnectionSpec) -> [(&'static str, bool); 8] {
    [
        ("base_url", spec.base_url.is_some()),
        ("auth", spec.auth.is_some()),
        ("headers", spec.headers.is_some()),
        ("timeout", spec.timeout.is_some()),
        ("connect_timeout", spec.connect_timeout.is_some()),
        ("rate_limit", spec.rate_limit.is_some()),
        ("retry", spec.retry.is_some()),
        ("ca_bundle", spec.ca_bundle.is_some()),
    ]
}
