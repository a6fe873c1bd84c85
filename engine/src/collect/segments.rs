//! The spool's folders on disk: `open/` (segments being appended to), `ready/` (sealed
//! segments the jobs load) and `loaded/` (segments a job committed, kept for the
//! deduplication window); sealing a segment, recovering what a crash left, and the
//! spool's settings. The appender (`spool`) and the restart memory (`replay`) both build
//! on this; neither needs the other's internals.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Error, Result};

pub const OPEN: &str = "open";
pub const READY: &str = "ready";
pub const LOADED: &str = "loaded";

/// The spool's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Seal a segment at this size …
    pub flush_bytes: u64,
    /// … or this age.
    pub flush_age: Duration,
    /// Bytes in `open/` and `ready/` together at most: past it requests get 503 until
    /// the jobs have loaded some.
    pub max_buffer: u64,
    pub dedup_window: Duration,
    pub dedup_capacity: usize,
}

/// Moves a flushed segment from `open/` into `ready/` (an empty one is removed).
pub fn seal(dir: &Path, path: &Path) -> Result<()> {
    let len = std::fs::metadata(path).map_err(|e| io(e, path))?.len();
    if len == 0 {
        std::fs::remove_file(path).map_err(|e| io(e, path))?;
        return Ok(());
    }
    let name = path
        .file_name()
        .ok_or_else(|| Error::internal(format!("segment {} has no name", path.display())))?;
    let target = dir.join(READY).join(name);
    std::fs::rename(path, &target).map_err(|e| io(e, &target))?;
    sync_dir(&dir.join(READY))?;
    sync_dir(&dir.join(OPEN))
}

/// Cuts every segment a crash left in `open/` back to its last whole line and seals it.
pub fn recover(dir: &Path) -> Result<()> {
    for path in files(&dir.join(OPEN))? {
        let bytes = std::fs::read(&path).map_err(|e| io(e, &path))?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            tracing::warn!(
                segment = %path.display(),
                cut = bytes.len() - whole,
                "a segment ended in a line cut short by a crash (never acknowledged): cut off"
            );
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io(e, &path))?;
            file.set_len(whole as u64).map_err(|e| io(e, &path))?;
            file.sync_all().map_err(|e| io(e, &path))?;
        }
        seal(dir, &path)?;
    }
    Ok(())
}

/// The files in a folder, in name order.
pub fn files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(e, dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// The bytes of the files in a folder.
pub fn folder_bytes(dir: &Path) -> Result<u64> {
    Ok(files(dir)?
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum())
}

pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(e, dir))
}

pub fn io(e: std::io::Error, path: &Path) -> Error {
    Error::external(format!("the spool at {}: {e}", path.display()))
}
