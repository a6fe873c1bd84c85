//! What a MariaDB server must have for change capture, checked before a run reads: each
//! missing thing is the user's error (exit 2) with the statement or setting that fixes
//! it. Also the binlog positions a run needs — where a snapshot starts, where the binlog
//! ends now — and the checks that a committed position still means something here (the
//! same server, its binlog not purged, the same history).

use sqlx::mysql::MySqlRow;
// Statements without parameters go as text (COM_QUERY): SHOW and START TRANSACTION are
// not all preparable.
use sqlx::{Executor, MySqlConnection, Row};

use super::gtid::{BinlogPos, GtidState};
use crate::error::{Error, Result, classify_sqlx};
use crate::source::types::SourceColumn;

/// The binlog settings change capture needs, each with its fix; and a MariaDB server
/// (MySQL's GTIDs and events are other ones, not read yet).
pub async fn settings(conn: &mut MySqlConnection) -> Result<()> {
    let settings: (i64, String, String) =
        sqlx::query_as("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| classify_sqlx(e, "reading the binlog settings"))?;
    let metadata: Option<String> = sqlx::query_scalar("SELECT @@binlog_row_metadata")
        .fetch_one(&mut *conn)
        .await
        .ok();
    let (log_bin, format, image) = settings;
    let mut fixes = Vec::new();
    if log_bin != 1 {
        fixes.push("the binary log is off: start the server with `log-bin` (and a `server-id`); on Amazon RDS set `backup_retention_period` > 0 and `binlog_format` in the parameter group".to_string());
    }
    if !format.eq_ignore_ascii_case("ROW") {
        fixes.push(format!("binlog_format is {format}: set `binlog_format = ROW` (`SET GLOBAL binlog_format = 'ROW';` and in the server's configuration)"));
    }
    if !image.eq_ignore_ascii_case("FULL") {
        fixes.push(format!("binlog_row_image is {image}: set `binlog_row_image = FULL` (a row image without the unchanged columns cannot rebuild the row)"));
    }
    match metadata {
        Some(m) if m.eq_ignore_ascii_case("FULL") => {}
        Some(m) => fixes.push(format!("binlog_row_metadata is {m}: set `binlog_row_metadata = FULL` (the log then names each row's columns, so a schema change is seen at its event)")),
        None => fixes.push("the server has no binlog_row_metadata (MariaDB 10.5+ is needed)".into()),
    }
    let compressed: Option<i64> = sqlx::query_scalar("SELECT CAST(@@log_bin_compress AS SIGNED)")
        .fetch_one(&mut *conn)
        .await
        .ok();
    if compressed == Some(1) {
        fixes.push("log_bin_compress is ON: set `log_bin_compress = OFF` (compressed binlog events are not read)".into());
    }
    if !fixes.is_empty() {
        return Err(Error::user(format!(
            "the server is not set up for change capture:\n  {}",
            fixes.join("\n  ")
        )));
    }
    let version: String = sqlx::query_scalar("SELECT CAST(VERSION() AS CHAR)")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, "reading the server's version"))?;
    if !version.to_ascii_lowercase().contains("mariadb") {
        return Err(Error::user(format!(
            "the server is MySQL {version}: change capture reads MariaDB's binlog (its GTIDs and events); MySQL's is not read in this version of sluice. Use mode `merge` with a cursor and delete_when meanwhile"
        )));
    }
    Ok(())
}

/// The server's `@@server_id`: a committed position is only valid on the server it
/// was read from.
pub async fn server_id(conn: &mut MySqlConnection) -> Result<u64> {
    sqlx::query_scalar("SELECT CAST(@@server_id AS UNSIGNED)")
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, "reading the server's server_id"))
}

