//! Where queries run: threads of their own, apart from the runtime that answers requests,
//! so that no query — however CPU-bound, deep or large — keeps `/health`, another key's
//! request or a stop from being answered; and the slots that bound how many run at once,
//! in all and per key.
//!
//! A query's task holds its slots until it has ended, not until its client stopped
//! waiting: a query cut at its time limit frees its slot when its work has stopped (at its
//! next batch, see `engine::checked`), so that no more queries run at once than the slots
//! allow, whatever the clients do. The query threads' stacks are large, so that planning
//! a statement as deep as the guard allows is safe.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::limits::Limits;
use super::refusal::Refusal;
use crate::error::{Error, Result};

/// Each query thread's stack: address space, touched only as deep as a query goes.
const STACK: usize = 64 << 20;

pub struct Pool {
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    all: Arc<Semaphore>,
    per_key: Mutex<HashMap<String, Arc<Semaphore>>>,
    limits: Limits,
}

/// A query's slots: held by its task until it ends.
pub struct Slots {
    _all: OwnedSemaphorePermit,
    _key: OwnedSemaphorePermit,
}

impl Pool {
    pub fn new(limits: &Limits) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.query_threads.max(1))
            .thread_name("sluice-query")
            .thread_stack_size(STACK)
            .enable_all()
            .build()
            .map_err(|e| Error::internal(format!("cannot start the query threads: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
            all: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            per_key: Mutex::new(HashMap::new()),
            limits: limits.clone(),
        })
    }

    /// A slot of the key's and one of all, each waited for up to `queue_wait`: a key
    /// past its share gets 429, a server past its slots 503.
    pub async fn admit(&self, key: &str) -> std::result::Result<Slots, Refusal> {
        let per_key = self.limits.concurrent_per_key.max(1);
        let mine = {
            let mut keys = self.per_key.lock().unwrap_or_else(|e| e.into_inner());
            keys.entry(key.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(per_key)))
                .clone()
        };
        let wait = self.limits.queue_wait;
        let started = tokio::time::Instant::now();
        let key_slot = tokio::time::timeout(wait, mine.acquire_owned())
            .await
            .ok()
            .and_then(|permit| permit.ok())
            .ok_or_else(|| Refusal::key_busy(key, per_key))?;
        let all = tokio::time::timeout_at(started + wait, self.all.clone().acquire_owned())
            .await
            .ok()
            .and_then(|permit| permit.ok())
            .ok_or_else(|| Refusal::busy(self.limits.concurrent))?;
        Ok(Slots {
            _all: all,
            _key: key_slot,
        })
    }

    /// Runs `work` on the query threads; dropping what this returns aborts it.
    pub fn spawn<T: Send + 'static>(
        &self,
        work: impl Future<Output = std::result::Result<T, Refusal>> + Send + 'static,
    ) -> Running<T> {
        match &self.runtime {
            Some(runtime) => Running(Some(runtime.spawn(work))),
            None => Running(None),
        }
    }
}

impl Drop for Pool {
    /// A query still running (its client gone, its time not yet up) does not hold up the
    /// server's exit.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A query's task on the query threads: its outcome, or `internal` when it panicked.
/// Dropped before it ends, the task is aborted (at its next yield).
pub struct Running<T>(Option<tokio::task::JoinHandle<std::result::Result<T, Refusal>>>);

impl<T> Future for Running<T> {
    type Output = std::result::Result<T, Refusal>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some(handle) = self.0.as_mut() else {
            return Poll::Ready(Err(Refusal::from(Error::internal(
                "the query threads are stopped",
            ))));
        };
        let joined = std::task::ready!(Pin::new(handle).poll(cx));
        self.0 = None;
        Poll::Ready(joined.unwrap_or_else(|e| {
            Err(Refusal::from(Error::internal(format!(
                "the query's task ended abnormally: {e}"
            ))))
        }))
    }
}

impl<T> Drop for Running<T> {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            handle.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(concurrent: usize, per_key: usize) -> Limits {
        Limits {
            concurrent,
            concurrent_per_key: per_key,
            queue_wait: Duration::from_millis(50),
            query_threads: 1,
            ..Limits::default()
        }
    }

    #[tokio::test]
    async fn a_key_past_its_share_gets_429_and_a_full_server_503() -> Result<()> {
        let pool = Pool::new(&limits(3, 2))?;
        let a1 = pool.admit("a").await;
        let a2 = pool.admit("a").await;
        assert!(a1.is_ok() && a2.is_ok());
        let a3 = pool.admit("a").await.err().map(|r| r.status.as_u16());
        assert_eq!(a3, Some(429));
        let b1 = pool.admit("b").await;
        assert!(b1.is_ok());
        let b2 = pool.admit("b").await.err().map(|r| r.status.as_u16());
        assert_eq!(b2, Some(503));
        drop(a1);
        assert!(pool.admit("b").await.is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn a_panicking_query_is_an_internal_refusal_and_a_dropped_one_is_aborted() -> Result<()> {
        let pool = Pool::new(&limits(1, 1))?;
        let panicked: std::result::Result<(), Refusal> =
            pool.spawn(async { panic!("a bug met by a query") }).await;
        assert_eq!(panicked.err().map(|r| r.status.as_u16()), Some(500));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = pool.spawn(async move {
            let _held = tx;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        });
        drop(running);
        // The task is gone, and with it what it held.
        assert!(
            tokio::time::timeout(Duration::from_secs(5), rx)
                .await
                .is_ok()
        );
        Ok(())
    }
}
