//! A feed's records: JSON objects (or a text format's fields) decoded into the declared
//! fields' lake types by one typing rule (see `cell.rs`), in Arrow batches. A body (one
//! JSON object, or an array of them) is decoded whole before any of it is appended, so a
//! body that does not fit is refused as one piece, with the reason.

mod cell;
mod exact;
mod slots;

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

pub use cell::kind;
use cell::{Cell, Found, decode_field};
pub use exact::ExactNumbers;
use slots::{Body, Scratch, Slot, Slots};

use super::batch::{BatchBuilder, ColumnBuilder};
use super::cursor::CursorValue;
use super::types::{LakeType, Read, SourceColumn, arrow_schema};
use crate::contract::Column;
use crate::error::Result;
use crate::job::Records;
use crate::jsonpath::Path;
use crate::spec::MessageColumn;

/// The columns a feed yields: its record's fields, then the message columns.
pub fn columns(records: &Records) -> Vec<SourceColumn> {
    let mut out: Vec<SourceColumn> = records
        .fields
        .iter()
        .map(|f| SourceColumn::new(&f.name, &f.lake.athena(), Read::Text, f.lake, false))
        .collect();
    for m in &records.message_columns {
        let lake = match m {
            MessageColumn::MessageId | MessageColumn::File => LakeType::String,
            MessageColumn::SentAt | MessageColumn::ReceivedAt => LakeType::TimestampUtc,
            MessageColumn::Line | MessageColumn::Record => LakeType::Int64,
        };
        out.push(SourceColumn::new(
            m.column(),
            &lake.athena(),
            Read::Text,
            lake,
            false,
        ));
    }
    out
}

/// The quarantine table of a feed: the messages that could not be decoded, with their
/// raw body and why.
pub fn poison_schema() -> SchemaRef {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("_message_id", DataType::Utf8, false),
        Field::new("_sent_at", utc.clone(), true),
        Field::new("_received_at", utc, false),
        Field::new("_error", DataType::Utf8, false),
        Field::new("_body", DataType::Utf8, false),
        Field::new(crate::quality::RUN_COLUMN, DataType::Utf8, false),
    ]))
}

/// What the message columns hold for one message.
#[derive(Debug, Clone)]
pub struct MessageFacts<'a> {
    pub key: &'a str,
    pub sent_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
}

/// Where a file feed's record is, for its file columns.
#[derive(Debug, Clone)]
pub struct FileFacts<'a> {
    pub path: &'a str,
    /// The line the record starts on, from 1.
    pub line: u64,
    /// The record's position in the file, from 0.
    pub record: u64,
}

/// What a record's message or file columns hold.
enum Origin<'a, 'b> {
    Message(&'b MessageFacts<'a>),
    File(&'b FileFacts<'a>),
}

/// Collects decoded records into batches of at most `capacity` rows.
pub struct RecordBuilder {
    fields: Vec<Column>,
    /// The fields' names as keys are matched to them (see [`find_key`]).
    folded: Vec<String>,
    /// Per field: whether its text is read as its type.
    coerce: Vec<bool>,
    /// Fields read from a JSONPath instead of their key.
    paths: Vec<(usize, Path)>,
    /// One JSON record's slots (reused from record to record).
    scratch: Scratch,
    message_columns: Vec<MessageColumn>,
    batch: BatchBuilder,
}

impl RecordBuilder {
    pub fn new(records: &Records, size: super::BatchSize) -> Self {
        let columns = columns(records);
        let field = |name: &str| records.fields.iter().position(|f| f.name == name);
        Self {
            folded: records.fields.iter().map(|f| folded(&f.name)).collect(),
            coerce: records.coerce.clone(),
            paths: records
                .paths
                .iter()
                .filter_map(|(name, path)| Some((field(name)?, path.clone())))
                .collect(),
            scratch: Scratch::default(),
            fields: records.fields.clone(),
            message_columns: records.message_columns.clone(),
            batch: BatchBuilder::new(arrow_schema(&columns), columns, size),
        }
    }

