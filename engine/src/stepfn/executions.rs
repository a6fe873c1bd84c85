//! `sluice executions`: start the state machine for some jobs (a rerun, a backfill after
//! `sluice state rewind`), follow an execution job by job, list the recent ones, and show
//! what each job of one did. Needs only `states:StartExecution`, `DescribeExecution`,
//! `ListExecutions` and `GetExecutionHistory` on the state machine (Terraform's
//! `operator_policy_json` output).

use std::time::Duration;

use aws_sdk_sfn::Client;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use chrono::{DateTime, Utc};

use super::Arn;
use super::history::{self, JobOutcome};
use crate::aws::{classify_sdk, error_code};
use crate::error::{Error, ErrorClass, Result};

/// How often `watch` reads the history.
const POLL: Duration = Duration::from_secs(2);

/// The state machine named by `--state-machine` or `SLUICE_STATE_MACHINE`, and a client
/// in its region.
pub struct Machine {
    arn: Arn,
    client: Client,
}

impl Machine {
    pub async fn open(given: Option<&str>) -> Result<Self> {
        let given = given.ok_or_else(|| {
            Error::user(
                "no state machine: give --state-machine ARN or set SLUICE_STATE_MACHINE (terraform output state_machine_arn)",
            )
        })?;
        let arn = Arn::machine(given)?;
        let client = super::client(Some(&arn.region)).await;
        Ok(Self { arn, client })
    }

    /// Starts an execution for the named jobs (every enabled job row when none is named)
    /// and prints its ARN and console page; returns its ARN.
    pub async fn start(&self, jobs: &[String], name: Option<&str>) -> Result<Arn> {
        let name = match name {
            Some(name) => super::valid_execution_name(name)?.to_string(),
            None => default_name(Utc::now()),
        };
        let input = if jobs.is_empty() {
            serde_json::json!({})
        } else {
            serde_json::json!({ "jobs": jobs })
        };
        let started = self
            .client
            .start_execution()
            .state_machine_arn(self.arn.machine_arn())
            .name(&name)
            .input(input.to_string())
            .send()
            .await
            .map_err(|e| self.refused(e, "starting an execution"))?;
        let execution = self.arn.execution_of(started.execution_arn())?;
        let what = if jobs.is_empty() {
            "every enabled job".to_string()
        } else {
            jobs.join(", ")
        };
        crate::outln!("started {name}: {what}");
        crate::outln!("  arn      {}", execution.arn());
        crate::outln!("  console  {}", execution.console_url());
        crate::outln!(
            "  follow   sluice executions watch {name} --state-machine {}",
            self.arn.machine_arn()
        );
        Ok(execution)
    }

    /// Follows an execution: one line per job as it finishes, then the outcome. The exit
    /// class is the worst failed job's (none when the execution succeeded).
    pub async fn watch(&self, execution: &str) -> Result<Option<ErrorClass>> {
        let execution = self.arn.execution_of(execution)?;
        let mut printed: Vec<String> = Vec::new();
        loop {
            let described = self.describe(&execution).await?;
            let jobs = history::outcomes(&self.history(&execution).await?);
            for job in jobs.iter().filter(|j| j.finished()) {
                if !printed.contains(&job.job) {
                    crate::outln!("{}", job_line(job));
                    printed.push(job.job.clone());
                }
            }
            if described.status != ExecutionStatus::Running {
                crate::outln!("{}", described.line());
                return Ok(outcome(&described, &jobs));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The newest executions, one line each.
    pub async fn list(&self, limit: i32) -> Result<Vec<String>> {
        let listed = self
            .client
            .list_executions()
            .state_machine_arn(self.arn.machine_arn())
            .max_results(limit.clamp(1, 1000))
            .send()
            .await
            .map_err(|e| self.refused(e, "listing executions"))?;
        let mut executions = listed.executions().to_vec();
        executions.sort_by(|a, b| b.start_date().cmp(a.start_date()));
        Ok(executions
            .iter()
            .map(|e| {
                let started = time(e.start_date());
                let took = e
                    .stop_date()
                    .map(|stop| human_seconds(history::seconds_between(started, time(stop))))
                    .unwrap_or_else(|| "-".into());
                format!(
                    "{}  {:<9}  {:>8}  {}",
                    started.format("%Y-%m-%d %H:%M:%S"),
                    e.status().as_str(),
                    took,
                    e.name()
                )
            })
            .collect())
    }

    /// An execution and what each of its jobs did.
    pub async fn show(&self, execution: &str) -> Result<Shown> {
        let execution = self.arn.execution_of(execution)?;
        let described = self.describe(&execution).await?;
        let jobs = history::outcomes(&self.history(&execution).await?);
        let class = outcome(&described, &jobs);
        Ok(Shown {
            execution: described,
            console: execution.console_url(),
            jobs,
            class,
        })
    }

    async fn describe(&self, execution: &Arn) -> Result<Described> {
        let out = self
            .client
            .describe_execution()
            .execution_arn(execution.arn())
            .send()
            .await
            .map_err(|e| self.refused(e, "describing the execution"))?;
        Ok(Described {
            name: out.name().unwrap_or_default().to_string(),
            arn: out.execution_arn().to_string(),
            status: out.status().clone(),
            started: time(out.start_date()),
            stopped: out.stop_date().map(time),
            input: out.input().map(str::to_string),
            error: out.error().map(str::to_string),
            cause: out.cause().map(str::to_string),
        })
    }

    /// Every event of the execution, oldest first.
    async fn history(&self, execution: &Arn) -> Result<Vec<HistoryEvent>> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .get_execution_history()
                .execution_arn(execution.arn())
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| self.refused(e, "reading the execution's history"))?;
            events.extend_from_slice(page.events());
            match page.next_token() {
                Some(next) => token = Some(next.to_string()),
                None => return Ok(events),
            }
        }
    }

