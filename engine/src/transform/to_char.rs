//! `to_char` / `date_format` as DataFusion's, made cheap for the partition column every
//! day-partitioned job computes (`date_format(created_at, '%Y-%m-%d')`).
//!
//! DataFusion's formats each value through Arrow's display, which parses the format
//! string again for every value (profiled with perf: 8 % of a whole run's CPU on the
//! bench's 12-column orders table). Here, for a constant format over timestamps (UTC or
//! without a zone) or dates: the format is parsed once; with only date fields in it, a value of the same day
//! as the previous one repeats its text (rows come in days), and any other value is
//! formatted with the parsed items. Everything else — another zone, a format per row,
//! time-zone fields, durations — is DataFusion's own function. Same results (tested
//! against it).

use std::fmt::Write;
use std::sync::Arc;

use chrono::DateTime;
use chrono::format::{Fixed, Item, Numeric, StrftimeItems};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, TimeUnit, TimestampMicrosecondType,
    TimestampMillisecondType, TimestampNanosecondType, TimestampSecondType,
};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF};

/// DataFusion's `to_char` (alias `date_format`) with the fast path above.
pub fn udf() -> ScalarUDF {
    super::wrapped::wrap(datafusion::functions::datetime::to_char(), Fast)
}

/// Formats with the parsed format where it can, else calls DataFusion's.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Fast;

impl super::wrapped::Around for Fast {
    fn invoke(&self, inner: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let [
            ColumnarValue::Array(values),
            ColumnarValue::Scalar(ScalarValue::Utf8(Some(format))),
        ] = args.args.as_slice()
            && let Some(out) = fast(values, format)
        {
            return Ok(ColumnarValue::Array(out));
        }
        inner.invoke_with_args(args)
    }
}

/// The values formatted, or `None` where DataFusion's function must do it.
fn fast(values: &ArrayRef, format: &str) -> Option<ArrayRef> {
    let items: Vec<Item<'_>> = StrftimeItems::new(format).parse().ok()?;
    let date_only = items.iter().all(is_date_item);
    if !date_only && !items.iter().all(is_naive_item) {
        return None;
    }
    let mut out = Texts {
        out: StringBuilder::with_capacity(values.len(), values.len() * (format.len() + 8)),
        previous: None,
        text: String::new(),
        date_only,
    };
    let same = |t: i64| t;
    match values.data_type() {
        DataType::Timestamp(unit, zone)
            if zone
                .as_deref()
                .is_none_or(|z| matches!(z, "UTC" | "+00:00" | "Z")) =>
        {
            match unit {
                TimeUnit::Second => each::<TimestampSecondType>(values, 1, same, &items, &mut out)?,
                TimeUnit::Millisecond => {
                    each::<TimestampMillisecondType>(values, 1_000, same, &items, &mut out)?
                }
                TimeUnit::Microsecond => {
                    each::<TimestampMicrosecondType>(values, 1_000_000, same, &items, &mut out)?
                }
                TimeUnit::Nanosecond => {
                    each::<TimestampNanosecondType>(values, 1_000_000_000, same, &items, &mut out)?
                }
            }
        }
        // A date is its midnight (as DataFusion's function writes one, through Date64).
        DataType::Date32 => {
            each::<Date32Type>(values, 1, |days| i64::from(days) * 86_400, &items, &mut out)?
        }
        _ => return None,
    }
    Some(Arc::new(out.out.finish()))
}

