//! `sluice state rewind JOB --to VALUE`: moves an incremental job's watermark back so
//! that the next run reads again what came after VALUE.
//!
//! Rows are never duplicated: every committed run that read past VALUE is taken out of
//! the table (its files removed), and since a run's files cannot be split, the watermark
//! goes back to the start of the earliest such run — which may be before VALUE; the
//! message says so. The new watermark and the runs to remove are recorded in one
//! compare-and-set, and the removal is finished by the next run if this one is cut short.

use super::{Context, recover};
use crate::error::{Error, Result};
use crate::job::{Job, Mode};
use crate::sink;
use crate::source::CursorValue;
use crate::summary::human_bytes;

/// What a rewind did (or, with `dry_run`, would do), line by line.
pub async fn rewind(job: &Job, ctx: &Context, to: &str, dry_run: bool) -> Result<Vec<String>> {
    if job.mode != Mode::Incremental {
        return Err(Error::user(format!(
            "job `{}` is a {} job: only incremental jobs have a watermark to rewind (a full or snapshot job rereads everything each run)",
            job.id,
            crate::job::mode_name(job.mode)
        )));
    }
    crate::table::open(&ctx.lake, job).check_rewind()?;
    if matches!(job.from, crate::job::From::Queue(_)) {
        return Err(Error::user(format!(
            "job `{}` reads a queue: what its runs consumed was deleted from the queue after each commit, so there is nothing to read again (the lake keeps every message once)",
            job.id
        )));
    }
    let owner = format!("rewind-{}", uuid::Uuid::new_v4().simple());
    super::holding_lease(job, ctx, &owner, rewind_leased(job, ctx, to, dry_run)).await
}

async fn rewind_leased(job: &Job, ctx: &Context, to: &str, dry_run: bool) -> Result<Vec<String>> {
    let mut state = ctx.store.load(&job.id).await?;
    let Some(current) = state.value.watermark.clone() else {
        return Err(Error::user(format!(
            "job `{}` has no watermark yet: there is nothing to rewind",
            job.id
        )));
    };
    let target = if to == "start" {
        None
    } else {
        Some(current.parse_like(to)?)
    };
    if target.as_ref().is_some_and(|t| *t >= current) {
        return Err(Error::user(format!(
            "the watermark of `{}` is {current}: a rewind moves it back, to a smaller value (or `start`)",
            job.id
        )));
    }
    let pending = state.value.pending.as_ref().map(|p| p.run_key.clone());
    let mut affected: Vec<sink::Manifest> = sink::manifests(&ctx.lake, &job.target.table)
        .await?
        .into_iter()
        .filter(|m| m.job == job.id && Some(&m.run_key) != pending.as_ref())
        .filter(|m| match (&m.window.hi, &target) {
            (Some(hi), Some(t)) => hi > t,
            _ => true,
        })
        .collect();
    affected.sort_by(|a, b| a.window.lo.cmp(&b.window.lo));
    // The earliest affected run's start (`None`: the beginning) bounds the new watermark.
    let new_watermark: Option<CursorValue> = affected
        .iter()
        .map(|m| m.window.lo.clone())
        .chain(std::iter::once(target.clone()))
        .min_by(|a, b| match (a, b) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, _) => std::cmp::Ordering::Less,
            (_, None) => std::cmp::Ordering::Greater,
            (Some(a), Some(b)) => a.cmp(b),
        })
        .flatten();
    let shown = |v: &Option<CursorValue>| {
        v.as_ref()
            .map_or("the start".to_string(), ToString::to_string)
    };
    let mut lines = vec![format!(
        "{}: watermark {current} → {}",
        job.id,
        shown(&new_watermark)
    )];
    if new_watermark != target {
        lines.push(format!(
            "  (not {to}: run files cannot be split, so the watermark goes back to the start of the earliest run that read past {to})"
        ));
    }
    for m in &affected {
        lines.push(format!(
            "  run {} read ({}, {}]: {} rows in {} files ({}) {}",
            m.run_id,
            shown(&m.window.lo),
            shown(&m.window.hi),
            m.rows,
            m.files.len(),
            human_bytes(m.bytes),
            if dry_run {
                "would be removed"
            } else {
                "removed"
            }
        ));
        lines.extend(m.files.iter().map(|f| format!("    {}", f.path)));
    }
    if dry_run {
        lines.push("dry run: nothing changed".into());
        return Ok(lines);
    }
    state.value.watermark = new_watermark;
    state.value.discard = affected.iter().map(|m| m.run_key.clone()).collect();
    state.version = ctx.store.save(&job.id, &state.value, state.version).await?;
    recover(job, ctx, &mut state).await?;
    lines.push("the next run reads these rows again".into());
    Ok(lines)
}
