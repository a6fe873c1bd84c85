//! Sources: relational databases read through sqlx and streamed as Arrow batches of
//! bounded size. One module per database; this module holds what they share: the
//! [`Source`] contract, cursor values and windows, SQL building, and the extract loop.

mod batch;
pub mod cursor;
mod mysql;
mod pg_binary;
mod pg_copy;
mod pg_split;
mod postgres;
mod split;
mod sql;
mod sqlite;
pub mod types;

use std::collections::BTreeMap;

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;

pub use batch::BatchBuilder;
pub use cursor::{CursorValue, Window};
pub use types::{LakeType, SourceColumn};

use crate::error::{Error, Result};
use crate::job::{Address, ConnectionKind, Job};

/// A connected source database, for one job.
///
/// Contract: `columns` is called first; `max_cursor` at most once, only for incremental
/// jobs; then `extract` exactly once, which consumes the source. Nothing is written to
/// the database: every statement is a SELECT.
#[async_trait]
pub trait Source: Send {
    /// The columns the job's table or query yields, in order, with their lake types.
    async fn columns(&mut self) -> Result<Vec<SourceColumn>>;

    /// The NOT NULL columns and the primary key of the job's table, from the database's
    /// catalog (for `sluice schema infer`); empty for a query.
    async fn constraints(&mut self) -> Result<Vec<Constraint>>;

    /// The greatest value of `cursor` not after `ceiling` (when given), or `None` when no
    /// row qualifies. This fixes the window's upper bound for the whole run.
    async fn max_cursor(
        &mut self,
        cursor: &SourceColumn,
        ceiling: Option<&CursorValue>,
    ) -> Result<Option<CursorValue>>;

    /// Streams the rows of `window` (all rows when the window is unbounded) ordered by the
    /// cursor and then the primary key, as batches of at most the job's `batch_rows`.
    /// Memory is bounded: the driver reads ahead at most two batches.
    fn extract(
        self: Box<Self>,
        columns: Vec<SourceColumn>,
        window: Window,
    ) -> BoxStream<'static, Result<RecordBatch>>;
}

/// One column's constraints in the source's catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub column: String,
    pub not_null: bool,
    /// Position in the primary key, from 1; 0 when not part of it.
    pub key_position: i64,
}

impl Constraint {
    fn from_row((column, not_null, key_position): (String, bool, i64)) -> Self {
        Self {
            column,
            not_null,
            key_position,
        }
    }
}

/// Connects to the job's source database.
pub async fn open(job: &Job, env: &dyn Fn(&str) -> Option<String>) -> Result<Box<dyn Source>> {
    let (url, secrets) = match &job.connection.address {
        Address::Url(template) => resolve_url(template, &job.connection.name, env)?,
        Address::Secret(id) => crate::aws::secrets::connection_url(id, job.connection.kind)
            .await
            .map_err(|e| e.context(format!("connection `{}`", job.connection.name)))?,
    };
    let plan = sql::Plan::new(job);
    let source: Result<Box<dyn Source>> = match job.connection.kind {
        ConnectionKind::Postgres => postgres::connect(&url, plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Source>),
        ConnectionKind::Mysql => mysql::connect(&url, plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Source>),
        ConnectionKind::Sqlite => sqlite::connect(&url, job.connection.base_dir.as_deref(), plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Source>),
    };
    source.map_err(|e| redact(e, &secrets).context(format!("connection `{}`", job.connection.name)))
}

/// Fills `${VAR}` placeholders from the environment. Returns the URL and the values put
/// in, so that they can be scrubbed from any error message.
pub fn resolve_url(
    template: &str,
    connection: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>)> {
    let mut out = String::with_capacity(template.len());
    let mut secrets = Vec::new();
    let mut missing = Vec::new();
    // Values that land in the user-info (`user:${PW}@host`) are percent-escaped so that a
    // password may hold `@` or `/`; elsewhere (a host, or the whole URL in one variable)
    // they are taken as they are.
    let user_info_end = template
        .find("://")
        .and_then(|scheme| template[scheme + 3..].find('@').map(|at| scheme + 3 + at));
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let in_user_info =
            user_info_end.is_some_and(|end| template.len() - rest.len() + start < end);
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            return Err(Error::user(format!(
                "connection `{connection}`: unclosed `${{` in url"
            )));
        };
        let name = &rest[start + 2..start + len];
        match env(name) {
            Some(value) => {
                if in_user_info {
                    out.push_str(&url_escape(&value));
                } else {
                    out.push_str(&value);
                }
                if !value.is_empty() {
                    secrets.push(value);
                }
            }
            None => missing.push(name.to_string()),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    if !missing.is_empty() {
        return Err(Error::user(format!(
            "connection `{connection}` needs the environment variable{} {} (its url has ${{…}} placeholders)",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", ")
        )));
    }
    Ok((out, secrets))
}

/// Percent-escapes the characters that would break a URL's user-info or path, so that a
/// password such as `p@ss/word` works as a placeholder value.
pub fn url_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '@' | '/' | ':' | '?' | '#' | '%' | ' ' | '[' | ']' => {
                out.push_str(&format!("%{:02X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

/// Removes secret values from an error message.
pub fn redact(mut err: Error, secrets: &[String]) -> Error {
    for s in secrets {
        err.message = err
            .message
            .replace(s.as_str(), "***")
            .replace(&url_escape(s), "***");
    }
    if !secrets.is_empty() {
        // The driver error's own text may hold the URL: keep only our scrubbed message.
        err.source = None;
    }
    err
}

/// Columns of `columns` by lower-case lake name, for resolving job column references.
pub fn find_column<'a>(columns: &'a [SourceColumn], name: &str) -> Result<&'a SourceColumn> {
    let by_name: BTreeMap<&str, &SourceColumn> =
        columns.iter().map(|c| (c.lake_name.as_str(), c)).collect();
    by_name
        .get(types::athena_name(name).as_str())
        .copied()
        .ok_or_else(|| {
            let hint =
                crate::job::shape::did_you_mean(&types::athena_name(name), by_name.keys().copied())
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_else(|| ".".into());
            Error::user(format!(
                "the source has no column `{name}`{hint} Its columns: {}",
                by_name.keys().copied().collect::<Vec<_>>().join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_resolve_and_redact() {
        let env = |k: &str| (k == "PW").then(|| "s3cr@t".to_string());
        let (url, secrets) =
            resolve_url("postgres://u:${PW}@h/db", "sales", &env).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url, "postgres://u:s3cr%40t@h/db");
        let err = redact(Error::external(format!("cannot reach {url}")), &secrets);
        assert!(!err.message.contains("s3cr"), "{}", err.message);
        let whole = |k: &str| (k == "URL").then(|| "postgres://u:p@h:5432/db".to_string());
        let (url, _) = resolve_url("${URL}", "sales", &whole).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            url, "postgres://u:p@h:5432/db",
            "a whole URL is taken as it is"
        );
        let host = |k: &str| (k == "HOST").then(|| "10.0.0.5:5432".to_string());
        let (url, _) = resolve_url("postgres://u@${HOST}/db", "sales", &host)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(url, "postgres://u@10.0.0.5:5432/db");
        let missing = resolve_url("postgres://u:${NOPE}@h/db", "sales", &env);
        assert!(missing.is_err_and(|e| e.message.contains("NOPE")));
    }
}
