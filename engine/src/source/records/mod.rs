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
mod tests {
    use super::*;

    use crate::error::Error;
    use datafusion::arrow::array::{Array, Decimal128Array, Float64Array, Int32Array};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use proptest::prelude::*;

    fn gps() -> Records {
        let field = |name: &str, lake, nullable| Column {
            name: name.into(),
            lake,
            nullable,
        };
        Records {
            fields: vec![
                field("truck_id", LakeType::String, false),
                field("at", LakeType::TimestampUtc, false),
                field("lat", LakeType::Float64, true),
                field(
                    "fuel",
                    LakeType::Decimal {
                        precision: 5,
                        scale: 1,
                    },
                    true,
                ),
            ],
            message_columns: vec![MessageColumn::MessageId],
            coerce: vec![false; 4],
            paths: Vec::new(),
            key: None,
        }
    }

    fn facts() -> MessageFacts<'static> {
        MessageFacts {
            key: "m-1",
            sent_at: None,
            received_at: Utc::now(),
        }
    }

    #[test]
    fn objects_and_arrays_become_rows() -> Result<()> {
        let mut b = RecordBuilder::new(&gps(), super::super::BatchSize::rows(16));
        let one = b.append_json(
            r#"{"truck_id":"T1","at":"2024-05-01T12:00:00+02:00","lat":52.5,"fuel":12.5}"#,
            &facts(),
        );
        assert_eq!(one, Ok(1));
        let two = b.append_json(
            r#"[{"TruckId":"T2","at":1714564800,"lat":null},{"truck_id":"T3","at":"2024-05-01 10:00:00","fuel":7}]"#,
            &facts(),
        );
        assert_eq!(two, Ok(2));
        let batch = b.finish()?;
        let text = pretty_format_batches(&[batch])
            .map_err(|e| Error::internal(e.to_string()))?
            .to_string();
        assert!(
            text.contains("| T1       | 2024-05-01T10:00:00Z | 52.5 | 12.5 | m-1"),
            "{text}"
        );
        assert!(
            text.contains("| T2       | 2024-05-01T12:00:00Z |      |      | m-1"),
            "{text}"
        );
        assert!(
            text.contains("| T3       | 2024-05-01T10:00:00Z |      | 7.0  | m-1"),
            "{text}"
        );
        Ok(())
    }

    #[test]
    fn a_body_that_does_not_fit_is_refused_whole() -> Result<()> {
        let mut b = RecordBuilder::new(&gps(), super::super::BatchSize::rows(16));
        let cases = [
            ("not json", "not JSON"),
            ("42", "a number; expected a JSON object"),
            (
                r#"[{"truck_id":"T","at":1}, 3]"#,
                "item 1 of the body's array is a number",
            ),
            (r#"{"at":1}"#, "field `truck_id` is missing"),
            (r#"{"truck_id":"T","at":"yesterday"}"#, "is not a timestamp"),
            (
                r#"{"truck_id":"T","at":1,"fuel":12.25}"#,
                "more than 1 decimals",
            ),
            (
                r#"{"truck_id":"T","at":1,"fuel":123456}"#,
                "more than 5 digits",
            ),
            (
                r#"[{"truck_id":"T","at":1},{"truck_id":null,"at":1}]"#,
                "record 1: field `truck_id` is null",
            ),
        ];
        for (body, expected) in cases {
            match b.append_json(body, &facts()) {
                Ok(n) => panic!("{body} was accepted ({n} records)"),
                Err(m) => assert!(m.contains(expected), "{body}: {m}"),
            }
        }
        assert_eq!(b.rows(), 0, "nothing of a refused body is appended");
        assert_eq!(b.finish()?.num_rows(), 0);
        Ok(())
    }

    fn typed(lake: LakeType, coerce: bool) -> Records {
        Records {
            fields: vec![Column {
                name: "v".into(),
                lake,
                nullable: true,
            }],
            message_columns: Vec::new(),
            coerce: vec![coerce],
            paths: Vec::new(),
            key: None,
        }
    }

    fn facts_at() -> FileFacts<'static> {
        FileFacts {
            path: "f",
            line: 1,
            record: 0,
        }
    }

    #[test]
    fn text_where_a_number_belongs_fits_only_where_the_job_coerces() -> Result<()> {
        let decimal = LakeType::Decimal {
            precision: 9,
            scale: 2,
        };
        for (lake, text) in [
            (LakeType::Int32, "\"090\""),
            (LakeType::Float64, "\"1.5\""),
            (decimal, "\"12.50\""),
            (LakeType::Boolean, "\"true\""),
        ] {
            let body = format!("{{\"v\":{text}}}");
            let mut strict =
                RecordBuilder::new(&typed(lake, false), super::super::BatchSize::rows(4));
            let refused = strict.append_json(&body, &facts());
            assert!(
                refused.as_ref().is_err_and(
                    |m| m.contains("field `v`: a string") && m.contains("source.coerce")
                ),
                "{body}: {refused:?}"
            );
            let refused = strict.append_json_object(body.as_bytes(), &facts_at());
            assert!(refused.is_err(), "{body}: {refused:?}");
            let mut coercing =
                RecordBuilder::new(&typed(lake, true), super::super::BatchSize::rows(4));
            assert_eq!(coercing.append_json(&body, &facts()), Ok(1), "{body}");
        }
        let mut coercing = RecordBuilder::new(
            &typed(LakeType::Int32, true),
            super::super::BatchSize::rows(4),
        );
        coercing
            .append_json(r#"{"v":"090"}"#, &facts())
            .map_err(Error::internal)?;
        let batch = coercing.finish()?;
        let ints = batch.column(0).as_any().downcast_ref::<Int32Array>();
        assert_eq!(ints.map(|a| a.value(0)), Some(90));
        // A number where an integer belongs must be one.
        let mut strict = RecordBuilder::new(
            &typed(LakeType::Int32, false),
            super::super::BatchSize::rows(4),
        );
        assert!(strict.append_json(r#"{"v":90.5}"#, &facts()).is_err());
        assert!(strict.append_json(r#"{"v":true}"#, &facts()).is_err());
        Ok(())
    }

    /// The doubles a body carries, through the queue's and the files' decoders, read back
    /// from the batch.
    fn doubles_through(texts: &[String]) -> Result<Vec<(u64, u64)>> {
        let records = typed(LakeType::Float64, false);
        let mut queue =
            RecordBuilder::new(&records, super::super::BatchSize::rows(texts.len() + 1));
        let mut files =
            RecordBuilder::new(&records, super::super::BatchSize::rows(texts.len() + 1));
        let body = format!(
            "[{}]",
            texts
                .iter()
                .map(|t| format!("{{\"v\":{t}}}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        queue
            .append_json(&body, &facts())
            .map_err(Error::internal)?;
        for t in texts {
            files
                .append_json_object(format!("{{\"v\":{t}}}").as_bytes(), &facts_at())
                .map_err(Error::internal)?;
        }
        let (q, f) = (queue.finish()?, files.finish()?);
        let bits = |b: &RecordBatch| -> Vec<u64> {
            b.column(0)
                .as_any()
                .downcast_ref::<Float64Array>()
                .map(|a| a.values().iter().map(|v| v.to_bits()).collect())
                .unwrap_or_default()
        };
        Ok(bits(&q).into_iter().zip(bits(&f)).collect())
    }

    proptest! {
        #[test]
        fn doubles_land_bit_for_bit(bits in proptest::collection::vec(any::<u64>(), 1..64)) {
            let values: Vec<f64> = bits
                .iter()
                .map(|b| f64::from_bits(*b))
                .filter(|v| v.is_finite())
                .collect();
            prop_assume!(!values.is_empty());
            // The shortest form (JavaScript's, Python's repr) and 17 significant digits.
            let texts: Vec<String> = values
                .iter()
                .flat_map(|v| [format!("{v:?}"), format!("{v:.16e}")])
                .collect();
            let got = doubles_through(&texts).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got.len(), texts.len());
            for (i, (q, f)) in got.into_iter().enumerate() {
                let sent = values[i / 2].to_bits();
                prop_assert_eq!(q, sent, "queue: {}", texts[i]);
                prop_assert_eq!(f, sent, "files: {}", texts[i]);
            }
        }
    }

    #[test]
    fn edge_numbers_land_exactly() -> Result<()> {
        let texts: Vec<String> = [
            "-0.0",
            "-0",
            "0",
            "5e-324",
            "2.2250738585072009e-308",
            "1.7976931348623157e308",
            "0.1",
            "0.30000000000000004",
            "9007199254740993",
            "-4.9406564584124654e-324",
        ]
        .iter()
        .map(|t| t.to_string())
        .collect();
        for ((q, f), t) in doubles_through(&texts)?.into_iter().zip(&texts) {
            let sent = t.parse::<f64>().map(f64::to_bits).ok();
            assert_eq!(Some(q), sent, "queue {t}");
            assert_eq!(Some(f), sent, "files {t}");
        }
        // Decimals beyond a double's precision, and integers to the ends of 64 bits.
        let decimal = LakeType::Decimal {
            precision: 38,
            scale: 10,
        };
        let mut b = RecordBuilder::new(&typed(decimal, false), super::super::BatchSize::rows(8));
        let digits = "1234567890123456789012345678.0123456789";
        b.append_json(
            &format!(r#"[{{"v":{digits}}},{{"v":-{digits}}}]"#),
            &facts(),
        )
        .map_err(Error::internal)?;
        b.append_json_object(format!(r#"{{"v":{digits}}}"#).as_bytes(), &facts_at())
            .map_err(Error::internal)?;
        let batch = b.finish()?;
        let d = batch.column(0).as_any().downcast_ref::<Decimal128Array>();
        let text: Vec<String> = (0..3)
            .filter_map(|i| d.map(|d| d.value_as_string(i)))
            .collect();
        assert_eq!(
            text,
            [digits.to_string(), format!("-{digits}"), digits.to_string()]
        );
        let mut b = RecordBuilder::new(
            &typed(LakeType::Int64, false),
            super::super::BatchSize::rows(8),
        );
        b.append_json(
            r#"[{"v":9223372036854775807},{"v":-9223372036854775808}]"#,
            &facts(),
        )
        .map_err(Error::internal)?;
        assert!(
            b.append_json(r#"{"v":9223372036854775808}"#, &facts())
                .is_err()
        );
        let batch = b.finish()?;
        assert_eq!(batch.num_rows(), 2);
        assert!(batch.column(0).is_valid(1));
        Ok(())
    }

    #[test]
    fn a_mapped_decimal_keeps_its_digits() -> Result<()> {
        let mut records = typed(
            LakeType::Decimal {
                precision: 38,
                scale: 10,
            },
            false,
        );
        records.paths = vec![(
            "v".into(),
            Path::parse("$.a.b[1]").map_err(Error::internal)?,
        )];
        let mut b = RecordBuilder::new(&records, super::super::BatchSize::rows(8));
        let digits = "-1234567890123456789012345678.0123456789";
        let body = format!(r#"{{"a": {{"b": [1, {digits}]}}, "c": "12345678901234567890"}}"#);
        b.append_json(&format!("[{body}, {body}]"), &facts())
            .map_err(Error::internal)?;
        b.append_json_object(body.as_bytes(), &facts_at())
            .map_err(Error::internal)?;
        let batch = b.finish()?;
        let d = batch.column(0).as_any().downcast_ref::<Decimal128Array>();
        let text: Vec<String> = (0..3)
            .filter_map(|i| d.map(|d| d.value_as_string(i)))
            .collect();
        assert_eq!(text, [digits; 3]);
        Ok(())
    }
}
