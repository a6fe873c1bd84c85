//! `source.changes` compiled: a table whose changes are read from the database's log.
//! Pure, like the rest of compiling: whether the server is set up for it (wal_level,
//! binlog_format, the slot, the publication) is checked by the run, which says what to
//! change.

use super::check::{is_identifier, mode_name};
use super::table::{Relation, Split};
use crate::spec::{ChangeSetup, ConnectionKind, JobSpec, Mode, SourceSpec};

/// The change columns every change row carries, after the table's columns.
pub const OP_COLUMN: &str = "_sluice_op";
/// The change's place in the job's order of changes: a counter that goes on from run to
/// run (the merge's cursor: a key's greatest wins).
pub const SEQ_COLUMN: &str = "_sluice_seq";
/// When the change's transaction committed in the source (UTC).
pub const COMMIT_AT_COLUMN: &str = "_sluice_commit_at";
/// The log position of the change's transaction (an LSN, or a GTID and binlog position).
pub const POSITION_COLUMN: &str = "_sluice_position";

/// The merge's predicate for a delete, and for a truncate (which empties the table of
/// everything before it).
pub const DELETE_WHEN: &str = "_sluice_op = 'd'";
pub const TRUNCATE_WHEN: &str = "_sluice_op = 't'";

/// The default most changes per run.
pub const DEFAULT_MAX_CHANGES: u64 = 1_000_000;

/// A table read through its database's log.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeFeed {
    /// The table (never a query: a log has no queries).
    pub relation: Relation,
    pub log: ChangeLog,
    pub setup: ChangeSetup,
    pub max_changes: u64,
    /// Whether the first run copies the table before reading changes.
    pub snapshot: bool,
}

/// What the job reads the log through, by database.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangeLog {
    /// A logical replication slot and a publication (pgoutput).
    Postgres { slot: String, publication: String },
    /// The row binlog, read as a replica with this server id.
    Mysql { server_id: u32 },
}

/// The source fields a change job may not give, and why.
const NOT_WITH_CHANGES: [(&str, &str); 4] = [
    (
        "query",
        "a log holds a table's changes, not a query's: give `table`",
    ),
    (
        "cursor",
        "the log orders the changes (`_sluice_seq`): remove `cursor`",
    ),
    (
        "lag",
        "a run reads the changes committed when it starts: remove `lag`",
    ),
    (
        "delete_when",
        "deletes come from the log (`_sluice_op = 'd'`): remove `delete_when`",
    ),
];

/// Checks `source.changes` and the job row around it; `None` when it does not compile
/// (every problem reported to `bad`). `kind` is the connection's, when it resolved.
pub fn compile(
    spec: &JobSpec,
    kind: Option<ConnectionKind>,
    mode: Mode,
    bad: &mut impl FnMut(&str, String),
) -> Option<ChangeFeed> {
    let source = &spec.source;
    let changes = source.changes.as_ref()?;
    let given = |field: &str| match field {
        "query" => source.query.is_some(),
        "cursor" => source.cursor.is_some(),
        "lag" => source.lag.is_some(),
        _ => source.delete_when.is_some(),
    };
    for (field, why) in NOT_WITH_CHANGES {
        if given(field) {
            bad(
                &format!("source.{field}"),
                format!("not with source.changes: {why}"),
            );
        }
    }
    if !matches!(mode, Mode::Merge | Mode::Incremental) {
        bad(
            "mode",
            format!(
                "source.changes applies the changes by key (`merge`, into a Delta table) or appends them as a change table (`incremental`), not `{}`",
                mode_name(mode)
            ),
        );
    }
    // Mode `merge` asks for it already (`check_merge`).
    if spec.mode != Some(Mode::Merge) && source.primary_key.as_ref().is_none_or(Vec::is_empty) {
        bad(
            "source.primary_key",
            "is required with source.changes: name the columns that identify a row (such as [order_id]); a delete or an update is matched by them".into(),
        );
    }
    let relation = table(source, bad);
    let log = match kind {
        Some(ConnectionKind::Postgres) => Some(postgres_log(spec, bad)),
        Some(ConnectionKind::Mysql) => {
            for field in ["slot", "publication"] {
                let given = match field {
                    "slot" => changes.slot.is_some(),
                    _ => changes.publication.is_some(),
                };
                if given {
                    bad(
                        &format!("source.changes.{field}"),
                        "is PostgreSQL's; a MySQL/MariaDB job reads the binlog (see source.changes.server_id)".into(),
                    );
                }
            }
            Some(ChangeLog::Mysql {
                server_id: changes
                    .server_id
                    .unwrap_or_else(|| default_server_id(&spec.job)),
            })
        }
        Some(other) => {
            bad(
                "source.changes",
                format!(
                    "reads the log of a PostgreSQL or MySQL/MariaDB database; connection `{}` is a {} connection{}",
                    source.connection,
                    other.name(),
                    if other == ConnectionKind::Sqlite {
                        " (SQLite has no log to read: use mode `full`, or `merge` with a cursor and delete_when)"
                    } else {
                        ""
                    }
                ),
            );
            None
        }
        None => None,
    };
    if let Some(0) = changes.server_id {
        bad(
            "source.changes.server_id",
            "0 is not a replica's id: give a number from 1 to 4294967295 that no other replica of the server uses".into(),
        );
    }
    let max_changes = changes.max_changes.unwrap_or(DEFAULT_MAX_CHANGES);
    if !(1..=100_000_000).contains(&max_changes) {
        bad(
            "source.changes.max_changes",
            format!("{max_changes} is out of range (1 to 100000000)"),
        );
    }
    Some(ChangeFeed {
        relation: relation?,
        log: log?,
        setup: changes.setup.unwrap_or(ChangeSetup::Create),
        max_changes,
        snapshot: changes.snapshot.unwrap_or(true),
    })
}