    pub fn is_full(&self) -> bool {
        self.batch.is_full()
    }

    pub fn rows(&self) -> usize {
        self.batch.rows()
    }

    /// The batch so far (empty when nothing was appended since the last one).
    pub fn finish(&mut self) -> Result<RecordBatch> {
        self.batch.finish()
    }

    /// Decodes `payload` (a JSON object or an array of objects) and appends its records,
    /// all or none. Returns how many it appended, or why the payload does not fit.
    pub fn append_json(
        &mut self,
        payload: &str,
        facts: &MessageFacts<'_>,
    ) -> std::result::Result<usize, String> {
        let (rows, array) = if self.paths.is_empty() {
            let body = Body {
                fields: &self.fields,
                folded: &self.folded,
            };
            let mut de = serde_json::Deserializer::from_str(payload);
            let records = serde::de::DeserializeSeed::deserialize(body, &mut de)
                .and_then(|records| de.end().map(|()| records))
                .map_err(|e| body_misfit(payload.as_bytes(), &e))?;
            let array = payload.trim_start().starts_with('[');
            let rows = records
                .iter()
                .map(|r| self.decode_slots(&r.slots))
                .collect::<Vec<_>>();
            (rows, array)
        } else {
            let value: Value =
                serde_json::from_str(payload).map_err(|e| format!("the body is not JSON: {e}"))?;
            let exact = ExactNumbers::of(payload.as_bytes(), &value);
            let rows = match &value {
                Value::Array(items) => items.iter().map(|v| self.decode_value(v, &exact)).collect(),
                other => vec![self.decode_value(other, &exact)],
            };
            (rows, value.is_array())
        };
        let rows = rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| row.map_err(|m| if array { format!("record {i}: {m}") } else { m }))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let meta = self.meta(Origin::Message(facts));
        for row in &rows {
            self.push_with(row, &meta)?;
        }
        Ok(rows.len())
    }

    /// Decodes one JSON object's text and appends it with its file columns, or says why
    /// it does not fit. Only the record's fields are built (keys matched as
    /// [`find_key`] matches them); other keys are passed over.
    pub fn append_json_object(
        &mut self,
        text: &[u8],
        facts: &FileFacts<'_>,
    ) -> std::result::Result<(), String> {
        let row = if self.paths.is_empty() {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.reset(self.fields.len());
            let seed = Slots {
                fields: &self.fields,
                folded: &self.folded,
                scratch: &mut scratch,
            };
            let mut de = serde_json::Deserializer::from_slice(text);
            let read =
                serde::de::DeserializeSeed::deserialize(seed, &mut de).and_then(|()| de.end());
            let row = match read {
                Ok(()) => self.take_slots(&mut scratch.slots),
                Err(e) => Err(record_misfit(text, &e)),
            };
            self.scratch = scratch;
            row?
        } else {
            let value: Value =
                serde_json::from_slice(text).map_err(|e| format!("the record is not JSON: {e}"))?;
            self.decode_value(&value, &ExactNumbers::of(text, &value))?
        };
        let meta = self.meta(Origin::File(facts));
        self.push_with(&row, &meta)
    }

    /// Decodes one record of text fields (a CSV line: empty is null), in field order,
    /// and appends it with its file columns. Text is the format's only type: every field
    /// is read from it.
    pub fn append_text(
        &mut self,
        values: &[Option<&str>],
        facts: &FileFacts<'_>,
    ) -> std::result::Result<(), String> {
        let row = self
            .fields
            .iter()
            .zip(values)
            .map(|(field, value)| {
                let text = value.filter(|t| !t.is_empty());
                let value = text.map(|t| Value::String(t.to_string()));
                decode_field(field, value.as_ref().map(Found::Value), true)
            })
            .collect::<std::result::Result<_, _>>()
            .map(Row)?;
        let meta = self.meta(Origin::File(facts));
        self.push_with(&row, &meta)
    }

    /// The message or file columns' cells for one record.
    fn meta(&self, origin: Origin<'_, '_>) -> Vec<Cell> {
        self.message_columns
            .iter()
            .map(|m| match (m, &origin) {
                (MessageColumn::MessageId, Origin::Message(f)) => Cell::Text(f.key.to_string()),
                (MessageColumn::SentAt, Origin::Message(f)) => f
                    .sent_at
                    .map_or(Cell::Null, |t| Cell::Micros(t.timestamp_micros())),
                (MessageColumn::ReceivedAt, Origin::Message(f)) => {
                    Cell::Micros(f.received_at.timestamp_micros())
                }
                (MessageColumn::File, Origin::File(f)) => Cell::Text(f.path.to_string()),
                (MessageColumn::Line, Origin::File(f)) => Cell::Int(f.line as i64),
                (MessageColumn::Record, Origin::File(f)) => Cell::Int(f.record as i64),
                // Compilation gives each feed only its own columns.
                _ => Cell::Null,
            })
            .collect()
    }

    fn push_with(&mut self, row: &Row, meta: &[Cell]) -> std::result::Result<(), String> {
        self.batch
            .append_with(|builders| {
                for (builder, cell) in builders.iter_mut().zip(row.0.iter().chain(meta)) {
                    append(builder, cell)?;
                }
                Ok(())
            })
            .map_err(|m| format!("internal: {m}"))
    }

    /// Appends a decoded record (of a feed without message columns).
    pub fn push(&mut self, row: &Row) -> std::result::Result<(), String> {
        self.push_with(row, &[])
    }

    /// Decodes one record: each field from its JSONPath (`source.fields`), else from the
    /// record's key of its name (see [`find_key`]), else from what `also` finds by name
    /// (a parent record's values); or says why it does not fit.
    pub fn decode_record<'v>(
        &self,
        record: &'v Value,
        exact: &ExactNumbers,
        also: impl Fn(&str) -> Option<&'v Value>,
    ) -> std::result::Result<Row, String> {
        let object = record.as_object();
        self.fields
            .iter()
            .enumerate()
            .map(|(i, field)| {
                let value = match self.paths.iter().find(|(f, _)| *f == i) {
                    Some((_, path)) => path.first(record),
                    None => object
                        .and_then(|o| find_key(o, &field.name))
                        .or_else(|| also(&field.name)),
                };
                let found = value.map(|v| match exact.text(v) {
                    Some(text) => Found::Number(text),
                    None => Found::Value(v),
                });
                decode_field(field, found, self.coerce[i])
            })
            .collect::<std::result::Result<_, _>>()
            .map(Row)
    }

    /// The index of a record field.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// One parsed record of a JSON feed, which must be an object.
    fn decode_value(
        &self,
        value: &Value,
        exact: &ExactNumbers,
    ) -> std::result::Result<Row, String> {
        if !value.is_object() {
            return Err(format!(
                "the record is {}; a record is a JSON object",
                kind(value)
            ));
        }
        self.decode_record(value, exact, |_| None)
    }

    /// One record's slots, in field order.
    fn decode_slots(&self, slots: &[Option<Slot>]) -> std::result::Result<Row, String> {
        self.fields
            .iter()
            .zip(slots)
            .zip(&self.coerce)
            .map(|((field, slot), coerce)| {
                decode_field(field, slot.as_ref().map(Slot::found), *coerce)
            })
            .collect::<std::result::Result<_, _>>()
            .map(Row)
    }

    /// Like [`Self::decode_slots`], moving text into its cell instead of copying it.
    fn take_slots(&self, slots: &mut [Option<Slot>]) -> std::result::Result<Row, String> {
        self.fields
            .iter()
            .zip(slots.iter_mut())
            .zip(&self.coerce)
            .map(|((field, slot), coerce)| match slot.take() {
                Some(Slot::Value(Value::String(text))) if field.lake == LakeType::String => {
                    Ok(Cell::Text(text))
                }
                slot => decode_field(field, slot.as_ref().map(Slot::found), *coerce),
            })
            .collect::<std::result::Result<_, _>>()
            .map(Row)
    }
}

