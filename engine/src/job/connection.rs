//! `connections.yaml` compiled: each entry's kind and address — a database's URL or
//! secret, a queue's URL, an API (`http`), a file store (`files`) — with the fields of
//! other kinds refused by name.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::ConfigError;
use super::check::{check_placeholders, is_identifier};
use super::compiled::{Address, Connection, Connections};
use super::{files, http};
use crate::spec::{ConnectionKind, ConnectionSpec};

/// Turns `connections.yaml` entries into connections, checking their URLs' shape.
pub fn compile_connections(
    specs: &BTreeMap<String, ConnectionSpec>,
    origin: &str,
    base_dir: Option<PathBuf>,
) -> (Connections, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut out = Connections::new();
    for (name, spec) in specs {
        let at = |field: &str, message: String| {
            ConfigError::new(origin, format!("{name}.{field}"), message)
        };
        if !is_identifier(name) {
            errors.push(ConfigError::new(
                origin,
                name.clone(),
                "connection names are letters, digits and `_`, starting with a letter".into(),
            ));
        }
        let mut problem = |field: &str, message: String| errors.push(at(field, message));
        if !spec.kind.is_files() {
            files::refuse_file_fields(spec, &mut problem);
        }
        let address = match spec.kind {
            ConnectionKind::Sqs => queue_address(spec, &mut problem),
            ConnectionKind::Http => Address::Http(Box::new(http::compile_connection(
                spec,
                base_dir.as_deref(),
                &mut problem,
            ))),
            ConnectionKind::Sftp | ConnectionKind::S3 | ConnectionKind::Folder => {
                Address::Files(Box::new(files::compile_connection(
                    spec,
                    base_dir.as_deref(),
                    &mut problem,
                )))
            }
            ConnectionKind::Postgres | ConnectionKind::Mysql | ConnectionKind::Sqlite => {
                http_fields(spec, &mut problem);
                database_address(spec, &mut problem)
            }
        };
        out.insert(
            name.clone(),
            Connection {
                name: name.clone(),
                kind: spec.kind,
                address,
                base_dir: base_dir.clone(),
            },
        );
    }
    (out, errors)
}

/// A database connection's address: its URL or its Secrets Manager secret.
fn database_address(spec: &ConnectionSpec, problem: &mut impl FnMut(&str, String)) -> Address {
    if spec.queue_url.is_some() {
        problem(
            "queue_url",
            format!(
                "is for kind `sqs`; a {} connection gives `url` or `secret`",
                spec.kind.name()
            ),
        );
    }
    match (&spec.url, &spec.secret) {
        (Some(url), None) => {
            for p in url_problems(spec.kind, url) {
                problem("url", p);
            }
            Address::Url(url.clone())
        }
        (None, Some(secret)) => {
            if spec.kind == ConnectionKind::Sqlite {
                problem(
                    "secret",
                    "a sqlite connection is a file: give its `url`".into(),
                );
            }
            if secret.trim().is_empty() {
                problem("secret", "must name a secret or give its ARN".into());
            }
            Address::Secret(secret.clone())
        }
        (Some(_), Some(_)) => {
            problem("secret", "give either `url` or `secret`, not both".into());
            Address::Secret(String::new())
        }
        (None, None) => {
            problem(
                "url",
                "missing: give the connection's `url`, or the Secrets Manager `secret` that holds it".into(),
            );
            Address::Secret(String::new())
        }
    }
}

/// A database's connection must not carry an API's fields.
fn http_fields(spec: &ConnectionSpec, problem: &mut impl FnMut(&str, String)) {
    for (field, given) in http::api_fields(spec) {
        if given {
            problem(
                field,
                format!(
                    "is for kind `http` (an API); a {} connection gives {}",
                    spec.kind.name(),
                    if spec.kind == ConnectionKind::Sqs {
                        "`queue_url`"
                    } else {
                        "`url` or `secret`"
                    }
                ),
            );
        }
    }
}

/// A queue's address: its URL (the credentials come from the AWS chain).
fn queue_address(spec: &ConnectionSpec, problem: &mut impl FnMut(&str, String)) -> Address {
    http_fields(spec, problem);
    for (field, given) in [
        ("url", spec.url.is_some()),
        ("secret", spec.secret.is_some()),
    ] {
        if given {
            problem(
                field,
                "a queue connection gives `queue_url` only; its credentials come from the AWS chain (the task role)".into(),
            );
        }
    }
    let Some(queue) = &spec.queue_url else {
        problem(
            "queue_url",
            "missing: give the queue's URL, `https://sqs.<region>.amazonaws.com/<account>/<queue>`"
                .into(),
        );
        return Address::Url(String::new());
    };
    if let Err(p) = check_placeholders(queue) {
        problem("queue_url", p);
    } else if !queue.starts_with("https://")
        && !queue.starts_with("http://")
        && !queue.starts_with("${")
    {
        problem(
            "queue_url",
            format!(
                "{queue:?} is not a queue URL: give `https://sqs.<region>.amazonaws.com/<account>/<queue>`"
            ),
        );
    }
    Address::Url(queue.clone())
}

