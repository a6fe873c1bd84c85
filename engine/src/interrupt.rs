//! Ctrl-C (SIGINT), and SIGTERM (what ECS sends a task it stops), during `sluice run`:
//! the run in progress stops where it is — nothing it wrote is committed, exactly as after
//! a crash: its files are referenced by no commit, never read, and swept by the next run
//! —, its lease is released at once (instead of expiring), no further job starts, and the
//! process exits 130. A second signal ends the process at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::error::{Error, ErrorClass, Result};

/// Whether (and by which signal) the process has been asked to stop.
#[derive(Clone)]
pub struct Interrupt(watch::Receiver<Option<&'static str>>);

impl Interrupt {
    /// Never fires: for runs that no signal handler watches (library use, tests).
    pub fn never() -> Self {
        Self(watch::channel(None).1)
    }

    /// Installs the handlers for SIGINT and SIGTERM; call inside the runtime.
    pub fn listen() -> Result<Self> {
        let handler = |kind, name| {
            signal(kind)
                .map_err(|e| Error::internal(format!("cannot install the {name} handler: {e}")))
        };
        let mut int = handler(SignalKind::interrupt(), "SIGINT")?;
        let mut term = handler(SignalKind::terminate(), "SIGTERM")?;
        let (tx, rx) = watch::channel(None);
        tokio::spawn(async move {
            let first = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            tracing::warn!(
                signal = first,
                "stopping: the run in progress ends uncommitted and releases its lease; a second signal ends the process at once"
            );
            // Nobody listening (the command has no run in progress) is fine.
            let _ = tx.send(Some(first));
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            std::process::exit(ErrorClass::Interrupted.exit_code());
        });
        Ok(Self(rx))
    }

    /// The signal received, if one was.
    pub fn received(&self) -> Option<&'static str> {
        *self.0.borrow()
    }

    /// Waits for a signal and returns the error that ends the run; never returns when no
    /// handler is installed.
    pub async fn error(&self) -> Error {
        let mut rx = self.0.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(signal) => interrupted((*signal).unwrap_or("a signal")),
            Err(_) => std::future::pending().await,
        }
    }
}

fn interrupted(signal: &str) -> Error {
    Error::new(
        ErrorClass::Interrupted,
        format!(
            "interrupted by {signal}: the run stopped where it was and released its lease; what it had not committed does not count (a commit the signal met is settled by the next run, as after a crash); run the job again to load its window"
        ),
    )
}
