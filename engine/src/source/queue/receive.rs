//! The receivers: several long-polling loops that take the run's messages, and the rules
//! that end them — the queue drained, the budget spent, the time up, or a receive that
//! failed after the SDK's retries.
//!
//! Ending on a failure is for the whole run: no receiver starts another call once one
//! has failed, while the calls already in flight answer (what they return is received
//! and must be committed with the rest, or it would come back with its receive count
//! raised). What to do with a run that ended so is the consumer's choice (see `consume`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use tokio::sync::{mpsc, watch};

use super::client::{PER_CALL, Queue};
use crate::aws::classify_sdk;
use crate::error::Result;

/// Empty receives in a row after which a receiver takes the queue as drained.
const EMPTY_POLLS: usize = 2;

/// The receivers' go-ahead: receiver 0 long-polls alone until the queue yields something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Start {
    Waiting,
    Go,
    Stop,
}

/// The run's budget: messages left to take, the time to stop receiving, and whether
/// receiving has ended early (a receive failed).
pub(super) struct Budget {
    left: AtomicU64,
    deadline: Instant,
    stopped: AtomicBool,
}

impl Budget {
    pub(super) fn new(messages: u64, deadline: Instant) -> Self {
        Self {
            left: AtomicU64::new(messages),
            deadline,
            stopped: AtomicBool::new(false),
        }
    }

    /// Takes up to 10 messages of the run's budget; 0 when it is spent, the time is up
    /// or receiving has stopped.
    fn take(&self) -> usize {
        if self.stopped.load(Ordering::Relaxed) || Instant::now() >= self.deadline {
            return 0;
        }
        let mut left = self.left.load(Ordering::Relaxed);
        loop {
            let n = left.min(PER_CALL as u64);
            if n == 0 {
                return 0;
            }
            match self
                .left
                .compare_exchange(left, left - n, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return n as usize,
                Err(now) => left = now,
            }
        }
    }

    fn give_back(&self, n: usize) {
        self.left.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Ends receiving for every receiver: no call starts after this.
    fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// Seconds left until the deadline.
    fn seconds_left(&self) -> u64 {
        self.deadline
            .saturating_duration_since(Instant::now())
            .as_secs()
    }
}

/// What the receivers know together about the queue: how many of the run's receive
/// calls have returned messages. A receiver compares it before and after its own call
/// to learn whether another receiver was handed messages while it waited.
#[derive(Default)]
pub(super) struct Drain {
    answered: AtomicU64,
}

impl Drain {
    fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    fn answer(&self) {
        self.answered.fetch_add(1, Ordering::Relaxed);
    }
}

/// One receiver's reading of its answers: whether the queue looks drained.
///
/// An empty answer shows the queue drained only when no other receive of the run was
/// handed messages while it waited. With several receivers, an empty answer that
/// overlapped another's messages shows only that the other took what was visible at that
/// moment (SQS hands a message to one receiver; moto's receive skips what a concurrent
/// receive marked): more may be visible right behind it, and a receiver that counted
/// such answers stopped while its peers were still being fed — each stopping in turn on
/// answers that said nothing about the queue, and the run ending with messages left.
/// The first long poll (receiver 0's, alone) is the exception: nothing overlaps it, and
/// an empty answer there ends the run at once, with one receive call.
#[derive(Debug)]
struct Streak {
    /// The receiver's next answer is the run's first long poll.
    first: bool,
    /// Empty answers in a row that no other receive's messages overlapped.
    empty: usize,
}

impl Streak {
    fn new(first: bool) -> Self {
        Self { first, empty: 0 }
    }