/// Why a message body could not be read as records.
fn body_misfit(payload: &[u8], e: &serde_json::Error) -> String {
    match serde_json::from_slice::<Value>(payload) {
        Err(e) => format!("the body is not JSON: {e}"),
        Ok(Value::Array(items)) => match items.iter().position(|v| !v.is_object()) {
            Some(i) => format!(
                "item {i} of the body's array is {}; a record is a JSON object",
                kind(&items[i])
            ),
            None => format!("the body is not JSON: {e}"),
        },
        Ok(Value::Object(_)) => format!("the body is not JSON: {e}"),
        Ok(other) => format!(
            "the body is {}; expected a JSON object (one record) or an array of objects",
            kind(&other)
        ),
    }
}

/// Why one record's text could not be read.
fn record_misfit(text: &[u8], e: &serde_json::Error) -> String {
    match text.trim_ascii_start().first() {
        Some(b'{') | None => format!("the record is not JSON: {e}"),
        Some(_) => match serde_json::from_slice::<Value>(text) {
            Ok(v) => format!("the record is {}; a record is a JSON object", kind(&v)),
            Err(e) => format!("the record is not JSON: {e}"),
        },
    }
}

/// A decoded record: its fields' cells, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(Vec<Cell>);

impl Row {
    /// Field `index` as a cursor value of `lake` (`None` for NULL).
    pub fn cursor(&self, index: usize, lake: LakeType) -> Option<CursorValue> {
        let at = |micros: i64| DateTime::<Utc>::from_timestamp_micros(micros);
        match (self.0.get(index)?, lake) {
            (Cell::Int(v), _) => Some(CursorValue::Int(*v)),
            (Cell::Text(v), _) => Some(CursorValue::Text(v.clone())),
            (Cell::Days(d), _) => Some(CursorValue::Date(
                NaiveDate::default() + chrono::Duration::days(i64::from(*d)),
            )),
            (Cell::Micros(m), LakeType::Timestamp) => {
                at(*m).map(|t| CursorValue::Timestamp(t.naive_utc()))
            }
            (Cell::Micros(m), _) => at(*m).map(CursorValue::TimestampUtc),
            _ => None,
        }
    }
}

