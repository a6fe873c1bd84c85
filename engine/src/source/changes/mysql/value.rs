//! Row values as the binlog carries them (mysql_common's decoding of a row image), turned
//! into the lake values the snapshot's read gives for the same column: the snapshot
//! reads through sqlx ([`crate::source::mysql`]) and casts some types to text (TIME, BIT,
//! …), so each binlog form is mapped to what that read produces — an ENUM's label rather
//! than its index, a SET's labels rather than its bits, a TIME as `HH:MM:SS[.ffffff]`,
//! a BINARY(n) padded back to n bytes, a TIMESTAMP from its seconds since the epoch.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{NaiveDate, NaiveDateTime};
use mysql_async::Value;
use mysql_async::binlog::value::BinlogValue;
use mysql_async::consts::ColumnType;

use crate::source::batch::ColumnBuilder;
use crate::source::types::{Read, SourceColumn};

/// One column of a binlog table map, as the values need it.
#[derive(Debug, Clone, PartialEq)]
pub struct MapColumn {
    pub name: String,
    pub kind: ColumnType,
    /// The type's metadata bytes in the table map (lengths, fractional digits).
    pub meta: Vec<u8>,
    /// An ENUM's or a SET's labels, in their order.
    pub labels: Vec<String>,
}

/// Appends `value` (of `map`'s column in the binlog) to `b`, read as `column` is.
pub fn append(
    value: Option<&BinlogValue<'_>>,
    map: &MapColumn,
    column: &SourceColumn,
    b: &mut ColumnBuilder,
) -> Result<(), String> {
    let value = match value {
        None => {
            return Err("the row image lacks the column (binlog_row_image must be FULL)".into());
        }
        Some(BinlogValue::Value(v)) => v,
        Some(BinlogValue::Jsonb(_) | BinlogValue::JsonDiff(_)) => {
            return Err("MySQL's binary JSON is not read (MariaDB logs JSON as text)".into());
        }
    };
    if *value == Value::NULL {
        b.null();
        return Ok(());
    }
    let fit = |r: Result<(), crate::source::batch::Misfit>| r.map_err(|m| m.0);
    match column.read {
        Read::Bool => fit(b.bool(signed(value)? != 0)),
        Read::I8 | Read::I16 | Read::I32 | Read::I64 => fit(b.int(signed(value)?)),
        Read::U8 | Read::U16 | Read::U32 | Read::U64 => {
            fit(b.uint(unsigned(value, column.read, map)?))
        }
        Read::F32 | Read::F64 => match value {
            Value::Float(f) => fit(b.float(f64::from(*f))),
            Value::Double(f) => fit(b.float(*f)),
            other => Err(format!("{other:?} is not a floating-point number")),
        },
        Read::Decimal => {
            let text = text(value, map, column)?;
            let v = BigDecimal::from_str(&text)
                .map_err(|_| format!("{text:?} is not a decimal number"))?;
            fit(b.decimal(&v))
        }
        Read::Text => fit(b.text(&text(value, map, column)?)),
        Read::Bytes => match value {
            Value::Bytes(bytes) => fit(b.bytes(&padded(bytes, map, column))),
            other => Err(format!("{other:?} is not binary data")),
        },
        Read::Date => fit(b.date(date(value)?)),
        Read::DateTime => fit(b.datetime(datetime(value)?)),
        Read::DateTimeUtc => fit(b.micros(epoch_micros(value)?)),
    }
}

/// A signed integer.
fn signed(value: &Value) -> Result<i64, String> {
    match value {
        Value::Int(v) => Ok(*v),
        Value::UInt(v) => i64::try_from(*v).map_err(|_| format!("{v} is out of range")),
        Value::Bytes(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("{b:?} is not an integer")),
        other => Err(format!("{other:?} is not an integer")),
    }
}

/// An unsigned integer. Without the table map's signedness an unsigned column's value
/// arrives as the signed integer of the same bits: read back at the column's width.
/// YEAR arrives as its text (a stored 0, `0000`, as 1900).
fn unsigned(value: &Value, read: Read, map: &MapColumn) -> Result<u64, String> {
    match value {
        Value::UInt(v) => Ok(*v),
        Value::Int(v) if *v >= 0 => Ok(v.unsigned_abs()),
        Value::Int(v) => Ok(match read {
            Read::U8 => u64::from(*v as u8),
            Read::U16 => u64::from(*v as u16),
            Read::U32 => u64::from(*v as u32),
            _ => *v as u64,
        }),
        Value::Bytes(b) if map.kind == ColumnType::MYSQL_TYPE_YEAR => {
            let year: u64 = std::str::from_utf8(b)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| format!("{b:?} is not a year"))?;
            Ok(if year == 1900 { 0 } else { year })
        }
        other => Err(format!("{other:?} is not an unsigned integer")),
    }
}