/// A URL's placeholders must be well formed and its scheme match the connection's kind.
fn url_problems(kind: ConnectionKind, url: &str) -> Vec<String> {
    let mut problems: Vec<String> = check_placeholders(url).err().into_iter().collect();
    let schemes: &[&str] = match kind {
        ConnectionKind::Postgres => &["postgres://", "postgresql://"],
        ConnectionKind::Mysql => &["mysql://", "mariadb://"],
        ConnectionKind::Sqlite => &["sqlite:"],
        _ => &["https://", "http://"],
    };
    if !schemes.iter().any(|s| url.starts_with(s)) {
        problems.push(format!(
            "a {} URL starts with {}",
            kind.name(),
            schemes.join(" or ")
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_connections_take_a_queue_url_only() {
        let spec = |yaml: &str| -> ConnectionSpec {
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
        };
        let specs = BTreeMap::from([
            (
                "gps".to_string(),
                spec("kind: sqs\nqueue_url: https://sqs.eu-west-1.amazonaws.com/1/gps\n"),
            ),
            ("no_url".to_string(), spec("kind: sqs\n")),
            (
                "db_url".to_string(),
                spec("kind: sqs\nurl: https://sqs.x/1/q\n"),
            ),
            (
                "not_url".to_string(),
                spec("kind: sqs\nqueue_url: gps-positions\n"),
            ),
            (
                "pg_queue".to_string(),
                spec("kind: postgres\nurl: postgres://h/db\nqueue_url: https://x\n"),
            ),
        ]);
        let (connections, errors) = compile_connections(&specs, "c.yaml", None);
        assert_eq!(
            connections.get("gps").map(|c| &c.address),
            Some(&Address::Url(
                "https://sqs.eu-west-1.amazonaws.com/1/gps".into()
            ))
        );
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "c.yaml: no_url.queue_url: missing",
            "c.yaml: db_url.url: a queue connection gives `queue_url` only",
            "c.yaml: db_url.queue_url: missing",
            "c.yaml: not_url.queue_url: \"gps-positions\" is not a queue URL",
            "c.yaml: pg_queue.queue_url: is for kind `sqs`",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(expected)),
                "{expected}\nin {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 5, "{lines:#?}");
    }

    #[test]
    fn http_connections_say_what_each_auth_kind_takes() {
        let spec = |yaml: &str| -> ConnectionSpec {
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
        };
        let specs = BTreeMap::from([
            (
                "good".to_string(),
                spec(
                    "kind: http\nbase_url: https://api.x/v2\nauth: {kind: api_key, name: X-Key, value: \"${KEY}\", in: query}\nrate_limit: {per_second: 5, concurrency: 2}\n",
                ),
            ),
            (
                "basic".to_string(),
                spec(
                    "kind: http\nbase_url: https://api.x\nauth: {kind: basic, username: u, token: t}\n",
                ),
            ),
            ("bare".to_string(), spec("kind: http\n")),
            (
                "limits".to_string(),
                spec(
                    "kind: http\nbase_url: ftp://x\ntimeout: 0s\nrate_limit: {per_second: 0, concurrency: 100}\nretry: {attempts: 0}\n",
                ),
            ),
            (
                "pg".to_string(),
                spec("kind: postgres\nurl: postgres://h/db\nbase_url: https://x\n"),
            ),
        ]);
        let (connections, errors) = compile_connections(&specs, "c.yaml", None);
        let Some(Address::Http(good)) = connections.get("good").map(|c| &c.address) else {
            panic!("good is an http connection");
        };
        assert_eq!(good.concurrency, 2);
        assert_eq!(good.per_second, Some(5.0));
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "c.yaml: basic.auth.token: is not a field of auth kind `basic` (it takes `username`, `password`)",
            "c.yaml: basic.auth.password: missing: auth kind `basic` needs it",
            "c.yaml: bare.base_url: missing",
            "c.yaml: limits.base_url: \"ftp://x\" is not an HTTP URL",
            "c.yaml: limits.timeout: 0s is out of range",
            "c.yaml: limits.rate_limit.per_second: 0 is out of range",
            "c.yaml: limits.rate_limit.concurrency: 100 is out of range (1 to 64)",
            "c.yaml: limits.retry.attempts: 0 is out of range (1 to 20)",
            "c.yaml: pg.base_url: is for kind `http` (an API); a postgres connection gives `url` or `secret`",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(expected)),
                "{expected}\nin {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 9, "{lines:#?}");
    }
}
