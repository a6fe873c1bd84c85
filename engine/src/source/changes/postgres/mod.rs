//! PostgreSQL change capture: a logical replication slot (pgoutput) read through the SQL
//! slot functions over sqlx — `pg_logical_slot_peek_binary_changes` to read without
//! consuming, `pg_replication_slot_advance` after the commit — so no replication
//! protocol client is needed. The snapshot is the table read of [`crate::source`]'s
//! PostgreSQL module (COPY, in parts on one snapshot for a large table).

mod check;
mod pgoutput;
mod stream;
mod text;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::Postgres;
use sqlx::postgres::PgConnectOptions;

use super::columns::{snapshot_rows, with_change_columns};
use super::position::{ChangeState, Lsn, Position};
use super::{ChangeReport, consumed, failed};
use crate::error::{Error, Result, classify_sqlx};
use crate::job::{ChangeFeed, ChangeLog, Job, Relation};
use crate::source::batch::BatchBuilder;
use crate::source::cursor::{CursorValue, Window};
use crate::source::sql::{Plan, SqlSource};
use crate::source::table::Table;
use crate::source::types::{SourceColumn, arrow_schema};
use crate::source::{Acknowledge, Checkpoint, Extract, Ledger, RunContext, Source};
use crate::spec::ChangeSetup;

/// Connects for the job's table.
pub async fn open(job: &Job, feed: &ChangeFeed, url: &str) -> Result<Box<dyn Source>> {
    let ChangeLog::Postgres { slot, publication } = &feed.log else {
        return Err(Error::internal("a MySQL change job opened as PostgreSQL"));
    };
    let plan = Plan::new(job, &feed.relation);
    let source = crate::source::postgres::connect(url, plan).await?;
    Ok(Box::new(PgChanges {
        job_id: job.id.clone(),
        key: job.primary_key.clone(),
        slot: slot.clone(),
        publication: publication.clone(),
        create: feed.setup == ChangeSetup::Create,
        max_changes: feed.max_changes,
        snapshot: feed.snapshot,
        relation: feed.relation.clone(),
        source,
        table_columns: Vec::new(),
        planned: None,
    }))
}

/// A PostgreSQL table's changes, for one run.
struct PgChanges {
    job_id: String,
    key: Vec<String>,
    slot: String,
    publication: String,
    create: bool,
    max_changes: u64,
    snapshot: bool,
    relation: Relation,
    source: SqlSource<Postgres>,
    /// The table's columns, without the change columns (set by `columns`).
    table_columns: Vec<SourceColumn>,
    planned: Option<Planned>,
}

/// What `plan` fixed for the run.
struct Planned {
    phase: Phase,
    /// The table, `schema.name` as the catalog has it.
    table: (String, String),
    system_id: Option<String>,
    /// The last `_sluice_seq` committed.
    seq: i64,
    report: ChangeReport,
}

enum Phase {
    /// The first run copies the table; the slot's changes after `at` follow.
    Snapshot { at: Lsn },
    /// The changes after `from` up to `end`.
    Stream { from: Lsn, end: Lsn },
}

