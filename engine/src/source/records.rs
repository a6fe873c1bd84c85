//! A feed's records: JSON objects decoded into the declared fields' lake types, in Arrow
//! batches. A body (one JSON object, or an array of them) is decoded whole before any of
//! it is appended, so a body that does not fit is refused as one piece, with the reason.

use std::sync::Arc;

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use super::batch::{BatchBuilder, ColumnBuilder, DecimalMisfit, plain_unscaled, unscaled};
use super::cursor::CursorValue;
use super::types::{LakeType, Read, SourceColumn, arrow_schema};
use crate::contract::Column;
use crate::error::Result;
use crate::job::Records;
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

/// One value, converted to exactly what its column's builder takes.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Decimal(i128),
    Text(String),
    Bytes(Vec<u8>),
    Days(i32),
    Micros(i64),
}

/// Collects decoded records into batches of at most `capacity` rows.
pub struct RecordBuilder {
    fields: Vec<Column>,
    /// The fields' names as keys are matched to them (see [`find_key`]).
    folded: Vec<String>,
    /// A JSON record's values by field, and whether its key had the field's very name
    /// (scratch space of [`RecordBuilder::append_json_object`]).
    slots: Vec<Option<Value>>,
    exact: Vec<bool>,
    message_columns: Vec<MessageColumn>,
    batch: BatchBuilder,
}

impl RecordBuilder {
    pub fn new(records: &Records, size: super::BatchSize) -> Self {
        let columns = columns(records);
        Self {
            folded: records.fields.iter().map(|f| folded(&f.name)).collect(),
            slots: Vec::new(),
            exact: Vec::new(),
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
        let value: Value =
            serde_json::from_str(payload).map_err(|e| format!("the body is not JSON: {e}"))?;
        let objects: Vec<&Map<String, Value>> = match &value {
            Value::Object(o) => vec![o],
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_object().ok_or_else(|| {
                        format!(
                            "item {i} of the body's array is {}; a record is a JSON object",
                            kind(v)
                        )
                    })
                })
                .collect::<std::result::Result<_, _>>()?,
            other => {
                return Err(format!(
                    "the body is {}; expected a JSON object (one record) or an array of objects",
                    kind(other)
                ));
            }
        };
        let mut rows = Vec::with_capacity(objects.len());
        for (i, object) in objects.iter().enumerate() {
            let row = self.decode(object).map_err(|m| {
                if objects.len() > 1 || value.is_array() {
                    format!("record {i}: {m}")
                } else {
                    m
                }
            })?;
            rows.push(row);
        }
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
        // Reused from record to record.
        let mut slots = std::mem::take(&mut self.slots);
        slots.clear();
        slots.resize(self.fields.len(), None);
        let mut exact = std::mem::take(&mut self.exact);
        exact.clear();
        exact.resize(self.fields.len(), false);
        let seed = Slots {
            fields: &self.fields,
            folded: &self.folded,
            slots: &mut slots,
            exact: &mut exact,
        };
        let mut de = serde_json::Deserializer::from_slice(text);
        serde::de::DeserializeSeed::deserialize(seed, &mut de)
            .and_then(|()| de.end())
            .map_err(|e| match text.trim_ascii_start().first() {
                Some(b'{') | None => format!("the record is not JSON: {e}"),
                Some(_) => match serde_json::from_slice::<Value>(text) {
                    Ok(v) => format!("the record is {}; a record is a JSON object", kind(&v)),
                    Err(e) => format!("the record is not JSON: {e}"),
                },
            })?;
        let row = self
            .fields
            .iter()
            .zip(slots.iter_mut())
            .map(|(field, value)| match value.take() {
                // Text is moved into its cell, not copied.
                Some(Value::String(text)) if field.lake == LakeType::String => Ok(Cell::Text(text)),
                value => decode_field(field, value.as_ref()),
            })
            .collect::<std::result::Result<_, _>>()
            .map(Row);
        self.slots = slots;
        self.exact = exact;
        let meta = self.meta(Origin::File(facts));
        self.push_with(&row?, &meta)
    }

    /// Decodes one record of text fields (a CSV line: empty is null), in field order,
    /// and appends it with its file columns.
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
                decode_field(field, text.map(|t| Value::String(t.to_string())).as_ref())
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

    /// Decodes one record whose fields `lookup` finds by name (a record the caller has
    /// selected, mapped or joined with its parent), or says why it does not fit.
    pub fn decode_with<'v>(
        &self,
        lookup: impl Fn(&str) -> Option<&'v Value>,
    ) -> std::result::Result<Row, String> {
        self.fields
            .iter()
            .map(|field| decode_field(field, lookup(&field.name)))
            .collect::<std::result::Result<_, _>>()
            .map(Row)
    }

    /// The index of a record field.
    pub fn field_index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// One object's values, in field order.
    fn decode(&self, object: &Map<String, Value>) -> std::result::Result<Row, String> {
        self.decode_with(|name| find_key(object, name))
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

/// Deserializes a JSON object into one slot per field: a key of the field's name fills
/// it, else a key spelled another way (when no key of that very name does).
struct Slots<'a> {
    fields: &'a [Column],
    folded: &'a [String],
    slots: &'a mut [Option<Value>],
    exact: &'a mut [bool],
}