/// The table a change job reads.
fn table(source: &SourceSpec, bad: &mut impl FnMut(&str, String)) -> Option<Relation> {
    let Some(text) = &source.table else {
        bad(
            "source.table",
            "is required with source.changes: name the table whose changes to read (`schema.table`)".into(),
        );
        return None;
    };
    let parts: Vec<&str> = text.trim().split('.').collect();
    match parts.as_slice() {
        [name] if is_identifier(name) => Some(Relation::Table {
            schema: None,
            name: name.to_string(),
        }),
        [schema, name] if is_identifier(schema) && is_identifier(name) => Some(Relation::Table {
            schema: Some(schema.to_string()),
            name: name.to_string(),
        }),
        _ => {
            bad(
                "source.table",
                format!(
                    "{text:?} is not a table name such as `orders` or `sales.orders` (letters, digits, `_`)"
                ),
            );
            None
        }
    }
}

/// PostgreSQL's slot and publication names: given or `sluice_<job>`, each a valid
/// replication slot name (lower-case letters, digits and `_`, at most 63).
fn postgres_log(spec: &JobSpec, bad: &mut impl FnMut(&str, String)) -> ChangeLog {
    let changes = spec.source.changes.clone().unwrap_or_default();
    if changes.server_id.is_some() {
        bad(
            "source.changes.server_id",
            "is MySQL/MariaDB's; a PostgreSQL job reads through a slot (source.changes.slot)"
                .into(),
        );
    }
    let default = format!("sluice_{}", spec.job);
    let mut name = |field: &str, given: Option<String>| {
        let name = given.unwrap_or_else(|| default.clone());
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            bad(
                &format!("source.changes.{field}"),
                format!(
                    "{name:?} is not a valid {field} name: lower-case letters, digits and `_`, at most 63 characters{}",
                    if field == "slot" && name.len() > 63 {
                        " (the default is sluice_<job>: give a shorter one)"
                    } else {
                        ""
                    }
                ),
            );
        }
        name
    };
    let slot = name("slot", changes.slot);
    let publication = name("publication", changes.publication);
    ChangeLog::Postgres { slot, publication }
}

/// A server id from the job's id, stable across runs: 7000 plus a hash below 1000000.
fn default_server_id(job: &str) -> u32 {
    let hash = job.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    7000 + hash % 1_000_000
}

/// How a change job splits its snapshot (the table's parts), from `source.split`.
pub fn split(source: &SourceSpec) -> Option<Split> {
    source.split.as_ref().map(|s| Split {
        parts: s.parts as usize,
        column: s.column.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_stable_and_not_zero() {
        assert_eq!(default_server_id("orders"), default_server_id("orders"));
        assert!(default_server_id("orders") >= 7000);
        assert_ne!(default_server_id("orders"), default_server_id("invoices"));
    }
}
