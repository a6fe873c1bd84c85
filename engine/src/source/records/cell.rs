//! The one typing rule of every feed: a record's JSON value into its field's lake type,
//! exactly, or the reason it does not fit.
//!
//! Numbers are read from their text (serde_json parses with `float_roundtrip`, and a
//! decimal field takes the number's very text), so a double comes back bit for bit and a
//! decimal digit for digit. A string where a number, a decimal or a boolean belongs does
//! not fit unless the field coerces (`source.coerce`, or a text format such as CSV or
//! XML, whose every value is text).

use bigdecimal::BigDecimal;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Number, Value};

use super::super::batch::{DecimalMisfit, plain_unscaled, unscaled};
use super::super::types::LakeType;
use crate::contract::Column;

/// One value, converted to exactly what its column's builder takes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
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

/// A field's value as a record holds it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Found<'v> {
    /// A parsed JSON value.
    Value(&'v Value),
    /// A JSON number's text, exactly as sent.
    Number(&'v str),
}

/// A JSON number, parsed or as its text.
#[derive(Clone, Copy)]
enum Num<'v> {
    Parsed(&'v Number),
    Text(&'v str),
}

impl Num<'_> {
    fn text(self) -> String {
        match self {
            Num::Parsed(n) => n.to_string(),
            Num::Text(t) => t.to_string(),
        }
    }

    fn int(self) -> Option<i64> {
        match self {
            Num::Parsed(n) => n.as_i64(),
            Num::Text(t) => t.parse().ok(),
        }
    }

    /// The double nearest the number (`Number` holds it already: serde_json's
    /// `float_roundtrip` parses to the nearest double, as `str::parse` does).
    fn float(self) -> Option<f64> {
        match self {
            Num::Parsed(n) => n.as_f64(),
            Num::Text(t) => t.parse::<f64>().ok().filter(|f| f.is_finite()),
        }
    }
}

/// Decodes one field's value, or says why it does not fit.
pub(super) fn decode_field(
    field: &Column,
    value: Option<Found<'_>>,
    coerce: bool,
) -> std::result::Result<Cell, String> {
    match value {
        None | Some(Found::Value(Value::Null)) if field.nullable => Ok(Cell::Null),
        None => Err(format!(
            "field `{}` is missing (it is not nullable; its type is {})",
            field.name,
            field.lake.athena()
        )),
        Some(Found::Value(Value::Null)) => Err(format!(
            "field `{}` is null (it is not nullable)",
            field.name
        )),
        Some(v) => cell(v, field.lake, coerce).map_err(|m| {
            format!(
                "field `{}`: {m} (its type is {})",
                field.name,
                field.lake.athena()
            )
        }),
    }
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
fn cell(found: Found<'_>, lake: LakeType, coerce: bool) -> std::result::Result<Cell, String> {
    let (num, value) = match found {
        Found::Number(t) => (Some(Num::Text(t)), None),
        Found::Value(Value::Number(n)) => (Some(Num::Parsed(n)), None),
        Found::Value(v) => (None, Some(v)),
    };
    // Text where the type is not text: read as the type only when the field coerces.
    let text = match value {
        Some(Value::String(s)) if coerce => Some(s.trim()),
        _ => None,
    };
    let refuse = || match (num, value) {
        (Some(n), _) => format!("a number {} does not fit", n.text()),
        (_, Some(Value::String(s))) if !coerce && lake != LakeType::String => format!(
            "a string {} does not fit (a string is read as a number, decimal or boolean only where source.coerce names the field)",
            Value::String(s.clone())
        ),
        (_, Some(v)) => format!("{} {v} does not fit", kind(v)),
        _ => "the value does not fit".into(),
    };
    match lake {
        LakeType::Boolean => match (value, text) {
            (Some(Value::Bool(b)), _) => Ok(Cell::Bool(*b)),
            (_, Some("true" | "1")) => Ok(Cell::Bool(true)),
            (_, Some("false" | "0")) => Ok(Cell::Bool(false)),
            _ => Err(refuse()),
        },
        LakeType::Int8 | LakeType::Int16 | LakeType::Int32 | LakeType::Int64 => {
            let n = match (num, text) {
                (Some(n), _) => n
                    .int()
                    .ok_or_else(|| format!("{} is not an integer in range", n.text()))?,
                (_, Some(t)) => t
                    .parse::<i64>()
                    .map_err(|_| format!("the text {t:?} is not an integer in range"))?,
                _ => return Err(refuse()),
            };
            let fits = match lake {
                LakeType::Int8 => i8::try_from(n).is_ok(),
                LakeType::Int16 => i16::try_from(n).is_ok(),
                LakeType::Int32 => i32::try_from(n).is_ok(),
                _ => true,
            };
            fits.then_some(Cell::Int(n))
                .ok_or_else(|| format!("{n} is out of range"))
        }
        LakeType::Float32 => {
            // Read straight to the nearest single: through a double would round twice.
            let parsed = match (num, text) {
                (Some(n), _) => n.text().parse::<f32>().ok(),
                (_, Some(t)) => t.parse::<f32>().ok(),
                _ => None,
            };
            parsed
                .filter(|f| f.is_finite())
                .map(|f| Cell::Float(f64::from(f)))
                .ok_or_else(refuse)
        }
        LakeType::Float64 => match (num, text) {
            (Some(n), _) => n.float(),
            (_, Some(t)) => t.parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
        .map(Cell::Float)
        .ok_or_else(refuse),
        LakeType::Decimal { precision, scale } => {
            let text = match (num, text) {
                (Some(n), _) => n.text(),
                (_, Some(t)) => t.to_string(),
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
        LakeType::String => Ok(Cell::Text(match (num, value) {
            (Some(n), _) => n.text(),
            (_, Some(Value::String(s))) => s.clone(),
            // Booleans and nested values are kept as their JSON text.
            (_, Some(other)) => other.to_string(),
            _ => String::new(),
        })),
        LakeType::Binary => match value {
            Some(Value::String(s)) => Ok(Cell::Bytes(s.as_bytes().to_vec())),
            _ => Err(refuse()),
        },
        LakeType::Date => {
            let Some(Value::String(s)) = value else {
                return Err(refuse());
            };
            let date = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
                .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD)"))?;
            let days = date.signed_duration_since(NaiveDate::default()).num_days();
            i32::try_from(days)
                .map(Cell::Days)
                .map_err(|_| format!("{s:?} is out of range"))
        }
        LakeType::Timestamp | LakeType::TimestampUtc => match (num, value) {
            (Some(n), _) => seconds(n).map(Cell::Micros),
            (_, Some(Value::String(s))) => timestamp(s).map(Cell::Micros),
            _ => Err(refuse()),
        },
    }
}

/// A number of seconds since 1970-01-01 UTC, in microseconds.
fn seconds(n: Num<'_>) -> std::result::Result<i64, String> {
    let seconds = n
        .float()
        .ok_or_else(|| format!("{} is not a number of seconds", n.text()))?;
    let micros = (seconds * 1e6).round();
    // Within years 0001 to 9999, as Athena's timestamps are.
    if !(-62_135_596_800e6..=253_402_300_799e6).contains(&micros) {
        return Err(format!(
            "{} seconds since the epoch is out of range",
            n.text()
        ));
    }
    Ok(micros as i64)
}

/// A timestamp: RFC 3339 text (an offset is converted to UTC), `YYYY-MM-DD HH:MM:SS[.f]`
/// taken as UTC, or (as a number) seconds since 1970-01-01 UTC.
fn timestamp(s: &str) -> std::result::Result<i64, String> {
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
}