/// The value as the snapshot's text read has it.
fn text(value: &Value, map: &MapColumn, column: &SourceColumn) -> Result<String, String> {
    match value {
        Value::Int(i) if map.kind == ColumnType::MYSQL_TYPE_ENUM => {
            // 1-based; 0 is the empty string MariaDB stores for an invalid value.
            let label = usize::try_from(*i)
                .ok()
                .and_then(|i| i.checked_sub(1))
                .and_then(|i| map.labels.get(i));
            Ok(label.cloned().unwrap_or_default())
        }
        Value::Bytes(bits) if map.kind == ColumnType::MYSQL_TYPE_SET => {
            let chosen: Vec<&str> = map
                .labels
                .iter()
                .enumerate()
                .filter(|(i, _)| {
                    bits.get(i / 8)
                        .is_some_and(|byte| byte & (1 << (i % 8)) != 0)
                })
                .map(|(_, label)| label.as_str())
                .collect();
            Ok(chosen.join(","))
        }
        Value::Bytes(bytes) if column.source_type.eq_ignore_ascii_case("BIT") => {
            Ok(String::from_utf8_lossy(bytes).into_owned())
        }
        Value::Bytes(bytes) => String::from_utf8(bytes.clone()).map_err(|_| {
            "text that is not UTF-8 (change capture reads utf8mb4, utf8 and ascii columns)".into()
        }),
        Value::Int(i) => Ok(i.to_string()),
        Value::UInt(u) => Ok(u.to_string()),
        Value::Float(f) => Ok(f.to_string()),
        Value::Double(f) => Ok(f.to_string()),
        Value::Date(y, m, d, ..) if map.kind == ColumnType::MYSQL_TYPE_NEWDATE => {
            Ok(format!("{y:04}-{m:02}-{d:02}"))
        }
        Value::Date(y, mo, d, h, mi, s, us) => Ok(format!(
            "{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}{}",
            fraction(*us, digits(map))
        )),
        Value::Time(negative, days, h, m, s, us) => Ok(format!(
            "{}{:02}:{m:02}:{s:02}{}",
            if *negative { "-" } else { "" },
            u64::from(*days) * 24 + u64::from(*h),
            fraction(*us, digits(map))
        )),
        Value::NULL => Ok(String::new()),
    }
}

/// The fractional digits a TIME2, DATETIME2 or TIMESTAMP2 column keeps (its metadata).
fn digits(map: &MapColumn) -> usize {
    match map.kind {
        ColumnType::MYSQL_TYPE_TIME2
        | ColumnType::MYSQL_TYPE_DATETIME2
        | ColumnType::MYSQL_TYPE_TIMESTAMP2 => {
            map.meta.first().map_or(0, |d| usize::from(*d).min(6))
        }
        _ => 0,
    }
}

/// `.123` for 123000 µs at 3 digits; nothing at 0 digits.
fn fraction(micros: u32, digits: usize) -> String {
    if digits == 0 {
        return String::new();
    }
    let all = format!("{micros:06}");
    format!(".{}", &all[..digits.min(all.len())])
}

/// A BINARY(n) value: the binlog drops its trailing zero bytes, the column keeps them.
fn padded(bytes: &[u8], map: &MapColumn, column: &SourceColumn) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if map.kind == ColumnType::MYSQL_TYPE_STRING
        && column.source_type.eq_ignore_ascii_case("BINARY")
        && let [byte0, byte1, ..] = map.meta.as_slice()
    {
        // The declared length, as mysql_common reads a CHAR/BINARY's metadata.
        let (byte0, byte1) = (usize::from(*byte0), usize::from(*byte1));
        let length = if byte0 & 0x30 != 0x30 {
            byte1 | (((byte0 & 0x30) ^ 0x30) << 4)
        } else {
            byte1
        };
        if out.len() < length {
            out.resize(length, 0);
        }
    }
    out
}

