//! MariaDB change capture: the row binlog read as a replica through `mysql_async`'s
//! binlog stream (sqlx has no replication commands), MariaDB's GTID events parsed here,
//! the row values by mysql_common. The checks and the snapshot stay on sqlx, as the
//! MySQL table source does ([`crate::source::mysql`]).
//!
//! The first run copies the table inside `START TRANSACTION WITH CONSISTENT SNAPSHOT`,
//! whose binlog position MariaDB tells (`binlog_snapshot_file` / `_position`, no lock):
//! the copy holds every change before it and none after, and the GTID state there
//! (`BINLOG_GTID_POS`) is where the next run resumes (`@slave_connect_state`). The
//! position — GTID state, file and offset, and `@@server_id` — is committed with the
//! rows; the binlog needs no acknowledgement (a replica's reading removes nothing), so
//! a crash after the commit loses nothing and the next run reads on from the position.

mod binlog;
mod check;
mod gtid;
mod shape;
mod value;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::MySql;

use self::gtid::{BinlogPos, GtidState};
use super::columns::{snapshot_rows, with_change_columns};
use super::position::{ChangeState, Position};
use super::{ChangeReport, consumed, failed};
use crate::error::{Error, Result, classify_sqlx};
use crate::job::{ChangeFeed, ChangeLog, Job, Relation};
use crate::source::batch::BatchBuilder;
use crate::source::cursor::{CursorValue, Window};
use crate::source::sql::{Plan, SqlSource};
use crate::source::table::Table;
use crate::source::types::{SourceColumn, arrow_schema};
use crate::source::{Checkpoint, Extract, Ledger, RunContext, Source};

/// Connects for the job's table (sqlx) and prepares the binlog connection's options.
pub async fn open(job: &Job, feed: &ChangeFeed, url: &str) -> Result<Box<dyn Source>> {
    let ChangeLog::Mysql { server_id } = &feed.log else {
        return Err(Error::internal("a PostgreSQL change job opened as MySQL"));
    };
    let binlog = binlog_options(url)?;
    let plan = Plan::new(job, &feed.relation);
    let source = crate::source::mysql::connect(url, plan).await?;
    Ok(Box::new(MyChanges {
        job_id: job.id.clone(),
        key: job.primary_key.clone(),
        replica_id: *server_id,
        max_changes: feed.max_changes,
        snapshot: feed.snapshot,
        relation: feed.relation.clone(),
        binlog,
        source,
        table_columns: Vec::new(),
        planned: None,
    }))
}

/// A MariaDB table's changes, for one run.
struct MyChanges {
    job_id: String,
    key: Vec<String>,
    /// The replica id the binlog reader announces (source.changes.server_id).
    replica_id: u32,
    max_changes: u64,
    snapshot: bool,
    relation: Relation,
    binlog: mysql_async::Opts,
    source: SqlSource<MySql>,
    /// The table's columns, without the change columns (set by `columns`).
    table_columns: Vec<SourceColumn>,
    planned: Option<Planned>,
}

/// What `plan` fixed for the run.
struct Planned {
    phase: Phase,
    /// The table: its database and name.
    table: (String, String),
    /// The server's `@@server_id`.
    server: u64,
    /// The columns the last commit had.
    known: Vec<String>,
    /// The last `_sluice_seq` committed.
    seq: i64,
    report: ChangeReport,
}

enum Phase {
    /// The first run copies the table in a snapshot taken at `at`.
    Snapshot { at: BinlogPos },
    /// The changes after `from` up to `end`.
    Stream { from: BinlogPos, end: BinlogPos },
}

/// A binlog place as the run summary and the window show it.
fn shown(at: &BinlogPos) -> String {
    format!("{}:{} ({})", at.file, at.pos, at.gtid)
}

/// The `_sluice_position` of the snapshot's rows: the GTID state it was taken at (the
/// file and offset on a server that has logged no GTID yet).
fn row_position(at: &BinlogPos) -> String {
    if at.gtid.is_empty() {
        format!("{}:{}", at.file, at.pos)
    } else {
        at.gtid.to_string()
    }
}

#[async_trait]
impl Source for MyChanges {
    async fn columns(&mut self) -> Result<Vec<SourceColumn>> {
        self.table_columns = self.source.columns().await?;
        with_change_columns(self.table_columns.clone())
    }

