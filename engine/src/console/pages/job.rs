//! A job's page: its health and why, the actions (for operators), its runs (a table and
//! a chart of rows and duration per run, refreshed while a run is in flight), its
//! checkpoint, contract and drift, quality results, a sample of its quarantine, its
//! lineage, and the job row as validated (secrets hidden). A row that does not compile is
//! shown with its problems; the rest of the console is unaffected.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::super::actions::LocalRun;
use super::super::auth::Viewer;
use super::super::health::Health;
use super::super::html::{age, badge, escape, path_segment, table};
use super::super::keys::Role;
use super::super::view::{self, Neighbours};
use crate::job::LoadedRow;
use crate::store::JobState;
use crate::summary::{RunSummary, human_bytes};

/// Everything the page shows.
pub struct JobPage<'a> {
    pub viewer: &'a Viewer,
    pub row: &'a LoadedRow,
    /// Newest first.
    pub runs: &'a [RunSummary],
    pub state: Option<&'a JobState>,
    pub lease: Option<String>,
    pub local: Option<LocalRun>,
    pub neighbours: Option<Neighbours>,
    /// The quarantine sample, as HTML, when the table has one.
    pub quarantine: Option<String>,
    pub health: Health,
    /// What an action just did.
    pub message: Option<String>,
    pub now: DateTime<Utc>,
}

pub fn render(p: &JobPage<'_>) -> String {
    let mut out = String::new();
    let id = p.row.id.as_deref().unwrap_or("(row without a job id)");
    if let Some(message) = &p.message {
        let _ = write!(
            out,
            "<p class=\"note\" role=\"status\">{}</p>",
            escape(message)
        );
    }
    let _ = write!(
        out,
        "<div class=\"summary\"><div>Health: {} {}</div><div>Kind: {}</div><div>Row: {}</div>",
        badge(p.health.colour.name(), p.health.colour.word()),
        escape(&p.health.reasons.join("; ")),
        escape(view::kind(p.row)),
        escape(&p.row.origin)
    );
    match &p.row.job {
        Ok(job) => {
            let _ = write!(
                out,
                "<div>Mode: {}</div><div>Table: {}</div><div>Freshness target: {}</div></div>",
                escape(crate::job::mode_name(job.mode)),
                escape(&job.target.table),
                job.freshness
                    .map_or("none".to_string(), |f| age(f.as_secs() as i64))
            );
        }
        Err(problems) => {
            out.push_str("</div><div class=\"problem\" role=\"alert\"><h2>This job row does not compile</h2><ul>");
            for problem in problems {
                let _ = write!(
                    out,
                    "<li><code>{}</code>: {}</li>",
                    escape(&problem.path),
                    escape(&problem.message)
                );
            }
            out.push_str("</ul><p>It cannot run until it is fixed (<code>sluice jobs validate</code> lists the same problems).</p></div>");
        }
    }
    if p.row.job.is_ok() && p.viewer.who.role >= Role::Operator {
        actions(&mut out, p.viewer, id);
    }
    out.push_str(&live(
        id,
        p.runs,
        p.lease.as_deref(),
        p.local.as_ref(),
        p.now,
    ));
    out.push_str(&chart(p.runs));
    if let Some(state) = p.state {
        checkpoint(&mut out, state);
    }
    drift_and_quality(&mut out, p.runs);
    if let Some(sample) = &p.quarantine {
        out.push_str("<h2>Quarantine (a sample)</h2>");
        out.push_str(sample);
    }
    if let Some(n) = &p.neighbours {
        lineage(&mut out, n);
    }
    let shown = serde_json::to_string_pretty(&view::redacted(&p.row.value)).unwrap_or_default();
    let _ = write!(
        out,
        "<h2>The job row as validated</h2><pre tabindex=\"0\" aria-label=\"The job row\">{}</pre>",
        escape(&shown)
    );
    out
}

fn actions(out: &mut String, viewer: &Viewer, id: &str) {
    let link = path_segment(id);
    let _ = write!(
        out,
        "<h2>Actions</h2><form class=\"inline\" method=\"post\" action=\"/jobs/{link}/run\">{csrf}<button type=\"submit\" id=\"run-now\">Run now</button></form> \
         <form class=\"inline\" method=\"get\" action=\"/jobs/{link}/rewind\"><label for=\"rewind-to\" class=\"inline\">Rewind the watermark to</label> \
         <input type=\"text\" id=\"rewind-to\" name=\"to\" placeholder=\"2024-05-01 00:00:00 or start\" required> <button type=\"submit\" id=\"rewind\">Rewind…</button></form>",
        csrf = viewer.csrf_field()
    );
}

