//! Ctrl-C (SIGINT), and SIGTERM (what ECS sends a task it stops), during `sluice run`:
//! the run in progress stops where it is — nothing it wrote is committed, exactly as after
//! a crash: its files are referenced by no commit, never read, and swept by the next run
//! —, its lease is released at once (instead of expiring), no further job starts, and the
//! process exits 130. A second signal ends the process at once.
//!
//! The run can also be stopped from within, the same way: a task whose state machine no
//! longer waits for it (`stepfn::task`) stops its run, so that a retry is not kept out by
//! its lease.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::error::{Error, ErrorClass, Result};

/// Whether (and by which signal) the process has been asked to stop.
#[derive(Clone)]
pub struct Interrupt {
    rx: watch::Receiver<Option<&'static str>>,
    tx: Arc<watch::Sender<Option<&'static str>>>,
}

impl Interrupt {
    /// Fires only by `stop`: for runs that no signal handler watches (library use, tests).
    pub fn never() -> Self {
        let (tx, rx) = watch::channel(None);
        Self {
            rx,
            tx: Arc::new(tx),
        }
    }

    /// Stops the run in progress as a first signal does; `by` says who asked.
    pub fn stop(&self, by: &'static str) {
        self.tx.send_if_modified(|current| {
            let first = current.is_none();
            if first {
                *current = Some(by);
            }
            first
        });
    }

    /// Installs the handlers for SIGINT and SIGTERM; call inside the runtime. `stopping`
    /// is what the first signal is logged with: what the process does now.
    pub fn listen(stopping: &'static str) -> Result<Self> {
        let handler = |kind, name| {
            signal(kind)
                .map_err(|e| Error::internal(format!("cannot install the {name} handler: {e}")))
        };
        let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
        let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
        let stopper = Self::never();
        let handled = stopper.clone();
        tokio::spawn(async move {
            let first = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            tracing::warn!(
                signal = first,
                "stopping: {stopping}; a second signal ends the process at once"
            );
            handled.stop(first);
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            std::process::exit(ErrorClass::Interrupted.exit_code());
        });
        Ok(stopper)
    }

    /// The signal received (or who stopped the run), if any.
    pub fn received(&self) -> Option<&'static str> {
        *self.rx.borrow()
    }

    /// Waits for a signal (or a `stop`) and returns the error that ends the run.
    pub async fn error(&self) -> Error {
        let mut rx = self.rx.clone();
        // The borrow ends here, so that the future is Send.
        let signal = match rx.wait_for(Option::is_some).await {
            Ok(signal) => *signal,
            Err(_) => None,
        };
        match signal {
            Some(signal) => interrupted(signal),
            None => std::future::pending().await,
        }
    }
}

/// What a run does on a first signal.
pub const RUN_STOPPING: &str = "the run in progress ends uncommitted and releases its lease";

fn interrupted(signal: &str) -> Error {
    Error::new(
        ErrorClass::Interrupted,
        format!(
            "interrupted by {signal}: the run stopped where it was and released its lease; what it had not committed does not count (a commit the signal met is settled by the next run, as after a crash); run the job again to load its window"
        ),
    )
}
