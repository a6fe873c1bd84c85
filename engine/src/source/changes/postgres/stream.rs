//! A stream run: the slot's changes up to the end fixed at the run's start, read with
//! `pg_logical_slot_peek_binary_changes` (which does not consume: the slot moves only
//! when the run's commit acknowledges), decoded ([`super::pgoutput`]) and turned into
//! change rows in commit order, numbered from the committed `_sluice_seq` on.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use futures::TryStreamExt;
use sqlx::postgres::PgConnection;
use tokio::sync::mpsc::Sender;

use super::pgoutput::{self, Message, Relation, Tuple, Value};
use super::text;
use crate::error::{Error, Result, classify_sqlx};
use crate::source::batch::BatchBuilder;
use crate::source::changes::ChangeReport;
use crate::source::changes::columns::{Op, append_change};
use crate::source::changes::position::Lsn;
use crate::source::types::SourceColumn;

/// What one stream run reads.
pub struct StreamRead {
    pub slot: String,
    pub publication: String,
    /// The table: its schema and name.
    pub table: (String, String),
    /// The table's columns (without the change columns), as the run's batches have them.
    pub columns: Vec<SourceColumn>,
    /// The key columns' names.
    pub key: Vec<String>,
    pub from: Lsn,
    pub end: Lsn,
    pub max_changes: u64,
    /// The last `_sluice_seq` committed.
    pub seq: i64,
}

/// Where a stream run ended.
pub struct StreamEnd {
    pub position: Lsn,
    pub seq: i64,
}

/// Reads the changes and sends them as batches; returns where the run ended.
pub async fn read(
    mut conn: PgConnection,
    read: StreamRead,
    mut builder: BatchBuilder,
    tx: Sender<Result<RecordBatch>>,
    report: &mut ChangeReport,
) -> Result<StreamEnd> {
    let sql = "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, $2::pg_lsn, $3, 'proto_version', '1', 'publication_names', $4)";
    let limit = i32::try_from(read.max_changes).unwrap_or(i32::MAX);
    let mut decoder = Decoder::new(&read);
    let mut messages = 0u64;
    {
        let mut rows = sqlx::query_as::<_, (String, Vec<u8>)>(sql)
            .bind(&read.slot)
            .bind(read.end.to_string())
            .bind(limit)
            .bind(format!("\"{}\"", read.publication))
            .fetch(&mut conn);
        while let Some((_, data)) = rows
            .try_next()
            .await
            .map_err(|e| classify_sqlx(e, "reading the replication slot's changes"))?
        {
            messages += 1;
            let message = pgoutput::parse(&data)
                .map_err(|m| Error::internal(format!("decoding slot `{}`: {m}", read.slot)))?;
            decoder.take(message, &mut builder, report)?;
            if builder.is_full() {
                send(&tx, builder.finish()?).await?;
            }
        }
    }
    if builder.rows() > 0 {
        send(&tx, builder.finish()?).await?;
    }
    // Stopped by the count (on a commit): the next run goes on after the last commit;
    // otherwise the slot is read up to the end, idle WAL included.
    let last = decoder.last_commit.unwrap_or(read.from);
    let position = if messages >= read.max_changes {
        last
    } else {
        last.max(read.end)
    };
    report.caught_up = messages < read.max_changes;
    Ok(StreamEnd {
        position,
        seq: decoder.seq,
    })
}

async fn send(tx: &Sender<Result<RecordBatch>>, batch: RecordBatch) -> Result<()> {
    tx.send(Ok(batch))
        .await
        .map_err(|_| Error::internal("the run stopped reading the changes"))
}

/// The value of a column a row predates.
static NULL: Value = Value::Null;

/// Turns messages into change rows.
struct Decoder<'a> {
    read: &'a StreamRead,
    /// The table's relation id, once the stream has described it.
    target: Option<u32>,
    /// For each of the run's columns, its place in the relation's rows (`None`: a
    /// column the rows predate, NULL in them).
    places: Vec<Option<usize>>,
    /// The key columns' places.
    key_places: Vec<usize>,
    relations: HashMap<u32, Relation>,
    commit_at: DateTime<Utc>,
    position: String,
    last_commit: Option<Lsn>,
    seq: i64,
}

impl<'a> Decoder<'a> {
    fn new(read: &'a StreamRead) -> Self {
        Self {
            read,
            target: None,
            places: Vec::new(),
            key_places: Vec::new(),
            relations: HashMap::new(),
            commit_at: DateTime::<Utc>::default(),
            position: String::new(),
            last_commit: None,
            seq: read.seq,
        }
    }

