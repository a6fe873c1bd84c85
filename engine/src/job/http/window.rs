//! An incremental API job's window over its cursor field, compiled: the parameters and
//! placeholders that tell the API its bounds, their format, the first run's start, the
//! steps a long window is asked in, and the `lookback` each run re-reads.

use std::time::Duration;

use super::{ApiWindow, BoundFormat};
use crate::contract::Column;
use crate::job::RecordKey;
use crate::job::feed;
use crate::lake_type::LakeType;
use crate::spec::http::WindowSpec;
use crate::spec::units::parse_duration;
use crate::spec::{JobSpec, Mode};

/// The longest `lookback`: the longest a record key is remembered (`source.dedup.window`).
const MAX_LOOKBACK: Duration = Duration::from_secs(400 * 86_400);

pub(super) fn api_window(
    spec: &JobSpec,
    cursor: &str,
    fields: &[Column],
    bad: &mut impl FnMut(&str, String),
) -> Option<ApiWindow> {
    let Some(field) = fields.iter().find(|f| f.name == cursor) else {
        bad(
            "source.cursor",
            format!(
                "`{cursor}` is not a field of the record (its fields: {})",
                feed::field_names(fields)
            ),
        );
        return None;
    };
    let time = matches!(
        field.lake,
        LakeType::Date | LakeType::Timestamp | LakeType::TimestampUtc
    );
    let id = matches!(
        field.lake,
        LakeType::Int8 | LakeType::Int16 | LakeType::Int32 | LakeType::Int64 | LakeType::String
    );
    if !time && !id {
        bad(
            "source.cursor",
            format!(
                "`{cursor}` is {}; a cursor is a timestamp, date, integer or text field",
                field.lake.athena()
            ),
        );
        return None;
    }
    let w = spec.source.window.clone().unwrap_or_default();
    if !time {
        for (what, given) in [
            ("until", w.until.is_some()),
            ("before", w.before.is_some()),
            ("step", w.step.is_some()),
            ("lookback", w.lookback.is_some()),
            ("lag", spec.source.lag.is_some()),
        ] {
            if given {
                bad(
                    &if what == "lag" {
                        "source.lag".to_string()
                    } else {
                        format!("source.window.{what}")
                    },
                    format!(
                        "needs a timestamp or date cursor; `{cursor}` is {} (its window has no upper bound: each run reads past the last value committed)",
                        field.lake.athena()
                    ),
                );
            }
        }
    }
    let format = bound_format(&w, bad);
    let step = w.step.as_ref().and_then(|s| match parse_duration(s) {
        Ok(d) if d >= Duration::from_secs(1) => Some(d),
        Ok(_) => {
            bad("source.window.step", "must be at least 1s".into());
            None
        }
        Err(m) => {
            bad("source.window.step", m);
            None
        }
    });
    let lookback = w
        .lookback
        .as_ref()
        .and_then(|text| match parse_duration(text) {
            Ok(d) if d >= Duration::from_secs(1) && d <= MAX_LOOKBACK => Some(d),
            Ok(_) => {
                bad(
                    "source.window.lookback",
                    format!("{text} is out of range (1s to 400d)"),
                );
                None
            }
            Err(m) => {
                bad("source.window.lookback", m);
                None
            }
        });
    if let Some(start) = &w.start {
        let ok = match field.lake {
            LakeType::Date => chrono::NaiveDate::parse_from_str(start, "%Y-%m-%d").is_ok(),
            LakeType::Timestamp | LakeType::TimestampUtc => {
                chrono::DateTime::parse_from_rfc3339(start).is_ok()
            }
            LakeType::String => true,
            _ => start.parse::<i64>().is_ok(),
        };
        if !ok {
            bad(
                "source.window.start",
                format!(
                    "{start:?} is not a value of `{cursor}` ({}): e.g. {}",
                    field.lake.athena(),
                    match field.lake {
                        LakeType::Date => "2024-01-01",
                        LakeType::Timestamp | LakeType::TimestampUtc => "2024-01-01T00:00:00Z",
                        _ => "0",
                    }
                ),
            );
        }
    }
    Some(ApiWindow {
        cursor: cursor.to_string(),
        lake: field.lake,
        since: w.since,
        until: w.until,
        before: w.before,
        format,
        start: w.start,
        step,
        lookback,
    })
}

/// A lookback re-reads records that earlier runs committed: something must drop them, or
/// they land twice — the record key (`source.dedup`), remembered longer than the lookback,
/// or mode `merge`, which upserts them by key.
pub(super) fn check_lookback(
    spec: &JobSpec,
    window: &ApiWindow,
    key: Option<&RecordKey>,
    bad: &mut impl FnMut(&str, String),
) {
    let Some(lookback) = window.lookback else {
        return;
    };
    let written = spec
        .source
        .window
        .as_ref()
        .and_then(|w| w.lookback.clone())
        .unwrap_or_default();
    match key {
        Some(key) if lookback >= key.window => {
            let remembered = spec
                .source
                .dedup
                .as_ref()
                .and_then(|d| d.window.clone())
                .unwrap_or_else(|| "7d, the default".into());
            bad(
                "source.window.lookback",
                format!(
                    "{written} reaches back as far as source.dedup.window ({remembered}) remembers a key, or further: a re-read record whose key was forgotten would land twice; make the key's window longer than the lookback plus the time between runs"
                ),
            );
        }
        Some(_) => {}
        None if spec.mode == Some(Mode::Merge) => {}
        None => bad(
            "source.window.lookback",
            format!(
                "{written} re-reads records that earlier runs committed, and they would land twice: give the record key that drops them (`source.dedup: {{key: [id]}}`), or upsert by key (mode `merge`)"
            ),
        ),
    }
}

fn bound_format(w: &WindowSpec, bad: &mut impl FnMut(&str, String)) -> BoundFormat {
    match w.format.as_deref() {
        None | Some("rfc3339") => BoundFormat::Rfc3339,
        Some("unix") => BoundFormat::Unix,
        Some("unix_ms") => BoundFormat::UnixMs,
        Some("date") => BoundFormat::Date,
        Some(pattern) => {
            let broken = chrono::format::StrftimeItems::new(pattern)
                .any(|item| matches!(item, chrono::format::Item::Error));
            if broken || !pattern.contains('%') {
                bad(
                    "source.window.format",
                    format!(
                        "{pattern:?} is not a bound format: `rfc3339`, `unix`, `unix_ms`, `date`, or a chrono pattern such as `%Y-%m-%dT%H:%M:%S`"
                    ),
                );
            }
            BoundFormat::Pattern(pattern.to_string())
        }
    }
}