    /// A refused call, said with what was asked of which state machine.
    fn refused<E>(
        &self,
        err: aws_sdk_sfn::error::SdkError<E, aws_sdk_sfn::config::http::HttpResponse>,
        doing: &str,
    ) -> Error
    where
        E: aws_sdk_sfn::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let hint = match error_code(&err) {
            Some("StateMachineDoesNotExist") => format!(
                " (no state machine {} in {}: check --state-machine / SLUICE_STATE_MACHINE against terraform output state_machine_arn)",
                self.arn.machine_arn(),
                self.arn.region
            ),
            Some("ExecutionDoesNotExist") => format!(
                " (`sluice executions list --state-machine {}` shows its executions)",
                self.arn.machine_arn()
            ),
            Some("ExecutionAlreadyExists") => {
                " (execution names are unique for 90 days: give another --name)".into()
            }
            _ => String::new(),
        };
        let mut error = classify_sdk(err, &format!("{doing} of {}", self.arn.machine));
        error.message.push_str(&hint);
        error
    }
}

/// An execution as `describe_execution` gives it.
#[derive(Debug, serde::Serialize)]
pub struct Described {
    pub name: String,
    pub arn: String,
    #[serde(serialize_with = "status_name")]
    pub status: ExecutionStatus,
    pub started: DateTime<Utc>,
    pub stopped: Option<DateTime<Utc>>,
    pub input: Option<String>,
    pub error: Option<String>,
    pub cause: Option<String>,
}

fn status_name<S: serde::Serializer>(
    status: &ExecutionStatus,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(status.as_str())
}

impl Described {
    /// `execution NAME SUCCEEDED in 4m 12s` (with the error of a failed one).
    pub fn line(&self) -> String {
        let took = self
            .stopped
            .map(|stop| {
                format!(
                    " in {}",
                    human_seconds(history::seconds_between(self.started, stop))
                )
            })
            .unwrap_or_default();
        let error = error_text(self.error.as_deref(), self.cause.as_deref())
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        format!(
            "execution {} {}{took}{error}",
            self.name,
            self.status.as_str()
        )
    }
}

/// What `show` prints.
#[derive(Debug, serde::Serialize)]
pub struct Shown {
    pub execution: Described,
    pub console: String,
    pub jobs: Vec<JobOutcome>,
    #[serde(skip)]
    pub class: Option<ErrorClass>,
}

impl Shown {
    pub fn lines(&self) -> Vec<String> {
        let e = &self.execution;
        let mut lines = vec![
            e.line(),
            format!("  started  {}", e.started.format("%Y-%m-%d %H:%M:%S UTC")),
            format!("  input    {}", e.input.as_deref().unwrap_or("-")),
            format!("  console  {}", self.console),
        ];
        if self.jobs.is_empty() {
            lines.push("  no job has started yet".into());
        } else {
            lines.push(format!(
                "  {:<24} {:<24} {:>8} {:>9} {:>12}  error",
                "job", "status", "attempts", "took", "rows"
            ));
            lines.extend(self.jobs.iter().map(|j| format!("  {}", job_columns(j))));
        }
        lines
    }
}

fn job_columns(job: &JobOutcome) -> String {
    let error = error_text(job.error.as_deref(), job.cause.as_deref()).unwrap_or_default();
    format!(
        "{:<24} {:<24} {:>8} {:>9} {:>12}  {error}",
        job.job,
        job.status,
        job.attempts,
        job.seconds.map(human_seconds).unwrap_or_else(|| "-".into()),
        job.rows()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into()),
    )
}