/// Starts a consistent-snapshot transaction on `conn` and returns the binlog position
/// it sees (MariaDB's `binlog_snapshot_file` / `binlog_snapshot_position`, taken without
/// a lock): the snapshot read in this transaction holds every change before it and
/// none after, so the stream goes on exactly from there.
pub async fn snapshot_at(conn: &mut MySqlConnection) -> Result<BinlogPos> {
    (&mut *conn)
        .execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
        .await
        .map_err(|e| classify_sqlx(e, "starting the snapshot's transaction"))?;
    let rows = (&mut *conn)
        .fetch_all("SHOW STATUS LIKE 'binlog_snapshot_%'")
        .await
        .map_err(|e| classify_sqlx(e, "reading the snapshot's binlog position"))?;
    let (mut file, mut pos) = (None, None);
    for row in &rows {
        match text(row, 0)?.to_ascii_lowercase().as_str() {
            "binlog_snapshot_file" => file = Some(text(row, 1)?),
            "binlog_snapshot_position" => pos = text(row, 1)?.parse::<u64>().ok(),
            _ => {}
        }
    }
    let (Some(file), Some(pos)) = (file.filter(|f| !f.is_empty()), pos) else {
        return Err(Error::user(
            "the server gives no binlog_snapshot_file / binlog_snapshot_position (MariaDB with the binary log on is needed)",
        ));
    };
    let gtid = gtid_at(conn, &file, pos).await?.unwrap_or_default();
    Ok(BinlogPos { file, pos, gtid })
}

/// The end of the binlog now (the run reads up to it), with the GTID state there.
pub async fn end(conn: &mut MySqlConnection) -> Result<BinlogPos> {
    let doing = "reading the binlog's end (SHOW MASTER STATUS: the user needs `GRANT BINLOG MONITOR, REPLICATION SLAVE, SELECT ON *.* TO …;`)";
    let rows = (&mut *conn)
        .fetch_all("SHOW MASTER STATUS")
        .await
        .map_err(|e| classify_sqlx(e, doing))?;
    let Some(row) = rows.first() else {
        return Err(Error::user(
            "SHOW MASTER STATUS is empty: the binary log is off (start the server with `log-bin`)",
        ));
    };
    let file = text(row, 0)?;
    let pos: u64 = text(row, 1)?
        .parse()
        .map_err(|_| Error::internal("SHOW MASTER STATUS gave a position that is not a number"))?;
    let gtid = match gtid_at(conn, &file, pos).await? {
        Some(g) => g,
        None => {
            let now: String = sqlx::query_scalar("SELECT CAST(@@gtid_binlog_pos AS CHAR)")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| classify_sqlx(e, "reading @@gtid_binlog_pos"))?;
            parse(&now)?
        }
    };
    Ok(BinlogPos { file, pos, gtid })
}

/// The recovery from a position that cannot be read any more.
pub fn reset(job: &str, position: &str) -> String {
    format!(
        "The changes since {position} cannot be read from this server's binlog: copy the table again — remove job `{job}`'s state and its lake table, and run the job (it takes a new snapshot). Keep the binlog longer than the job's schedule (`binlog_expire_logs_seconds`; on RDS `CALL mysql.rds_set_configuration('binlog retention hours', 72);`)"
    )
}

