//! A stream run: the binlog read as a replica (mysql_async's COM_BINLOG_DUMP, with
//! `@mariadb_slave_capability = 4` so that MariaDB sends its GTID events as such) from
//! the committed position — by GTID (`@slave_connect_state`) when there is one — up to
//! the end fixed at the run's start, turned into change rows of the table in commit
//! order and numbered from the committed `_sluice_seq` on.
//!
//! The binlog holds a transaction whole (GTID … XID, or GTID + one DDL statement), and
//! only committed ones: a run reads whole transactions and ends after one (at the end,
//! at `max_changes`, or before a DDL statement on the table, so that the next run checks
//! the table's new shape before reading on). Rows are decoded by the table map's column
//! names (`binlog_row_metadata = FULL`), never by the catalog's order now.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use futures::StreamExt;
use mysql_async::binlog::events::{Event, EventData, QueryEvent, RowsEventData, TableMapEvent};
use mysql_async::binlog::row::BinlogRow;
use mysql_async::prelude::Queryable;
use mysql_async::{BinlogStream, BinlogStreamRequest, Conn, Opts};
use tokio::sync::mpsc::Sender;

use super::gtid::{
    BinlogPos, COMPRESSED_EVENTS, GTID_EVENT, GTID_LIST_EVENT, GtidEvent, gtid_event, gtid_list,
};
use super::shape::{Expect, Shape, Statement, shape, statement_on};
use super::value;
use crate::error::{Error, ErrorClass, Result};
use crate::source::batch::BatchBuilder;
use crate::source::changes::ChangeReport;
use crate::source::changes::columns::{Op, append_change};
use crate::source::types::SourceColumn;

/// An event the server made up for the stream (a rotate to the start file, …): it
/// moves no position.
const ARTIFICIAL: u16 = 0x0020;

/// What one stream run reads.
pub struct BinlogRead {
    pub job: String,
    /// The binlog connection's options (mysql_async's, from the job's URL).
    pub opts: Opts,
    /// The replica id the reader announces.
    pub replica_id: u32,
    /// The table: its database and name.
    pub table: (String, String),
    /// The table's columns (without the change columns), as the run's batches have them.
    pub columns: Vec<SourceColumn>,
    /// The columns the last commit had: one a row image lacks was dropped.
    pub known: Vec<String>,
    /// The key columns' names.
    pub key: Vec<String>,
    pub from: BinlogPos,
    pub end: BinlogPos,
    pub max_changes: u64,
    /// The last `_sluice_seq` committed.
    pub seq: i64,
}

/// Where a stream run ended.
pub struct BinlogEnd {
    pub position: BinlogPos,
    pub seq: i64,
}

/// What the last event means for where the run may end.
enum Step {
    /// Inside a transaction.
    Inside,
    /// Between transactions: the run may end here.
    Between,
    /// A DDL statement on the table: the run ends before its transaction.
    Stop,
}

/// Reads the changes and sends them as batches; returns where the run ended.
pub async fn read(
    read: BinlogRead,
    mut builder: BatchBuilder,
    tx: Sender<Result<RecordBatch>>,
    report: &mut ChangeReport,
) -> Result<BinlogEnd> {
    let mut stream = open(&read).await?;
    let mut decoder = Decoder::new(&read);
    let mut at = read.from.clone();
    let mut last = read.from.clone();
    let mut stopped = false;
    let mut ended = false;
    while let Some(event) = stream.next().await {
        let event = event.map_err(|e| classify(e, &read, "reading the binlog"))?;
        let step = decoder.take(&event, &stream, &mut at, &mut builder, report)?;
        if builder.is_full() {
            send(&tx, builder.finish()?).await?;
        }
        match step {
            Step::Inside => {}
            Step::Stop => {
                stopped = true;
                break;
            }
            Step::Between => {
                last = at.clone();
                if last.at_or_after(&read.end) {
                    ended = true;
                    break;
                }
                if decoder.changes >= read.max_changes {
                    stopped = true;
                    break;
                }
            }
        }
    }
    if !stopped && !ended && decoder.group.is_some() {
        return Err(Error::external(format!(
            "the binlog stream ended inside a transaction (after {}:{}); nothing was committed, the next run reads it again",
            at.file, at.pos
        )));
    }
    if stopped || ended {
        // The server may still be sending: the connection is dropped (its driver
        // disconnects it in the background) rather than drained.
        drop(stream);
    } else {
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.close()).await;
    }
    if builder.rows() > 0 {
        send(&tx, builder.finish()?).await?;
    }
    report.caught_up = !stopped;
    // Read to the stream's end without passing `end` (nothing after it yet, or only
    // events of no transaction): `end` is the place, with its GTID state.
    let position = if stopped || last.at_or_after(&read.end) {
        last
    } else {
        read.end.clone()
    };
    Ok(BinlogEnd {
        position,
        seq: decoder.seq,
    })
}

