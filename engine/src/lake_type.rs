//! The lake's column types: what every source type, record field and contract column
//! ends in, and how it is named in Arrow, Parquet and Athena (the mapping table is in
//! `source::types`).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// The type a column has in the lake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LakeType {
    Boolean,
    Int8,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Decimal {
        precision: u8,
        scale: i8,
    },
    String,
    Binary,
    Date,
    /// A timestamp without time zone, taken to be UTC.
    Timestamp,
    /// A timestamp with time zone, normalised to UTC.
    TimestampUtc,
}

/// Widest decimal kept as a decimal; wider ones become strings.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

impl LakeType {
    pub fn arrow(self) -> DataType {
        match self {
            LakeType::Boolean => DataType::Boolean,
            LakeType::Int8 => DataType::Int8,
            LakeType::Int16 => DataType::Int16,
            LakeType::Int32 => DataType::Int32,
            LakeType::Int64 => DataType::Int64,
            LakeType::Float32 => DataType::Float32,
            LakeType::Float64 => DataType::Float64,
            LakeType::Decimal { precision, scale } => DataType::Decimal128(precision, scale),
            LakeType::String => DataType::Utf8,
            LakeType::Binary => DataType::Binary,
            LakeType::Date => DataType::Date32,
            LakeType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            LakeType::TimestampUtc => {
                DataType::Timestamp(TimeUnit::Microsecond, Some(Arc::from("UTC")))
            }
        }
    }

    /// The Athena (Hive DDL) type name.
    pub fn athena(self) -> String {
        match self {
            LakeType::Boolean => "boolean".into(),
            LakeType::Int8 => "tinyint".into(),
            LakeType::Int16 => "smallint".into(),
            LakeType::Int32 => "int".into(),
            LakeType::Int64 => "bigint".into(),
            LakeType::Float32 => "float".into(),
            LakeType::Float64 => "double".into(),
            LakeType::Decimal { precision, scale } => format!("decimal({precision},{scale})"),
            LakeType::String => "string".into(),
            LakeType::Binary => "binary".into(),
            LakeType::Date => "date".into(),
            LakeType::Timestamp | LakeType::TimestampUtc => "timestamp".into(),
        }
    }

    /// The name in a schema contract (`target.schema`): the Athena name, except that a
    /// timestamp normalised to UTC is `timestamp with time zone` (Athena shows both as
    /// `timestamp`; the Parquet files tell them apart).
    pub fn contract_name(self) -> String {
        match self {
            LakeType::TimestampUtc => "timestamp with time zone".into(),
            other => other.athena(),
        }
    }