    async fn plan(
        &mut self,
        _: &[SourceColumn],
        committed: &Checkpoint,
        _: &dyn Ledger,
        _: DateTime<Utc>,
    ) -> Result<Option<Window>> {
        let conn = &mut self.source.conn;
        check::settings(conn).await?;
        let Relation::Table { schema, name } = &self.relation else {
            return Err(Error::internal("a change job of a query"));
        };
        let schema = match schema {
            Some(s) => s.clone(),
            None => sqlx::query_scalar::<_, Option<String>>("SELECT CAST(DATABASE() AS CHAR)")
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| classify_sqlx(e, "reading the connection's database"))?
                .ok_or_else(|| {
                    Error::user(
                        "the connection names no database: give source.table as `database.table`",
                    )
                })?,
        };
        let server = check::server_id(conn).await?;
        let mut report = ChangeReport::default();
        let (phase, seq, known) = match &committed.changes {
            None if self.snapshot => (
                Phase::Snapshot {
                    at: check::snapshot_at(conn).await?,
                },
                0,
                Vec::new(),
            ),
            None => {
                let from = check::end(conn).await?;
                (
                    Phase::Stream {
                        from: from.clone(),
                        end: from,
                    },
                    0,
                    Vec::new(),
                )
            }
            Some(state) => {
                let Position::Mysql {
                    file,
                    pos,
                    gtid,
                    server_id,
                } = &state.position
                else {
                    return Err(Error::user(format!(
                        "job `{}` holds a PostgreSQL position but reads MariaDB now: remove its state and lake table to copy the table again",
                        self.job_id
                    )));
                };
                let gtid = GtidState::parse(gtid)
                    .map_err(|m| Error::internal(format!("the job's stored position: {m}")))?;
                let from = BinlogPos {
                    file: file.clone(),
                    pos: *pos,
                    gtid,
                };
                let behind = check::resume(conn, &self.job_id, (&from, *server_id), server).await?;
                report.retained_bytes = Some(behind);
                check::columns(
                    conn,
                    (schema.as_str(), name.as_str()),
                    &state.columns,
                    &self.table_columns,
                )
                .await?;
                let end = check::end(conn).await?;
                let known = state.columns.iter().map(|(c, _)| c.clone()).collect();
                (Phase::Stream { from, end }, state.seq, known)
            }
        };
        if report.retained_bytes.is_some_and(|b| b > 1 << 30) {
            tracing::warn!(job = %self.job_id, behind_bytes = ?report.retained_bytes, "the job is more than 1 GiB of binlog behind: run it more often, and keep the binlog longer than its schedule");
        }
        let (lo, hi) = match &phase {
            Phase::Snapshot { at } => (None, shown(at)),
            Phase::Stream { from, end } => (Some(shown(from)), shown(end)),
        };
        report.from = lo.clone().unwrap_or_default();
        self.planned = Some(Planned {
            phase,
            table: (schema, name.clone()),
            server,
            known,
            seq,
            report,
        });
        Ok(Some(Window {
            cursor: Some(crate::job::changes::POSITION_COLUMN.to_string()),
            lo: lo.map(CursorValue::Text),
            hi: Some(CursorValue::Text(hi)),
        }))
    }

    fn extract(self: Box<Self>, columns: Vec<SourceColumn>, _: Window, run: RunContext) -> Extract {
        let this = *self;
        let Some(planned) = this.planned else {
            return failed("extract before plan");
        };
        let stored_columns: Vec<(String, String)> = this
            .table_columns
            .iter()
            .map(|c| (c.name.clone(), c.source_type.clone()))
            .collect();
        let Planned {
            phase,
            table,
            server,
            known,
            seq: committed_seq,
            mut report,
        } = planned;
        let position = move |at: &BinlogPos| Position::Mysql {
            file: at.file.clone(),
            pos: at.pos,
            gtid: at.gtid.to_string(),
            server_id: server,
        };
        match phase {
            Phase::Snapshot { at } => {
                // The same connection, still in the snapshot's transaction (a split
                // table's other parts take their own snapshots later: the changes
                // after `at` that they already hold are replayed over them in order).
                let last_seq = Arc::new(AtomicI64::new(committed_seq));
                let schema = arrow_schema(&columns);
                let source: Box<dyn Table> = Box::new(this.source);
                let rows = source.extract(this.table_columns, Window::everything(), run.batches);
                let batches = snapshot_rows(
                    rows,
                    schema,
                    (Utc::now(), row_position(&at)),
                    last_seq.clone(),
                );
                let done = async move {
                    let seq = last_seq.load(Ordering::SeqCst);
                    report.snapshot = true;
                    report.rows = u64::try_from(seq - committed_seq).unwrap_or(0);
                    report.to = shown(&at);
                    report.caught_up = true;
                    let state = ChangeState {
                        position: position(&at),
                        seq,
                        columns: stored_columns,
                    };
                    Ok(consumed(state, report, None))
                };
                Extract {
                    batches,
                    done: Box::pin(done),
                }
            }
            Phase::Stream { from, end } => {
                let plan = Plan {
                    batches: run.batches,
                    ..this.source.plan.clone()
                };
                let builder = BatchBuilder::new(arrow_schema(&columns), columns, plan.batch(1));
                let read = binlog::BinlogRead {
                    job: this.job_id,
                    opts: this.binlog,
                    replica_id: this.replica_id,
                    table,
                    columns: this.table_columns,
                    known,
                    key: this.key,
                    from,
                    end,
                    max_changes: this.max_changes,
                    seq: committed_seq,
                };
                // The binlog connection does the reading; the catalog's is done.
                drop(this.source);
                crate::source::produced("the MariaDB binlog stream", move |tx| async move {
                    let ended = binlog::read(read, builder, tx, &mut report).await?;
                    report.rows = u64::try_from(ended.seq - committed_seq).unwrap_or(0);
                    report.to = shown(&ended.position);
                    let state = ChangeState {
                        position: position(&ended.position),
                        seq: ended.seq,
                        columns: stored_columns,
                    };
                    Ok(consumed(state, report, None))
                })
            }
        }
    }
}