/// Connects as a replica and asks for the binlog from the run's start, without
/// blocking at its end.
async fn open(read: &BinlogRead) -> Result<BinlogStream> {
    let mut conn = Conn::new(read.opts.clone())
        .await
        .map_err(|e| classify(e, read, "connecting to read the binlog"))?;
    // Without it MariaDB sends its GTID events to an old replica as dummy events.
    conn.query_drop("SET @mariadb_slave_capability = 4")
        .await
        .map_err(|e| classify(e, read, "announcing the binlog reader's capabilities"))?;
    let mut request = BinlogStreamRequest::new(read.replica_id).with_non_blocking();
    if read.from.gtid.is_empty() {
        request = request
            .with_filename(read.from.file.as_bytes())
            .with_pos(read.from.pos);
    } else {
        // A GTID state from our own parsing: digits, `-` and `,` only.
        conn.query_drop(format!(
            "SET @slave_connect_state = '{}', @slave_gtid_strict_mode = 1",
            read.from.gtid
        ))
        .await
        .map_err(|e| classify(e, read, "setting the binlog reader's GTID position"))?;
    }
    conn.get_binlog_stream(request)
        .await
        .map_err(|e| classify(e, read, "asking for the binlog"))
}

/// A driver error, classified: the server refusing the position (error 1236: purged,
/// or not in its history) and missing privileges are the user's; the rest retryable.
fn classify(e: mysql_async::Error, read: &BinlogRead, doing: &str) -> Error {
    let class = match &e {
        mysql_async::Error::Server(s) if s.code == 1236 => {
            return Error::user(format!(
                "{doing}: the server cannot send the binlog from job `{}`'s position {} ({}): it was purged, or it is not in this server's history. {}",
                read.job,
                read.from.gtid,
                s.message,
                super::check::reset(&read.job, &format!("{}:{}", read.from.file, read.from.pos))
            ));
        }
        mysql_async::Error::Server(s) if matches!(s.code, 1044 | 1045 | 1142 | 1227) => {
            return Error::user(format!(
                "{doing}: {} — the user needs `GRANT REPLICATION SLAVE, BINLOG MONITOR, SELECT ON *.* TO …;`",
                s.message
            ));
        }
        mysql_async::Error::Server(s) if matches!(s.code, 1040 | 1205 | 1213) => {
            ErrorClass::External
        }
        mysql_async::Error::Server(_) | mysql_async::Error::Url(_) => ErrorClass::User,
        _ => ErrorClass::External,
    };
    Error::new(class, format!("{doing}: {e}")).with_source(e)
}

async fn send(tx: &Sender<Result<RecordBatch>>, batch: RecordBatch) -> Result<()> {
    tx.send(Ok(batch))
        .await
        .map_err(|_| Error::internal("the run stopped reading the changes"))
}

/// The transaction being read.
struct Group {
    event: GtidEvent,
    commit_at: DateTime<Utc>,
    gtid: String,
}

/// Turns events into change rows.
struct Decoder<'a> {
    read: &'a BinlogRead,
    /// The table's shapes by table id (from its table map events).
    shapes: HashMap<u64, Arc<Shape>>,
    group: Option<Group>,
    /// Transactions this run has passed (of any table).
    groups: u64,
    /// Change rows made.
    changes: u64,
    seq: i64,
}

