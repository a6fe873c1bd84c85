//! The write-ahead log: where an event is durable before the collector answers 2xx.
//!
//! The spool is the folder of the collector's jobs' connection, with three folders:
//! `open/` holds one segment per table being appended to, `ready/` the sealed segments
//! the jobs load (their pattern is `ready/<table>-*.ndjson`), `loaded/` the segments a
//! job committed (its `after_load` moves them there), kept for the deduplication window.
//!
//! One thread appends. Requests queue to it; it takes every request waiting, writes their
//! new events (a duplicate `messageId` is counted, not written), `fdatasync`s each segment
//! it wrote to, and only then answers them all — group commit: one disk flush for
//! everything that arrived while the previous one ran. A write that fails is cut off the
//! segment again and every request in the group gets an error, so a segment holds only
//! whole lines and a 2xx only ever follows a flush that held its events.
//!
//! A segment is sealed — renamed into `ready/` after its last flush, then the folder is
//! flushed — when it reaches the flush size or age (Firehose's buffering hints), and when
//! the collector stops. A segment left in `open/` by a crash is cut back to its last
//! whole line (a line cut short was never acknowledged) and sealed when the spool opens.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Instant;

use super::body::{Event, Kind};
use super::dedup::Seen;
use super::segments::{LOADED, OPEN, READY, Settings, folder_bytes, io, recover, seal, sync_dir};
use super::store::{Appended, Refused, Store};
use crate::error::{Error, Result};

/// Requests waiting for the appender at most; more are answered 503 at once.
const QUEUE: usize = 4096;
/// A group's bytes at most (the requests after it wait for the next flush).
const GROUP_BYTES: usize = 8 << 20;

/// What the appender, the loader and the server share.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Bytes in open segments.
    pub open_bytes: AtomicU64,
    /// Bytes in sealed segments not yet loaded.
    pub ready_bytes: AtomicU64,
    /// The appender's last write failed (the disk is full or gone).
    pub failing: AtomicBool,
}

impl Gauges {
    /// Bytes not yet in the lake.
    pub fn buffered(&self) -> u64 {
        self.open_bytes.load(Ordering::Relaxed) + self.ready_bytes.load(Ordering::Relaxed)
    }
}

struct Append {
    events: Vec<Event>,
    now: i64,
    reply: tokio::sync::oneshot::Sender<std::result::Result<Appended, Refused>>,
}

/// The handle requests append through; the appender thread stops (sealing what is open)
/// once every handle is dropped.
#[derive(Clone)]
pub struct Spool {
    queue: SyncSender<Append>,
    pub gauges: Arc<Gauges>,
    max_buffer: u64,
    dir: PathBuf,
}

impl Spool {
    /// Recovers what a crash left in `dir`, rebuilds the deduplication keys, and starts
    /// the appender. Returns the handle and the appender thread (joined after the last
    /// handle is dropped) and a signal raised at each seal.
    pub fn open(
        dir: &Path,
        settings: &Settings,
        sealed: Arc<tokio::sync::Notify>,
    ) -> Result<(Self, std::thread::JoinHandle<()>)> {
        for sub in [OPEN, READY, LOADED] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| io(e, &dir.join(sub)))?;
        }
        recover(dir)?;
        let gauges = Arc::new(Gauges::default());
        gauges
            .ready_bytes
            .store(folder_bytes(&dir.join(READY))?, Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp();
        let seen = super::replay::seen(dir, settings, now)?;
        tracing::info!(
            spool = %dir.display(),
            remembered = seen.remembered(),
            ready_bytes = gauges.ready_bytes.load(Ordering::Relaxed),
            "spool opened"
        );
        let (queue, requests) = std::sync::mpsc::sync_channel(QUEUE);
        let mut appender = Appender {
            dir: dir.to_path_buf(),
            settings: settings.clone(),
            segments: BTreeMap::new(),
            seen,
            gauges: gauges.clone(),
            sealed,
            last_name: 0,
        };
        let thread = std::thread::Builder::new()
            .name("spool".into())
            .spawn(move || appender.run(&requests))
            .map_err(|e| Error::internal(format!("cannot start the spool's thread: {e}")))?;
        Ok((
            Self {
                queue,
                gauges,
                max_buffer: settings.max_buffer,
                dir: dir.to_path_buf(),
            },
            thread,
        ))
    }
}