/// Formats values whose `ticks` are `per_second` a second since 1970; a value is made a
/// date and time only when its text is not its day's again.
fn each<T: ArrowPrimitiveType>(
    values: &ArrayRef,
    per_second: i64,
    ticks: impl Fn(T::Native) -> i64,
    items: &[Item<'_>],
    out: &mut Texts,
) -> Option<()> {
    let values = values.as_primitive::<T>();
    for i in 0..values.len() {
        if values.is_null(i) {
            out.out.append_null();
            continue;
        }
        let ticks = ticks(values.value(i));
        let seconds = ticks.div_euclid(per_second);
        out.append(seconds.div_euclid(86_400), |t| {
            let nanos = ticks.rem_euclid(per_second) * (1_000_000_000 / per_second);
            let at = DateTime::from_timestamp(seconds, u32::try_from(nanos).ok()?)?.naive_utc();
            write!(t, "{}", at.format_with_items(items.iter())).ok()
        })?;
    }
    Some(())
}

/// The texts being built: with a date-only format, a value of the previous value's day
/// repeats its text.
struct Texts {
    out: StringBuilder,
    /// The previous value's day and where its text is in `out`'s data.
    previous: Option<(i64, std::ops::Range<usize>)>,
    text: String,
    date_only: bool,
}

impl Texts {
    fn append(&mut self, day: i64, format: impl FnOnce(&mut String) -> Option<()>) -> Option<()> {
        self.text.clear();
        match &self.previous {
            Some((d, range)) if self.date_only && *d == day => self
                .text
                .push_str(std::str::from_utf8(&self.out.values_slice()[range.clone()]).ok()?),
            _ => format(&mut self.text)?,
        }
        let start = self.out.values_slice().len();
        self.out.append_value(&self.text);
        self.previous = Some((day, start..start + self.text.len()));
        Some(())
    }
}

/// A part of a format that depends on the date alone.
fn is_date_item(item: &Item<'_>) -> bool {
    match item {
        Item::Literal(_) | Item::OwnedLiteral(_) | Item::Space(_) | Item::OwnedSpace(_) => true,
        Item::Numeric(n, _) => matches!(
            n,
            Numeric::Year
                | Numeric::YearDiv100
                | Numeric::YearMod100
                | Numeric::IsoYear
                | Numeric::IsoYearDiv100
                | Numeric::IsoYearMod100
                | Numeric::Month
                | Numeric::Day
                | Numeric::WeekFromSun
                | Numeric::WeekFromMon
                | Numeric::IsoWeek
                | Numeric::NumDaysFromSun
                | Numeric::WeekdayFromMon
                | Numeric::Ordinal
        ),
        Item::Fixed(f) => matches!(
            f,
            Fixed::ShortMonthName
                | Fixed::LongMonthName
                | Fixed::ShortWeekdayName
                | Fixed::LongWeekdayName
        ),
        Item::Error => false,
    }
}

/// A part of a format a value without a time zone can be written with (no offset or
/// zone name, which DataFusion's function writes for zoned values).
fn is_naive_item(item: &Item<'_>) -> bool {
    match item {
        Item::Numeric(Numeric::Timestamp, _) => false,
        Item::Numeric(..) => true,
        Item::Fixed(f) => matches!(
            f,
            Fixed::ShortMonthName
                | Fixed::LongMonthName
                | Fixed::ShortWeekdayName
                | Fixed::LongWeekdayName
                | Fixed::LowerAmPm
                | Fixed::UpperAmPm
                | Fixed::Nanosecond
                | Fixed::Nanosecond3
                | Fixed::Nanosecond6
                | Fixed::Nanosecond9
        ),
        other => is_date_item(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Date32Array, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
        TimestampSecondArray,
    };
    use datafusion::arrow::datatypes::Field;
    use datafusion::config::ConfigOptions;

    fn call(udf: &ScalarUDF, values: ArrayRef, format: &str) -> Result<ArrayRef> {
        let args = ScalarFunctionArgs {
            arg_fields: vec![
                Arc::new(Field::new("v", values.data_type().clone(), true)),
                Arc::new(Field::new("f", DataType::Utf8, false)),
            ],
            number_rows: values.len(),
            args: vec![
                ColumnarValue::Array(values),
                ColumnarValue::Scalar(ScalarValue::Utf8(Some(format.into()))),
            ],
            return_field: Arc::new(Field::new("out", DataType::Utf8, true)),
            config_options: Arc::new(ConfigOptions::default()),
        };
        udf.invoke_with_args(args)?.into_array(0)
    }

    /// Every format, on values in runs of a day, before and after 1970, with NULLs: the
    /// same text as DataFusion's own function.
    #[test]
    fn formats_as_datafusion_does() -> Result<()> {
        let ours = udf();
        let theirs = datafusion::functions::datetime::to_char();
        let day = 86_400_000_000i64;
        let micros: Vec<Option<i64>> = (-400..400)
            .map(|i| (i % 17 != 0).then_some(i / 3 * day + (i * 7_919_000_123) % day))
            .collect();
        let days: Vec<Option<i32>> = (-400..400)
            .map(|i| (i % 13 != 0).then_some(i / 3 * 41))
            .collect();
        let arrays: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(micros.clone())),
            Arc::new(TimestampMicrosecondArray::from(micros.clone()).with_timezone("UTC")),
            Arc::new(
                TimestampNanosecondArray::from(
                    micros
                        .iter()
                        .map(|m| m.map(|m| m * 1000 + 7))
                        .collect::<Vec<_>>(),
                )
                .with_timezone("UTC"),
            ),
            Arc::new(TimestampSecondArray::from(
                micros
                    .iter()
                    .map(|m| m.map(|m| m / 1_000_000))
                    .collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(days)),
        ];
        let formats = [
            "%Y-%m-%d",
            "%Y/%m",
            "%Y-%m-%dT%H:%M:%S%.6f",
            "%a %d %b %Y week %V",
            "%j",
            "%H",
            "day %Y%m%d",
        ];
        for values in &arrays {
            for format in formats {
                let got = call(&ours, values.clone(), format)?;
                let want = call(&theirs, values.clone(), format);
                match want {
                    Ok(want) => assert_eq!(
                        got.as_string::<i32>(),
                        want.as_string::<i32>(),
                        "{format} on {}",
                        values.data_type()
                    ),
                    // DataFusion refuses time fields on a date; so must we.
                    Err(_) => assert!(values.data_type() == &DataType::Date32, "{format}"),
                }
            }
        }
        Ok(())
    }

    #[test]
    fn zoned_values_are_datafusions() -> Result<()> {
        let values: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![Some(0)]).with_timezone("+02:00"));
        let got = call(&udf(), values, "%Y-%m-%d %H:%M %z")?;
        assert_eq!(
            got.as_string::<i32>(),
            &StringArray::from(vec!["1970-01-01 02:00 +0200"])
        );
        Ok(())
    }
}