    fn take(
        &mut self,
        message: Message,
        builder: &mut BatchBuilder,
        report: &mut ChangeReport,
    ) -> Result<()> {
        match message {
            Message::Begin {
                final_lsn,
                commit_micros,
            } => {
                self.commit_at = DateTime::from_timestamp_micros(commit_micros).unwrap_or_default();
                self.position = Lsn(final_lsn).to_string();
            }
            Message::Commit { end_lsn } => self.last_commit = Some(Lsn(end_lsn)),
            Message::Relation(r) => self.relation(r)?,
            Message::Insert { relation, new } if self.is_target(relation) => {
                report.inserts += 1;
                self.row(builder, Op::Insert, &new, None)?;
            }
            Message::Update { relation, old, new } if self.is_target(relation) => {
                report.updates += 1;
                if let Some(old) = &old
                    && self.key_moved(old, &new)
                {
                    // A key move: the old key leaves, the new one arrives.
                    self.row(builder, Op::Delete, old, None)?;
                }
                self.row(builder, Op::Update, &new, old.as_ref())?;
            }
            Message::Delete { relation, old } if self.is_target(relation) => {
                report.deletes += 1;
                self.row(builder, Op::Delete, &old, None)?;
            }
            Message::Truncate { relations }
                if self.target.is_some_and(|t| relations.contains(&t)) =>
            {
                report.truncates += 1;
                // Every column NULL: a truncate has no row.
                let places =
                    std::mem::replace(&mut self.places, vec![None; self.read.columns.len()]);
                let out = self.row(builder, Op::Truncate, &Vec::new(), None);
                self.places = places;
                out?;
            }
            _ => {}
        }
        Ok(())
    }

    fn is_target(&self, relation: u32) -> bool {
        self.target == Some(relation)
    }

    /// A Relation message: the table's columns from here on.
    fn relation(&mut self, r: Relation) -> Result<()> {
        let (schema, name) = &self.read.table;
        if r.namespace != *schema || r.name != *name {
            self.relations.insert(r.id, r);
            return Ok(());
        }
        if let Some(added) = r
            .columns
            .iter()
            .find(|c| !self.read.columns.iter().any(|s| s.name == c.name))
        {
            return Err(Error::external(format!(
                "table {schema}.{name} changed while the run read its changes: column `{}` is not among the columns the run started with (it was added, or renamed); nothing was committed, and the next run reads the changes with the table's new columns",
                added.name
            )));
        }
        self.places = self
            .read
            .columns
            .iter()
            .map(|c| r.columns.iter().position(|rc| rc.name == c.name))
            .collect();
        self.key_places = self
            .read
            .key
            .iter()
            .map(|k| {
                r.columns
                    .iter()
                    .position(|rc| rc.name.eq_ignore_ascii_case(k))
                    .ok_or_else(|| {
                        Error::user(format!(
                            "the key column `{k}` (source.primary_key) is not a column of {schema}.{name} in the log"
                        ))
                    })
            })
            .collect::<Result<_>>()?;
        self.target = Some(r.id);
        self.relations.insert(r.id, r);
        Ok(())
    }

    /// Whether an update's old row has another key than its new one.
    fn key_moved(&self, old: &Tuple, new: &Tuple) -> bool {
        self.key_places
            .iter()
            .any(|i| match (old.get(*i), new.get(*i)) {
                (Some(Value::Text(a)), Some(Value::Text(b))) => a != b,
                (Some(Value::Null), Some(Value::Null)) => false,
                (Some(Value::Unchanged), _) | (_, Some(Value::Unchanged)) => false,
                _ => true,
            })
    }

    /// Appends one change row: the tuple's values by place, an unchanged TOASTed value
    /// taken from the old row (REPLICA IDENTITY FULL sends it, detoasted).
    fn row(
        &mut self,
        builder: &mut BatchBuilder,
        op: Op,
        tuple: &Tuple,
        old: Option<&Tuple>,
    ) -> Result<()> {
        self.seq += 1;
        let change = (op, self.seq, self.commit_at, self.position.as_str());
        let columns = &self.read.columns;
        let places = &self.places;
        let at = columns.len();
        builder
            .append_with(|builders| {
                for ((column, place), b) in columns.iter().zip(places).zip(builders.iter_mut()) {
                    let value = match place.and_then(|i| tuple.get(i)) {
                        Some(Value::Unchanged) => match place.and_then(|i| old?.get(i)) {
                            Some(v @ Value::Text(_)) => v,
                            _ => {
                                return Err(format!(
                                    "column `{}` arrived as an unchanged TOASTed value without the old row: set REPLICA IDENTITY FULL on the table",
                                    column.name
                                ));
                            }
                        },
                        Some(v) => v,
                        None => &NULL,
                    };
                    match value {
                        Value::Text(bytes) => text::append(bytes, column.read, b)
                            .map_err(|m| format!("column `{}` ({}): {m}", column.name, column.source_type))?,
                        _ => b.null(),
                    }
                }
                append_change(builders, at, change)
            })
            .map_err(|m| Error::user(format!("a change of {}.{}: {m}", self.read.table.0, self.read.table.1)))
    }
}
