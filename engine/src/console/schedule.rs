//! The next scheduled start of a job, from the EventBridge Scheduler expressions the
//! platform runs them on (`--schedule 'cron(0 * * * ? *)'` for every job, `--schedule
//! 'gps_positions=rate(5 minutes)'` for one): `rate(N unit)` and `cron(minutes hours
//! day-of-month month day-of-week year)` with `*`, `?`, lists, ranges, steps and names.
//! Times are UTC. `L`, `W` and `#` are not read: the page shows no next start for them.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Timelike, Utc};

/// A schedule expression, read.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Every this many seconds, from the time the schedule was made (unknown here: the
    /// next start is within one period).
    Rate(i64),
    Cron(Box<Cron>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: Vec<bool>,
    months: Vec<bool>,
    /// Sunday = index 0 (cron's 1).
    weekdays: Vec<bool>,
    /// `None`: every year.
    years: Option<Vec<i32>>,
}

/// The jobs' schedules: one for every job and one per named job.
#[derive(Debug, Clone, Default)]
pub struct Schedules {
    default: Option<(String, Schedule)>,
    per_job: Vec<(String, String, Schedule)>,
}

impl Schedules {
    /// Reads `--schedule` values: `EXPR` or `JOB=EXPR`.
    pub fn parse(values: &[String]) -> Result<Self, String> {
        let mut out = Self::default();
        for value in values {
            let (job, expr) = match value.split_once('=') {
                Some((job, expr)) if !job.contains('(') => (Some(job.trim()), expr.trim()),
                _ => (None, value.trim()),
            };
            let schedule = Schedule::parse(expr)?;
            match job {
                Some(job) => out
                    .per_job
                    .push((job.to_string(), expr.to_string(), schedule)),
                None => out.default = Some((expr.to_string(), schedule)),
            }
        }
        Ok(out)
    }

    /// The job's schedule expression and its next start after `now`.
    pub fn next(&self, job: &str, now: DateTime<Utc>) -> Option<(String, Option<DateTime<Utc>>)> {
        let (expr, schedule) = self
            .per_job
            .iter()
            .find(|(j, _, _)| j == job)
            .map(|(_, e, s)| (e, s))
            .or(self.default.as_ref().map(|(e, s)| (e, s)))?;
        Some((expr.clone(), schedule.next_after(now)))
    }
}

impl Schedule {
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("rate(").and_then(|t| t.strip_suffix(')')) {
            let (n, unit) = inner
                .trim()
                .split_once(' ')
                .ok_or_else(|| format!("{text}: give rate(N minutes|hours|days)"))?;
            let n: i64 = n
                .parse()
                .map_err(|_| format!("{text}: {n} is not a whole number"))?;
            let seconds = match unit.trim().trim_end_matches('s') {
                "minute" => 60,
                "hour" => 3600,
                "day" => 86_400,
                other => return Err(format!("{text}: unknown unit {other}")),
            };
            return Ok(Schedule::Rate(n.max(1) * seconds));
        }
        let inner = text
            .strip_prefix("cron(")
            .and_then(|t| t.strip_suffix(')'))
            .ok_or_else(|| format!("{text}: give cron(...) or rate(...)"))?;
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [minutes, hours, days, months, weekdays, years] = fields[..] else {
            return Err(format!("{text}: a cron expression has six fields"));
        };
        const MONTHS: [&str; 12] = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
        ];
        const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
        let field = |f: &str, lo: u32, hi: u32, names: &[&str]| {
            set(f, lo, hi, names).ok_or_else(|| format!("{text}: cannot read `{f}`"))
        };
        let years = if years == "*" || years == "?" {
            None
        } else {
            let marks = field(years, 1970, 2199, &[])?;
            Some(
                marks
                    .iter()
                    .enumerate()
                    .filter(|(_, m)| **m)
                    .map(|(i, _)| 1970 + i as i32)
                    .collect(),
            )
        };
        Ok(Schedule::Cron(Box::new(Cron {
            minutes: field(minutes, 0, 59, &[])?,
            hours: field(hours, 0, 23, &[])?,
            days: field(days, 1, 31, &[])?,
            months: field(months, 1, 12, &MONTHS)?,
            weekdays: field(weekdays, 1, 7, &DAYS)?,
            years,
        })))
    }

    /// The first start after `now` (within five years), if the expression has one.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Rate(seconds) => Some(now + Duration::seconds(*seconds)),
            Schedule::Cron(cron) => cron.next_after(now),
        }
    }
}

