//! What a feed's `after_load` does to the files a run loaded (and their markers), once
//! the run has committed — or, for a run a crash cut short after its commit, at the
//! start of the next run's plan.

use super::store::{Entry, Store, join};
use crate::error::Result;
use crate::job::files::FilesFeed;
use crate::spec::files::AfterLoad;

/// `after_load` for `files` (and their markers); returns how many files it moved or
/// deleted.
pub(super) async fn apply(store: &dyn Store, feed: &FilesFeed, files: &[Entry]) -> Result<u64> {
    let mut done = 0;
    for entry in files {
        match &feed.after_load {
            AfterLoad::Keep => continue,
            AfterLoad::Delete => {
                store.delete(&entry.path).await?;
                if let Some(marker) = &feed.done_marker {
                    store.delete(&format!("{}{marker}", entry.path)).await?;
                }
            }
            AfterLoad::Move(to) => {
                let target = join(to, below_folder(feed, &entry.path));
                store.rename(&entry.path, &target).await?;
                if let Some(marker) = &feed.done_marker {
                    // A marker already moved (or never made) is not missing.
                    let _ = store
                        .rename(
                            &format!("{}{marker}", entry.path),
                            &format!("{target}{marker}"),
                        )
                        .await;
                }
            }
        }
        done += 1;
    }
    Ok(done)
}

/// A file's path below its pattern's folder (`2026/11/a.json` for
/// `statements/2026/11/a.json` and `statements/**/*.json`): where `move` puts it, so
/// that the same name in two months' folders is two files there too.
fn below_folder<'a>(feed: &FilesFeed, path: &'a str) -> &'a str {
    let folder = feed.pattern_of(path).map(|p| p.glob.folder());
    match folder.as_deref() {
        Some("") => path,
        Some(folder) => path
            .strip_prefix(folder)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or(path),
        None => path.rsplit('/').next().unwrap_or(path),
    }
}
