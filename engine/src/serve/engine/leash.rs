//! What holds one query back: its deadline, a stop that the request side pulls when it
//! gives up (the time limit passed, the client went away), and the bytes its answer may
//! carry. The request side enforces the deadline from outside (it answers `time_limit`
//! whatever the query is doing); the engine checks the leash between batches, so that the
//! query's work also ends, and counts its answer's bytes against it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use datafusion::arrow::record_batch::RecordBatch;

use crate::serve::refusal::Refusal;

#[derive(Debug, Clone)]
pub struct Leash(Arc<State>);

#[derive(Debug)]
struct State {
    deadline: tokio::time::Instant,
    time: Duration,
    stopped: AtomicBool,
    answer_limit: usize,
    answered: AtomicUsize,
}

/// Why a query's work was cut off: carried through the engine's own errors, and turned
/// back into the refusal it stands for (`Refusal::from`).
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum Cut {
    #[error("the query ran past its time limit ({0:?})")]
    Time(Duration),
    #[error("the query was stopped: its client is gone")]
    Stopped,
}

impl Cut {
    pub fn refusal(self) -> Refusal {
        match self {
            Self::Time(limit) => Refusal::time_limit(limit),
            Self::Stopped => Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stopped",
                "the query was stopped before it answered; send it again",
            ),
        }
    }
}

/// An execution error: a cut leash is its refusal, past the memory pool is 413, the rest as
/// classified. It lives beside `Cut` so that the refusals need not know the engine.
impl From<datafusion::error::DataFusionError> for Refusal {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        if let datafusion::error::DataFusionError::External(cause) = e.find_root()
            && let Some(cut) = cause.downcast_ref::<Cut>()
        {
            return cut.refusal();
        }
        if matches!(
            e.find_root(),
            datafusion::error::DataFusionError::ResourcesExhausted(_)
        ) {
            return Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "memory_limit",
                format!(
                    "the query needs more memory than a query may take ({}); aggregate or filter more, or page a plain SELECT",
                    e.find_root()
                ),
            );
        }
        Self::from(crate::error::classify_datafusion(e, "query"))
    }
}

impl Leash {
    /// A leash for a query admitted now, that may run for `time` and answer `answer_limit`
    /// bytes.
    pub fn new(time: Duration, answer_limit: usize) -> Self {
        Self(Arc::new(State {
            deadline: tokio::time::Instant::now() + time,
            time,
            stopped: AtomicBool::new(false),
            answer_limit,
            answered: AtomicUsize::new(0),
        }))
    }

    pub fn deadline(&self) -> tokio::time::Instant {
        self.0.deadline
    }

    pub fn time(&self) -> Duration {
        self.0.time
    }

    /// Tells the query's work to end at its next check.
    pub fn stop(&self) {
        self.0.stopped.store(true, Ordering::Relaxed);
    }

    /// Whether the query may go on: not past its deadline, not stopped.
    pub fn check(&self) -> Result<(), Cut> {
        if self.0.stopped.load(Ordering::Relaxed) {
            return Err(Cut::Stopped);
        }
        if tokio::time::Instant::now() >= self.0.deadline {
            return Err(Cut::Time(self.0.time));
        }
        Ok(())
    }

    /// Counts `batch` into the answer, and tells its bytes; refuses past the answer's
    /// byte limit.
    pub fn answer(&self, batch: &RecordBatch) -> Result<usize, Refusal> {
        let bytes = batch_bytes(batch);
        let total = self.0.answered.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.0.answer_limit {
            return Err(Refusal::answer_limit(self.0.answer_limit));
        }
        Ok(bytes)
    }
}

/// The bytes of a batch's rows as Arrow holds them (a slice counts its rows only).
fn batch_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// Stops the leash when dropped: the request side holds one for as long as it waits.
pub struct StopOnDrop(pub Leash);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[tokio::test]
    async fn a_leash_cuts_at_its_deadline_and_when_stopped() {
        let leash = Leash::new(Duration::from_millis(30), 100);
        assert!(leash.check().is_ok());
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(matches!(leash.check(), Err(Cut::Time(_))));
        let leash = Leash::new(Duration::from_secs(60), 100);
        drop(StopOnDrop(leash.clone()));
        assert!(matches!(leash.check(), Err(Cut::Stopped)));
    }

    #[test]
    fn an_answer_is_counted_by_its_rows_bytes_and_refused_past_the_limit()
    -> crate::error::Result<()> {
        let values: Vec<String> = (0..100).map(|i| "x".repeat(i)).collect();
        let batch = RecordBatch::try_from_iter([(
            "s",
            Arc::new(StringArray::from(values)) as datafusion::arrow::array::ArrayRef,
        )])
        .map_err(|e| crate::error::Error::internal(e.to_string()))?;
        let whole = batch_bytes(&batch);
        // A slice counts its own rows, not the buffers it shares.
        assert!(batch_bytes(&batch.slice(0, 10)) < whole / 10);
        let leash = Leash::new(Duration::from_secs(60), whole + 1);
        assert!(leash.answer(&batch).is_ok());
        let refused = leash.answer(&batch.slice(0, 10)).err();
        assert_eq!(refused.map(|r| r.code), Some("answer_limit"));
        Ok(())
    }
}