    /// After an answer with `got` messages (`overlapped`: another receive call of the
    /// run returned messages while this one waited): whether the receiver stops.
    fn drained(&mut self, got: usize, overlapped: bool) -> bool {
        if got > 0 {
            self.first = false;
            self.empty = 0;
            return false;
        }
        if self.first {
            return true;
        }
        if overlapped {
            self.empty = 0;
            return false;
        }
        self.empty += 1;
        self.empty >= EMPTY_POLLS
    }
}

/// One receive call's messages, and how long SQS hides them.
pub(super) struct Received {
    pub(super) messages: Vec<Message>,
    pub(super) hidden: Duration,
}

/// What one receiver works with: the queue, and what the receivers share.
pub(super) struct Receiver {
    pub(super) queue: Arc<Queue>,
    pub(super) budget: Arc<Budget>,
    pub(super) drain: Arc<Drain>,
    pub(super) visibility: Duration,
    pub(super) wait: Duration,
}

/// One receiver: long-polls until the queue is drained (see [`Streak`]), the budget is
/// spent, the time is up or a receive failed (its own, sent on as the error, or
/// another receiver's). A failed call stops every receiver.
pub(super) async fn receive(
    n: usize,
    receiver: Receiver,
    (start_tx, mut start_rx): (watch::Sender<Start>, watch::Receiver<Start>),
    out: mpsc::Sender<Result<Received>>,
) {
    if n > 0 {
        // The others join once receiver 0 has found messages.
        match start_rx.wait_for(|s| *s != Start::Waiting).await {
            Ok(s) if *s == Start::Go => {}
            _ => return,
        }
    }
    let mut streak = Streak::new(n == 0);
    loop {
        let want = receiver.budget.take();
        if want == 0 {
            break;
        }
        let first = streak.first;
        let wait = if first { receiver.wait.as_secs() } else { 1 };
        // Hidden until the run's deadline, and a visibility period beyond it: the
        // keeper then extends only what outlives that.
        let hidden = (receiver.budget.seconds_left() + receiver.visibility.as_secs()).min(43_200);
        let seen = receiver.drain.answered();
        let response = receiver
            .queue
            .client
            .receive_message()
            .queue_url(&receiver.queue.url)
            .max_number_of_messages(want as i32)
            .wait_time_seconds(wait as i32)
            .visibility_timeout(hidden as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await;
        let messages = match response {
            Ok(r) => r.messages.unwrap_or_default(),
            Err(e) => {
                // The SDK has retried it already: receiving ends here, for every
                // receiver, so that no more messages are taken (and their receive counts
                // raised) by a run that may not get them back.
                receiver.budget.stop();
                let _ = start_tx.send(Start::Stop);
                let _ = out
                    .send(Err(classify_sdk(
                        e,
                        &format!("receiving from {}", receiver.queue.url),
                    )))
                    .await;
                return;
            }
        };
        receiver
            .budget
            .give_back(want.saturating_sub(messages.len()));
        let overlapped = receiver.drain.answered() != seen;
        if !messages.is_empty() {
            receiver.drain.answer();
        }
        if first && n == 0 {
            let _ = start_tx.send(if messages.is_empty() {
                Start::Stop
            } else {
                Start::Go
            });
        }
        if streak.drained(messages.len(), overlapped) {
            break;
        }
        if messages.is_empty() {
            continue;
        }
        let received = Received {
            messages,
            hidden: Duration::from_secs(hidden),
        };
        if out.send(Ok(received)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_long_poll_empty_ends_the_run_at_once() {
        let mut streak = Streak::new(true);
        assert!(streak.drained(0, false));
    }

    #[test]
    fn two_empty_answers_in_a_row_that_nothing_overlapped_are_drained() {
        let mut streak = Streak::new(true);
        assert!(!streak.drained(10, false));
        assert!(!streak.drained(0, false));
        assert!(streak.drained(0, false));

        let mut other = Streak::new(false);
        assert!(!other.drained(0, false));
        assert!(!other.drained(3, false), "messages break the streak");
        assert!(!other.drained(0, false));
        assert!(other.drained(0, false));
    }

    #[test]
    fn an_empty_answer_while_another_receiver_was_fed_does_not_count() {
        let mut streak = Streak::new(false);
        assert!(!streak.drained(0, false));
        // Another receiver got messages meanwhile: the queue was not drained.
        assert!(!streak.drained(0, true));
        assert!(!streak.drained(0, false));
        assert!(streak.drained(0, false));
        // The first long poll is never overlapped: empty is empty.
        assert!(Streak::new(true).drained(0, true));
    }

    #[test]
    fn the_budget_is_taken_ten_at_a_time_and_a_stop_ends_it() {
        let budget = Budget::new(25, Instant::now() + Duration::from_secs(60));
        assert_eq!((budget.take(), budget.take(), budget.take()), (10, 10, 5));
        assert_eq!(budget.take(), 0);
        budget.give_back(7);
        assert_eq!(budget.take(), 7);
        budget.give_back(4);
        budget.stop();
        assert_eq!(budget.take(), 0, "no call starts after a stop");

        let late = Budget::new(100, Instant::now());
        assert_eq!(late.take(), 0, "time is up");
    }

    #[test]
    fn the_drain_counts_answers_with_messages() {
        let drain = Drain::default();
        let seen = drain.answered();
        drain.answer();
        assert_ne!(drain.answered(), seen);
    }
}
