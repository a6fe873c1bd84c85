//! What a PostgreSQL server must have for change capture, checked before a run reads:
//! each missing thing is the user's error (exit 2) with the statement or setting that
//! fixes it. Also the slot as the server has it, and its lag.

use sqlx::postgres::PgConnection;

use crate::error::{Error, Result, classify_sqlx};
use crate::source::changes::ChangeReport;
use crate::source::changes::position::Lsn;

/// `wal_level` must be `logical`.
pub async fn wal_level(conn: &mut PgConnection) -> Result<()> {
    let level: String = sqlx::query_scalar("SELECT current_setting('wal_level')")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, "reading wal_level"))?;
    if level != "logical" {
        return Err(Error::user(format!(
            "PostgreSQL's wal_level is `{level}`: change capture needs `logical`. Run `ALTER SYSTEM SET wal_level = logical;` and restart the server (Amazon RDS / Aurora: set `rds.logical_replication = 1` in the DB parameter group and reboot); keep max_replication_slots and max_wal_senders above the number of change capture jobs"
        )));
    }
    Ok(())
}

/// The table's replica identity must give the key of a deleted row, and (when the table
/// has columns PostgreSQL may store out of line) the old row of an update: an unchanged
/// TOASTed value is not in the log otherwise.
pub async fn replica_identity(conn: &mut PgConnection, table: &str) -> Result<()> {
    let (identity, toastable, keyed): (String, i64, bool) = sqlx::query_as(
        "SELECT c.relreplident::text, \
                (SELECT count(*) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 \
                   AND NOT a.attisdropped AND a.attstorage IN ('x', 'e')), \
                EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND (i.indisprimary OR i.indisreplident)) \
         FROM pg_class c WHERE c.oid = $1::regclass",
    )
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, &format!("reading the replica identity of {table}")))?;
    let full = format!("ALTER TABLE {table} REPLICA IDENTITY FULL;");
    match identity.as_str() {
        "f" => Ok(()),
        "n" => Err(Error::user(format!(
            "table {table} has REPLICA IDENTITY NOTHING: its deletes and updates carry no key in the log. Run `{full}`"
        ))),
        "d" if !keyed => Err(Error::user(format!(
            "table {table} has no primary key, so the log carries no key of a deleted row. Add one, or run `{full}`"
        ))),
        _ if toastable > 0 => Err(Error::user(format!(
            "table {table} has {toastable} column(s) PostgreSQL may store out of line (TOAST: text, bytea, json, …); an update that leaves such a value unchanged does not carry it in the log unless the old row does. Run `{full}`"
        ))),
        _ => Ok(()),
    }
}

/// The publication: made (with `create`) or checked to hold the table.
pub async fn publication(
    conn: &mut PgConnection,
    name: &str,
    (schema, table): (&str, &str),
    create: bool,
) -> Result<()> {
    let quoted = format!("\"{schema}\".\"{table}\"");
    let (exists, holds): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1), \
                EXISTS (SELECT 1 FROM pg_publication_tables WHERE pubname = $1 AND schemaname = $2 AND tablename = $3)",
    )
    .bind(name)
    .bind(schema)
    .bind(table)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "reading the publication"))?;
    let statement = match (exists, holds) {
        (_, true) => return Ok(()),
        (false, _) => format!("CREATE PUBLICATION \"{name}\" FOR TABLE {quoted}"),
        (true, false) => format!("ALTER PUBLICATION \"{name}\" ADD TABLE {quoted}"),
    };
    if !create {
        return Err(Error::user(format!(
            "publication `{name}` {} table {schema}.{table} (source.changes.setup is `check`): run `{statement};` as the table's owner",
            if exists {
                "does not hold"
            } else {
                "does not exist for"
            }
        )));
    }
    sqlx::query(&statement)
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            classify_sqlx(e, &format!("`{statement}` (the connection's role must own the table; or have a DBA run it and set source.changes.setup: check)"))
        })?;
    tracing::info!(publication = %name, "made the publication");
    Ok(())
}

/// A slot as the server has it.
pub struct Slot {
    pub confirmed: Lsn,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes of WAL the slot keeps.
    pub retained: Option<i64>,
    pub plugin: String,
    pub same_database: bool,
}

