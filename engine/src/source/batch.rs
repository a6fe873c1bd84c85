//! Rows from a driver → Arrow builders → bounded `RecordBatch`es.
//!
//! Each dialect reads a value as the Rust type its [`Read`] names and appends it to the
//! column's builder; the builder converts to the lake type and refuses values that do
//! not fit (an error, never a silent truncation).

use std::sync::Arc;

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::types::{LakeType, Read, SourceColumn};
use crate::error::{Error, Result};

/// Builder for one column, typed by the column's [`LakeType`].
pub enum ColumnBuilder {
    Boolean(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, u8, i8),
    String(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder, bool),
}

/// A value that does not fit the column's lake type.
#[derive(Debug)]
pub struct Misfit(pub String);

type Fit = std::result::Result<(), Misfit>;

impl ColumnBuilder {
    /// A builder for `rows` values, with room for `data` bytes of text or binary values.
    pub fn new(lake: LakeType, rows: usize, data: usize) -> Self {
        match lake {
            LakeType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(rows)),
            LakeType::Int8 => Self::Int8(Int8Builder::with_capacity(rows)),
            LakeType::Int16 => Self::Int16(Int16Builder::with_capacity(rows)),
            LakeType::Int32 => Self::Int32(Int32Builder::with_capacity(rows)),
            LakeType::Int64 => Self::Int64(Int64Builder::with_capacity(rows)),
            LakeType::Float32 => Self::Float32(Float32Builder::with_capacity(rows)),
            LakeType::Float64 => Self::Float64(Float64Builder::with_capacity(rows)),
            LakeType::Decimal { precision, scale } => {
                Self::Decimal(Decimal128Builder::with_capacity(rows), precision, scale)
            }
            LakeType::String => Self::String(StringBuilder::with_capacity(rows, data)),
            LakeType::Binary => Self::Binary(BinaryBuilder::with_capacity(rows, data)),
            LakeType::Date => Self::Date(Date32Builder::with_capacity(rows)),
            LakeType::Timestamp => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows), false)
            }
            LakeType::TimestampUtc => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(rows), true)
            }
        }
    }

    /// Bytes a value takes besides its data: its slot (an offset for text and binary).
    fn width(lake: LakeType) -> usize {
        match lake {
            LakeType::Boolean | LakeType::Int8 => 1,
            LakeType::Int16 => 2,
            LakeType::Int32 | LakeType::Float32 | LakeType::Date => 4,
            LakeType::String | LakeType::Binary => 4,
            LakeType::Int64 | LakeType::Float64 => 8,
            LakeType::Timestamp | LakeType::TimestampUtc => 8,
            LakeType::Decimal { .. } => 16,
        }
    }

    /// Bytes of text or binary values appended so far.
    fn data_len(&self) -> usize {
        match self {
            Self::String(b) => b.values_slice().len(),
            Self::Binary(b) => b.values_slice().len(),
            _ => 0,
        }
    }

    pub fn null(&mut self) {
        match self {
            Self::Boolean(b) => b.append_null(),
            Self::Int8(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Decimal(b, ..) => b.append_null(),
            Self::String(b) => b.append_null(),
            Self::Binary(b) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Timestamp(b, _) => b.append_null(),
        }
    }

    pub fn int(&mut self, v: i64) -> Fit {
        let misfit = || Misfit(format!("integer {v} does not fit"));
        match self {
            Self::Int8(b) => b.append_value(i8::try_from(v).map_err(|_| misfit())?),
            Self::Int16(b) => b.append_value(i16::try_from(v).map_err(|_| misfit())?),
            Self::Int32(b) => b.append_value(i32::try_from(v).map_err(|_| misfit())?),
            Self::Int64(b) => b.append_value(v),
            Self::Decimal(..) => return self.decimal(&BigDecimal::from(v)),
            Self::Boolean(b) => b.append_value(v != 0),
            Self::String(b) => b.append_value(v.to_string()),
            _ => return Err(misfit()),
        }
        Ok(())
    }

    pub fn uint(&mut self, v: u64) -> Fit {
        match i64::try_from(v) {
            Ok(i) => self.int(i),
            Err(_) => self.decimal(&BigDecimal::from(v)),
        }
    }

    pub fn float(&mut self, v: f64) -> Fit {
        match self {
            Self::Float32(b) => b.append_value(v as f32),
            Self::Float64(b) => b.append_value(v),
            _ => return Err(Misfit(format!("number {v} does not fit"))),
        }
        Ok(())
    }

    pub fn bool(&mut self, v: bool) -> Fit {
        match self {
            Self::Boolean(b) => b.append_value(v),
            _ => return self.int(i64::from(v)),
        }
        Ok(())
    }

    pub fn text(&mut self, v: &str) -> Fit {
        match self {
            Self::String(b) => b.append_value(v),
            Self::Decimal(..) => {
                let parsed: BigDecimal = v
                    .trim()
                    .parse()
                    .map_err(|_| Misfit(format!("{v:?} is not a decimal number")))?;
                return self.decimal(&parsed);
            }
            _ => return Err(Misfit(format!("text {v:?} does not fit"))),
        }
        Ok(())
    }

    pub fn bytes(&mut self, v: &[u8]) -> Fit {
        match self {
            Self::Binary(b) => b.append_value(v),
            _ => {
                return Err(Misfit(format!(
                    "{} bytes of binary data do not fit",
                    v.len()
                )));
            }
        }
        Ok(())
    }

    pub fn date(&mut self, v: NaiveDate) -> Fit {
        let days = v.signed_duration_since(NaiveDate::default()).num_days();
        self.days(i32::try_from(days).map_err(|_| Misfit(format!("date {v} is out of range")))?)
    }

    /// A date as days since 1970-01-01.
    pub fn days(&mut self, days: i32) -> Fit {
        match self {
            Self::Date(b) => b.append_value(days),
            _ => return Err(Misfit(format!("a date ({days} days) does not fit"))),
        }
        Ok(())
    }

    pub fn datetime(&mut self, v: NaiveDateTime) -> Fit {
        self.micros(v.and_utc().timestamp_micros())
    }

    pub fn datetime_utc(&mut self, v: DateTime<Utc>) -> Fit {
        self.micros(v.timestamp_micros())
    }

    /// A timestamp as microseconds since 1970-01-01 00:00 UTC.
    pub fn micros(&mut self, micros: i64) -> Fit {
        match self {
            Self::Timestamp(b, _) => b.append_value(micros),
            _ => return Err(Misfit(format!("a timestamp ({micros} µs) does not fit"))),
        }
        Ok(())
    }

    /// Exact only: a value with more digits or decimals than the column holds is refused.
    pub fn decimal(&mut self, v: &BigDecimal) -> Fit {
        let Some(scale) = self.decimal_scale() else {
            return self.text(&v.to_string());
        };
        let name = self.decimal_name();
        let misfit = || Misfit(format!("{v} does not fit {name}"));
        let precision = match self {
            Self::Decimal(_, p, _) => *p,
            _ => return Err(misfit()),
        };
        let n = unscaled(v, precision, scale).map_err(|_| misfit())?;
        self.decimal_unscaled(n).map_err(|_| misfit())
    }

    /// The scale of a decimal column.
    pub fn decimal_scale(&self) -> Option<i8> {
        match self {
            Self::Decimal(_, _, scale) => Some(*scale),
            _ => None,
        }
    }

    fn decimal_name(&self) -> String {
        match self {
            Self::Decimal(_, p, s) => format!("decimal({p},{s})"),
            _ => "a decimal".into(),
        }
    }

    /// A decimal given as its value times 10^scale; refused beyond the precision.
    pub fn decimal_unscaled(&mut self, n: i128) -> Fit {
        let name = self.decimal_name();
        let Self::Decimal(b, precision, scale) = self else {
            return Err(Misfit(format!("decimal {n} does not fit")));
        };
        if n.unsigned_abs() >= 10u128.pow(u32::from(*precision)) {
            return Err(Misfit(format!(
                "{} does not fit {name}",
                unscaled_text(n, *scale)
            )));
        }
        b.append_value(n);
        Ok(())
    }

    pub fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Self::Boolean(b) => Arc::new(b.finish()),
            Self::Int8(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Decimal(b, p, s) => Arc::new(
                b.finish()
                    .with_precision_and_scale(*p, *s)
                    .map_err(|e| Error::internal(format!("decimal column: {e}")))?,
            ),
            Self::String(b) => Arc::new(b.finish()),
            Self::Binary(b) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b, utc) => {
                let array = b.finish();
                Arc::new(if *utc {
                    array.with_timezone("UTC")
                } else {
                    array
                })
            }
        })
    }
}