/// `orders: succeeded, 10000 rows in 12.3s (2 attempts)` / `broken: failed after 1 attempt in 2.0s: Sluice.User: …`.
fn job_line(job: &JobOutcome) -> String {
    let tries = match job.attempts {
        0 => None,
        1 => Some("1 attempt".to_string()),
        n => Some(format!("{n} attempts")),
    };
    let took = job
        .seconds
        .map(|s| format!(" in {}", human_seconds(s)))
        .unwrap_or_default();
    match (
        error_text(job.error.as_deref(), job.cause.as_deref()),
        job.rows(),
    ) {
        (Some(error), _) => format!(
            "{}: {}{}{took}: {error}",
            job.job,
            job.status,
            tries.map(|t| format!(" after {t}")).unwrap_or_default()
        ),
        (None, Some(rows)) => format!(
            "{}: {}, {rows} rows{took}{}",
            job.job,
            job.status,
            tries.map(|t| format!(" ({t})")).unwrap_or_default()
        ),
        (None, None) => format!("{}: {}", job.job, job.status),
    }
}

/// `Sluice.User: the message`; without a cause, what Step Functions' own error means.
fn error_text(error: Option<&str>, cause: Option<&str>) -> Option<String> {
    let error = error?;
    let meaning = match error {
        "States.HeartbeatTimeout" => "no heartbeat in time: the task died or hung",
        "States.Timeout" => "the task sent no heartbeat in time, or ran past its timeout",
        _ => "no message",
    };
    Some(match cause {
        Some(cause) => format!("{error}: {cause}"),
        None => format!("{error} ({meaning})"),
    })
}

/// The exit class of an execution: none when it succeeded, else its worst failed job's
/// (by the error name the job ended with), else (no job failed: the listing, a timeout or
/// an abort ended it) retryable, or interrupted when it was aborted.
fn outcome(execution: &Described, jobs: &[JobOutcome]) -> Option<ErrorClass> {
    if execution.status == ExecutionStatus::Succeeded {
        return None;
    }
    let worst = jobs
        .iter()
        .filter(|j| j.status == "failed")
        .map(|j| ErrorClass::from_state_error(j.error.as_deref().unwrap_or_default()))
        .max_by_key(|c| c.severity());
    worst.or(Some(match execution.status {
        ExecutionStatus::Aborted => ErrorClass::Interrupted,
        _ => ErrorClass::External,
    }))
}

/// `manual-20261203T131500Z-1a2b`: sortable, unique enough for hand-started runs.
fn default_name(now: DateTime<Utc>) -> String {
    format!(
        "manual-{}-{:04x}",
        now.format("%Y%m%dT%H%M%SZ"),
        now.timestamp_subsec_nanos() & 0xffff
    )
}

fn time(at: &aws_sdk_sfn::primitives::DateTime) -> DateTime<Utc> {
    DateTime::from_timestamp(at.secs(), at.subsec_nanos()).unwrap_or_default()
}

fn human_seconds(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.1}s")
    } else if seconds < 3600.0 {
        format!("{}m {:02}s", (seconds / 60.0) as u64, seconds as u64 % 60)
    } else {
        format!(
            "{}h {:02}m",
            (seconds / 3600.0) as u64,
            (seconds as u64 / 60) % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_are_valid_and_sortable() -> Result<()> {
        let at = DateTime::parse_from_rfc3339("2026-12-03T13:15:00.123Z")
            .map_err(|e| Error::internal(e.to_string()))?
            .with_timezone(&Utc);
        let name = default_name(at);
        assert!(name.starts_with("manual-20261203T131500Z-"), "{name}");
        super::super::valid_execution_name(&name)?;
        Ok(())
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_seconds(12.34), "12.3s");
        assert_eq!(human_seconds(252.0), "4m 12s");
        assert_eq!(human_seconds(7380.0), "2h 03m");
    }

    #[test]
    fn the_worst_failed_job_decides_the_exit_class() {
        let described = |status: ExecutionStatus| Described {
            name: "x".into(),
            arn: "a".into(),
            status,
            started: Utc::now(),
            stopped: None,
            input: None,
            error: None,
            cause: None,
        };
        let job = |status: &str, error: Option<&str>| JobOutcome {
            job: "j".into(),
            status: status.into(),
            attempts: 1,
            seconds: None,
            summary: None,
            error: error.map(str::to_string),
            cause: None,
        };
        let jobs = [
            job("failed", Some("Sluice.Retryable")),
            job("failed", Some("Sluice.User")),
            job("succeeded", None),
        ];
        assert_eq!(outcome(&described(ExecutionStatus::Succeeded), &jobs), None);
        assert_eq!(
            outcome(&described(ExecutionStatus::Failed), &jobs),
            Some(ErrorClass::User)
        );
        assert_eq!(
            outcome(&described(ExecutionStatus::Aborted), &[]),
            Some(ErrorClass::Interrupted)
        );
        assert_eq!(
            outcome(&described(ExecutionStatus::TimedOut), &[]),
            Some(ErrorClass::External)
        );
    }
}
