//! MySQL/MariaDB change capture: the server's settings a row binlog reader needs,
//! checked with the statement that fixes each. Reading the binlog itself (a replica's
//! COM_BINLOG_DUMP through `mysql_async`, MariaDB's GTID events) is not built yet: a
//! job that passes the checks is refused with that said, never run as a 0-row success.

use std::str::FromStr;

use sqlx::mysql::MySqlConnectOptions;
use sqlx::{ConnectOptions, MySqlConnection};

use crate::error::{Error, Result, classify_sqlx};
use crate::job::{ChangeFeed, Job};
use crate::source::Source;

/// Checks the server, then refuses: the binlog reader is the next step.
pub async fn open(job: &Job, _: &ChangeFeed, url: &str) -> Result<Box<dyn Source>> {
    let options = MySqlConnectOptions::from_str(url)
        .map_err(|e| Error::user(format!("invalid mysql url: {e}")))?;
    let mut conn = options
        .connect()
        .await
        .map_err(|e| classify_sqlx(e, "connecting to MySQL"))?;
    check(&mut conn).await?;
    Err(Error::user(format!(
        "job `{}`: the server is set up for change capture, but reading the MySQL/MariaDB binlog is not built in this version of sluice (PostgreSQL's log is). Use mode `merge` with a cursor and delete_when meanwhile",
        job.id
    )))
}

/// The binlog settings change capture needs, each with its fix.
pub async fn check(conn: &mut MySqlConnection) -> Result<()> {
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
        None => fixes.push("the server has no binlog_row_metadata (MariaDB 10.5+ or MySQL 8.0 are needed)".into()),
    }
    if fixes.is_empty() {
        return Ok(());
    }
    Err(Error::user(format!(
        "the server is not set up for change capture:\n  {}",
        fixes.join("\n  ")
    )))
}