impl<'a> Decoder<'a> {
    fn new(read: &'a BinlogRead) -> Self {
        Self {
            read,
            shapes: HashMap::new(),
            group: None,
            groups: 0,
            changes: 0,
            seq: read.seq,
        }
    }

    fn take(
        &mut self,
        event: &Event,
        stream: &BinlogStream,
        at: &mut BinlogPos,
        builder: &mut BatchBuilder,
        report: &mut ChangeReport,
    ) -> Result<Step> {
        let header = event.header();
        let kind = header.event_type_raw();
        if header.log_pos() != 0 && header.flags_raw() & ARTIFICIAL == 0 {
            at.pos = u64::from(header.log_pos());
        }
        let bad = |m: String| Error::internal(format!("the binlog at {}:{}: {m}", at.file, at.pos));
        if kind == GTID_EVENT {
            let event = gtid_event(header.server_id(), event.data()).map_err(bad)?;
            self.group = Some(Group {
                event,
                commit_at: DateTime::from_timestamp(i64::from(header.timestamp()), 0)
                    .unwrap_or_default(),
                gtid: event.gtid.to_string(),
            });
            return Ok(Step::Inside);
        }
        if kind == GTID_LIST_EVENT {
            for gtid in gtid_list(event.data()).map_err(bad)? {
                at.gtid.merge(gtid);
            }
            return Ok(self.between());
        }
        if COMPRESSED_EVENTS.contains(&kind) {
            return Err(Error::user(format!(
                "the binlog at {}:{} holds a compressed event: set `log_bin_compress = OFF` (compressed events are not read)",
                at.file, at.pos
            )));
        }
        let data = event.read_data().map_err(|e| bad(e.to_string()))?;
        match data {
            Some(EventData::RotateEvent(r)) => {
                if !r.is_fake() {
                    self.shapes.clear();
                }
                at.file = r.name().into_owned();
                at.pos = r.position();
                Ok(self.between())
            }
            Some(EventData::TableMapEvent(t)) => {
                if self.is_target(&t) {
                    let read = self.read;
                    let expect = Expect {
                        table: (read.table.0.as_str(), read.table.1.as_str()),
                        columns: &read.columns,
                        known: &read.known,
                        key: &read.key,
                    };
                    self.shapes
                        .insert(t.table_id(), Arc::new(shape(&t, &expect)?));
                }
                Ok(Step::Inside)
            }
            Some(EventData::RowsEvent(rows)) => {
                self.rows(&rows, stream, builder, report)?;
                Ok(Step::Inside)
            }
            Some(EventData::XidEvent(_)) => Ok(self.commit(at)),
            Some(EventData::QueryEvent(q)) => self.query(&q, at, builder, report),
            _ => Ok(self.between()),
        }
    }

    /// After an event of no transaction: between transactions, unless one is open.
    fn between(&self) -> Step {
        if self.group.is_some() {
            Step::Inside
        } else {
            Step::Between
        }
    }

    /// The open transaction committed: its GTID is the state's.
    fn commit(&mut self, at: &mut BinlogPos) -> Step {
        if let Some(group) = self.group.take() {
            at.gtid.apply(group.event.gtid);
            self.groups += 1;
        }
        Step::Between
    }

    fn is_target(&self, t: &TableMapEvent<'_>) -> bool {
        let (schema, name) = &self.read.table;
        t.database_name() == schema.as_str() && t.table_name() == name.as_str()
    }

    /// A statement: BEGIN/COMMIT of a transaction on a non-transactional table, a
    /// TRUNCATE of the table (a change row), DDL on the table (the run ends before it
    /// unless it is the run's first transaction: the run's start checked the table's
    /// shape after it), or anything else (passed).
    fn query(
        &mut self,
        q: &QueryEvent<'_>,
        at: &mut BinlogPos,
        builder: &mut BatchBuilder,
        report: &mut ChangeReport,
    ) -> Result<Step> {
        let sql = q.query();
        let word = sql
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        match word.as_str() {
            "BEGIN" | "XA" => return Ok(Step::Inside),
            "COMMIT" | "ROLLBACK" => return Ok(self.commit(at)),
            _ => {}
        }
        let read = self.read;
        let on = statement_on(
            &sql,
            &q.schema(),
            (read.table.0.as_str(), read.table.1.as_str()),
        );
        match on {
            Some(Statement::Truncate) => {
                report.truncates += 1;
                let none: Arc<Shape> = Arc::new(Shape {
                    columns: Vec::new(),
                    places: vec![None; self.read.columns.len()],
                    key_places: Vec::new(),
                });
                self.row(builder, Op::Truncate, None, &none)?;
            }
            Some(Statement::Ddl) if self.groups > 0 => return Ok(Step::Stop),
            Some(Statement::Ddl) => {
                tracing::info!(statement = %sql, "DDL on the captured table, checked at the run's start");
            }
            None => {}
        }
        if self.group.as_ref().is_none_or(|g| g.event.standalone) {
            Ok(self.commit(at))
        } else {
            Ok(Step::Inside)
        }
    }

