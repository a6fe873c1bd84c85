//! The sink: partitioned Parquet in the lake, the run manifest, and the clean-up that
//! makes retries exactly-once.

pub mod delta;
pub mod lake;
pub mod writer;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use lake::Lake;
pub use writer::{PartitionedWriter, WrittenFile};

use crate::error::Result;
use crate::source::Window;

/// What one committed run wrote: `_sluice/manifests/<table>/<run key>.json`. Written
/// before the watermark moves; a manifest whose run the state store does not record as
/// committed belongs to a failed attempt and is removed with its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub job: String,
    pub table: String,
    pub run_id: String,
    pub run_key: String,
    pub mode: String,
    pub window: Window,
    pub files: Vec<WrittenFile>,
    pub rows: u64,
    pub bytes: u64,
    pub written_at: DateTime<Utc>,
    /// The keys of what the run consumed of a feed (its messages), by which a later
    /// run recognises a redelivery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumed: Vec<String>,
}

/// The run key in a data file's name: `part-<key>-<n>.parquet` (also the upload staging
/// names the local store uses, `part-<key>-<n>.parquet#1`).
pub fn run_key_of(file_name: &str) -> Option<&str> {
    let rest = file_name.strip_prefix("part-")?;
    let (key, tail) = rest.split_once('-')?;
    (key.len() == 16 && key.chars().all(|c| c.is_ascii_hexdigit()) && tail.contains(".parquet"))
        .then_some(key)
}

/// A record-key file's run key and time (`<run key>.<unix seconds>.keys`).
pub fn key_file(name: &str) -> Option<(&str, i64)> {
    let (run_key, rest) = name.split_once('.')?;
    let seconds = rest.strip_suffix(".keys")?.parse().ok()?;
    Some((run_key, seconds))
}

/// The tables a job's runs write: its table, and the table of its quarantined rows.
pub fn run_tables(table: &str) -> [String; 2] {
    [table.to_string(), crate::quality::quarantine_table(table)]
}

/// Removes every file a run wrote under `table` (and its quarantine table), their
/// manifests and its record keys. Used for a failed attempt before its retry writes, and for the runs a
/// rewind takes out. Returns how many data files were removed.
pub async fn remove_run(lake: &Lake, table: &str, run_key: &str) -> Result<usize> {
    let mut removed = 0;
    for table in run_tables(table) {
        for object in lake.list(&lake.table_dir(&table)?).await? {
            if object.location.filename().and_then(run_key_of) == Some(run_key) {
                lake.delete(&object.location).await?;
                removed += 1;
            }
        }
        lake.delete(&lake.manifest_path(&table, run_key)?).await?;
    }
    for object in lake.list(&lake.keys_dir(table)?).await? {
        if object
            .location
            .filename()
            .and_then(key_file)
            .map(|(k, _)| k)
            == Some(run_key)
        {
            lake.delete(&object.location).await?;
        }
    }
    Ok(removed)
}

/// The manifest of one run of `table`, if it has one.
pub async fn manifest(lake: &Lake, table: &str, run_key: &str) -> Result<Option<Manifest>> {
    let path = lake.manifest_path(table, run_key)?;
    match lake.get(&path).await? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| crate::error::Error::user(format!("manifest {path} is not valid: {e}"))),
    }
}

/// The manifests of every committed run of `table` (and of an attempt in flight).
pub async fn manifests(lake: &Lake, table: &str) -> Result<Vec<Manifest>> {
    let mut out = Vec::new();
    for object in lake
        .list(&lake.path(&format!("_sluice/manifests/{table}"))?)
        .await?
    {
        if let Some(bytes) = lake.get(&object.location).await? {
            let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
                crate::error::Error::user(format!("manifest {} is not valid: {e}", object.location))
            })?;
            out.push(manifest);
        }
    }
    Ok(out)
}

/// Removes the data files below `scope` (relative to the table: empty for all of it, or
/// `snapshot=2024-05-01`), in each of `tables` (a table and its quarantine table), that
/// `keep` did not write: what a full reload or a snapshot rerun replaces. Files sluice did not write
/// (other names) are left alone.
pub async fn remove_other_runs(
    lake: &Lake,
    tables: &[String],
    scope: &str,
    keep: &str,
) -> Result<usize> {
    let mut removed = 0;
    for table in tables {
        let scope = if scope.is_empty() {
            table.clone()
        } else {
            format!("{table}/{scope}")
        };
        removed += remove_other_runs_in(lake, table, &scope, keep).await?;
    }
    Ok(removed)
}

async fn remove_other_runs_in(lake: &Lake, table: &str, scope: &str, keep: &str) -> Result<usize> {
    let mut removed = 0;
    let mut replaced_runs = std::collections::BTreeSet::new();
    for object in lake.list(&lake.path(scope)?).await? {
        match object.location.filename().and_then(run_key_of) {
            Some(key) if key != keep => {
                lake.delete(&object.location).await?;
                replaced_runs.insert(key.to_string());
                removed += 1;
            }
            _ => {}
        }
    }
    // One manifest per replaced run, not one delete per file.
    for key in replaced_runs {
        lake.delete(&lake.manifest_path(table, &key)?).await?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_keys_from_names() {
        assert_eq!(
            run_key_of("part-0123456789abcdef-00000.parquet"),
            Some("0123456789abcdef")
        );
        assert_eq!(
            run_key_of("part-0123456789abcdef-00003.parquet#1"),
            Some("0123456789abcdef")
        );
        assert_eq!(run_key_of("part-xyz-00000.parquet"), None);
        assert_eq!(run_key_of("data.parquet"), None);
    }
}
