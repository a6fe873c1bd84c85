//! Where an accepted event becomes durable before the 2xx: the spool on local disk
//! (`spool`, loaded by the collector itself) or an SQS queue per table (`queue`, loaded by
//! the collector's jobs on their schedule).

use async_trait::async_trait;

use super::body::Event;

/// How an append ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    pub accepted: usize,
    pub duplicates: usize,
}

/// Why an append was not made: nothing of it is kept, or (`Failed` after a partial write
/// to a queue) what was kept is remembered as taken, so a resend lands once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Too much is waiting to be loaded, or queued for the disk.
    Full,
    /// The write failed (logged).
    Failed,
}

/// Contract: `append` answers `Ok` only once every new event of the call is durable
/// (on disk after a flush, or in the queue); an event whose (source, `messageId`) was
/// taken within the deduplication window is counted as a duplicate and not kept again.
/// Called concurrently by the requests.
#[async_trait]
pub trait Store: Send + Sync {
    async fn append(&self, events: Vec<Event>, now: i64) -> Result<Appended, Refused>;

    /// Whether a request would be taken now.
    fn ready(&self) -> bool;

    /// Where events go, for the first log line.
    fn describe(&self) -> String;
}
