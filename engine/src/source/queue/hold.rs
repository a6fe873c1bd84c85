//! The messages a run holds: kept hidden from other consumers while the run works, and
//! deleted once its commit stands.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
};
use futures::StreamExt;

use super::client::{CALLS_IN_FLIGHT, Queue, batches};
use crate::aws::classify_sdk;
use crate::error::{Error, Result};
use crate::source::Acknowledge;

/// A received message the run holds until it deletes it.
struct Held {
    receipt: String,
    /// Until when SQS hides it from other receivers.
    hidden_until: Instant,
}

/// The messages the run holds, shared with the task that keeps them hidden.
#[derive(Clone, Default)]
pub(super) struct Holding(Arc<Mutex<Vec<Held>>>);

impl Holding {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Held>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds what one receive call returned, hidden for `hidden` from now.
    pub(super) fn hold(&self, messages: &[Message], hidden: Duration) {
        let mut held = self.lock();
        let hidden_until = Instant::now() + hidden;
        for m in messages {
            if let Some(receipt) = m.receipt_handle() {
                held.push(Held {
                    receipt: receipt.to_string(),
                    hidden_until,
                });
            }
        }
    }
}

/// Keeps the held messages hidden while the run works: every third of the visibility
/// period, what would become visible within half of it is hidden for another period.
pub(super) struct Keeper(tokio::task::JoinHandle<()>);

impl Keeper {
    pub(super) fn start(queue: Arc<Queue>, holding: Holding, visibility: Duration) -> Keeper {
        Keeper(tokio::spawn(async move {
            let mut tick = tokio::time::interval(visibility / 3);
            tick.tick().await;
            loop {
                tick.tick().await;
                let now = Instant::now();
                let due: Vec<String> = holding
                    .lock()
                    .iter_mut()
                    .filter(|h| h.hidden_until < now + visibility / 2)
                    .map(|h| {
                        h.hidden_until = now + visibility;
                        h.receipt.clone()
                    })
                    .collect();
                if due.is_empty() {
                    continue;
                }
                let extended = extend(&queue, due, visibility).await;
                tracing::debug!(extended, "kept the received messages hidden");
            }
        }))
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// ChangeMessageVisibilityBatch over `receipts`; returns how many were extended.
async fn extend(queue: &Arc<Queue>, receipts: Vec<String>, visibility: Duration) -> usize {
    let seconds = visibility.as_secs() as i32;
    let calls = batches(receipts).into_iter().map(|chunk| {
        let queue = Arc::clone(queue);
        async move {
            let entries = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(seconds)
                        .build()
                        .ok()
                })
                .collect();
            match queue
                .client
                .change_message_visibility_batch()
                .queue_url(&queue.url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out.successful().len(),
                Err(e) => {
                    let e = classify_sdk(e, "extending the visibility of received messages");
                    tracing::warn!(error = %e.report(), "messages may become visible before the run ends; a redelivery is skipped by its key");
                    0
                }
            }
        }
    });
    futures::stream::iter(calls)
        .buffer_unordered(CALLS_IN_FLIGHT)
        .fold(0, |n, k| async move { n + k })
        .await
}

/// After the commit: deletes every message the run received.
pub(super) struct Delete {
    queue: Arc<Queue>,
    holding: Holding,
    keeper: Keeper,
}

impl Delete {
    /// The deletion of what `holding` holds; `keeper` keeps it hidden until then.
    pub(super) fn new(queue: Arc<Queue>, holding: Holding, keeper: Keeper) -> Self {
        Self {
            queue,
            holding,
            keeper,
        }
    }
}

#[async_trait]
impl Acknowledge for Delete {
    async fn acknowledge(self: Box<Self>) -> Result<u64> {
        let receipts: Vec<String> = self.holding.lock().drain(..).map(|h| h.receipt).collect();
        let calls = batches(receipts).into_iter().map(|chunk| {
            let queue = Arc::clone(&self.queue);
            async move {
                let entries = chunk
                    .iter()
                    .enumerate()
                    .filter_map(|(i, r)| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(r)
                            .build()
                            .ok()
                    })
                    .collect();
                let out = queue
                    .client
                    .delete_message_batch()
                    .queue_url(&queue.url)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .map_err(|e| classify_sdk(e, "deleting the committed messages"))?;
                for failed in out.failed() {
                    tracing::warn!(
                        code = failed.code(),
                        message = failed.message().unwrap_or(""),
                        "a committed message was not deleted; its redelivery will be skipped"
                    );
                }
                Ok::<u64, Error>(out.successful().len() as u64)
            }
        });
        let results: Vec<Result<u64>> = futures::stream::iter(calls)
            .buffer_unordered(CALLS_IN_FLIGHT)
            .collect()
            .await;
        drop(self.keeper);
        let mut deleted = 0;
        let mut first_error = None;
        for r in results {
            match r {
                Ok(n) => deleted += n,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if deleted == 0 => Err(e),
            Some(e) => {
                tracing::warn!(error = %e.report(), deleted, "some committed messages were not deleted; their redeliveries will be skipped");
                Ok(deleted)
            }
            None => Ok(deleted),
        }
    }
}
