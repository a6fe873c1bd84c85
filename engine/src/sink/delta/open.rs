//! A Delta table opened at a version or a time (`--as-of`, `serve`'s `as_of`): a version or
//! time the table does not have is the user's error naming the versions it has.

use chrono::{DateTime, Utc};
use deltalake_core::{DeltaTable, DeltaTableError};

use super::{LOG_DIR, classify, exists, log_store};
use crate::error::{Error, Result};
use crate::sink::Lake;

/// Which version of a table to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    Latest,
    Version(u64),
    Time(DateTime<Utc>),
}

impl AsOf {
    /// `12` (a version) or an RFC 3339 time / a date (`2024-05-01`: its midnight, UTC).
    pub fn parse(text: &str) -> Result<AsOf> {
        if let Ok(v) = text.parse::<u64>() {
            return Ok(AsOf::Version(v));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Ok(AsOf::Time(t.with_timezone(&Utc)));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
            && let Some(t) = d.and_hms_opt(0, 0, 0)
        {
            return Ok(AsOf::Time(t.and_utc()));
        }
        Err(Error::user(format!(
            "--as-of {text:?} is neither a table version (0, 1, …) nor a time (2024-05-01T12:00:00Z or 2024-05-01)"
        )))
    }
}

/// The table at `as_of`, or `None` when the lake has no Delta table by that name.
pub async fn open(lake: &Lake, table: &str, as_of: AsOf) -> Result<Option<DeltaTable>> {
    if !exists(lake, table).await? {
        return Ok(None);
    }
    let mut delta = DeltaTable::new(log_store(lake, table)?);
    let loaded = match as_of {
        AsOf::Latest => delta.load().await,
        AsOf::Version(v) => delta.load_version(v).await,
        // delta-rs loads the first version for a time before it: that is no version
        // as of that time.
        AsOf::Time(t) => delta.load_with_datetime(t).await.and_then(|()| {
            let first = delta
                .version()
                .and_then(|v| delta.snapshot().ok()?.version_timestamp(v));
            match first {
                Some(at) if at > t.timestamp_millis() => Err(DeltaTableError::Generic(
                    "the table's first version is later".into(),
                )),
                _ => Ok(()),
            }
        }),
    };
    match loaded {
        Ok(()) => Ok(Some(delta)),
        Err(DeltaTableError::NotATable(_)) if as_of == AsOf::Latest => Ok(None),
        // Storage trouble stays external; a commit file not found means no such version.
        Err(e @ (DeltaTableError::ObjectStore { .. } | DeltaTableError::Io { .. }))
            if !matches!(
                &e,
                DeltaTableError::ObjectStore {
                    source: object_store::Error::NotFound { .. }
                }
            ) =>
        {
            Err(classify(e, &format!("reading the Delta table {table}")))
        }
        // The log is there and readable but has no such version (or none that old): the
        // user asked for what the table does not have.
        Err(e) if as_of != AsOf::Latest => Err(not_held(lake, table, as_of, &e).await),
        Err(e) => Err(classify(e, &format!("reading the Delta table {table}"))),
    }
}

/// The user's error for an `as_of` that `table` does not have, naming the versions it has.
async fn not_held(lake: &Lake, table: &str, as_of: AsOf, e: &DeltaTableError) -> Error {
    let asked = match as_of {
        AsOf::Version(v) => format!("version {v}"),
        AsOf::Time(t) => format!("a version as of {}", t.to_rfc3339()),
        AsOf::Latest => "its latest version".to_string(),
    };
    let has = match versions(lake, table).await {
        Ok(Some((first, last))) => format!("its versions are {first} to {last}"),
        Ok(None) => "its log lists no version".to_string(),
        Err(listing) => return listing,
    };
    // delta-rs's words may name the lake's place: logged, not told (a server's clients
    // see this message).
    tracing::debug!(table, error = %e, "a version the table does not have");
    Error::user(format!(
        "the Delta table `{table}` has no {asked}: {has} (time travel reads one of them, or a time from its first commit on)"
    ))
}

/// The first and last version the log of `table` holds (`NNN….json` commit files; an
/// older log may have been cleaned up to a checkpoint).
async fn versions(lake: &Lake, table: &str) -> Result<Option<(u64, u64)>> {
    let log = lake
        .list(&lake.path(&format!("{table}/{LOG_DIR}"))?)
        .await?;
    Ok(log
        .iter()
        .filter_map(|o| {
            o.location
                .filename()?
                .strip_suffix(".json")?
                .parse::<u64>()
                .ok()
        })
        .fold(None, |range, v| match range {
            None => Some((v, v)),
            Some((first, last)) => Some((first.min(v), last.max(v))),
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_parses_versions_and_times() {
        assert_eq!(AsOf::parse("3").ok(), Some(AsOf::Version(3)));
        assert!(matches!(AsOf::parse("2024-05-01"), Ok(AsOf::Time(_))));
        assert!(matches!(
            AsOf::parse("2024-05-01T10:00:00Z"),
            Ok(AsOf::Time(_))
        ));
        assert!(AsOf::parse("-1").is_err());
        assert!(AsOf::parse("yesterday").is_err());
    }
}