/// The part of the page that changes while a run is in flight: who runs it, and the runs.
/// It polls itself every two seconds while a run is in flight, and stops after.
pub fn live(
    id: &str,
    runs: &[RunSummary],
    lease: Option<&str>,
    local: Option<&LocalRun>,
    now: DateTime<Utc>,
) -> String {
    let mut out = String::new();
    let in_flight = lease.is_some() || local.is_some_and(|r| r.outcome.is_none());
    if in_flight {
        let _ = write!(
            out,
            "<section id=\"live\" hx-get=\"/jobs/{}/live\" hx-trigger=\"every 2s\" hx-swap=\"outerHTML\" aria-live=\"polite\">",
            path_segment(id)
        );
    } else {
        out.push_str("<section id=\"live\" aria-live=\"polite\">");
    }
    if let Some(holder) = lease {
        let _ = write!(
            out,
            "<p>{} held by {}</p>",
            badge("running", "running"),
            escape(holder)
        );
    }
    if let Some(run) = local {
        let _ = write!(
            out,
            "<p>Started from the console by {} at {}: {}</p>",
            escape(&run.by),
            escape(&run.started.format("%H:%M:%S UTC").to_string()),
            escape(run.outcome.as_deref().unwrap_or("running…"))
        );
    }
    let rows = runs.iter().map(|r| {
        let status = crate::runs_table::status_name(r.status);
        vec![
            escape(&r.started_at.format("%Y-%m-%d %H:%M:%S").to_string()),
            format!("<code>{}</code>", escape(&r.run_id)),
            badge(status, &status.replace('_', " ")),
            escape(r.trigger.as_deref().unwrap_or("")),
            r.rows.to_string(),
            human_bytes(r.bytes),
            r.files.to_string(),
            format!("{:.1}s", r.seconds.total),
            escape(&window(r)),
            escape(r.error.as_deref().unwrap_or("")),
        ]
    });
    out.push_str(&table(
        &format!(
            "Runs (newest first, {} ago at the latest)",
            runs.first()
                .map_or("—".into(), |r| age((now - r.started_at).num_seconds()))
        ),
        &[
            "Started (UTC)",
            "Run",
            "Status",
            "Trigger",
            "Rows",
            "Bytes",
            "Files",
            "Duration",
            "Window",
            "Error",
        ],
        rows,
    ));
    out.push_str("</section>");
    out
}

fn window(run: &RunSummary) -> String {
    match (&run.window.lo, &run.window.hi) {
        (None, None) => String::new(),
        (lo, Some(hi)) => format!(
            "({}, {hi}]",
            lo.as_ref().map_or("start".to_string(), ToString::to_string)
        ),
        (Some(lo), None) => format!("after {lo}"),
    }
}

/// Rows (bars) and duration (a line) of the last runs, oldest left: an SVG drawn here, no
/// script; its numbers are in the table above it.
fn chart(runs: &[RunSummary]) -> String {
    let shown: Vec<&RunSummary> = runs.iter().take(50).collect();
    if shown.is_empty() {
        return String::new();
    }
    let (w, h) = (900.0_f64, 160.0_f64);
    let max_rows = shown.iter().map(|r| r.rows).max().unwrap_or(0).max(1) as f64;
    let max_secs = shown
        .iter()
        .map(|r| r.seconds.total)
        .fold(0.0_f64, f64::max)
        .max(0.001);
    let step = w / shown.len() as f64;
    let mut bars = String::new();
    let mut points = Vec::new();
    for (i, run) in shown.iter().rev().enumerate() {
        let x = i as f64 * step;
        let bh = run.rows as f64 / max_rows * (h - 20.0);
        let _ = write!(
            bars,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#5b8def\"><title>{} rows</title></rect>",
            h - bh,
            (step * 0.8).max(1.0),
            run.rows
        );
        points.push(format!(
            "{:.1},{:.1}",
            x + step * 0.4,
            h - run.seconds.total / max_secs * (h - 20.0)
        ));
    }
    format!(
        "<h2>Rows and duration per run</h2><svg class=\"chart\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Rows (bars, up to {}) and duration (line, up to {:.1}s) of the last {} runs, oldest first\">{bars}<polyline points=\"{}\" fill=\"none\" stroke=\"#b3261e\" stroke-width=\"2\"/></svg>",
        max_rows as u64,
        max_secs,
        shown.len(),
        points.join(" ")
    )
}

