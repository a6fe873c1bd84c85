//! Which files a run loads, decided before anything is read (see the module's text of
//! [`super`]): the listing against what the remembered runs loaded.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::identity::Loaded;
use super::store::{Entry, Store};
use super::{FilesReport, after_load, listing};
use crate::error::{Error, Result};
use crate::job::files::FilesFeed;
use crate::source::{Checkpoint, Ledger};
use crate::spec::files::{AfterLoad, Identity, OnChangedFile};

/// What a run reads, fixed when it plans.
#[derive(Default)]
pub(super) struct Plan {
    pub load: Vec<Entry>,
    /// Committed runs this run's commit replaces (`reload`).
    pub replaces: Vec<String>,
    /// The committed runs still remembered after this run.
    pub keep_runs: Vec<(String, i64)>,
    pub report: FilesReport,
}

/// Lists the folder and decides what the run loads (see the module's text).
pub(super) async fn plan(
    store: &dyn Store,
    feed: &FilesFeed,
    committed: &Checkpoint,
    ledger: &dyn Ledger,
    now: DateTime<Utc>,
) -> Result<Plan> {
    let listing = listing::list(store, &feed.patterns).await?;
    let names: BTreeSet<&str> = listing.iter().map(|e| e.path.as_str()).collect();
    let is_marker = |path: &str| {
        feed.done_marker
            .as_deref()
            .is_some_and(|m| path.ends_with(m) && names.contains(&path[..path.len() - m.len()]))
    };
    let mut candidates: Vec<&Entry> = listing
        .iter()
        .filter(|e| feed.pattern_of(&e.path).is_some() && !is_marker(&e.path))
        .collect();
    candidates.sort_by(|a, b| a.path.cmp(&b.path));

    // What the remembered runs loaded, path → (identity, run); a later run's wins.
    let runs = committed
        .feed
        .as_ref()
        .map(|f| f.runs.clone())
        .unwrap_or_default();
    let mut loaded: BTreeMap<String, (Loaded, String)> = BTreeMap::new();
    let mut by_run: BTreeMap<String, Vec<Loaded>> = BTreeMap::new();
    for (run_key, _) in &runs {
        let keys = ledger.keys(run_key).await.map_err(|e| {
            e.context(format!(
                "reading the files committed run {run_key} loaded (its manifest)"
            ))
        })?;
        for key in keys {
            let Some(file) = Loaded::parse(&key) else {
                return Err(Error::user(format!(
                    "the manifest of run {run_key} lists {key:?}, which is not a loaded file's identity; was the job's source changed from another feed? (rewind the job's state)"
                )));
            };
            by_run
                .entry(run_key.clone())
                .or_default()
                .push(file.clone());
            loaded.insert(file.path.clone(), (file, run_key.clone()));
        }
    }

    let mut report = FilesReport {
        listed: candidates.len() as u64,
        ..FilesReport::default()
    };
    let stable_before = now.timestamp() - feed.stable_for.as_secs() as i64;
    let mut new = Vec::new();
    let mut changed: Vec<(&Entry, &Loaded, &String)> = Vec::new();
    let mut unfinished = Vec::new();
    // A new file is loaded once it is complete: not modified within `stable_for`, and
    // marked when the job waits for markers.
    let mut admit = |entry: &Entry, report: &mut FilesReport| {
        let marked = feed
            .done_marker
            .as_deref()
            .is_none_or(|m| names.contains(format!("{}{m}", entry.path).as_str()));
        if entry.modified <= stable_before && marked {
            new.push(entry.clone());
        } else {
            report.waiting += 1;
        }
    };
    for entry in candidates {
        let Some((old, run_key)) = loaded.get(&entry.path) else {
            admit(entry, &mut report);
            continue;
        };
        let moves = feed.after_load != AfterLoad::Keep;
        let by_content = feed.identity == Identity::Content;
        match (old.same_listing(entry), moves) {
            // Under keep, a listed file loaded as it is: done, unless its content is
            // the identity (a rewrite of the same size and time).
            (true, false) if !by_content => {}
            // Moved or deleted after its commit, yet here: the action was cut short, or
            // the sender put a file of the same size and time there. The hash tells.
            (true, true) => {
                report.hashed += 1;
                if old.bad || hash_of(store, entry).await? == old.hash {
                    if !old.bad {
                        unfinished.push(entry.clone());
                    }
                } else {
                    admit(entry, &mut report);
                }
            }
            // Loaded, then moved away: a file listed there now is a new one.
            (false, true) => admit(entry, &mut report),
            (_, false) => {
                report.hashed += 1;
                if hash_of(store, entry).await? == old.hash {
                    // Touched only: loaded as it is.
                } else if old.bad {
                    // A bad file sent again: it loaded no rows, so it is simply new.
                    admit(entry, &mut report);
                } else {
                    changed.push((entry, old, run_key));
                }
            }
        }
    }
    // Actions a crash cut short are finished before anything else.
    report.after_load += after_load::apply(store, feed, &unfinished).await?;

    let mut replaces = BTreeSet::new();
    let mut refused = Vec::new();
    for (entry, old, run_key) in &changed {
        match feed.on_changed {
            OnChangedFile::Skip => report.changed_skipped += 1,
            OnChangedFile::Fail if old.same_listing(entry) => refused.push(format!(
                "{} (the same {} bytes and time {} as when run {run_key} loaded it, but other content)",
                entry.path,
                entry.size,
                seconds(entry.modified)
            )),
            OnChangedFile::Fail => refused.push(format!(
                "{} ({} bytes, modified {} when run {run_key} loaded it; now {} bytes, modified {})",
                entry.path,
                old.size,
                seconds(old.modified),
                entry.size,
                seconds(entry.modified)
            )),
            OnChangedFile::Reload => {
                replaces.insert((*run_key).clone());
            }
        }
    }
    if !refused.is_empty() {
        return Err(Error::user(format!(
            "{} loaded file{} changed since: {}. source.files.on_changed_file is `fail`: set it to `reload` (replace the rows of the run that loaded it) or `skip` (ignore the new content), or put the file back",
            refused.len(),
            if refused.len() == 1 { "" } else { "s" },
            refused.join("; ")
        )));
    }
    // A replaced run's files are all read again: each must still be listed.
    let listed: BTreeMap<&str, &Entry> = listing.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut reload = Vec::new();
    for run_key in &replaces {
        // Its bad files too: the quarantine rows of that run leave with it.
        for file in by_run.get(run_key).into_iter().flatten() {
            let Some(entry) = listed.get(file.path.as_str()) else {
                return Err(Error::user(format!(
                    "cannot reload run {run_key}: it also loaded {}, which is no longer in the folder, so replacing that run's rows would lose that file's; put it back, or set source.files.on_changed_file to `skip`",
                    store.describe(&file.path)
                )));
            };
            reload.push((*entry).clone());
        }
    }
    report.reloaded_runs = replaces.len() as u64;
    let room = feed.max_files.saturating_sub(reload.len());
    report.waiting += new.len().saturating_sub(room) as u64;
    new.truncate(room);
    let mut load = reload;
    load.extend(new);
    load.sort_by(|a, b| a.path.cmp(&b.path));
    load.dedup_by(|a, b| a.path == b.path);

    // A run is remembered while one of its files is listed at its path (whatever its
    // size, time or content now: a changed file stays "changed" however long it
    // stays, and is never taken for a new one), or for `remember`.
    let forget_before = now.timestamp() - feed.remember.as_secs() as i64;
    let keep_runs = runs
        .into_iter()
        .filter(|(run_key, at)| {
            !replaces.contains(run_key)
                && (*at >= forget_before
                    || by_run
                        .get(run_key)
                        .into_iter()
                        .flatten()
                        .any(|f| listed.contains_key(f.path.as_str())))
        })
        .collect();
    Ok(Plan {
        load,
        replaces: replaces.into_iter().collect(),
        keep_runs,
        report,
    })
}