/// A committed position checked against the server: the same `server_id`, its binlog
/// still there (not purged past it), the same history at it. Returns the binlog bytes
/// after the position (what the job has yet to read).
pub async fn resume(
    conn: &mut MySqlConnection,
    job: &str,
    (stored, stored_server): (&BinlogPos, u64),
    now_server: u64,
) -> Result<i64> {
    let shown = format!("{}:{} ({})", stored.file, stored.pos, stored.gtid);
    if stored_server != now_server {
        return Err(Error::user(format!(
            "job `{job}` committed a binlog position of MariaDB server {stored_server} (server_id), and the connection reaches server {now_server} (a failover, a blue/green switch, or another server): its position means nothing here. {}",
            reset(job, &shown)
        )));
    }
    let rows = (&mut *conn).fetch_all("SHOW BINARY LOGS")
        .await
        .map_err(|e| classify_sqlx(e, "listing the binary logs (SHOW BINARY LOGS: the user needs `GRANT BINLOG MONITOR ON *.* TO …;`)"))?;
    let mut files = Vec::new();
    for row in &rows {
        files.push((text(row, 0)?, text(row, 1)?.parse::<i64>().unwrap_or(0)));
    }
    let Some(at) = files.iter().position(|(f, _)| *f == stored.file) else {
        // Gone: harmless only if nothing after the position was in it (the oldest file
        // left starts at or before the position, by GTID).
        let oldest = match files.first() {
            Some((f, _)) => gtid_at(conn, f, 4).await?,
            None => None,
        };
        let covered = oldest.is_some_and(|o| !stored.gtid.is_empty() && stored.gtid.covers(&o));
        if !covered {
            return Err(Error::user(format!(
                "binlog file {} of job `{job}`'s position was purged (the oldest left is {}). {}",
                stored.file,
                files.first().map_or("none", |(f, _)| f.as_str()),
                reset(job, &shown)
            )));
        }
        return Ok(files.iter().map(|(_, size)| size).sum());
    };
    if !stored.gtid.is_empty()
        && let Some(there) = gtid_at(conn, &stored.file, stored.pos).await?
        && there != stored.gtid
    {
        return Err(Error::user(format!(
            "at {}:{} this server's binlog is at GTID {there}, and job `{job}` committed {} there: it is another history (a restore, or another server with the same server_id). {}",
            stored.file,
            stored.pos,
            stored.gtid,
            reset(job, &shown)
        )));
    }
    let behind: i64 = files[at..].iter().map(|(_, size)| size).sum();
    Ok(behind - i64::try_from(stored.pos).unwrap_or(0))
}

/// The GTID state at a place in the binlog (`BINLOG_GTID_POS`); `None` when the server
/// cannot tell (the file is gone, the offset is not an event's start).
async fn gtid_at(conn: &mut MySqlConnection, file: &str, pos: u64) -> Result<Option<GtidState>> {
    let text: Option<String> = sqlx::query_scalar("SELECT CAST(BINLOG_GTID_POS(?, ?) AS CHAR)")
        .bind(file)
        .bind(pos)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, "reading the GTID state at a binlog position"))?;
    text.as_deref().map(parse).transpose()
}

fn parse(text: &str) -> Result<GtidState> {
    GtidState::parse(text).map_err(|m| Error::internal(format!("the server's GTID state: {m}")))
}

/// A column of a text-protocol row (SHOW statements) as text.
fn text(row: &MySqlRow, i: usize) -> Result<String> {
    row.try_get_unchecked::<String, _>(i)
        .map_err(|e| classify_sqlx(e, "reading a SHOW statement's answer"))
}

/// The columns the last commit read against the table's now: a column that left or
/// changed type is refused (the binlog's changes before it no longer fit the lake's
/// rows); one added NOT NULL or with a default is refused too (the rows that were there
/// have a value the binlog holds no change for).
pub async fn columns(
    conn: &mut MySqlConnection,
    (schema, table): (&str, &str),
    stored: &[(String, String)],
    now: &[SourceColumn],
) -> Result<()> {
    crate::source::changes::columns_remain(
        &format!("{schema}.{table}"),
        "the binlog",
        stored,
        now,
    )?;
    if stored.is_empty() {
        return Ok(());
    }
    let catalog: Vec<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT CAST(COLUMN_NAME AS CHAR), CAST(IS_NULLABLE AS CHAR), CAST(COLUMN_DEFAULT AS CHAR) \
         FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "reading the table's column defaults"))?;
    // MariaDB shows a NULL default as the text NULL (and text defaults quoted).
    let filled = catalog.iter().find(|(name, nullable, default)| {
        !stored.iter().any(|(s, _)| s == name)
            && (nullable == "NO" || default.as_deref().is_some_and(|d| d != "NULL"))
    });
    if let Some((added, _, _)) = filled {
        return Err(Error::user(format!(
            "column `{added}` was added to {schema}.{table} NOT NULL or with a DEFAULT: the rows that were there have a value, but the binlog holds no change for them. Add columns NULL without a default (and UPDATE them in the source), or {}",
            crate::source::changes::COPY_AGAIN
        )));
    }
    Ok(())
}
