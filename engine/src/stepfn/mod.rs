//! AWS Step Functions, from both sides of the state machine
//! (`stepfunctions/run_jobs.asl.json`):
//!
//! - `task`: a run started by the state machine with a task token reports back — its run
//!   summary on success, its error class and message on failure — and heartbeats while it
//!   runs;
//! - `executions`: the operators' `sluice executions start / watch / list / show`;
//! - `history`: what each job of an execution did, read from the execution's history.

pub mod executions;
pub mod history;
pub mod task;

use aws_sdk_sfn::Client;

use crate::error::{Error, Result};

/// The state machine's states whose outputs are a job's outcome (`{job, status, …}`), the
/// one that runs a job's task, and the Map around them: the names `history` looks for in
/// an execution.
pub const OUTCOME_STATES: [&str; 4] = ["Succeeded", "Failed", "Skipped", "Disabled"];
pub const RUN_TASK_STATE: &str = "Run task";
/// The Map state whose output, once it ends, lists every job's outcome.
pub const MAP_STATE: &str = "Run jobs";

/// A state machine's or execution's ARN, split where the CLI needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    pub region: String,
    /// `arn:PARTITION:states:REGION:ACCOUNT:`
    prefix: String,
    /// The state machine's name.
    pub machine: String,
    /// The execution's name (an execution's ARN).
    pub execution: Option<String>,
}

impl Arn {
    /// A state machine's ARN (`arn:aws:states:REGION:ACCOUNT:stateMachine:NAME`).
    pub fn machine(text: &str) -> Result<Self> {
        match Self::parse(text) {
            Some(arn) if arn.execution.is_none() => Ok(arn),
            _ => Err(Error::user(format!(
                "`{text}` is not a state machine ARN: give one like arn:aws:states:eu-west-1:123456789012:stateMachine:sluice-run-jobs (terraform output state_machine_arn)"
            ))),
        }
    }

    /// An execution of this state machine: its ARN, or its name.
    pub fn execution_of(&self, given: &str) -> Result<Self> {
        if !given.starts_with("arn:") {
            return valid_execution_name(given).map(|name| Self {
                execution: Some(name.to_string()),
                ..self.clone()
            });
        }
        match Self::parse(given) {
            Some(arn) if arn.execution.is_some() && arn.machine == self.machine => Ok(arn),
            Some(arn) if arn.execution.is_some() => Err(Error::user(format!(
                "execution `{given}` belongs to state machine `{}`, not `{}`",
                arn.machine, self.machine
            ))),
            _ => Err(Error::user(format!(
                "`{given}` is not an execution: give its name (as `sluice executions list` shows) or its ARN (arn:aws:states:REGION:ACCOUNT:execution:{}:NAME)",
                self.machine
            ))),
        }
    }

    fn parse(text: &str) -> Option<Self> {
        let parts: Vec<&str> = text.split(':').collect();
        let execution = match parts.as_slice() {
            ["arn", _, "states", _, _, "stateMachine", _] => None,
            ["arn", _, "states", _, _, "execution", _, name] => Some(name.to_string()),
            _ => return None,
        };
        let empty = [parts[3], parts[4], parts[6]].iter().any(|p| p.is_empty());
        if empty || execution.as_deref() == Some("") {
            return None;
        }
        Some(Self {
            region: parts[3].to_string(),
            prefix: parts[..5].join(":") + ":",
            machine: parts[6].to_string(),
            execution,
        })
    }

    /// The state machine's ARN.
    pub fn machine_arn(&self) -> String {
        format!("{}stateMachine:{}", self.prefix, self.machine)
    }

    /// The execution's ARN (the state machine's when this names no execution).
    pub fn arn(&self) -> String {
        match &self.execution {
            Some(name) => format!("{}execution:{}:{name}", self.prefix, self.machine),
            None => self.machine_arn(),
        }
    }

    /// The execution's page in the AWS console.
    pub fn console_url(&self) -> String {
        let region = &self.region;
        format!(
            "https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{}",
            self.arn()
        )
    }
}

/// An execution name as Step Functions takes it: 1 to 80 letters, digits, `-` and `_`.
pub fn valid_execution_name(name: &str) -> Result<&str> {
    let fits = (1..=80).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fits {
        Ok(name)
    } else {
        Err(Error::user(format!(
            "`{name}` is not an execution name: use 1 to 80 letters, digits, `-` and `_`"
        )))
    }
}

/// A Step Functions client; `region` (the state machine's) overrides the configured one.
pub async fn client(region: Option<&str>) -> Client {
    let mut config = aws_sdk_sfn::config::Builder::from(crate::aws::config().await);
    if let Some(region) = region {
        config = config.region(aws_sdk_sfn::config::Region::new(region.to_string()));
    }
    Client::from_conf(config.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Outcome = std::result::Result<(), Box<dyn std::error::Error>>;

    const MACHINE: &str = "arn:aws:states:eu-west-1:123456789012:stateMachine:sluice-run-jobs";

    fn message<T: std::fmt::Debug>(result: Result<T>) -> String {
        match result {
            Ok(value) => format!("unexpectedly valid: {value:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn a_machine_arn_names_its_executions() -> Outcome {
        let machine = Arn::machine(MACHINE)?;
        assert_eq!(machine.region, "eu-west-1");
        assert_eq!(machine.machine_arn(), MACHINE);
        let by_name = machine.execution_of("manual-1")?;
        assert_eq!(
            by_name.arn(),
            "arn:aws:states:eu-west-1:123456789012:execution:sluice-run-jobs:manual-1"
        );
        assert_eq!(machine.execution_of(&by_name.arn())?, by_name);
        assert!(
            by_name
                .console_url()
                .starts_with("https://eu-west-1.console.aws.amazon.com/states/")
        );
        Ok(())
    }

    #[test]
    fn wrong_arns_and_names_are_user_errors() -> Outcome {
        for bad in [
            "sluice-run-jobs",
            "arn:aws:states:eu-west-1:123456789012:execution:sluice-run-jobs:x",
            "arn:aws:sqs:eu-west-1:123456789012:queue",
            "arn:aws:states::123456789012:stateMachine:x",
        ] {
            assert!(
                message(Arn::machine(bad)).contains("not a state machine ARN"),
                "{bad}"
            );
        }
        let machine = Arn::machine(MACHINE)?;
        let other = "arn:aws:states:eu-west-1:123456789012:execution:other:x";
        assert!(message(machine.execution_of(other)).contains("belongs to state machine `other`"));
        assert!(message(machine.execution_of("has space")).contains("not an execution name"));
        assert!(message(machine.execution_of(&"x".repeat(81))).contains("1 to 80"));
        Ok(())
    }
}
