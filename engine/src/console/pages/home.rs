//! The home page: every job with its kind, last outcome, rows and bytes of its last run,
//! the age of its data against its freshness target, its next scheduled start, the lease
//! holder while it runs, and its health colour (in words too).

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::super::html::{age, badge, escape, path_segment};
use super::super::view::JobLine;
use crate::summary::human_bytes;

/// The job table; it polls itself (`/fragment/jobs`) every few seconds while a run is in
/// flight, and is still the whole answer with JavaScript off.
pub fn jobs_table(lines: &[JobLine], now: DateTime<Utc>, in_flight: bool) -> String {
    let mut out = String::with_capacity(lines.len() * 400 + 512);
    if in_flight {
        out.push_str(
            "<section id=\"jobs\" hx-get=\"/fragment/jobs\" hx-trigger=\"every 2s\" hx-swap=\"outerHTML\" aria-live=\"polite\">",
        );
    } else {
        out.push_str("<section id=\"jobs\" aria-live=\"polite\">");
    }
    let counts = |c: &str| lines.iter().filter(|l| l.health.colour.name() == c).count();
    let _ = write!(
        out,
        "<div class=\"summary\"><div>{} jobs</div><div>{} healthy</div><div>{} warning</div><div>{} failing</div><div>{} idle</div></div>",
        lines.len(),
        counts("green"),
        counts("amber"),
        counts("red"),
        counts("grey")
    );
    out.push_str(
        "<table><caption>Jobs</caption><thead><tr><th scope=\"col\">Job</th><th scope=\"col\">Health</th><th scope=\"col\">Kind</th><th scope=\"col\">Last run</th><th scope=\"col\">Rows</th><th scope=\"col\">Bytes</th><th scope=\"col\">Data age / target</th><th scope=\"col\">Next start</th><th scope=\"col\">Running</th></tr></thead><tbody>",
    );
    for line in lines {
        let (status, when, rows, bytes) = match &line.last {
            Some(run) => {
                let status = crate::runs_table::status_name(run.status);
                (
                    badge(status, &status.replace('_', " ")),
                    format!(" {} ago", age((now - run.started_at).num_seconds())),
                    run.rows.to_string(),
                    human_bytes(run.bytes),
                )
            }
            None => (
                String::from("never ran"),
                String::new(),
                "—".into(),
                "—".into(),
            ),
        };
        let freshness = match (line.data_age, line.freshness) {
            (Some(a), Some(t)) => format!("{} / {}", age(a), age(t.as_secs() as i64)),
            (Some(a), None) => age(a),
            (None, Some(t)) => format!("— / {}", age(t.as_secs() as i64)),
            (None, None) => "—".into(),
        };
        let next = match &line.next {
            Some((_, Some(at))) => at.format("%m-%d %H:%M").to_string(),
            Some((expr, None)) => escape(expr),
            None if !line.enabled => "disabled".into(),
            None => "—".into(),
        };
        let running = match &line.lease {
            Some(holder) => format!("{} {}", badge("running", "running"), escape(holder)),
            None => String::new(),
        };
        let _ = write!(
            out,
            "<tr id=\"job-{link}\"><th><a href=\"/jobs/{link}\">{id}</a></th><td>{health}{reasons}</td><td>{kind}{table}</td><td>{status}{when}</td><td>{rows}</td><td>{bytes}</td><td>{freshness}</td><td>{next}</td><td>{running}</td></tr>",
            id = escape(&line.id),
            link = path_segment(&line.id),
            health = badge(line.health.colour.name(), line.health.colour.word()),
            // Why it is not healthy, said in words (the colour is never alone).
            reasons = if line.health.colour == super::super::health::Colour::Green {
                String::new()
            } else {
                format!(
                    " <small>{}</small>",
                    escape(&line.health.reasons.join("; "))
                )
            },
            kind = escape(line.kind),
            table = line
                .table
                .as_deref()
                .map(|t| format!(" → {}", escape(t)))
                .unwrap_or_default(),
        );
    }
    out.push_str("</tbody></table></section>");
    out
}
