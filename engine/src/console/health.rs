//! One health colour per job, from what the console knows of it: whether its row
//! compiles, its last outcome, the age of its data against its `freshness` target, the
//! quality rules its last run failed and the rows it quarantined. Pure: the same facts
//! always give the same colour, with the reasons that made it.

use std::time::Duration;

use crate::summary::{RunStatus, RunSummary};

/// From best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Colour {
    /// Disabled, or never run: nothing to judge.
    Grey,
    Green,
    Amber,
    Red,
}

impl Colour {
    /// The class name and the word the page shows.
    pub fn name(self) -> &'static str {
        match self {
            Colour::Grey => "grey",
            Colour::Green => "green",
            Colour::Amber => "amber",
            Colour::Red => "red",
        }
    }

    pub fn word(self) -> &'static str {
        match self {
            Colour::Grey => "idle",
            Colour::Green => "healthy",
            Colour::Amber => "warning",
            Colour::Red => "failing",
        }
    }
}

/// A job's health and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub colour: Colour,
    pub reasons: Vec<String>,
}

/// What health is judged from.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The row compiles.
    pub valid: bool,
    pub enabled: bool,
    /// The newest run, if any.
    pub last: Option<&'a RunSummary>,
    /// Seconds since the newest run that did not fail ended (`None`: none known).
    pub data_age: Option<i64>,
    /// The row's `freshness` target.
    pub freshness: Option<Duration>,
}

/// The job's health: the worst colour any fact gives, with each fact's reason.
pub fn judge(facts: Facts<'_>) -> Health {
    let mut health = Health {
        colour: Colour::Green,
        reasons: Vec::new(),
    };
    if !facts.valid {
        health.worse(
            Colour::Red,
            "the job row does not compile: it cannot run".into(),
        );
        return health;
    }
    let Some(last) = facts.last else {
        return Health {
            colour: Colour::Grey,
            reasons: vec![if facts.enabled {
                "never ran".into()
            } else {
                "disabled, never ran".into()
            }],
        };
    };
    if last.status == RunStatus::Failed {
        health.worse(
            Colour::Red,
            format!(
                "the last run failed ({})",
                last.error_class.map_or("unknown".into(), |c| c.to_string())
            ),
        );
    }
    if let Some(target) = facts.freshness {
        let target = i64::try_from(target.as_secs()).unwrap_or(i64::MAX);
        match facts.data_age {
            None => health.worse(
                Colour::Red,
                "no successful run known: the data's age is unknown".into(),
            ),
            Some(age) if age > target.saturating_mul(2) => health.worse(
                Colour::Red,
                format!(
                    "data is {} old, more than twice its freshness target of {}",
                    super::html::age(age),
                    super::html::age(target)
                ),
            ),
            Some(age) if age > target => health.worse(
                Colour::Amber,
                format!(
                    "data is {} old, past its freshness target of {}",
                    super::html::age(age),
                    super::html::age(target)
                ),
            ),
            Some(_) => {}
        }
    }
    let failed: Vec<&str> = last
        .quality
        .iter()
        .filter(|r| !r.passed)
        .map(|r| r.rule.as_str())
        .collect();
    if !failed.is_empty() {
        health.worse(
            Colour::Amber,
            format!(
                "quality rules failed in the last run: {}",
                failed.join(", ")
            ),
        );
    }
    if last.quarantined > 0 {
        health.worse(
            Colour::Amber,
            format!("the last run quarantined {} rows", last.quarantined),
        );
    }
    if !facts.enabled && health.colour == Colour::Green {
        return Health {
            colour: Colour::Grey,
            reasons: vec!["disabled".into()],
        };
    }
    health
}

impl Health {
    /// Adds a reason, and makes the colour at least `colour`.
    fn worse(&mut self, colour: Colour, reason: String) {
        self.colour = self.colour.max(colour);
        self.reasons.push(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(status: RunStatus) -> RunSummary {
        let mut r = RunSummary::named("j", "full", "t", "r1");
        r.status = status;
        r
    }

    fn facts(last: Option<&RunSummary>, age: Option<i64>, hours: Option<u64>) -> Facts<'_> {
        Facts {
            valid: true,
            enabled: true,
            last,
            data_age: age,
            freshness: hours.map(|h| Duration::from_secs(h * 3600)),
        }
    }

    #[test]
    fn freshness_turns_amber_then_red() {
        let ok = run(RunStatus::Committed);
        assert_eq!(
            judge(facts(Some(&ok), Some(3600), Some(6))).colour,
            Colour::Green
        );
        let amber = judge(facts(Some(&ok), Some(7 * 3600), Some(6)));
        assert_eq!(amber.colour, Colour::Amber);
        assert!(amber.reasons[0].contains("past its freshness target of 6h 0m"));
        assert_eq!(
            judge(facts(Some(&ok), Some(13 * 3600), Some(6))).colour,
            Colour::Red
        );
        // Without a target, age alone is no warning.
        assert_eq!(
            judge(facts(Some(&ok), Some(1_000_000), None)).colour,
            Colour::Green
        );
    }

    #[test]
    fn the_worst_fact_decides() {
        let failed = run(RunStatus::Failed);
        let h = judge(facts(Some(&failed), Some(60), Some(6)));
        assert_eq!(h.colour, Colour::Red);
        let mut quarantined = run(RunStatus::Committed);
        quarantined.quarantined = 3;
        let h = judge(facts(Some(&quarantined), Some(60), Some(6)));
        assert_eq!(h.colour, Colour::Amber);
        assert!(h.reasons.iter().any(|r| r.contains("quarantined 3 rows")));
        assert_eq!(judge(facts(None, None, Some(6))).colour, Colour::Grey);
        let broken = Facts {
            valid: false,
            ..facts(None, None, None)
        };
        assert_eq!(judge(broken).colour, Colour::Red);
        let disabled = Facts {
            enabled: false,
            ..facts(Some(&quarantined), Some(60), None)
        };
        assert_eq!(judge(disabled).colour, Colour::Amber);
        let ok = run(RunStatus::UpToDate);
        let idle = Facts {
            enabled: false,
            ..facts(Some(&ok), Some(60), None)
        };
        assert_eq!(judge(idle).colour, Colour::Grey);
    }
}
