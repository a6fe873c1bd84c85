//! Connecting a job to its database: the URL (from the connection or its secret) and the
//! module of its kind (`postgres`, `mysql`, `sqlite`), which reads the relation as a
//! [`Table`]. Kept apart from [`super::table`] so that the table contract sits below the
//! databases that implement it and this dispatch sits above them.

use super::table::{Table, Tabular};
use super::{Source, mysql, postgres, redact, resolve_url, secret, sql, sqlite};
use crate::error::{Error, Result};
use crate::job::{Address, ConnectionKind, Job, Relation};

/// Connects to the job's database.
pub async fn open(
    job: &Job,
    relation: &Relation,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn Source>> {
    let (url, secrets) = match &job.connection.address {
        Address::Url(template) => resolve_url(template, &job.connection.name, env)?,
        Address::Secret(id) => secret::connection_url(id, job.connection.kind)
            .await
            .map_err(|e| e.context(format!("connection `{}`", job.connection.name)))?,
        Address::Http(_) | Address::Files(_) => {
            return Err(Error::internal("a feed's connection read as a table"));
        }
    };
    let plan = sql::Plan::new(job, relation);
    let table: Result<Box<dyn Table>> = match job.connection.kind {
        ConnectionKind::Postgres => postgres::connect(&url, plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Table>),
        ConnectionKind::Mysql => mysql::connect(&url, plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Table>),
        ConnectionKind::Sqlite => sqlite::connect(&url, job.connection.base_dir.as_deref(), plan)
            .await
            .map(|s| Box::new(s) as Box<dyn Table>),
        _ => Err(Error::internal("a feed's connection read as a table")),
    };
    let table = table.map_err(|e| {
        redact(e, &secrets).context(format!("connection `{}`", job.connection.name))
    })?;
    Ok(Box::new(Tabular::new(table, job)))
}
