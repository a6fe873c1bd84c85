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
    pub fn new(lake: LakeType, capacity: usize) -> Self {
        match lake {
            LakeType::Boolean => Self::Boolean(BooleanBuilder::with_capacity(capacity)),
            LakeType::Int8 => Self::Int8(Int8Builder::with_capacity(capacity)),
            LakeType::Int16 => Self::Int16(Int16Builder::with_capacity(capacity)),
            LakeType::Int32 => Self::Int32(Int32Builder::with_capacity(capacity)),
            LakeType::Int64 => Self::Int64(Int64Builder::with_capacity(capacity)),
            LakeType::Float32 => Self::Float32(Float32Builder::with_capacity(capacity)),
            LakeType::Float64 => Self::Float64(Float64Builder::with_capacity(capacity)),
            LakeType::Decimal { precision, scale } => {
                Self::Decimal(Decimal128Builder::with_capacity(capacity), precision, scale)
            }
            LakeType::String => Self::String(StringBuilder::with_capacity(capacity, capacity * 16)),
            LakeType::Binary => Self::Binary(BinaryBuilder::with_capacity(capacity, capacity * 16)),
            LakeType::Date => Self::Date(Date32Builder::with_capacity(capacity)),
            LakeType::Timestamp => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity), false)
            }
            LakeType::TimestampUtc => {
                Self::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity), true)
            }
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

/// Collects rows into batches of at most `batch_rows` rows.
pub struct BatchBuilder {
    schema: SchemaRef,
    columns: Vec<SourceColumn>,
    builders: Vec<ColumnBuilder>,
    rows: usize,
    capacity: usize,
}

impl BatchBuilder {
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    pub fn new(schema: SchemaRef, columns: Vec<SourceColumn>, capacity: usize) -> Self {
        let builders = columns
            .iter()
            .map(|c| ColumnBuilder::new(c.lake, capacity))
            .collect();
        Self {
            schema,
            columns,
            builders,
            rows: 0,
            capacity,
        }
    }

    pub fn is_full(&self) -> bool {
        self.rows >= self.capacity
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
        Ok(())
    }

    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays = self
            .builders
            .iter_mut()
            .map(ColumnBuilder::finish)
            .collect::<Result<Vec<_>>>()?;
        self.rows = 0;
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

    #[test]
    fn integers_refuse_overflow() {
        let mut b = ColumnBuilder::new(LakeType::Int16, 2);
        assert!(b.int(32767).is_ok());
        assert!(b.int(32768).is_err());
        let mut u = ColumnBuilder::new(
            LakeType::Decimal {
                precision: 20,
                scale: 0,
            },
            1,
        );
        assert!(u.uint(u64::MAX).is_ok());
    }
}
