//! `source.changes`: change capture from a database's log (PostgreSQL logical decoding,
//! the MySQL/MariaDB row binlog) instead of a cursor window.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Reads every change of the table from the database's log — inserts, updates that move
/// no cursor, hard deletes, truncates — as bounded runs: a run fixes the log's end when
/// it starts, reads the changes up to it, commits them with the log position, and only
/// then lets the database forget them (advances the replication slot). The first run
/// copies the table (a snapshot) after taking its position, so nothing is lost between
/// the two. With mode `merge` (a Delta table) the changes are applied by
/// `source.primary_key`; with mode `incremental` every change is appended as a row with
/// its operation (`_sluice_op`: `r` snapshot, `i`, `u`, `d`, `t` truncate), its order
/// (`_sluice_seq`), its commit time (`_sluice_commit_at`) and log position
/// (`_sluice_position`). `sluice run` checks the database's settings and says what to
/// change (`wal_level = logical`; `binlog_format = ROW`, …).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangesSpec {
    /// PostgreSQL: the logical replication slot the job reads through (default
    /// `sluice_<job>`). One slot per job: a slot keeps the server's WAL until the job has
    /// committed what it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<String>,
    /// PostgreSQL: the publication that names the table (default `sluice_<job>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<String>,
    /// `create` (the default): the first run creates the slot and the publication if
    /// they are missing (the connection's role needs REPLICATION and to own the table);
    /// `check`: a DBA made them, and a run only checks them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub setup: Option<ChangeSetup>,
    /// The most changes one run reads (default 1000000, from 1 to 100000000); a run ends
    /// on a transaction's commit, so one larger transaction is read whole. The next run
    /// goes on from there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_changes: Option<u64>,
    /// MySQL/MariaDB: the server id the job's binlog reader announces, unique among the
    /// server's replicas (default 7000 plus a number taken from the job's id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<u32>,
    /// `false`: no initial copy of the table; the lake gets only the changes made from
    /// the first run on. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<bool>,
}

/// Who makes the replication slot and the publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSetup {
    /// The first run makes what is missing.
    Create,
    /// A DBA made them; a run that misses one fails and prints the statement to run.
    Check,
}