#[async_trait::async_trait]
impl Store for Spool {
    /// Appends `events` and answers once they are on disk (or were there already).
    async fn append(&self, events: Vec<Event>, now: i64) -> std::result::Result<Appended, Refused> {
        if self.gauges.buffered() >= self.max_buffer {
            return Err(Refused::Full);
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        match self.queue.try_send(Append { events, now, reply }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(Refused::Full),
            Err(TrySendError::Disconnected(_)) => return Err(Refused::Failed),
        }
        answer.await.unwrap_or(Err(Refused::Failed))
    }

    fn ready(&self) -> bool {
        self.gauges.buffered() < self.max_buffer && !self.gauges.failing.load(Ordering::Relaxed)
    }

    fn describe(&self) -> String {
        format!("spool {}", self.dir.display())
    }
}

/// A segment being appended to.
struct Segment {
    path: PathBuf,
    file: File,
    len: u64,
    opened: Instant,
}

struct Appender {
    dir: PathBuf,
    settings: Settings,
    segments: BTreeMap<Kind, Segment>,
    seen: Seen,
    gauges: Arc<Gauges>,
    sealed: Arc<tokio::sync::Notify>,
    /// The time in the last segment's name (names never repeat).
    last_name: i64,
}

impl Appender {
    fn run(&mut self, requests: &Receiver<Append>) {
        loop {
            let wait = self
                .segments
                .values()
                .map(|s| self.settings.flush_age.saturating_sub(s.opened.elapsed()))
                .min()
                .unwrap_or(self.settings.flush_age);
            let first = match requests.recv_timeout(wait) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    self.seal_due(false);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut group = vec![first];
            let mut bytes = group_bytes(&group[0]);
            while bytes < GROUP_BYTES {
                match requests.try_recv() {
                    Ok(next) => {
                        bytes += group_bytes(&next);
                        group.push(next);
                    }
                    Err(_) => break,
                }
            }
            self.write(group);
            self.seal_due(false);
        }
        self.seal_due(true);
    }

    /// Writes a group's new events, flushes, and answers every request of the group.
    fn write(&mut self, group: Vec<Append>) {
        let mut lines: BTreeMap<Kind, Vec<u8>> = BTreeMap::new();
        let mut keys = Vec::new();
        // The group's keys, for a duplicate within it (a set: a group may hold thousands).
        let mut taken = std::collections::HashSet::new();
        let mut answers = Vec::with_capacity(group.len());
        for append in group {
            let mut appended = Appended {
                accepted: 0,
                duplicates: 0,
            };
            for event in append.events {
                let again = self.seen.contains(event.key, append.now) || !taken.insert(event.key);
                if again {
                    appended.duplicates += 1;
                    continue;
                }
                keys.push((event.key, append.now));
                let buffer = lines.entry(event.kind).or_default();
                buffer.extend_from_slice(&event.line);
                buffer.push(b'\n');
                appended.accepted += 1;
            }
            answers.push((append.reply, appended));
        }
        let written = self.flush(&lines);
        if let Err(e) = &written {
            tracing::error!(error = %e.report(), "the spool could not write; answering 503");
        }
        self.gauges
            .failing
            .store(written.is_err(), Ordering::Relaxed);
        if written.is_ok() {
            for (key, at) in keys {
                self.seen.insert(key, at);
            }
        }
        for (reply, appended) in answers {
            let _ = reply.send(match written {
                Ok(()) => Ok(appended),
                Err(_) => Err(Refused::Failed),
            });
        }
    }