/// A record's value for a field: its key of that name, else a key spelled another way.
pub fn find_key<'v>(object: &'v Map<String, Value>, name: &str) -> Option<&'v Value> {
    object.get(name).or_else(|| {
        let folded_name = folded(name);
        object
            .iter()
            .find(|(k, _)| folded(k) == folded_name)
            .map(|(_, v)| v)
    })
}

/// A key as it is matched to a field: lower case, letters and digits only, so that
/// `TruckId`, `truckId` and `TRUCK_ID` all find `truck_id`.
pub(crate) fn folded(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

fn append(builder: &mut ColumnBuilder, cell: &Cell) -> std::result::Result<(), String> {
    let fit = match cell {
        Cell::Null => {
            builder.null();
            Ok(())
        }
        Cell::Bool(v) => builder.bool(*v),
        Cell::Int(v) => builder.int(*v),
        Cell::Float(v) => builder.float(*v),
        Cell::Decimal(v) => builder.decimal_unscaled(*v),
        Cell::Text(v) => builder.text(v),
        Cell::Bytes(v) => builder.bytes(v),
        Cell::Days(v) => builder.days(*v),
        Cell::Micros(v) => builder.micros(*v),
    };
    fit.map_err(|m| m.0)
}

#[cfg(test)]
mod tests;
