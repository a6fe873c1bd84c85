//! A run started by the state machine with a task token (`SLUICE_TASK_TOKEN`, the
//! `.waitForTaskToken` integration): it heartbeats while it runs and reports its outcome
//! once, at the end — `SendTaskSuccess` with its run summary, or `SendTaskFailure` with
//! the error name of its class (`ErrorClass::state_error`) and its message. The state
//! machine's retries and catches match on those names, and its `HeartbeatSeconds` catches
//! a task that died or hung without reporting.
//!
//! When Step Functions answers a heartbeat with "no longer waiting" (the state timed out,
//! or the execution ended), the run stops as on SIGTERM — uncommitted, its lease released
//! — so that the retry the state machine starts is not kept out by it. A report that
//! cannot be sent leaves the run's outcome as it is: the state machine then sees no
//! heartbeat, retries, and the retry finds the work done (the commit is exactly-once).

use std::time::Duration;

use aws_sdk_sfn::Client;
use aws_sdk_sfn::config::http::HttpResponse;
use aws_sdk_sfn::error::{ProvideErrorMetadata, SdkError};

use crate::aws::{classify_sdk, error_code};
use crate::error::{Error, Result};
use crate::interrupt::Interrupt;
use crate::summary::RunSummary;

/// Who stops the run when Step Functions stopped waiting for it.
const GIVEN_UP: &str = "the state machine, which no longer waits for this task (no heartbeat in time, a timeout, or the execution ended)";

/// What `SendTaskSuccess` carries at most of a summary before its longest lists are cut:
/// the execution's output gathers every job's, within Step Functions' 256 KiB.
const OUTPUT_LIMIT: usize = 16 << 10;
/// `SendTaskFailure`'s limits: an error name of 256 characters, a cause of 32,768.
const CAUSE_LIMIT: usize = 32_768;
/// Attempts at sending the report through throttling and network failures.
const REPORT_ATTEMPTS: u32 = 5;

/// The task token of a run, and its heartbeats.
pub struct Task {
    client: Client,
    token: String,
    heartbeats: tokio::task::JoinHandle<()>,
}

impl Task {
    /// Starts heartbeating every `every`; `interrupt` stops the run if Step Functions no
    /// longer waits for it.
    pub async fn start(token: String, every: Duration, interrupt: Interrupt) -> Self {
        let client = super::client(None).await;
        let heartbeats = tokio::spawn(heartbeat(client.clone(), token.clone(), every, interrupt));
        Self {
            client,
            token,
            heartbeats,
        }
    }

    /// Reports the outcome of the task's one job (or the error that ended it before it
    /// ran), and stops heartbeating.
    pub async fn report(self, outcome: std::result::Result<&[RunSummary], &Error>) {
        self.heartbeats.abort();
        let (what, sent) = match outcome {
            Ok(summaries) => match summaries {
                [summary] => match summary.error_class {
                    None => ("success", self.succeed(&output(summary)).await),
                    Some(class) => (
                        "failure",
                        self.fail(
                            class.state_error(),
                            summary.error.as_deref().unwrap_or("(no message)"),
                        )
                        .await,
                    ),
                },
                _ => (
                    "failure",
                    self.fail(
                        crate::error::ErrorClass::Internal.state_error(),
                        "the task ran no job, or more than one",
                    )
                    .await,
                ),
            },
            Err(e) => (
                "failure",
                self.fail(e.class.state_error(), &e.report()).await,
            ),
        };
        match sent {
            Ok(()) => tracing::info!("reported {what} to the state machine"),
            Err(e) => tracing::error!(
                error = %e.report(),
                "could not report {what} to the state machine: the run's outcome stands; the state machine sees no heartbeat and retries, and the retry finds the work done"
            ),
        }
    }

    async fn succeed(&self, output: &str) -> Result<()> {
        self.send(|| async {
            self.client
                .send_task_success()
                .task_token(&self.token)
                .output(output)
                .send()
                .await
                .map(drop)
        })
        .await
    }