impl<'de> serde::de::DeserializeSeed<'de> for Slots<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Slots<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> std::result::Result<(), A::Error> {
        let exact = self.exact;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let (index, is_exact) = match self.fields.iter().position(|f| f.name == *key) {
                Some(i) => (Some(i), true),
                None => {
                    let key = folded(&key);
                    (self.folded.iter().position(|f| *f == key), false)
                }
            };
            match index {
                Some(i) if is_exact || !exact[i] => {
                    self.slots[i] = Some(map.next_value()?);
                    exact[i] = is_exact;
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(())
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

fn decode_field(field: &Column, value: Option<&Value>) -> std::result::Result<Cell, String> {
    match value {
        None | Some(Value::Null) if field.nullable => Ok(Cell::Null),
        None => Err(format!(
            "field `{}` is missing (it is not nullable; its type is {})",
            field.name,
            field.lake.athena()
        )),
        Some(Value::Null) => Err(format!(
            "field `{}` is null (it is not nullable)",
            field.name
        )),
        Some(v) => cell(v, field.lake).map_err(|m| {
            format!(
                "field `{}`: {m} (its type is {})",
                field.name,
                field.lake.athena()
            )
        }),
    }
}

/// A key as it is matched to a field: lower case, letters and digits only, so that
/// `TruckId`, `truckId` and `TRUCK_ID` all find `truck_id`.
pub(crate) fn folded(key: &str) -> String {
    key.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// What a JSON value is, for messages ("a string", "an object", …).
pub fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Converts one JSON value to the lake type, or says why it does not fit.
fn cell(v: &Value, lake: LakeType) -> std::result::Result<Cell, String> {
    let refuse = || format!("{} {v} does not fit", kind(v));
    match lake {
        // Numbers and booleans may come as text (XML has nothing else; APIs often quote
        // them): the text is read as the type.
        LakeType::Boolean => match v {
            Value::Bool(b) => Ok(Cell::Bool(*b)),
            Value::String(s) => match s.trim() {
                "true" | "1" => Ok(Cell::Bool(true)),
                "false" | "0" => Ok(Cell::Bool(false)),
                _ => Err(refuse()),
            },
            _ => Err(refuse()),
        },
        LakeType::Int8 | LakeType::Int16 | LakeType::Int32 | LakeType::Int64 => {
            let n = match v {
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => v.as_i64(),
            }
            .ok_or_else(|| match v {
                Value::Number(_) => format!("{v} is not an integer in range"),
                _ => refuse(),
            })?;
            let fits = match lake {
                LakeType::Int8 => i8::try_from(n).is_ok(),
                LakeType::Int16 => i16::try_from(n).is_ok(),
                LakeType::Int32 => i32::try_from(n).is_ok(),
                _ => true,
            };
            fits.then_some(Cell::Int(n))
                .ok_or_else(|| format!("{n} is out of range"))
        }
        LakeType::Float32 | LakeType::Float64 => match v {
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => v.as_f64(),
        }
        .map(Cell::Float)
        .ok_or_else(refuse),
        LakeType::Decimal { precision, scale } => {
            let text = match v {
                Value::Number(n) => n.to_string(),
                Value::String(s) => s.trim().to_string(),
                _ => return Err(refuse()),
            };
            let fits = match plain_unscaled(&text, precision, scale) {
                Some(fits) => fits,
                None => {
                    let parsed: BigDecimal = text
                        .parse()
                        .map_err(|_| format!("{text:?} is not a decimal number"))?;
                    unscaled(&parsed, precision, scale)
                }
            };
            fits.map(Cell::Decimal).map_err(|why| match why {
                DecimalMisfit::Decimals => format!("{text} has more than {scale} decimals"),
                DecimalMisfit::Digits => format!("{text} has more than {precision} digits"),
            })
        }
        LakeType::String => Ok(Cell::Text(match v {
            Value::String(s) => s.clone(),
            // Numbers, booleans and nested values are kept as their JSON text.
            other => other.to_string(),
        })),
        LakeType::Binary => match v {
            Value::String(s) => Ok(Cell::Bytes(s.as_bytes().to_vec())),
            _ => Err(refuse()),
        },
        LakeType::Date => {
            let s = v.as_str().ok_or_else(refuse)?;
            let date = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))?;
            let days = date.signed_duration_since(NaiveDate::default()).num_days();
            i32::try_from(days)
                .map(Cell::Days)
                .map_err(|_| format!("{s:?} is out of range"))
        }
        LakeType::Timestamp | LakeType::TimestampUtc => timestamp(v).map(Cell::Micros),
    }
}

/// A timestamp: RFC 3339 text (an offset is converted to UTC), `YYYY-MM-DD HH:MM:SS[.f]`
/// taken as UTC, or a number of seconds since 1970-01-01 UTC.
fn timestamp(v: &Value) -> std::result::Result<i64, String> {
    match v {
        Value::String(s) => {
            let s = s.trim();
            if let Some(micros) = plain_timestamp(s) {
                return Ok(micros);
            }
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                return Ok(t.with_timezone(&Utc).timestamp_micros());
            }
            for format in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"] {
                if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
                    return Ok(t.and_utc().timestamp_micros());
                }
            }
            Err(format!(
                "{s:?} is not a timestamp (RFC 3339 such as 2024-05-01T12:00:00Z, or seconds since the epoch)"
            ))
        }
        Value::Number(n) => {
            let seconds = n
                .as_f64()
                .ok_or_else(|| format!("{n} is not a number of seconds"))?;
            let micros = (seconds * 1e6).round();
            // Within years 0001 to 9999, as Athena's timestamps are.
            if !(-62_135_596_800e6..=253_402_300_799e6).contains(&micros) {
                return Err(format!("{n} seconds since the epoch is out of range"));
            }
            Ok(micros as i64)
        }
        other => Err(format!("{} does not fit", kind(other))),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (or with `T`), up to six decimals of a second, optionally `Z`:
/// the common forms, read without a format parser; `None` for anything else.
fn plain_timestamp(s: &str) -> Option<i64> {
    let b = s.strip_suffix('Z').unwrap_or(s).as_bytes();
    if b.len() < 19 || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let micros = match &b[19..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=6).contains(&fraction.len()) => {
            num(20..b.len())? * 10u32.pow(6 - fraction.len() as u32)
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = date.and_hms_micro_opt(num(11..13)?, num(14..16)?, num(17..19)?, micros)?;
    Some(time.and_utc().timestamp_micros())
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

    #[test]
    fn plain_decimals_and_timestamps_read_as_the_general_parsers_do() {
        for (text, precision, scale) in [
            ("12.50", 8, 2),
            ("-0.5", 8, 2),
            ("+7", 4, 0),
            ("1.500", 8, 2),
            ("1.505", 8, 2),
            ("123456.78", 7, 2),
            ("99999.99", 7, 2),
            (".25", 4, 2),
            ("00012.3", 6, 1),
        ] {
            let general = text
                .parse::<BigDecimal>()
                .ok()
                .map(|d| unscaled(&d, precision, scale));
            assert_eq!(plain_unscaled(text, precision, scale), general, "{text}");
        }
        assert_eq!(plain_unscaled("1e3", 8, 2), None);
        assert_eq!(plain_unscaled("1.2.3", 8, 2), None);
        for text in [
            "2024-05-01T12:30:45",
            "2024-05-01 12:30:45.5",
            "2024-05-01T12:30:45.123456Z",
            "2024-02-29T00:00:00",
        ] {
            let general = DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc).naive_utc())
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
                .map(|t| t.and_utc().timestamp_micros())
                .ok();
            assert_eq!(plain_timestamp(text), general, "{text}");
        }
        for text in [
            "2023-02-29T00:00:00",
            "2024-05-01T12:30:45+02:00",
            "2024-05-01",
            "2024-05-01T25:00:00",
        ] {
            assert_eq!(plain_timestamp(text), None, "{text}");
        }
    }
    use crate::error::Error;
    use datafusion::arrow::util::pretty::pretty_format_batches;

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
            r#"{"truck_id":"T1","at":"2024-05-01T12:00:00+02:00","lat":52.5,"fuel":"12.5"}"#,
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
}