    /// A rows event: its rows of the table as change rows (a key move is a delete of
    /// the old key and an update of the new one).
    fn rows(
        &mut self,
        data: &RowsEventData<'_>,
        stream: &BinlogStream,
        builder: &mut BatchBuilder,
        report: &mut ChangeReport,
    ) -> Result<()> {
        let Some(shape) = self.shapes.get(&data.table_id()).cloned() else {
            return Ok(());
        };
        let tme = stream
            .get_tme(data.table_id())
            .ok_or_else(|| Error::internal("a rows event without its table map"))?;
        if self.group.as_ref().is_some_and(|g| g.event.xa) {
            return Err(Error::user(format!(
                "an XA transaction changed {}.{}: change capture does not read XA transactions (their PREPARE and COMMIT are logged apart)",
                self.read.table.0, self.read.table.1
            )));
        }
        for row in data.rows(tme) {
            let (before, after) =
                row.map_err(|e| Error::internal(format!("decoding a binlog row: {e}")))?;
            match (before, after) {
                (None, Some(new)) => {
                    report.inserts += 1;
                    self.row(builder, Op::Insert, Some(&new), &shape)?;
                }
                (Some(old), Some(new)) => {
                    report.updates += 1;
                    let moved = shape
                        .key_places
                        .iter()
                        .any(|k| old.as_ref(*k) != new.as_ref(*k));
                    if moved {
                        self.row(builder, Op::Delete, Some(&old), &shape)?;
                    }
                    self.row(builder, Op::Update, Some(&new), &shape)?;
                }
                (Some(old), None) => {
                    report.deletes += 1;
                    self.row(builder, Op::Delete, Some(&old), &shape)?;
                }
                (None, None) => {}
            }
        }
        Ok(())
    }

    /// Appends one change row (`row` `None`: every column NULL, a truncate).
    fn row(
        &mut self,
        builder: &mut BatchBuilder,
        op: Op,
        row: Option<&BinlogRow>,
        shape: &Shape,
    ) -> Result<()> {
        self.seq += 1;
        self.changes += 1;
        let (commit_at, gtid) = self
            .group
            .as_ref()
            .map(|g| (g.commit_at, g.gtid.as_str()))
            .unwrap_or_default();
        let (schema, name) = &self.read.table;
        if let Some(row) = row
            && row.len() != shape.columns.len()
        {
            return Err(Error::user(format!(
                "a change of {schema}.{name} at {gtid} has {} of its {} columns: set `binlog_row_image = FULL` (it was not when this change was logged)",
                row.len(),
                shape.columns.len()
            )));
        }
        let change = (op, self.seq, commit_at, gtid);
        let columns = &self.read.columns;
        let at = columns.len();
        builder
            .append_with(|builders| {
                for ((column, place), b) in
                    columns.iter().zip(&shape.places).zip(builders.iter_mut())
                {
                    match (row, place) {
                        (Some(row), Some(i)) => {
                            let map = shape.columns.get(*i).ok_or("a column past the table map")?;
                            value::append(row.as_ref(*i), map, column, b).map_err(|m| {
                                format!("column `{}` ({}): {m}", column.name, column.source_type)
                            })?;
                        }
                        _ => b.null(),
                    }
                }
                append_change(builders, at, change)
            })
            .map_err(|m| Error::user(format!("a change of {schema}.{name} at {gtid}: {m}")))
    }
}