/// The binlog connection's options from the job's URL (sqlx's form): its address,
/// user, password and database through mysql_async's own URL reading, and TLS from
/// sqlx's `ssl-mode` / `ssl-ca` (`PREFERRED`, sqlx's default, has no equivalent in
/// mysql_async: it reads without TLS; give `ssl-mode=REQUIRED` or `VERIFY_IDENTITY`).
fn binlog_options(url: &str) -> Result<mysql_async::Opts> {
    let bad = |e: String| Error::user(format!("invalid mysql url: {e}"));
    let url = url.replacen("mariadb://", "mysql://", 1);
    let parsed = url::Url::parse(&url).map_err(|e| bad(e.to_string()))?;
    let params: HashMap<String, String> = parsed
        .query_pairs()
        .map(|(k, v)| {
            (
                k.to_ascii_lowercase().replace('_', "-"),
                v.to_ascii_lowercase(),
            )
        })
        .collect();
    let mut bare = parsed.clone();
    bare.set_query(None);
    bare.set_fragment(None);
    let opts = mysql_async::Opts::from_url(bare.as_str()).map_err(|e| bad(e.to_string()))?;
    let ssl = match params
        .get("ssl-mode")
        .or_else(|| params.get("sslmode"))
        .map(String::as_str)
    {
        None | Some("disabled" | "preferred") => None,
        Some("required") => Some(
            mysql_async::SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
        Some("verify_ca" | "verify-ca") => {
            Some(mysql_async::SslOpts::default().with_danger_skip_domain_validation(true))
        }
        Some(_) => Some(mysql_async::SslOpts::default()),
    };
    // The CA file's path as given (not lower-cased).
    let ca = parsed
        .query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case("ssl-ca") || k.eq_ignore_ascii_case("ssl_ca"))
        .map(|(_, v)| PathBuf::from(v.into_owned()));
    let ssl = ssl.map(|s| match ca {
        Some(ca) => s.with_root_certs(vec![ca.into()]),
        None => s,
    });
    Ok(mysql_async::OptsBuilder::from_opts(opts)
        .prefer_socket(false)
        .ssl_opts(ssl)
        .into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binlog_connection_takes_the_jobs_url() -> Result<()> {
        let opts = binlog_options("mysql://sluice:p%40ss@127.0.0.1:3307/shop?ssl-mode=DISABLED")?;
        assert_eq!(opts.ip_or_hostname(), "127.0.0.1");
        assert_eq!(opts.tcp_port(), 3307);
        assert_eq!(opts.user(), Some("sluice"));
        assert_eq!(opts.pass(), Some("p@ss"));
        assert_eq!(opts.db_name(), Some("shop"));
        assert!(opts.ssl_opts().is_none());
        let tls = binlog_options("mariadb://u@db.example:3306/x?ssl-mode=REQUIRED")?;
        assert!(tls.ssl_opts().is_some());
        Ok(())
    }
}