impl Cron {
    fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = now + Duration::minutes(1);
        let mut day = start.date_naive();
        for _ in 0..(366 * 5) {
            if self.day_matches(day) {
                let from = if day == start.date_naive() {
                    (start.hour(), start.minute())
                } else {
                    (0, 0)
                };
                for hour in from.0..24 {
                    if !self.hours[hour as usize] {
                        continue;
                    }
                    let first = if hour == from.0 { from.1 } else { 0 };
                    if let Some(minute) = (first..60).find(|m| self.minutes[*m as usize]) {
                        let at = day.and_hms_opt(hour, minute, 0)?;
                        return Some(Utc.from_utc_datetime(&at));
                    }
                }
            }
            day = day.succ_opt()?;
        }
        None
    }

    fn day_matches(&self, day: NaiveDate) -> bool {
        self.years.as_ref().is_none_or(|y| y.contains(&day.year()))
            && self.months[day.month0() as usize]
            && self.days[day.day0() as usize]
            && self.weekdays[day.weekday().num_days_from_sunday() as usize]
    }
}

/// A cron field as marks from `lo` to `hi` (index 0 is `lo`); `None` when it cannot be
/// read.
fn set(field: &str, lo: u32, hi: u32, names: &[&str]) -> Option<Vec<bool>> {
    let mut marks = vec![false; (hi - lo + 1) as usize];
    let value = |text: &str| -> Option<u32> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
            return Some(lo + i as u32);
        }
        text.parse().ok().filter(|v| (lo..=hi).contains(v))
    };
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().ok().filter(|s| *s > 0)?),
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" | "?" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (value(a)?, value(b)?),
                None if part.contains('/') => (value(r)?, hi),
                None => {
                    let v = value(r)?;
                    (v, v)
                }
            },
        };
        if a > b {
            return None;
        }
        let mut v = a;
        while v <= b {
            marks[(v - lo) as usize] = true;
            v += step;
        }
    }
    Some(marks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default()
    }

    #[test]
    fn cron_expressions_give_the_next_start() -> Result<(), String> {
        let hourly = Schedule::parse("cron(0 * * * ? *)")?;
        assert_eq!(
            hourly.next_after(at("2024-05-01T10:20:00Z")),
            Some(at("2024-05-01T11:00:00Z"))
        );
        let nightly = Schedule::parse("cron(30 2 * * ? *)")?;
        assert_eq!(
            nightly.next_after(at("2024-05-01T10:20:00Z")),
            Some(at("2024-05-02T02:30:00Z"))
        );
        let sundays = Schedule::parse("cron(30 3 ? * SUN *)")?;
        // 2024-05-01 is a Wednesday.
        assert_eq!(
            sundays.next_after(at("2024-05-01T10:20:00Z")),
            Some(at("2024-05-05T03:30:00Z"))
        );
        let quarter = Schedule::parse("cron(0/15 8-17 ? * MON-FRI *)")?;
        assert_eq!(
            quarter.next_after(at("2024-05-03T17:50:00Z")),
            Some(at("2024-05-06T08:00:00Z"))
        );
        assert!(Schedule::parse("cron(0 12 L * ? *)").is_err());
        assert!(Schedule::parse("cron(0 12 * *)").is_err());
        Ok(())
    }

    #[test]
    fn rates_and_per_job_schedules() -> Result<(), String> {
        let s = Schedules::parse(&[
            "rate(1 hour)".into(),
            "gps_positions=rate(5 minutes)".into(),
        ])?;
        let now = at("2024-05-01T10:00:00Z");
        assert_eq!(
            s.next("orders", now).and_then(|n| n.1),
            Some(at("2024-05-01T11:00:00Z"))
        );
        assert_eq!(
            s.next("gps_positions", now).map(|n| n.0),
            Some("rate(5 minutes)".into())
        );
        assert!(Schedules::default().next("orders", now).is_none());
        Ok(())
    }
}