    async fn fail(&self, error: &str, cause: &str) -> Result<()> {
        let cause = truncate(cause, CAUSE_LIMIT);
        self.send(|| async {
            self.client
                .send_task_failure()
                .task_token(&self.token)
                .error(error)
                .cause(cause)
                .send()
                .await
                .map(drop)
        })
        .await
    }

    /// Sends a report, again after throttling or a network failure.
    async fn send<F, Fut, E>(&self, call: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = std::result::Result<(), SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let mut wait = Duration::from_secs(1);
        for attempt in 1..=REPORT_ATTEMPTS {
            let err = match call().await {
                Ok(()) => return Ok(()),
                Err(err) if given_up(&err) => {
                    return Err(Error::user(format!(
                        "{}: the state machine no longer waits for this task",
                        error_code(&err).unwrap_or("refused")
                    )));
                }
                Err(err) => classify_sdk(err, "reporting to Step Functions"),
            };
            if !err.class.retryable() || attempt == REPORT_ATTEMPTS {
                return Err(err);
            }
            tracing::warn!(error = %err.message, attempt, "will report again in {wait:?}");
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        unreachable!("the last attempt returns")
    }
}

/// Heartbeats until aborted. A refused heartbeat that says the state machine no longer
/// waits stops the run; any other failure is logged and the next beat tries again (the
/// state's HeartbeatSeconds is several beats long).
async fn heartbeat(client: Client, token: String, every: Duration, interrupt: Interrupt) {
    let mut beats = tokio::time::interval(every);
    beats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        beats.tick().await;
        match client.send_task_heartbeat().task_token(&token).send().await {
            Ok(_) => tracing::debug!("heartbeat sent"),
            Err(err) if given_up(&err) => {
                tracing::error!(
                    code = error_code(&err).unwrap_or("refused"),
                    "the state machine no longer waits for this task: stopping the run (uncommitted) so that its retry can take the lease"
                );
                interrupt.stop(GIVEN_UP);
                return;
            }
            Err(err) => tracing::warn!(
                error = %classify_sdk(err, "sending a heartbeat to Step Functions").message,
                "heartbeat failed; the next one tries again"
            ),
        }
    }
}

/// Step Functions' answers that say the token's task is over.
fn given_up<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    matches!(
        error_code(err),
        Some("TaskTimedOut" | "TaskDoesNotExist" | "InvalidToken")
    )
}

/// The summary as the task's output: whole, unless it is larger than `OUTPUT_LIMIT`, when
/// its per-rule and per-column lists become counts.
fn output(summary: &RunSummary) -> String {
    let whole = serde_json::to_string(summary).unwrap_or_else(|_| "{}".into());
    if whole.len() <= OUTPUT_LIMIT {
        return whole;
    }
    let mut value = serde_json::to_value(summary).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        let failed = summary.quality.iter().filter(|r| !r.passed).count();
        for list in ["quality", "schema_changes", "typeless"] {
            object.remove(list);
        }
        object.insert("quality_rules".into(), summary.quality.len().into());
        object.insert("quality_failed".into(), failed.into());
        object.insert(
            "cut".into(),
            "the summary was too large for the execution: its quality, schema_changes and typeless lists are in the run record (`sluice state history`)".into(),
        );
    }
    value.to_string()
}

fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_summary_keeps_its_figures_and_loses_its_lists() -> serde_json::Result<()> {
        let mut summary = RunSummary::named("orders", "full", "orders", "r1");
        summary.rows = 42;
        summary.typeless = (0..2000).map(|i| format!("column_{i}")).collect();
        let text = output(&summary);
        assert!(text.len() < OUTPUT_LIMIT, "{}", text.len());
        let value: serde_json::Value = serde_json::from_str(&text)?;
        assert_eq!(value["rows"], 42);
        assert!(value.get("typeless").is_none());
        assert!(
            value["cut"]
                .as_str()
                .is_some_and(|c| c.contains("run record"))
        );

        let small = RunSummary::named("orders", "full", "orders", "r1");
        let value: serde_json::Value = serde_json::from_str(&output(&small))?;
        assert!(value.get("cut").is_none());
        Ok(())
    }

    #[test]
    fn a_cause_is_cut_on_a_character_boundary() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("hello", 10), "hello");
    }
}
