//! Change capture: a table's changes read from its database's log — PostgreSQL logical
//! decoding (pgoutput, through a replication slot) and the MySQL/MariaDB row binlog —
//! as bounded runs, hard deletes included.
//!
//! A run, under the job's lease:
//! 1. `plan` checks the server (wal_level, the table's replica identity, the
//!    publication, the slot) and what the job committed. No position yet: the slot is
//!    made (or an existing one adopted) **before** the table is copied, so that every
//!    change after the copy's start is in the log after the slot's position; the run is
//!    the snapshot. A position: the slot must still be there, valid, of this server and
//!    not ahead of it (a slot behind it missed the last acknowledgement and is advanced);
//!    the run's end is fixed at the WAL flushed now.
//! 2. `extract` streams the snapshot's rows (operation `r`) or the changes up to the
//!    end, in commit order, numbered by `_sluice_seq` from the committed counter on.
//!    Replaying changes the snapshot already saw converges: inserts and updates carry
//!    the whole row, deletes the key, and the log's order decides.
//! 3. The pipeline commits the rows with the new position in the job's state (one
//!    compare-and-set, or the Delta commit and its prepared state); a run that read no
//!    change saves only the position. Only then does the acknowledgement advance the
//!    slot: a crash before leaves the slot behind, and the next run advances it.
//!
//! A lost position (the slot dropped or invalidated, another server) is the user's error
//! with the recovery, never a run that reads nothing. Each database is one module.

pub mod columns;
mod mysql;
pub mod position;
mod postgres;

use serde::{Deserialize, Serialize};

pub use position::{ChangeState, Lsn, Position};

use datafusion::arrow::record_batch::RecordBatch;

use super::{
    Acknowledge, Checkpoint, Consumed, Extract, Report, Source, redact, resolve_url, secret,
};
use crate::error::{Error, Result};
use crate::job::{Address, ChangeFeed, ChangeLog, Job};
use crate::source::types::SourceColumn;

/// What a change capture run read of the log, and what the log keeps for the job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeReport {
    /// The run copied the table (the first run), rather than reading changes.
    #[serde(default)]
    pub snapshot: bool,
    /// Change rows read (snapshot rows, or inserts, updates, deletes, truncates; a key
    /// move is two rows).
    pub rows: u64,
    #[serde(default)]
    pub inserts: u64,
    #[serde(default)]
    pub updates: u64,
    #[serde(default)]
    pub deletes: u64,
    #[serde(default)]
    pub truncates: u64,
    /// The position the run started from and the one it committed.
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    /// The run read up to the end it fixed at its start (not stopped by max_changes).
    #[serde(default)]
    pub caught_up: bool,
    /// PostgreSQL: bytes of WAL the slot kept the server from removing, at the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_bytes: Option<i64>,
    /// PostgreSQL: the slot's `wal_status` (`reserved`, `extended`, `unreserved`, `lost`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_status: Option<String>,
}

/// Connects to the job's database for its table's changes.
pub async fn open(
    job: &Job,
    feed: &ChangeFeed,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn Source>> {
    let (url, secrets) = match &job.connection.address {
        Address::Url(template) => resolve_url(template, &job.connection.name, env)?,
        Address::Secret(id) => secret::connection_url(id, job.connection.kind)
            .await
            .map_err(|e| e.context(format!("connection `{}`", job.connection.name)))?,
        Address::Http(_) | Address::Files(_) => {
            return Err(Error::internal("a feed's connection read for changes"));
        }
    };
    let opened = match &feed.log {
        ChangeLog::Postgres { .. } => postgres::open(job, feed, &url).await,
        ChangeLog::Mysql { .. } => mysql::open(job, feed, &url).await,
    };
    opened.map_err(|e| redact(e, &secrets).context(format!("connection `{}`", job.connection.name)))
}

/// What a run consumed: the new position, committed with its rows.
pub(crate) fn consumed(
    state: ChangeState,
    report: ChangeReport,
    acknowledge: Option<Box<dyn Acknowledge>>,
) -> Consumed {
    let mut consumed = Consumed::checkpoint(Checkpoint {
        watermark: None,
        feed: None,
        changes: Some(state),
    });
    consumed.report = Report::Changes(report);
    consumed.acknowledge = acknowledge;
    consumed
}

/// An extract that fails at once (a call out of the contract's order).
pub(crate) fn failed(what: &'static str) -> Extract {
    Extract {
        batches: Box::pin(futures::stream::once(async move {
            Err::<RecordBatch, Error>(Error::internal(what))
        })),
        done: Box::pin(async move { Err::<Consumed, Error>(Error::internal(what)) }),
    }
}

/// What a copy of the table again takes: said by every refusal of a new shape.
pub(crate) const COPY_AGAIN: &str = "copy the table again: remove the job's state and lake table and run it (it takes a new snapshot)";

/// The columns the last commit read against the table's now: a column that left or
/// changed type is refused, since `log`'s changes before it no longer fit the lake's rows.
pub(crate) fn columns_remain(
    table: &str,
    log: &str,
    stored: &[(String, String)],
    now: &[SourceColumn],
) -> Result<()> {
    for (name, source_type) in stored {
        match now.iter().find(|c| c.name == *name) {
            None => {
                return Err(Error::user(format!(
                    "column `{name}` of {table} is gone (dropped or renamed): change capture does not follow that, since {log}'s changes before it no longer fit the lake's rows. To take the table's new shape, {COPY_AGAIN}"
                )));
            }
            Some(c) if c.source_type != *source_type => {
                return Err(Error::user(format!(
                    "column `{name}` of {table} changed type from {source_type} to {}: change capture does not follow that. To take the new type, {COPY_AGAIN}",
                    c.source_type
                )));
            }
            Some(_) => {}
        }
    }
    Ok(())
}
