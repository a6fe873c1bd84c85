//! What each job of an execution did, read from the execution's history: the state
//! machine enters `Run task` with `{job, …}`, schedules one ECS task per attempt (its
//! command `run --job ID`), and ends each job in a state whose output is the job's outcome
//! (`Succeeded` with the run summary the task reported, `Failed` with the error name and
//! message, `Skipped`, `Disabled`). The same reading serves a running execution (`watch`)
//! and a finished one (`show`), succeeded or failed. A distributed Map runs its iterations
//! as child executions, whose events are not in this history: there the Map's own output,
//! once it ends, gives every job's outcome (without attempts or durations).

use std::collections::BTreeMap;

use aws_sdk_sfn::types::{HistoryEvent, HistoryEventType};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{MAP_STATE, OUTCOME_STATES, RUN_TASK_STATE};

/// One job of an execution, as far as the history tells.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JobOutcome {
    pub job: String,
    /// `running` until the job's outcome state: then `succeeded`, `failed`, `skipped: …`
    /// or `disabled`.
    pub status: String,
    /// ECS tasks started for it (retries included).
    pub attempts: u32,
    /// From entering `Run task` to the outcome (retry waits included).
    pub seconds: Option<f64>,
    /// The run summary the task reported (`sluice run --output json`'s object).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<Value>,
    /// The error name (`Sluice.User`, `Sluice.Retryable`, `States.HeartbeatTimeout`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
}

impl JobOutcome {
    pub fn finished(&self) -> bool {
        self.status != "running"
    }

    pub fn rows(&self) -> Option<u64> {
        self.summary.as_ref()?.get("rows")?.as_u64()
    }
}

/// The jobs of an execution, in the order they started.
pub fn outcomes(events: &[HistoryEvent]) -> Vec<JobOutcome> {
    let mut jobs = Jobs::new();
    for event in events {
        let at = timestamp(event);
        match event.r#type() {
            HistoryEventType::TaskStateEntered => {
                let Some(details) = event.state_entered_event_details() else {
                    continue;
                };
                if details.name() != RUN_TASK_STATE {
                    continue;
                }
                if let Some(job) = json(details.input()).and_then(|v| string(&v, "job")) {
                    let order = jobs.len();
                    jobs.entry(job.clone())
                        .or_insert_with(|| (order, running(job), Some(at)));
                }
            }
            HistoryEventType::TaskScheduled => {
                let job = event
                    .task_scheduled_event_details()
                    .and_then(|d| serde_json::from_str::<Value>(d.parameters()).ok())
                    .and_then(|p| commanded_job(&p));
                if let Some((_, outcome, _)) = job.and_then(|j| jobs.get_mut(&j)) {
                    outcome.attempts += 1;
                }
            }
            HistoryEventType::PassStateExited => {
                let Some(details) = event.state_exited_event_details() else {
                    continue;
                };
                if !OUTCOME_STATES.contains(&details.name()) {
                    continue;
                }
                if let Some(output) = json(details.output()) {
                    settle(&mut jobs, &output, at, true);
                }
            }
            HistoryEventType::MapStateExited => {
                let Some(details) = event.state_exited_event_details() else {
                    continue;
                };
                if details.name() != MAP_STATE {
                    continue;
                }
                // The Map's result sits at its ResultPath, `$.results`.
                let output = json(details.output());
                let results = output.as_ref().and_then(|o| o.get("results"));
                for output in results.and_then(Value::as_array).into_iter().flatten() {
                    settle(&mut jobs, output, at, false);
                }
            }
            _ => {}
        }
    }
    let mut ordered: Vec<(usize, JobOutcome)> =
        jobs.into_values().map(|(order, o, _)| (order, o)).collect();
    ordered.sort_by_key(|(order, _)| *order);
    ordered.into_iter().map(|(_, o)| o).collect()
}

/// Per job: the order it appeared in, what is known, when it entered `Run task`.
type Jobs = BTreeMap<String, (usize, JobOutcome, Option<DateTime<Utc>>)>;

/// Records a job's outcome (`{job, status, summary?, error?, cause?}`) seen at `at`; from
/// the Map's output (`timed` false) only for a job no outcome state has settled.
fn settle(jobs: &mut Jobs, output: &Value, at: DateTime<Utc>, timed: bool) {
    let Some(job) = string(output, "job") else {
        return;
    };
    let order = jobs.len();
    let (_, outcome, started) = jobs
        .entry(job.clone())
        .or_insert_with(|| (order, running(job), None));
    if !timed && outcome.finished() {
        return;
    }
    outcome.status = string(output, "status").unwrap_or_else(|| "done".into());
    outcome.summary = output.get("summary").filter(|s| s.is_object()).cloned();
    outcome.error = string(output, "error");
    outcome.cause = string(output, "cause").filter(|c| !c.is_empty());
    outcome.seconds = started.filter(|_| timed).map(|s| seconds_between(s, at));
}

fn running(job: String) -> JobOutcome {
    JobOutcome {
        job,
        status: "running".into(),
        attempts: 0,
        seconds: None,
        summary: None,
        error: None,
        cause: None,
    }
}

/// The seconds from `from` to `to`, to the millisecond.
pub fn seconds_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds() as f64 / 1000.0
}

fn timestamp(event: &HistoryEvent) -> DateTime<Utc> {
    let at = event.timestamp();
    DateTime::from_timestamp(at.secs(), at.subsec_nanos()).unwrap_or_default()
}

fn json(text: Option<&str>) -> Option<Value> {
    serde_json::from_str(text?).ok()
}

