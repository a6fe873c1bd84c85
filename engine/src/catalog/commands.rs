//! `sluice catalog sync` and `sluice ddl`.

use super::{TableDef, current_contract, job_tables};
use crate::error::{Error, Result};
use crate::job::Job;
use crate::sink::Lake;
use crate::store::StateStore;

/// Re-publishes the jobs' tables (every job when `jobs` is empty); one line per job.
pub async fn sync(
    jobs: &[&Job],
    lake: &Lake,
    store: &dyn StateStore,
    default_database: Option<&str>,
) -> Result<Vec<String>> {
    let Some(default_database) = default_database else {
        return Err(Error::user(
            "no catalog to publish in: give --catalog glue://DATABASE (or SLUICE_CATALOG)",
        ));
    };
    let mut lines = Vec::new();
    for job in jobs {
        match current_contract(job, store).await? {
            None => lines.push(format!(
                "{}: skipped: no run has committed yet and the row gives no target.schema",
                job.id
            )),
            Some(contract) => lines.push(format!(
                "{}: {}",
                job.id,
                super::publish(job, lake, &contract, default_database).await?
            )),
        }
    }
    Ok(lines)
}

/// The Athena DDL of a job's tables.
pub async fn ddl(
    job: &Job,
    lake: &Lake,
    store: &dyn StateStore,
    default_database: Option<&str>,
) -> Result<String> {
    let contract = current_contract(job, store).await?.ok_or_else(|| {
        Error::user(format!(
            "job `{}` has no contract yet: run it once, or give target.schema (sluice schema infer prints one)",
            job.id
        ))
    })?;
    let database = job
        .target
        .catalog_database
        .as_deref()
        .or(default_database)
        .unwrap_or("default");
    let mut out = Vec::new();
    for mut def in job_tables(job, &contract, database, lake) {
        if def.projection {
            def.load_partitions(lake).await?;
        }
        out.push(TableDef::ddl(&def));
    }
    Ok(out.join("\n"))
}