    /// Reads a contract type name: the Athena names, their ANSI spellings (`integer`,
    /// `real`, `varchar`, `char(n)`, `varbinary`, `timestamp(6)`) and
    /// `timestamp with time zone`.
    pub fn parse(text: &str) -> Result<LakeType, String> {
        let t = text.trim().to_ascii_lowercase();
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        let base = t.split('(').next().unwrap_or("").trim();
        let args: Vec<&str> = t
            .split_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .map(|a| a.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let lake = match (base, args.as_slice()) {
            ("boolean", []) => LakeType::Boolean,
            ("tinyint", []) => LakeType::Int8,
            ("smallint", []) => LakeType::Int16,
            ("int" | "integer", []) => LakeType::Int32,
            ("bigint", []) => LakeType::Int64,
            ("float" | "real", []) => LakeType::Float32,
            ("double" | "double precision", []) => LakeType::Float64,
            ("decimal", [p, s]) => match (p.parse::<u8>(), s.parse::<i8>()) {
                (Ok(p), Ok(s))
                    if (1..=MAX_DECIMAL_PRECISION).contains(&p) && (0..=p as i8).contains(&s) =>
                {
                    LakeType::Decimal {
                        precision: p,
                        scale: s,
                    }
                }
                _ => {
                    return Err(format!(
                        "`{text}`: decimal(p,s) needs 1 <= p <= 38 and 0 <= s <= p"
                    ));
                }
            },
            ("string" | "varchar" | "char", _) => LakeType::String,
            ("binary" | "varbinary", []) => LakeType::Binary,
            ("date", []) => LakeType::Date,
            ("timestamp", []) | ("timestamp", ["3" | "6"]) => LakeType::Timestamp,
            ("timestamp with time zone", []) => LakeType::TimestampUtc,
            _ => {
                return Err(format!(
                    "`{text}` is not a lake type; valid: boolean, tinyint, smallint, int, bigint, float, double, decimal(p,s), string, binary, date, timestamp, timestamp with time zone"
                ));
            }
        };
        Ok(lake)
    }

    /// The lake type that holds an Arrow type (a transform's output) without loss, or
    /// `None` for types the lake does not hold (lists, structs, maps, intervals…).
    /// Unsigned integers widen; other timestamp units become microseconds; views and
    /// large variants become the plain ones.
    pub fn from_arrow(data_type: &DataType) -> Option<LakeType> {
        Some(match data_type {
            DataType::Boolean => LakeType::Boolean,
            DataType::Int8 => LakeType::Int8,
            DataType::Int16 | DataType::UInt8 => LakeType::Int16,
            DataType::Int32 | DataType::UInt16 => LakeType::Int32,
            DataType::Int64 | DataType::UInt32 => LakeType::Int64,
            DataType::UInt64 => LakeType::decimal(20, 0),
            DataType::Float16 | DataType::Float32 => LakeType::Float32,
            DataType::Float64 => LakeType::Float64,
            DataType::Decimal32(p, s)
            | DataType::Decimal64(p, s)
            | DataType::Decimal128(p, s)
            | DataType::Decimal256(p, s) => LakeType::decimal(u32::from(*p), i32::from(*s)),
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null => {
                LakeType::String
            }
            DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::FixedSizeBinary(_) => LakeType::Binary,
            DataType::Date32 | DataType::Date64 => LakeType::Date,
            DataType::Timestamp(_, None) => LakeType::Timestamp,
            DataType::Timestamp(_, Some(_)) => LakeType::TimestampUtc,
            DataType::Dictionary(_, value) => return LakeType::from_arrow(value),
            _ => return None,
        })
    }

    /// Whether every value of `self` is a value of `wider` (the cast is lossless).
    pub fn fits_in(self, wider: LakeType) -> bool {
        use LakeType::*;
        let int_digits = |t: LakeType| match t {
            Int8 => Some(3),
            Int16 => Some(5),
            Int32 => Some(10),
            Int64 => Some(19),
            _ => None,
        };
        match (self, wider) {
            (a, b) if a == b => true,
            (Int8 | Int16 | Int32, Int16 | Int32 | Int64) => int_digits(self) <= int_digits(wider),
            (Int8 | Int16 | Int32 | Int64, Decimal { precision, scale }) => {
                int_digits(self).is_some_and(|d| d <= i32::from(precision) - i32::from(scale))
            }
            (Int8 | Int16, Float32) | (Int8 | Int16 | Int32 | Float32, Float64) => true,
            (
                Decimal {
                    precision: p,
                    scale: s,
                },
                Decimal {
                    precision: wp,
                    scale: ws,
                },
            ) => ws >= s && i16::from(wp) - i16::from(ws) >= i16::from(p) - i16::from(s),
            (Date, Timestamp) => true,
            _ => false,
        }
    }

    /// A decimal when it fits in 38 digits, else a string (lossless either way).
    pub fn decimal(precision: u32, scale: i32) -> LakeType {
        match (u8::try_from(precision), i8::try_from(scale)) {
            (Ok(p), Ok(s))
                if (1..=MAX_DECIMAL_PRECISION).contains(&p) && (0..=p as i8).contains(&s) =>
            {
                LakeType::Decimal {
                    precision: p,
                    scale: s,
                }
            }
            _ => LakeType::String,
        }
    }
}

/// A column name as Athena takes it: lower case, letters, digits and `_` (anything else
/// becomes `_`; a leading digit gets a `_` in front).
pub fn athena_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}