/// The slot `name`, if the server has it.
pub async fn slot(conn: &mut PgConnection, name: &str) -> Result<Option<Slot>> {
    type Row = (
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<String>,
        bool,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT confirmed_flush_lsn::text, wal_status::text, \
                pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::int8, plugin::text, \
                coalesce(database = current_database(), false) \
         FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "reading the replication slot"))?;
    let Some((confirmed, wal_status, retained, plugin, same_database)) = row else {
        return Ok(None);
    };
    Ok(Some(Slot {
        confirmed: confirmed
            .as_deref()
            .map(Lsn::parse)
            .transpose()?
            .unwrap_or_default(),
        wal_status,
        retained,
        plugin: plugin.unwrap_or_default(),
        same_database,
    }))
}

/// Makes the slot; returns its position (the changes after it are the slot's).
pub async fn create_slot(conn: &mut PgConnection, name: &str) -> Result<Lsn> {
    let lsn: String = sqlx::query_scalar(
        "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'pgoutput')",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| {
        classify_sqlx(e, &format!("creating replication slot `{name}` (the connection's role needs REPLICATION: `ALTER ROLE … WITH REPLICATION;`, on RDS `GRANT rds_replication TO …;`)"))
    })?;
    tracing::info!(slot = %name, lsn = %lsn, "made the replication slot");
    Lsn::parse(&lsn)
}

/// Moves the slot's confirmed position to `to` (the server keeps no WAL before it).
pub async fn advance(conn: &mut PgConnection, slot: &str, to: Lsn) -> Result<()> {
    sqlx::query("SELECT pg_replication_slot_advance($1, $2::pg_lsn)")
        .bind(slot)
        .bind(to.to_string())
        .execute(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, &format!("advancing replication slot `{slot}` to {to}")))?;
    Ok(())
}

/// The server's identity, to tell a position of another server (after a failover or a
/// restore) from this one's; `None` when the role may not read it.
pub async fn system_id(conn: &mut PgConnection) -> Option<String> {
    sqlx::query_scalar("SELECT system_identifier::text FROM pg_control_system()")
        .fetch_one(&mut *conn)
        .await
        .ok()
}

/// The end of the WAL flushed now: the run reads up to it.
pub async fn flush_lsn(conn: &mut PgConnection) -> Result<Lsn> {
    let lsn: String = sqlx::query_scalar("SELECT pg_current_wal_flush_lsn()::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, "reading the WAL's end"))?;
    Lsn::parse(&lsn)
}

/// A slot's state checked against the position the job committed: gone, invalidated,
/// of another plugin or database, or ahead of the job (someone else consumed changes)
/// is an error with the recovery; behind (a crash between the commit and the
/// acknowledgement) is advanced here.
pub async fn resume(
    conn: &mut PgConnection,
    (name, job): (&str, &str),
    slot: Option<Slot>,
    committed: Lsn,
    report: &mut ChangeReport,
) -> Result<()> {
    let reset = format!(
        "The changes since {committed} cannot be read any more: copy the table again — drop the slot if it is left (`SELECT pg_drop_replication_slot('{name}');`), remove job `{job}`'s state and its lake table, and run the job (it takes a new snapshot)"
    );
    let Some(slot) = slot else {
        return Err(Error::user(format!(
            "replication slot `{name}` is gone (dropped, or this is another server after a failover or restore). {reset}"
        )));
    };
    report.wal_status = slot.wal_status.clone();
    report.retained_bytes = slot.retained;
    if slot.wal_status.as_deref() == Some("lost") {
        return Err(Error::user(format!(
            "replication slot `{name}` is invalidated (wal_status = lost: the server removed WAL it still needed, see max_slot_wal_keep_size). {reset}"
        )));
    }
    if slot.plugin != "pgoutput" || !slot.same_database {
        return Err(Error::user(format!(
            "replication slot `{name}` is not a pgoutput slot of this database (plugin `{}`): give source.changes.slot a name of its own",
            slot.plugin
        )));
    }
    if slot.confirmed > committed {
        return Err(Error::user(format!(
            "replication slot `{name}` is at {}, past the position job `{job}` committed ({committed}): another reader consumed its changes, or the job's state is older than the slot. {reset}",
            slot.confirmed
        )));
    }
    if slot.confirmed < committed {
        tracing::warn!(slot = %name, from = %slot.confirmed, to = %committed, "the last run committed but did not advance the slot: advancing it now");
        advance(conn, name, committed).await?;
    }
    Ok(())
}
