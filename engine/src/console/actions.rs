//! What operators may do from the console, by the same functions as the CLI: "run now"
//! is `sluice run --job X` in a child process of this binary (locally) or `sluice
//! executions start --job X` (`Machine::start`, on AWS); a rewind is `sluice state
//! rewind` (`pipeline::rewind::rewind`), shown first as its dry run so that the operator
//! confirms what will be reloaded.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::job::Job;
use crate::pipeline;
use crate::stepfn::executions::Machine;

/// How "run now" runs a job.
pub enum Runner {
    /// A child `sluice run --job X` with the console's places and environment; the
    /// console follows it until it exits.
    Local {
        exe: PathBuf,
        /// `--jobs=…`, `--lake=…`, `--state=…`, `--catalog=…`.
        places: Vec<String>,
        running: Arc<Mutex<HashMap<String, LocalRun>>>,
    },
    /// An execution of the state machine for the job, as `sluice executions start`.
    StepFunctions(Machine),
}

/// A run the console started, as it knows it.
#[derive(Debug, Clone)]
pub struct LocalRun {
    pub started: DateTime<Utc>,
    /// The operator who started it.
    pub by: String,
    pub pid: u32,
    /// The child's summary line and exit code, once it exited.
    pub outcome: Option<String>,
}

impl Runner {
    pub fn local(exe: PathBuf, places: Vec<String>) -> Self {
        Runner::Local {
            exe,
            places,
            running: Arc::default(),
        }
    }

    /// Starts a run of `job` for `by`; what the page says about it.
    pub async fn run_now(&self, job: &str, by: &str) -> Result<String> {
        match self {
            Runner::StepFunctions(machine) => {
                let execution = machine.start(&[job.to_string()], None).await?;
                Ok(format!(
                    "started the state machine's execution {} for {job}",
                    execution.arn()
                ))
            }
            Runner::Local {
                exe,
                places,
                running,
            } => {
                {
                    let running = running.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(run) = running.get(job).filter(|r| r.outcome.is_none()) {
                        return Err(Error::busy(format!(
                            "a run of {job} that {} started at {} is still running (pid {})",
                            run.by,
                            run.started.format("%H:%M:%S"),
                            run.pid
                        )));
                    }
                }
                let trigger = format!("console:{by}");
                let child = Command::new(exe)
                    .args(places)
                    .args(["run", "--job", job, "--trigger", trigger.as_str()])
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .map_err(|e| Error::internal(format!("cannot start {}: {e}", exe.display())))?;
                let pid = child.id();
                running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(
                        job.to_string(),
                        LocalRun {
                            started: Utc::now(),
                            by: by.to_string(),
                            pid,
                            outcome: None,
                        },
                    );
                let running = running.clone();
                let job_id = job.to_string();
                // The child's end is waited for on a blocking thread (no process reactor
                // in this runtime); its summary line is what the page shows of it. The
                // thread is detached: nothing waits for it.
                let follow = tokio::task::spawn_blocking(move || {
                    let outcome = match child.wait_with_output() {
                        Ok(out) => format!(
                            "{} (exit {})",
                            String::from_utf8_lossy(&out.stdout).trim(),
                            out.status
                                .code()
                                .map_or("by signal".into(), |c| c.to_string())
                        ),
                        Err(e) => format!("could not follow the run: {e}"),
                    };
                    if let Some(run) = running
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_mut(&job_id)
                    {
                        run.outcome = Some(outcome);
                    }
                });
                drop(follow);
                Ok(format!("started sluice run --job {job} (pid {pid})"))
            }
        }
    }

    /// The run of `job` this console started last, if it did.
    pub fn local_run(&self, job: &str) -> Option<LocalRun> {
        match self {
            Runner::Local { running, .. } => running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(job)
                .cloned(),
            Runner::StepFunctions(_) => None,
        }
    }

    /// Whether a run this console started is still going.
    pub fn any_running(&self) -> bool {
        match self {
            Runner::Local { running, .. } => running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .values()
                .any(|r| r.outcome.is_none()),
            Runner::StepFunctions(_) => false,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Runner::Local { .. } => "a child sluice run",
            Runner::StepFunctions(_) => "a Step Functions execution",
        }
    }
}

/// A rewind of `job` to `to`: what it would do (`dry_run`), or what it did; the lines
/// `sluice state rewind` prints.
pub async fn rewind(
    job: &Job,
    ctx: &pipeline::Context,
    to: &str,
    dry_run: bool,
) -> Result<Vec<String>> {
    pipeline::rewind::rewind(job, ctx, to, dry_run).await
}