/// Why a number does not fit a decimal column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalMisfit {
    /// More decimals than the scale.
    Decimals,
    /// More digits than the precision.
    Digits,
}

/// `v` times 10^scale, exactly, if it fits `decimal(precision, scale)`.
pub fn unscaled(
    v: &BigDecimal,
    precision: u8,
    scale: i8,
) -> std::result::Result<i128, DecimalMisfit> {
    let scaled = v.with_scale(i64::from(scale));
    if &scaled != v {
        return Err(DecimalMisfit::Decimals);
    }
    let (digits, _) = scaled.as_bigint_and_exponent();
    let n = i128::try_from(&digits).map_err(|_| DecimalMisfit::Digits)?;
    if n.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return Err(DecimalMisfit::Digits);
    }
    Ok(n)
}

/// The unscaled value of a plain decimal text (`-12.50`: digits, at most one point, no
/// exponent), as [`unscaled`] gives it, without a big-number parse; `None` for any other
/// form (the caller parses it whole).
pub fn plain_unscaled(
    text: &str,
    precision: u8,
    scale: i8,
) -> Option<std::result::Result<i128, DecimalMisfit>> {
    let scale = usize::try_from(scale).ok()?;
    let (negative, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !plain(int) || !plain(frac) || int.len() > 38 {
        return None;
    }
    let (kept, extra) = frac.split_at(frac.len().min(scale));
    if extra.bytes().any(|b| b != b'0') {
        return Some(Err(DecimalMisfit::Decimals));
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > 38 {
        return Some(Err(DecimalMisfit::Digits));
    }
    let mut n: i128 = 0;
    for b in int.bytes().chain(kept.bytes()) {
        n = n * 10 + i128::from(b - b'0');
    }
    n *= 10i128.pow((scale - kept.len()) as u32);
    if n.unsigned_abs() >= 10u128.pow(u32::from(precision)) {
        return Some(Err(DecimalMisfit::Digits));
    }
    Some(Ok(if negative { -n } else { n }))
}

/// `n / 10^scale` written out, for messages.
fn unscaled_text(n: i128, scale: i8) -> String {
    let digits = n.unsigned_abs().to_string();
    let scale = scale.max(0) as usize;
    let sign = if n < 0 { "-" } else { "" };
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

/// How large a batch may grow: rows, and bytes of its values in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSize {
    pub rows: usize,
    pub bytes: usize,
}

impl BatchSize {
    /// At most `rows` rows, whatever their size.
    pub fn rows(rows: usize) -> Self {
        Self {
            rows,
            bytes: usize::MAX,
        }
    }
}

/// Rows between two checks of a batch's bytes, at most; fewer for rows so wide that a
/// batch holds few.
const CHECK_EVERY: usize = 64;

/// Collects rows into batches of at most [`BatchSize`] rows and bytes. Each batch's
/// buffers are allocated for what the previous batch held (not grown by doubling from
/// empty), so that a batch in memory is about its bytes, not up to twice them.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<SourceColumn>,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    size: BatchSize,
    /// Bytes of a row besides its text and binary data.
    row_width: usize,
    /// Rows between two checks of the bytes (about a sixteenth of a batch).
    check_every: usize,
    /// The bytes at the last check; whether they had reached the batch's.
    checked: usize,
    full: bool,
}

impl BatchBuilder {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn new(schema: SchemaRef, columns: Vec<SourceColumn>, size: BatchSize) -> Self {
        let row_width: usize = columns.iter().map(|c| ColumnBuilder::width(c.lake)).sum();
        let variable = columns
            .iter()
            .filter(|c| matches!(c.lake, LakeType::String | LakeType::Binary))
            .count();
        // Before any batch was seen: room for the rows at 16 bytes per text value.
        let rows = size
            .rows
            .min(size.bytes / (row_width + 16 * variable).max(1))
            .max(1);
        let builders = columns
            .iter()
            .map(|c| ColumnBuilder::new(c.lake, rows, rows * 16))
            .collect();
        Self {
            schema,
            columns,
            builders,
            rows: 0,
            size,
            row_width,
            check_every: (rows / 16).clamp(1, CHECK_EVERY),
            checked: 0,
            full: false,
        }
    }

    pub fn is_full(&self) -> bool {
        self.rows >= self.size.rows || self.full
    }

    /// After a row: every `check_every` rows, whether the batch has reached its bytes.
    /// Returns the row's bytes when it was measured alone and is more than twice what a
    /// batch may hold: a row the memory budget has no room for.
    fn measure(&mut self) -> Option<usize> {
        if !self.rows.is_multiple_of(self.check_every) {
            return None;
        }
        let bytes = self.bytes();
        let added = bytes - self.checked;
        self.checked = bytes;
        self.full = bytes >= self.size.bytes;
        (self.check_every == 1 && added / 2 > self.size.bytes).then_some(added)
    }

    /// Bytes of the rows appended so far.
    fn bytes(&self) -> usize {
        self.rows * self.row_width
            + self
                .builders
                .iter()
                .map(ColumnBuilder::data_len)
                .sum::<usize>()
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Appends one row whose values `fill` appends to the column builders, one each, in
    /// order (a feed's decoded record).
    pub fn append_with(
        &mut self,
        fill: impl FnOnce(&mut [ColumnBuilder]) -> std::result::Result<(), String>,
    ) -> std::result::Result<(), String> {
        fill(&mut self.builders)?;
        self.rows += 1;
        self.measure();
        Ok(())
    }

    /// Appends one row, reading each column as its [`Read`] says.
    pub fn append<R: DialectRow>(&mut self, row: &R) -> Result<()> {
        for (i, (column, builder)) in self
            .columns
            .iter()
            .zip(self.builders.iter_mut())
            .enumerate()
        {
            row.read(i, column.read, builder).map_err(|e| match e {
                ReadError::Misfit(Misfit(m)) => Error::user(format!(
                    "column `{}` ({}): {m}; its lake type is {}",
                    column.name,
                    column.source_type,
                    column.lake.athena()
                )),
                ReadError::Driver(e) => Error::user(format!(
                    "column `{}` ({}) could not be read: {e}",
                    column.name, column.source_type
                )),
            })?;
        }
        self.rows += 1;
        match self.measure() {
            None => Ok(()),
            Some(bytes) => Err(Error::user(format!(
                "a row of {bytes} bytes is wider than the run's memory budget allows a batch ({} bytes); raise --memory-limit, or read the table in fewer parts (source.split.parts)",
                self.size.bytes
            ))),
        }
    }

    /// The rows appended since the last batch, as a batch; the next one's buffers are
    /// allocated for as many rows and bytes (an eighth more for text and binary data).
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let rows = self.rows.max(1);
        let arrays = self
            .columns
            .iter()
            .zip(self.builders.iter_mut())
            .map(|(column, builder)| {
                let data = builder.data_len();
                let next = ColumnBuilder::new(column.lake, rows, data + data / 8);
                std::mem::replace(builder, next).finish()
            })
            .collect::<Result<Vec<_>>>()?;
        self.check_every = (self.rows / 16).clamp(1, CHECK_EVERY);
        self.rows = 0;
        self.checked = 0;
        self.full = false;
        RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| Error::internal(format!("building a batch: {e}")))
    }
}

