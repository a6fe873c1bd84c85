//! What the collector remembers across a restart: the deduplication keys of the events
//! in the spool's sealed and loaded segments within the window (a loaded segment older
//! than the window is removed here: nothing needs it any more).

use std::io::BufRead;
use std::path::Path;

use serde::Deserialize;

use super::body::dedup_key;
use super::dedup::Seen;
use super::segments::{LOADED, READY, Settings, files, io};
use crate::error::Result;

/// The fields of a spooled line that identify it.
#[derive(Deserialize)]
struct Identity {
    message_id: String,
    source: String,
    received_at: chrono::DateTime<chrono::Utc>,
}

/// The keys of the events received within the window before `now`.
pub fn seen(dir: &Path, settings: &Settings, now: i64) -> Result<Seen> {
    let window = i64::try_from(settings.dedup_window.as_secs()).unwrap_or(i64::MAX);
    let mut seen = Seen::new(settings.dedup_window, settings.dedup_capacity);
    prune(dir, settings, now)?;
    let mut segments = files(&dir.join(LOADED))?;
    segments.extend(files(&dir.join(READY))?);
    // Oldest first, so that past the capacity the newest are kept.
    segments.sort_by_key(|p| opened_at(p));
    for path in segments {
        let file = std::fs::File::open(&path).map_err(|e| io(e, &path))?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|e| io(e, &path))?;
            if let Ok(event) = serde_json::from_str::<Identity>(&line) {
                let at = event.received_at.timestamp();
                if now.saturating_sub(at) < window {
                    seen.insert(dedup_key(&event.source, &event.message_id), at);
                }
            }
        }
    }
    Ok(seen)
}

/// Removes the loaded segments whose every event is older than the window (a segment
/// holds what arrived within its flush age after it was opened).
pub fn prune(dir: &Path, settings: &Settings, now: i64) -> Result<()> {
    let keep = settings.dedup_window + settings.flush_age;
    let keep = i64::try_from(keep.as_secs()).unwrap_or(i64::MAX);
    for path in files(&dir.join(LOADED))? {
        if opened_at(&path).is_some_and(|at| now.saturating_sub(at) > keep) {
            std::fs::remove_file(&path).map_err(|e| io(e, &path))?;
        }
    }
    Ok(())
}

/// When a segment was opened, from its name (`events-<microseconds>.ndjson`), in Unix
/// seconds.
fn opened_at(path: &Path) -> Option<i64> {
    let name = path.file_stem()?.to_str()?;
    let micros: i64 = name.rsplit('-').next()?.parse().ok()?;
    Some(micros / 1_000_000)
}