fn string(value: &Value, key: &str) -> Option<String> {
    value.get(key)?.as_str().map(str::to_string)
}

/// The job of an ECS task's parameters: the `ID` after `--job` in its container command
/// (whatever the parameters' casing).
fn commanded_job(value: &Value) -> Option<String> {
    match value {
        Value::Array(items) => {
            let after = items
                .iter()
                .position(|v| v.as_str() == Some("--job"))
                .and_then(|i| items.get(i + 1))
                .and_then(Value::as_str);
            after
                .map(str::to_string)
                .or_else(|| items.iter().find_map(commanded_job))
        }
        Value::Object(map) => map.values().find_map(commanded_job),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sfn::primitives::DateTime as SdkTime;
    use aws_sdk_sfn::types::{
        StateEnteredEventDetails, StateExitedEventDetails, TaskScheduledEventDetails,
    };

    type Built<T> = std::result::Result<T, aws_sdk_sfn::error::BuildError>;

    fn event(
        id: i64,
        kind: HistoryEventType,
        at: i64,
    ) -> aws_sdk_sfn::types::builders::HistoryEventBuilder {
        HistoryEvent::builder()
            .id(id)
            .r#type(kind)
            .timestamp(SdkTime::from_secs(at))
    }

    fn entered(id: i64, job: &str, at: i64) -> Built<HistoryEvent> {
        event(id, HistoryEventType::TaskStateEntered, at)
            .state_entered_event_details(
                StateEnteredEventDetails::builder()
                    .name(RUN_TASK_STATE)
                    .input(format!(r#"{{"job":"{job}","run_id":"r"}}"#))
                    .build()?,
            )
            .build()
    }

    fn scheduled(id: i64, job: &str, at: i64) -> Built<HistoryEvent> {
        let parameters = serde_json::json!({
            "Cluster": "c",
            "Overrides": {"ContainerOverrides": [{"Name": "sluice", "Command": ["run", "--job", job]}]}
        });
        event(id, HistoryEventType::TaskScheduled, at)
            .task_scheduled_event_details(
                TaskScheduledEventDetails::builder()
                    .resource_type("ecs")
                    .resource("runTask.waitForTaskToken")
                    .region("eu-west-1")
                    .parameters(parameters.to_string())
                    .build()?,
            )
            .build()
    }

    fn exited(id: i64, state: &str, output: Value, at: i64) -> Built<HistoryEvent> {
        event(id, HistoryEventType::PassStateExited, at)
            .state_exited_event_details(
                StateExitedEventDetails::builder()
                    .name(state)
                    .output(output.to_string())
                    .build()?,
            )
            .build()
    }

    #[test]
    fn each_job_has_its_attempts_outcome_and_duration() -> Built<()> {
        let events = vec![
            entered(1, "orders", 100)?,
            scheduled(2, "orders", 100)?,
            entered(3, "customers", 101)?,
            scheduled(4, "customers", 101)?,
            scheduled(5, "orders", 160)?,
            exited(
                6,
                "Succeeded",
                serde_json::json!({"job": "orders", "status": "succeeded", "summary": {"rows": 7}}),
                170,
            )?,
            exited(
                7,
                "Row",
                serde_json::json!({"job": "ignored", "task_definition": "x"}),
                171,
            )?,
        ];
        let jobs = outcomes(&events);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].job, "orders");
        assert_eq!(jobs[0].attempts, 2);
        assert_eq!(jobs[0].rows(), Some(7));
        assert_eq!(jobs[0].seconds, Some(70.0));
        assert!(jobs[0].finished());
        assert_eq!(jobs[1].job, "customers");
        assert_eq!(jobs[1].status, "running");
        assert!(!jobs[1].finished());
        Ok(())
    }

    #[test]
    fn a_distributed_map_tells_its_jobs_by_its_output() -> Built<()> {
        let output = serde_json::json!({"listing": {}, "results": [
            {"job": "orders", "status": "succeeded", "summary": {"rows": 3}},
            {"job": "broken", "status": "failed", "error": "Sluice.User", "cause": "no table"},
        ]});
        let events = vec![
            event(1, HistoryEventType::MapStateExited, 9)
                .state_exited_event_details(
                    StateExitedEventDetails::builder()
                        .name(MAP_STATE)
                        .output(output.to_string())
                        .build()?,
                )
                .build()?,
        ];
        let jobs = outcomes(&events);
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].rows(), Some(3));
        assert_eq!(jobs[0].seconds, None);
        assert_eq!(jobs[1].error.as_deref(), Some("Sluice.User"));
        Ok(())
    }

    #[test]
    fn a_failed_job_keeps_its_error_name_and_cause() -> Built<()> {
        let events = vec![
            entered(1, "broken", 0)?,
            scheduled(2, "broken", 0)?,
            exited(
                3,
                "Failed",
                serde_json::json!({"job": "broken", "status": "failed", "error": "Sluice.User", "cause": "no table"}),
                2,
            )?,
            exited(
                4,
                "Disabled",
                serde_json::json!({"job": "off", "status": "disabled"}),
                3,
            )?,
        ];
        let jobs = outcomes(&events);
        assert_eq!(jobs[0].error.as_deref(), Some("Sluice.User"));
        assert_eq!(jobs[0].cause.as_deref(), Some("no table"));
        assert_eq!(jobs[1].status, "disabled");
        assert_eq!(jobs[1].attempts, 0);
        assert_eq!(jobs[1].seconds, None);
        Ok(())
    }
}