    /// Appends each table's lines to its segment and flushes them to disk; on a failure
    /// every segment written to is cut back to where it was.
    fn flush(&mut self, lines: &BTreeMap<Kind, Vec<u8>>) -> Result<()> {
        let mut written: Vec<(Kind, u64)> = Vec::new();
        let outcome = (|| {
            for (&kind, bytes) in lines {
                let segment = self.segment(kind)?;
                written.push((kind, segment.len));
                segment
                    .file
                    .write_all(bytes)
                    .map_err(|e| io(e, &segment.path))?;
                segment.len += bytes.len() as u64;
            }
            for (kind, _) in &written {
                if let Some(segment) = self.segments.get(kind) {
                    segment.file.sync_data().map_err(|e| io(e, &segment.path))?;
                }
            }
            Ok(())
        })();
        match outcome {
            Ok(()) => {
                let grown: u64 = lines.values().map(|l| l.len() as u64).sum();
                self.gauges.open_bytes.fetch_add(grown, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                for (kind, len) in written {
                    let cut = self.segments.get_mut(&kind).map(|segment| {
                        segment.len = len;
                        segment
                            .file
                            .set_len(len)
                            .and_then(|()| segment.file.sync_data())
                    });
                    if let Some(Err(cut)) = cut {
                        // Left in open/ (it may end in a partial line): the next start
                        // cuts it back to its last whole line and seals it.
                        tracing::error!(error = %cut, "a failed write could not be cut back; the segment is left for the next start");
                        self.segments.remove(&kind);
                    }
                }
                Err(e)
            }
        }
    }

    /// The table's open segment, opened when there is none: named by the table and the
    /// time in microseconds (names sort in the order they were opened, the order the
    /// load takes them in).
    fn segment(&mut self, kind: Kind) -> Result<&mut Segment> {
        if !self.segments.contains_key(&kind) {
            self.last_name = chrono::Utc::now()
                .timestamp_micros()
                .max(self.last_name + 1);
            let name = format!("{}-{:020}.ndjson", kind.table(), self.last_name);
            let path = self.dir.join(OPEN).join(name);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(&path)
                .map_err(|e| io(e, &path))?;
            sync_dir(&self.dir.join(OPEN))?;
            self.segments.insert(
                kind,
                Segment {
                    path,
                    file,
                    len: 0,
                    opened: Instant::now(),
                },
            );
        }
        self.segments
            .get_mut(&kind)
            .ok_or_else(|| Error::internal("the segment just opened is gone"))
    }

    /// Seals the segments at their size or age (every one when `all`).
    fn seal_due(&mut self, all: bool) {
        let due: Vec<Kind> = self
            .segments
            .iter()
            .filter(|(_, s)| {
                all || s.len >= self.settings.flush_bytes
                    || s.opened.elapsed() >= self.settings.flush_age
            })
            .map(|(&k, _)| k)
            .collect();
        for kind in due {
            if let Some(segment) = self.segments.remove(&kind) {
                let len = segment.len;
                match seal(&self.dir, &segment.path) {
                    Ok(()) => {
                        self.gauges.open_bytes.fetch_sub(len, Ordering::Relaxed);
                        self.gauges.ready_bytes.fetch_add(len, Ordering::Relaxed);
                        self.sealed.notify_one();
                    }
                    Err(e) => {
                        // Left in open/: the next start seals it.
                        tracing::error!(error = %e.report(), "a segment could not be sealed");
                        self.gauges.open_bytes.fetch_sub(len, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn group_bytes(append: &Append) -> usize {
    append.events.iter().map(|e| e.line.len() + 1).sum()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::segments::files;
    use super::*;

    fn settings(flush_bytes: u64) -> Settings {
        Settings {
            flush_bytes,
            flush_age: Duration::from_secs(3600),
            max_buffer: 1 << 30,
            dedup_window: Duration::from_secs(86_400),
            dedup_capacity: 1000,
        }
    }

    fn event(kind: Kind, id: &str) -> Event {
        let received = super::super::body::Received {
            at: chrono::Utc::now(),
            source: "web".into(),
            ip: None,
            user_agent: None,
        };
        let body = match kind {
            Kind::Track => format!(r#"{{"messageId": "{id}", "userId": "u", "event": "E"}}"#),
            Kind::Alias => format!(r#"{{"messageId": "{id}", "userId": "u", "previousId": "a"}}"#),
            Kind::Profile => format!(r#"{{"messageId": "{id}", "userId": "u"}}"#),
        };
        let mut events = super::super::body::parse(
            body.as_bytes(),
            Some(kind),
            &received,
            &super::super::body::Extras::default(),
        )
        .unwrap_or_default();
        events.pop().unwrap_or(Event {
            kind,
            key: 0,
            line: Vec::new(),
        })
    }

    fn lines(dir: &Path, sub: &str) -> Vec<String> {
        let mut out = Vec::new();
        for path in files(&dir.join(sub)).unwrap_or_default() {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            out.extend(text.lines().map(str::to_string));
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_land_once_each_and_seal_at_their_size() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        let sealed = Arc::new(tokio::sync::Notify::new());
        let (spool, thread) = Spool::open(dir.path(), &settings(2_000), sealed)?;
        let now = chrono::Utc::now().timestamp();
        let mut tasks = Vec::new();
        for t in 0..8 {
            let spool = spool.clone();
            tasks.push(tokio::spawn(async move {
                let mut appended = Vec::new();
                for i in 0..25 {
                    // Each id twice: the second is a duplicate, in the same call or not.
                    let id = format!("{t}-{i}");
                    let events = vec![event(Kind::Track, &id), event(Kind::Track, &id)];
                    appended.push(spool.append(events, now).await);
                }
                appended
            }));
        }
        let mut accepted = 0;
        for task in tasks {
            for appended in task.await.map_err(|e| Error::internal(e.to_string()))? {
                let appended = appended.map_err(|e| Error::internal(format!("{e:?}")))?;
                assert_eq!(appended.duplicates, 1);
                accepted += appended.accepted;
            }
        }
        assert_eq!(accepted, 200);
        let again = spool.append(vec![event(Kind::Alias, "0-0")], now).await;
        assert_eq!(
            again,
            Ok(Appended {
                accepted: 0,
                duplicates: 1
            }),
            "the key is the source's message id, whatever the kind"
        );
        assert!(
            files(&dir.path().join(READY))?.len() > 1,
            "segments were sealed at their size"
        );
        drop(spool);
        thread
            .join()
            .map_err(|_| Error::internal("the appender panicked"))?;
        assert!(
            files(&dir.path().join(OPEN))?.is_empty(),
            "all sealed at the end"
        );
        let mut ids: Vec<String> = lines(dir.path(), READY)
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| v["message_id"].as_str().map(str::to_string))
            .collect();
        ids.sort();
        let before = ids.len();
        ids.dedup();
        assert_eq!((before, ids.len()), (200, 200));
        Ok(())
    }

    #[test]
    fn a_crash_left_segment_is_cut_back_to_its_last_whole_line_and_sealed() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::internal(e.to_string()))?;
        for sub in [OPEN, READY, LOADED] {
            std::fs::create_dir_all(dir.path().join(sub)).map_err(|e| io(e, dir.path()))?;
        }
        let whole = String::from_utf8_lossy(&event(Kind::Track, "whole").line).to_string();
        let cut = String::from_utf8_lossy(&event(Kind::Track, "cut").line).to_string();
        let path = dir
            .path()
            .join(OPEN)
            .join("events-00000000000000000001.ndjson");
        std::fs::write(&path, format!("{whole}\n{}", &cut[..cut.len() / 2]))
            .map_err(|e| io(e, &path))?;
        let empty = dir
            .path()
            .join(OPEN)
            .join("aliases-00000000000000000002.ndjson");
        std::fs::write(&empty, "").map_err(|e| io(e, &empty))?;
        recover(dir.path())?;
        assert_eq!(lines(dir.path(), READY), vec![whole]);
        assert!(files(&dir.path().join(OPEN))?.is_empty());
        assert_eq!(
            files(&dir.path().join(READY))?.len(),
            1,
            "an empty one is removed"
        );
        // The next start remembers the keys of what is spooled.
        let seen = super::super::replay::seen(
            dir.path(),
            &settings(1 << 20),
            chrono::Utc::now().timestamp(),
        )?;
        assert_eq!(seen.remembered(), 1);
        Ok(())
    }
}