fn checkpoint(out: &mut String, state: &JobState) {
    out.push_str("<h2>Checkpoint</h2><ul>");
    match &state.watermark {
        Some(w) => {
            let _ = write!(
                out,
                "<li>Watermark: <code>{}</code></li>",
                escape(&w.to_string())
            );
        }
        None => out.push_str("<li>No watermark</li>"),
    }
    if let Some(feed) = &state.feed {
        let _ = write!(
            out,
            "<li>Feed: {} committed runs remembered</li>",
            feed.runs.len()
        );
    }
    if let Some(c) = &state.committed {
        let _ = write!(
            out,
            "<li>Last commit: run <code>{}</code>, {} rows in {} files ({}), at {}</li>",
            escape(&c.run_id),
            c.rows,
            c.files,
            human_bytes(c.bytes),
            escape(&c.finished_at.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        );
    }
    if let Some(p) = &state.pending {
        let _ = write!(
            out,
            "<li>An attempt in flight or failed: run <code>{}</code> (its files are removed by the next run)</li>",
            escape(&p.run_id)
        );
    }
    out.push_str("</ul>");
    if let Some(contract) = &state.contract {
        out.push_str(&table(
            "Contract columns",
            &["Column", "Type", "Nullable"],
            contract.columns.iter().map(|c| {
                vec![
                    escape(&c.name),
                    escape(&c.data_type),
                    if c.nullable.unwrap_or(true) {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_string(),
                ]
            }),
        ));
    }
}

fn drift_and_quality(out: &mut String, runs: &[RunSummary]) {
    let drift: Vec<Vec<String>> = runs
        .iter()
        .flat_map(|r| {
            r.schema_changes
                .iter()
                .map(move |d| vec![escape(&r.run_id), escape(&d.to_string()), escape(&d.action)])
        })
        .collect();
    if !drift.is_empty() {
        out.push_str(&table(
            "Schema drift",
            &["Run", "Change", "What the run did"],
            drift,
        ));
    }
    if let Some(last) = runs.first().filter(|r| !r.quality.is_empty()) {
        out.push_str(&table(
            "Quality (last run)",
            &["Rule", "Result", "Failed rows", "Detail"],
            last.quality.iter().map(|q| {
                vec![
                    escape(&q.rule),
                    if q.passed {
                        badge("green", "passed")
                    } else {
                        badge("red", "failed")
                    },
                    q.failed_rows.to_string(),
                    escape(&q.detail),
                ]
            }),
        ));
    }
}

fn lineage(out: &mut String, n: &Neighbours) {
    let jobs = |ids: &[String]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.iter()
                .map(|id| format!("<a href=\"/jobs/{}\">{}</a>", path_segment(id), escape(id)))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = write!(
        out,
        "<h2>Lineage</h2><ul><li>Reads <code>{}</code> (upstream jobs: {})</li><li>Writes {} (downstream jobs: {})</li></ul>",
        escape(&n.reads.label()),
        jobs(&n.upstream),
        n.writes
            .iter()
            .map(|d| format!("<code>{}</code>", escape(&d.label())))
            .collect::<Vec<_>>()
            .join(", "),
        jobs(&n.downstream)
    );
}

/// The rewind's confirmation: what the dry run says will happen, and the button that
/// does it.
pub fn rewind_confirm(viewer: &Viewer, id: &str, to: &str, lines: &[String]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<p>Rewinding <strong>{}</strong> to <code>{}</code> will do this (nothing has changed yet):</p><ul>",
        escape(id),
        escape(to)
    );
    for line in lines {
        let _ = write!(out, "<li>{}</li>", escape(line));
    }
    let _ = write!(
        out,
        "</ul><p>The next run then reads again everything after the new watermark.</p>\
         <form method=\"post\" action=\"/jobs/{link}/rewind\">{csrf}<input type=\"hidden\" name=\"to\" value=\"{to}\">\
         <input type=\"hidden\" name=\"confirm\" value=\"yes\"><button type=\"submit\" class=\"danger\" id=\"confirm-rewind\">Yes, rewind and reload</button> \
         <a href=\"/jobs/{link}\">Cancel</a></form>",
        link = path_segment(id),
        csrf = viewer.csrf_field(),
        to = escape(to)
    );
    out
}