fn date(value: &Value) -> Result<NaiveDate, String> {
    match value {
        Value::Date(y, m, d, ..) => {
            NaiveDate::from_ymd_opt(i32::from(*y), u32::from(*m), u32::from(*d))
                .ok_or_else(|| format!("{y:04}-{m:02}-{d:02} is not a date"))
        }
        other => Err(format!("{other:?} is not a date")),
    }
}

fn datetime(value: &Value) -> Result<NaiveDateTime, String> {
    match value {
        Value::Date(_, _, _, h, mi, s, us) => date(value)?
            .and_hms_micro_opt(u32::from(*h), u32::from(*mi), u32::from(*s), *us)
            .ok_or_else(|| format!("{value:?} is not a date and time")),
        other => Err(format!("{other:?} is not a date and time")),
    }
}

/// A TIMESTAMP: seconds since the epoch (`1714564800` or `1714564800.123456` from a
/// TIMESTAMP2, an integer from the old TIMESTAMP), as microseconds.
fn epoch_micros(value: &Value) -> Result<i64, String> {
    let bad = || format!("{value:?} is not a timestamp");
    match value {
        Value::Int(seconds) => seconds.checked_mul(1_000_000).ok_or_else(bad),
        Value::Bytes(text) => {
            let text = std::str::from_utf8(text).map_err(|_| bad())?;
            let (seconds, micros) = text.split_once('.').unwrap_or((text, "0"));
            let seconds: i64 = seconds.parse().map_err(|_| bad())?;
            let micros: i64 = format!("{micros:0<6}")
                .get(..6)
                .and_then(|m| m.parse().ok())
                .ok_or_else(bad)?;
            seconds
                .checked_mul(1_000_000)
                .and_then(|s| s.checked_add(micros))
                .ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::types::LakeType;

    fn map(kind: ColumnType, meta: &[u8], labels: &[&str]) -> MapColumn {
        MapColumn {
            name: "c".into(),
            kind,
            meta: meta.to_vec(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
        }
    }

    fn column(source_type: &str) -> SourceColumn {
        SourceColumn::text("c", source_type)
    }

    #[test]
    fn enums_sets_and_times_read_as_the_snapshot_casts_them() -> Result<(), String> {
        let e = map(ColumnType::MYSQL_TYPE_ENUM, &[247, 1], &["new", "paid"]);
        assert_eq!(text(&Value::Int(2), &e, &column("ENUM"))?, "paid");
        assert_eq!(text(&Value::Int(0), &e, &column("ENUM"))?, "");
        let s = map(ColumnType::MYSQL_TYPE_SET, &[248, 1], &["a", "b", "c"]);
        assert_eq!(text(&Value::Bytes(vec![0b101]), &s, &column("SET"))?, "a,c");
        let t = map(ColumnType::MYSQL_TYPE_TIME2, &[3], &[]);
        let time = Value::Time(true, 1, 2, 3, 4, 567_000);
        assert_eq!(text(&time, &t, &column("TIME"))?, "-26:03:04.567");
        let t0 = map(ColumnType::MYSQL_TYPE_TIME2, &[0], &[]);
        assert_eq!(
            text(&Value::Time(false, 0, 9, 0, 0, 0), &t0, &column("TIME"))?,
            "09:00:00"
        );
        Ok(())
    }

    #[test]
    fn timestamps_binary_and_unsigned_values() -> Result<(), String> {
        assert_eq!(
            epoch_micros(&Value::Bytes(b"10.000123".to_vec()))?,
            10_000_123
        );
        assert_eq!(epoch_micros(&Value::Bytes(b"10.5".to_vec()))?, 10_500_000);
        assert_eq!(epoch_micros(&Value::Bytes(b"10".to_vec()))?, 10_000_000);
        let binary = SourceColumn::new("c", "BINARY", Read::Bytes, LakeType::Binary, false);
        let m = map(ColumnType::MYSQL_TYPE_STRING, &[254, 4], &[]);
        assert_eq!(padded(&[1, 2], &m, &binary), vec![1, 2, 0, 0]);
        let tiny = map(ColumnType::MYSQL_TYPE_TINY, &[], &[]);
        assert_eq!(unsigned(&Value::Int(-56), Read::U8, &tiny)?, 200);
        let year = map(ColumnType::MYSQL_TYPE_YEAR, &[], &[]);
        assert_eq!(
            unsigned(&Value::Bytes(b"1900".to_vec()), Read::U16, &year)?,
            0
        );
        assert_eq!(
            unsigned(&Value::Bytes(b"2024".to_vec()), Read::U16, &year)?,
            2024
        );
        Ok(())
    }
}