#[async_trait]
impl Source for PgChanges {
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
        let quoted = crate::source::sql::Syntax {
            quote: '"',
            numbered_params: true,
            text_type: "TEXT",
        }
        .from(&self.relation);
        let conn = &mut self.source.conn;
        check::wal_level(conn).await?;
        let (schema, name): (String, String) = sqlx::query_as(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1::regclass",
        )
        .bind(&quoted)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| classify_sqlx(e, &format!("finding table {quoted}")))?;
        check::replica_identity(conn, &quoted).await?;
        let system_id = check::system_id(conn).await;
        let slot = check::slot(conn, &self.slot).await?;
        let mut report = ChangeReport::default();
        let (phase, seq) = match &committed.changes {
            None => {
                check::publication(conn, &self.publication, (&schema, &name), self.create).await?;
                let start = match slot {
                    Some(slot) if slot.plugin == "pgoutput" && slot.same_database => {
                        // Made by a run that died before its first commit: the copy
                        // that follows makes its earlier changes harmless.
                        report.retained_bytes = slot.retained;
                        report.wal_status = slot.wal_status;
                        slot.confirmed
                    }
                    Some(slot) => {
                        return Err(Error::user(format!(
                            "replication slot `{}` exists but is not a pgoutput slot of this database (plugin `{}`): give source.changes.slot a name of its own",
                            self.slot, slot.plugin
                        )));
                    }
                    None if self.create => check::create_slot(conn, &self.slot).await?,
                    None => {
                        return Err(Error::user(format!(
                            "replication slot `{}` does not exist (source.changes.setup is `check`): run `SELECT pg_create_logical_replication_slot('{}', 'pgoutput');`",
                            self.slot, self.slot
                        )));
                    }
                };
                if self.snapshot {
                    (Phase::Snapshot { at: start }, 0)
                } else {
                    let end = check::flush_lsn(conn).await?;
                    (Phase::Stream { from: start, end }, 0)
                }
            }
            Some(state) => {
                let Position::Postgres {
                    slot: stored_slot,
                    lsn,
                    system_id: stored_id,
                } = &state.position
                else {
                    return Err(Error::user(format!(
                        "job `{}` holds a MySQL binlog position but reads PostgreSQL now: remove its state and lake table to copy the table again",
                        self.job_id
                    )));
                };
                if *stored_slot != self.slot {
                    return Err(Error::user(format!(
                        "job `{}` committed its changes through slot `{stored_slot}`, and its row now names `{}`: set source.changes.slot back, or remove the job's state and lake table to copy the table again",
                        self.job_id, self.slot
                    )));
                }
                if let (Some(stored), Some(now)) = (stored_id, &system_id)
                    && stored != now
                {
                    return Err(Error::user(format!(
                        "job `{}` committed a position of PostgreSQL server {stored}, and the connection reaches server {now} (a failover, a restore, or another database): its position means nothing here. Remove the job's state and lake table to copy the table again",
                        self.job_id
                    )));
                }
                // A publication made now would not hold the changes before it.
                check::publication(conn, &self.publication, (&schema, &name), false).await?;
                let from = Lsn::parse(lsn)?;
                check::resume(conn, (&self.slot, &self.job_id), slot, from, &mut report).await?;
                check_columns(conn, &quoted, &state.columns, &self.table_columns).await?;
                let end = check::flush_lsn(conn).await?;
                (Phase::Stream { from, end }, state.seq)
            }
        };
        if report.retained_bytes.is_some_and(|b| b > 1 << 30) {
            tracing::warn!(slot = %self.slot, retained_bytes = ?report.retained_bytes, "the replication slot keeps more than 1 GiB of WAL: run the job more often");
        }
        let (lo, hi) = match &phase {
            Phase::Snapshot { at } => (None, *at),
            Phase::Stream { from, end } => (Some(*from), *end),
        };
        report.from = lo.map(|l| l.to_string()).unwrap_or_default();
        self.planned = Some(Planned {
            phase,
            table: (schema, name),
            system_id,
            seq,
            report,
        });
        Ok(Some(Window {
            cursor: Some(crate::job::changes::POSITION_COLUMN.to_string()),
            lo: lo.map(|l| CursorValue::Text(l.to_string())),
            hi: Some(CursorValue::Text(hi.to_string())),
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
        let slot = this.slot.clone();
        let position = move |lsn: Lsn, system_id: Option<String>| Position::Postgres {
            slot: slot.clone(),
            lsn: lsn.to_string(),
            system_id,
        };
        let Planned {
            phase,
            table,
            system_id,
            seq: committed_seq,
            mut report,
        } = planned;
        match phase {
            Phase::Snapshot { at } => {
                let last_seq = Arc::new(AtomicI64::new(committed_seq));
                let schema = arrow_schema(&columns);
                let source: Box<dyn Table> = Box::new(this.source);
                let rows = source.extract(this.table_columns, Window::everything(), run.batches);
                let batches =
                    snapshot_rows(rows, schema, (Utc::now(), at.to_string()), last_seq.clone());
                let done = async move {
                    let seq = last_seq.load(Ordering::SeqCst);
                    report.snapshot = true;
                    report.rows = u64::try_from(seq - committed_seq).unwrap_or(0);
                    report.to = at.to_string();
                    report.caught_up = true;
                    let state = ChangeState {
                        position: position(at, system_id),
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
                let options = this.source.options.clone();
                let plan = Plan {
                    batches: run.batches,
                    ..this.source.plan.clone()
                };
                let builder = BatchBuilder::new(arrow_schema(&columns), columns, plan.batch(1));
                let read = stream::StreamRead {
                    slot: this.slot.clone(),
                    publication: this.publication,
                    table,
                    columns: this.table_columns,
                    key: this.key,
                    from,
                    end,
                    max_changes: this.max_changes,
                    seq: committed_seq,
                };
                let conn = this.source.conn;
                let slot = this.slot;
                crate::source::produced("the PostgreSQL change stream", move |tx| async move {
                    let ended = stream::read(conn, read, builder, tx, &mut report).await?;
                    report.rows = u64::try_from(ended.seq - committed_seq).unwrap_or(0);
                    report.to = ended.position.to_string();
                    let state = ChangeState {
                        position: position(ended.position, system_id),
                        seq: ended.seq,
                        columns: stored_columns,
                    };
                    let advance = Advance {
                        options,
                        slot,
                        to: ended.position,
                    };
                    Ok(consumed(state, report, Some(Box::new(advance))))
                })
            }
        }
    }
}

/// After the commit: the slot forgets the changes up to the committed position, and
/// the server may remove their WAL.
struct Advance {
    options: PgConnectOptions,
    slot: String,
    to: Lsn,
}

#[async_trait]
impl Acknowledge for Advance {
    async fn acknowledge(self: Box<Self>) -> Result<u64> {
        use sqlx::ConnectOptions;
        let mut conn = self
            .options
            .connect()
            .await
            .map_err(|e| classify_sqlx(e, "connecting to advance the replication slot"))?;
        check::advance(&mut conn, &self.slot, self.to).await?;
        Ok(0)
    }
}

/// The columns the last commit read against the table's now: a column that left or
/// changed type is refused (the log's changes before it no longer fit the lake's
/// rows); one added with a default is refused too (the rows that were there have the
/// default, and the log holds no change for them).
async fn check_columns(
    conn: &mut sqlx::PgConnection,
    table: &str,
    stored: &[(String, String)],
    now: &[SourceColumn],
) -> Result<()> {
    crate::source::changes::columns_remain(table, "the log", stored, now)?;
    if stored.is_empty() {
        return Ok(());
    }
    let defaulted: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_attribute a WHERE a.attrelid = $1::regclass AND a.attnum > 0 \
           AND NOT a.attisdropped AND (a.atthasmissing OR EXISTS (SELECT 1 FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum))",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(|e| classify_sqlx(e, "reading the table's column defaults"))?;
    if let Some(added) = defaulted
        .iter()
        .find(|d| !stored.iter().any(|(name, _)| name == *d))
    {
        return Err(Error::user(format!(
            "column `{added}` was added to {table} with a DEFAULT: the rows that were there have it, but the log holds no change for them. Add columns without a default (and UPDATE them in the source), or {}",
            crate::source::changes::COPY_AGAIN
        )));
    }
    Ok(())
}