fn seconds(unix: i64) -> String {
    DateTime::<Utc>::from_timestamp(unix, 0).map_or_else(|| unix.to_string(), |t| t.to_rfc3339())
}

/// The SHA-256 of a listed file's bytes, streamed from the store.
async fn hash_of(store: &dyn Store, entry: &Entry) -> Result<String> {
    store.sha256(&entry.path).await.map(|(hash, _)| hash)
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::super::read::Hashing;
    use super::super::store::Objects;
    use super::*;
    use crate::source::FeedCheckpoint;

    /// The keys committed runs consumed, as their manifests would hold them.
    struct Manifests(BTreeMap<String, Vec<String>>);

    #[async_trait]
    impl Ledger for Manifests {
        async fn keys(&self, run_key: &str) -> Result<Vec<String>> {
            Ok(self.0.get(run_key).cloned().unwrap_or_default())
        }
    }

    fn feed(max_files: usize) -> FilesFeed {
        let spec: crate::spec::JobSpec = serde_yaml::from_str(
            "job: bank\nsource:\n  connection: bank\n  files: {pattern: 'in/*.json'}\ntarget:\n  table: bank\n  schema: [{name: id, type: bigint}]\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let schema = crate::contract::compile(spec.target.schema.as_deref().unwrap_or_default())
            .unwrap_or_default();
        let mut feed =
            crate::job::files::compile_feed(&spec, Some(&schema), &mut |p, m| panic!("{p}: {m}"))
                .unwrap_or_else(|| panic!("no feed"));
        feed.max_files = max_files;
        feed
    }

    #[tokio::test]
    async fn plans_keep_what_is_listed_forget_the_rest_and_leave_the_unstable_waiting() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::create_dir_all(dir.path().join("in")).unwrap_or_else(|e| panic!("{e}"));
        let touch = |name: &str, seconds_ago: u64| {
            std::fs::File::options()
                .write(true)
                .open(dir.path().join(format!("in/{name}.json")))
                .and_then(|f| {
                    f.set_modified(
                        std::time::SystemTime::now() - std::time::Duration::from_secs(seconds_ago),
                    )
                })
                .unwrap_or_else(|e| panic!("{e}"));
        };
        for name in ["a", "b", "c", "d"] {
            std::fs::write(dir.path().join(format!("in/{name}.json")), "[]")
                .unwrap_or_else(|e| panic!("{e}"));
            touch(name, 120);
        }
        let store = Objects::folder(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let listing = store
            .list("in")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .files;
        let entry = |name: &str| {
            listing
                .iter()
                .find(|e| e.path == format!("in/{name}.json"))
                .cloned()
                .unwrap_or_else(|| panic!("{name} not listed"))
        };
        let hash = Hashing::new(&b"[]"[..]).finish().unwrap_or_default();
        let loaded = |name: &str| Loaded::of(&entry(name), hash.clone(), false).key();
        let gone = Loaded {
            path: "in/gone.json".into(),
            ..Loaded::of(&entry("a"), hash.clone(), false)
        };
        let now = Utc::now();
        let old = now.timestamp() - 40 * 86_400;
        let ledger = Manifests(BTreeMap::from([
            ("r-old-listed".to_string(), vec![loaded("a")]),
            ("r-old-gone".to_string(), vec![gone.key()]),
            ("r-new-gone".to_string(), vec![gone.key()]),
        ]));
        let committed = Checkpoint {
            changes: None,
            watermark: None,
            feed: Some(FeedCheckpoint {
                runs: vec![
                    ("r-old-listed".into(), old),
                    ("r-old-gone".into(), old),
                    ("r-new-gone".into(), now.timestamp()),
                ],
            }),
        };
        // b, c, d are new; one a run fits; a is loaded.
        let first = plan(&store, &feed(2), &committed, &ledger, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let paths: Vec<&str> = first.load.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["in/b.json", "in/c.json"]);
        assert_eq!((first.report.listed, first.report.waiting), (4, 1));
        let kept: Vec<&str> = first.keep_runs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kept, ["r-old-listed", "r-new-gone"]);

        // Modified just now: within stable_for (60s), d waits.
        touch("d", 0);
        let later = now + chrono::Duration::seconds(1);
        let second = plan(&store, &feed(10), &committed, &ledger, later)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let paths: Vec<&str> = second.load.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["in/b.json", "in/c.json"]);
        assert_eq!(second.report.waiting, 1);
    }

    #[tokio::test]
    async fn content_identity_catches_a_rewrite_of_the_same_size_and_time() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("in/a.json");
        std::fs::create_dir_all(dir.path().join("in")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(&path, "[]").unwrap_or_else(|e| panic!("{e}"));
        let set_time = |at: std::time::SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(at))
                .unwrap_or_else(|e| panic!("{e}"));
        };
        set_time(std::time::SystemTime::now() - std::time::Duration::from_secs(120));
        let store = Objects::folder(dir.path()).unwrap_or_else(|e| panic!("{e}"));
        let listed = store
            .list("in")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .files;
        let entry = listed
            .first()
            .cloned()
            .unwrap_or_else(|| panic!("not listed"));
        let hash = Hashing::new(&b"[]"[..]).finish().unwrap_or_default();
        let ledger = Manifests(BTreeMap::from([(
            "r1".to_string(),
            vec![Loaded::of(&entry, hash, false).key()],
        )]));
        let committed = Checkpoint {
            changes: None,
            watermark: None,
            feed: Some(FeedCheckpoint {
                runs: vec![("r1".into(), Utc::now().timestamp())],
            }),
        };
        // Corrected in place: the same two bytes' size, and its time put back.
        std::fs::write(&path, "{}").unwrap_or_else(|e| panic!("{e}"));
        set_time(std::time::UNIX_EPOCH + std::time::Duration::from_secs(entry.modified as u64));
        let now = Utc::now();

        // The default: same size and time, so not even hashed.
        let by_listing = plan(&store, &feed(10), &committed, &ledger, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(by_listing.load.is_empty());
        assert_eq!(by_listing.report.hashed, 0);

        let mut by_content = feed(10);
        by_content.identity = Identity::Content;
        let refused = plan(&store, &by_content, &committed, &ledger, now)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("in/a.json (the same 2 bytes"), "{refused}");
        assert!(refused.contains("but other content"), "{refused}");

        by_content.on_changed = OnChangedFile::Reload;
        let reload = plan(&store, &by_content, &committed, &ledger, now)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let paths: Vec<&str> = reload.load.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["in/a.json"]);
        assert_eq!(reload.replaces, ["r1"]);
        assert_eq!(reload.report.hashed, 1);
    }
}