pub enum ReadError {
    Misfit(Misfit),
    Driver(sqlx::Error),
}

impl From<Misfit> for ReadError {
    fn from(m: Misfit) -> Self {
        ReadError::Misfit(m)
    }
}

impl From<sqlx::Error> for ReadError {
    fn from(e: sqlx::Error) -> Self {
        ReadError::Driver(e)
    }
}

/// A row of one dialect: reads column `i` as `read` into `builder`.
pub trait DialectRow {
    fn read(
        &self,
        i: usize,
        read: Read,
        builder: &mut ColumnBuilder,
    ) -> std::result::Result<(), ReadError>;
}

/// Reads the types every sqlx driver decodes the same way; returns `Ok(false)` for the
/// ones the dialect must read itself (decimals, unsigned integers).
pub fn read_common<R>(
    row: &R,
    i: usize,
    read: Read,
    b: &mut ColumnBuilder,
) -> std::result::Result<bool, ReadError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i8: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i16: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f32: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r str: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> &'r [u8]: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> NaiveDate: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> NaiveDateTime: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> DateTime<Utc>: Decode<'r, R::Database> + Type<R::Database>,
{
    macro_rules! get {
        ($t:ty, $append:expr) => {
            match row.try_get::<Option<$t>, _>(i)? {
                Some(v) => $append(v)?,
                None => b.null(),
            }
        };
    }
    match read {
        Read::Bool => get!(bool, |v| b.bool(v)),
        Read::I8 => get!(i8, |v: i8| b.int(i64::from(v))),
        Read::I16 => get!(i16, |v: i16| b.int(i64::from(v))),
        Read::I32 => get!(i32, |v: i32| b.int(i64::from(v))),
        Read::I64 => get!(i64, |v| b.int(v)),
        Read::F32 => get!(f32, |v: f32| b.float(f64::from(v))),
        Read::F64 => get!(f64, |v| b.float(v)),
        // Borrowed from the row: no allocation per value.
        Read::Text => get!(&str, |v: &str| b.text(v)),
        Read::Bytes => get!(&[u8], |v: &[u8]| b.bytes(v)),
        Read::Date => get!(NaiveDate, |v| b.date(v)),
        Read::DateTime => get!(NaiveDateTime, |v| b.datetime(v)),
        Read::DateTimeUtc => get!(DateTime<Utc>, |v| b.datetime_utc(v)),
        Read::Decimal | Read::U8 | Read::U16 | Read::U32 | Read::U64 => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_exact_or_refused() {
        let mut b = ColumnBuilder::new(
            LakeType::Decimal {
                precision: 5,
                scale: 2,
            },
            4,
            0,
        );
        assert!(b.text("123.45").is_ok());
        assert!(b.text("-0.5").is_ok());
        assert!(
            b.text("1.005").is_err(),
            "a third decimal would be rounded away"
        );
        assert!(
            b.text("1234.5").is_err(),
            "six digits do not fit precision 5"
        );
        let array = b.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(array.len(), 2);
    }

    fn text_builder(size: BatchSize) -> BatchBuilder {
        let columns = vec![SourceColumn::new(
            "t",
            "TEXT",
            Read::Text,
            LakeType::String,
            false,
        )];
        BatchBuilder::new(super::super::types::arrow_schema(&columns), columns, size)
    }

    struct TextRow(String);

    impl DialectRow for TextRow {
        fn read(
            &self,
            _: usize,
            _: Read,
            b: &mut ColumnBuilder,
        ) -> std::result::Result<(), ReadError> {
            Ok(b.text(&self.0)?)
        }
    }

    /// A batch ends at its bytes, and the next one is allocated for what the first held
    /// (not grown by doubling, which leaves up to twice the bytes allocated).
    #[test]
    fn batches_end_at_their_bytes_and_are_allocated_for_them() -> Result<()> {
        let mut b = text_builder(BatchSize {
            rows: 65_536,
            bytes: 64 << 10,
        });
        let row = TextRow("x".repeat(100));
        let mut batches = Vec::new();
        while batches.len() < 3 {
            b.append(&row)?;
            if b.is_full() {
                batches.push(b.finish()?);
            }
        }
        for batch in &batches {
            let bytes = batch.num_rows() * 104;
            assert!(
                (64 << 10..(64 << 10) + 64 * 104).contains(&bytes),
                "{} rows",
                batch.num_rows()
            );
        }
        let held = batches[2].get_array_memory_size();
        assert!(
            held < (64 << 10) * 5 / 4 + 4096,
            "the third batch holds {held} bytes for {} of data",
            batches[2].num_rows() * 104
        );
        Ok(())
    }

    #[test]
    fn a_row_wider_than_a_batch_may_be_is_refused() {
        let mut b = text_builder(BatchSize {
            rows: 1000,
            bytes: 100,
        });
        assert!(b.append(&TextRow("small".into())).is_ok());
        let e = b
            .append(&TextRow("x".repeat(1000)))
            .err()
            .map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|m| m.contains("raise --memory-limit")),
            "{e:?}"
        );
    }

    #[test]
    fn integers_refuse_overflow() {
        let mut b = ColumnBuilder::new(LakeType::Int16, 2, 0);
        assert!(b.int(32767).is_ok());
        assert!(b.int(32768).is_err());
        let mut u = ColumnBuilder::new(
            LakeType::Decimal {
                precision: 20,
                scale: 0,
            },
            1,
            0,
        );
        assert!(u.uint(u64::MAX).is_ok());
    }
}
