//! Values as pgoutput sends them: PostgreSQL's text output (`binary` off), in the
//! session's settings (sqlx's: `DateStyle = ISO`, `TimeZone = UTC`). For every column
//! the snapshot casts to text (JSON, UUID, intervals, arrays, enums, …) this is the same
//! text; the typed columns are parsed here into the same lake values the snapshot's
//! binary read gives.

use std::str::FromStr;

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::source::batch::ColumnBuilder;
use crate::source::types::Read;

/// Appends the value whose text is `text` to `b`, read as `read` says.
pub fn append(text: &[u8], read: Read, b: &mut ColumnBuilder) -> Result<(), String> {
    if read == Read::Bytes {
        return b.bytes(&bytea(text)?).map_err(|m| m.0);
    }
    let text = std::str::from_utf8(text).map_err(|e| format!("not UTF-8 text: {e}"))?;
    let bad = |what: &str| format!("{text:?} is not {what}");
    let fit = match read {
        Read::Bool => match text {
            "t" => b.bool(true),
            "f" => b.bool(false),
            _ => return Err(bad("a boolean")),
        },
        Read::I8 | Read::I16 | Read::I32 | Read::I64 => {
            b.int(text.parse::<i64>().map_err(|_| bad("an integer"))?)
        }
        Read::U8 | Read::U16 | Read::U32 | Read::U64 => b.uint(
            text.parse::<u64>()
                .map_err(|_| bad("an unsigned integer"))?,
        ),
        Read::F32 | Read::F64 => b.float(float(text).ok_or_else(|| bad("a number"))?),
        Read::Decimal => {
            b.decimal(&BigDecimal::from_str(text).map_err(|_| bad("a decimal number"))?)
        }
        Read::Text => b.text(text),
        Read::Date => b.date(date(text).ok_or_else(|| bad("a date"))?),
        Read::DateTime => b.datetime(timestamp(text).ok_or_else(|| bad("a timestamp"))?),
        Read::DateTimeUtc => {
            b.datetime_utc(timestamptz(text).ok_or_else(|| bad("a timestamp with time zone"))?)
        }
        Read::Bytes => Ok(()),
    };
    fit.map_err(|m| m.0)
}

/// `NaN`, `Infinity` and `-Infinity` as PostgreSQL spells them, or a number.
fn float(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
}

fn date(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()
}

fn timestamp(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()
}

/// `2024-05-01 12:00:00.123+00` (the offset may carry minutes and seconds).
fn timestamptz(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .or_else(|| {
            // An offset with seconds (`+05:53:28`, historical zones) is not UTC's: the
            // session is in UTC, so this only guards against a changed TimeZone.
            let (head, _) = text.rsplit_once(':')?;
            DateTime::parse_from_str(head, "%Y-%m-%d %H:%M:%S%.f%#z").ok()
        })
        .map(|t| t.with_timezone(&Utc))
}

/// `bytea` in its hex output, `\x0a1b…` (`bytea_output = hex`, the default).
fn bytea(text: &[u8]) -> Result<Vec<u8>, String> {
    let hex = text
        .strip_prefix(b"\\x")
        .ok_or("a bytea value not in hex output (set bytea_output = hex)")?;
    if !hex.len().is_multiple_of(2) {
        return Err("a bytea value of an odd number of hex digits".into());
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        _ => Err(format!("{:?} is not a hex digit", c as char)),
    };
    hex.chunks(2)
        .map(|pair| Ok((digit(pair[0])? << 4) | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_values_parse_from_their_text() {
        assert_eq!(float("-Infinity"), Some(f64::NEG_INFINITY));
        assert_eq!(float("1.5"), Some(1.5));
        assert_eq!(date("2024-02-29"), NaiveDate::from_ymd_opt(2024, 2, 29));
        assert!(timestamp("2024-05-01 12:00:00.123456").is_some());
        assert!(timestamp("2024-05-01 12:00:00").is_some());
        let t = timestamptz("2024-05-01 12:00:00.5+02").map(|t| t.to_rfc3339());
        assert_eq!(t.as_deref(), Some("2024-05-01T10:00:00.500+00:00"));
        assert!(timestamptz("2024-05-01 12:00:00+05:30").is_some());
        assert_eq!(bytea(b"\\x0aFF"), Ok(vec![10, 255]));
        assert!(bytea(b"abc").is_err());
    }
}
