//! Cursor values (watermarks) and the window `(lo, hi]` a run reads.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    Date32Type, Int8Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use serde::{Deserialize, Serialize};

use super::types::{LakeType, SourceColumn};
use crate::error::{Error, Result};

/// A value of a cursor column, as stored in the state store and bound as a parameter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum CursorValue {
    Int(i64),
    Date(NaiveDate),
    /// A timestamp without time zone (taken as UTC).
    Timestamp(NaiveDateTime),
    /// A timestamp with time zone, in UTC.
    TimestampUtc(DateTime<Utc>),
    Text(String),
}

impl fmt::Display for CursorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CursorValue::Int(v) => write!(f, "{v}"),
            CursorValue::Date(v) => write!(f, "{v}"),
            CursorValue::Timestamp(v) => write!(f, "{}", v.format("%Y-%m-%d %H:%M:%S%.f")),
            CursorValue::TimestampUtc(v) => write!(f, "{}", v.format("%Y-%m-%d %H:%M:%S%.fZ")),
            CursorValue::Text(v) => write!(f, "{v:?}"),
        }
    }
}

impl CursorValue {
    /// Reads `text` as a value of the same type as `self` (for `sluice state rewind`).
    pub fn parse_like(&self, text: &str) -> Result<CursorValue> {
        let text = text.trim();
        let bad = |what: &str| {
            Error::user(format!(
                "{text:?} is not {what}, the type of this job's watermark ({self})"
            ))
        };
        let naive = |t: &str| {
            ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())
                .or_else(|| {
                    NaiveDate::parse_from_str(t, "%Y-%m-%d")
                        .ok()
                        .and_then(|d| d.and_hms_opt(0, 0, 0))
                })
        };
        Ok(match self {
            CursorValue::Int(_) => CursorValue::Int(text.parse().map_err(|_| bad("an integer"))?),
            CursorValue::Date(_) => CursorValue::Date(
                NaiveDate::parse_from_str(text, "%Y-%m-%d")
                    .map_err(|_| bad("a date (YYYY-MM-DD)"))?,
            ),
            CursorValue::Timestamp(_) => CursorValue::Timestamp(
                naive(text).ok_or_else(|| bad("a timestamp (YYYY-MM-DD HH:MM:SS)"))?,
            ),
            CursorValue::TimestampUtc(_) => CursorValue::TimestampUtc(
                DateTime::parse_from_rfc3339(text)
                    .map(|t| t.with_timezone(&Utc))
                    .ok()
                    .or_else(|| naive(text.trim_end_matches('Z')).map(|t| t.and_utc()))
                    .ok_or_else(|| bad("a timestamp (RFC 3339, or YYYY-MM-DD HH:MM:SS in UTC)"))?,
            ),
            CursorValue::Text(_) => CursorValue::Text(text.to_string()),
        })
    }
}

/// The rows a run reads: cursor in `(lo, hi]`. Both bounds absent means every row.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub cursor: Option<String>,
    pub lo: Option<CursorValue>,
    pub hi: Option<CursorValue>,
}

impl Window {
    pub fn everything() -> Self {
        Self::default()
    }
}

/// Checks that a column can be a cursor: it must grow and compare, so integers, dates,
/// timestamps and text.
pub fn check_cursor_column(column: &SourceColumn) -> Result<()> {
    match column.lake {
        LakeType::Int8 | LakeType::Int16 | LakeType::Int32 | LakeType::Int64 => Ok(()),
        LakeType::Date | LakeType::Timestamp | LakeType::TimestampUtc => Ok(()),
        LakeType::String if !column.as_text => Ok(()),
        _ => Err(Error::user(format!(
            "cursor column `{}` has type {}; a cursor must be an integer, date, timestamp or text column",
            column.name, column.source_type
        ))),
    }
}

/// The latest cursor value a run may read when the job has a `lag`: now minus the lag.
pub fn lag_ceiling(
    column: &SourceColumn,
    lag: Duration,
    now: DateTime<Utc>,
) -> Result<CursorValue> {
    let at = now - chrono::Duration::from_std(lag).map_err(|_| Error::user("lag is too large"))?;
    match column.lake {
        LakeType::Timestamp => Ok(CursorValue::Timestamp(at.naive_utc())),
        LakeType::TimestampUtc => Ok(CursorValue::TimestampUtc(at)),
        LakeType::Date => Ok(CursorValue::Date(at.date_naive())),
        _ => Err(Error::user(format!(
            "`lag` needs a date or timestamp cursor, but `{}` is {}; remove `lag` from the job",
            column.name, column.source_type
        ))),
    }
}

/// Reads row 0 of a one-column array (a `MAX(cursor)` result) as a cursor value.
pub fn cursor_from_array(array: &dyn Array, lake: LakeType) -> Result<Option<CursorValue>> {
    if array.is_empty() || array.is_null(0) {
        return Ok(None);
    }
    let value = match lake {
        LakeType::Int8 => CursorValue::Int(i64::from(array.as_primitive::<Int8Type>().value(0))),
        LakeType::Int16 => CursorValue::Int(i64::from(array.as_primitive::<Int16Type>().value(0))),
        LakeType::Int32 => CursorValue::Int(i64::from(array.as_primitive::<Int32Type>().value(0))),
        LakeType::Int64 => CursorValue::Int(array.as_primitive::<Int64Type>().value(0)),
        LakeType::Date => {
            let days = array.as_primitive::<Date32Type>().value(0);
            CursorValue::Date(NaiveDate::default() + chrono::Duration::days(i64::from(days)))
        }
        LakeType::Timestamp | LakeType::TimestampUtc => {
            let micros = array.as_primitive::<TimestampMicrosecondType>().value(0);
            let at = DateTime::<Utc>::from_timestamp_micros(micros).ok_or_else(|| {
                Error::user(format!("cursor timestamp {micros}µs is out of range"))
            })?;
            if lake == LakeType::Timestamp {
                CursorValue::Timestamp(at.naive_utc())
            } else {
                CursorValue::TimestampUtc(at)
            }
        }
        LakeType::String => CursorValue::Text(array.as_string::<i32>().value(0).to_string()),
        other => return Err(Error::internal(format!("{other:?} is not a cursor type"))),
    };
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_values_round_trip_through_json() {
        let values = [
            CursorValue::Int(42),
            CursorValue::Timestamp(
                NaiveDate::from_ymd_opt(2024, 5, 1)
                    .and_then(|d| d.and_hms_micro_opt(10, 0, 0, 123_456))
                    .unwrap_or_default(),
            ),
            CursorValue::Text("abc".into()),
        ];
        for v in values {
            let json = serde_json::to_string(&v).unwrap_or_default();
            let back: CursorValue =
                serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(back, v);
        }
    }
}
