//! API feeds: a partner's REST ([`rest`]) or SOAP ([`soap`]) API, read page by page.
//!
//! An incremental job's window is `(lo, hi]` over a record field, as a table's is over
//! a column: `lo` is the committed watermark (or `window.start`), `hi` is fixed when the
//! run starts (now − `lag`, to the second) for a timestamp or date cursor, and open for
//! an id. The API is asked for the window (its `since` / `until` parameters), and a
//! record outside it is dropped as it arrives, so that a record is in exactly one
//! window. The checkpoint is `hi` (an id cursor's: the greatest id read), committed with
//! the files; a run that fails before its commit leaves it where it was, and its files
//! are removed, so a rerun asks again and lands each record once.
//!
//! A partner may publish a record later than `lag` after its timestamp: with
//! `window.lookback` a run asks for `(lo − lookback, hi]` and keeps what it gets in that
//! range, and the record key (`source.dedup`) drops the records an earlier run committed,
//! so the late ones land, once. The checkpoint is still `hi`.
//!
//! One task walks the pages (the paginator needs each page's body) and hands them to
//! the decoding loop, at most two ahead, so fetching and decoding overlap.

mod answer;
mod client;
mod rest;
mod soap;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use datafusion::arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::records::{self, ExactNumbers, RecordBuilder, Row};
use super::{
    ApiReport, Checkpoint, Consumed, CursorValue, Extract, Poison, RunContext, Source,
    SourceColumn, Window,
};
use crate::error::{Error, Result};
use crate::job::http::{ApiWindow, BEFORE, BoundFormat, Call, HttpFeed, SINCE, UNTIL};
use crate::job::{Address, Job};
use crate::lake_type::LakeType;

pub use client::Client;

/// Connects the job's API client.
pub async fn open(
    job: &Job,
    feed: &HttpFeed,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Box<dyn Source>> {
    let Address::Http(connection) = &job.connection.address else {
        return Err(Error::internal("an API feed without an http connection"));
    };
    let client = Client::open(&job.connection.name, connection, env).await?;
    Ok(Box::new(ApiSource {
        client,
        feed: feed.clone(),
        batch_rows: job.batch_rows,
        lag: job.lag,
    }))
}

struct ApiSource {
    client: Arc<Client>,
    feed: HttpFeed,
    batch_rows: usize,
    lag: Option<std::time::Duration>,
}

#[async_trait]
impl Source for ApiSource {
    async fn columns(&mut self) -> Result<Vec<SourceColumn>> {
        Ok(records::columns(&self.feed.records))
    }

    async fn plan(
        &mut self,
        _: &[SourceColumn],
        committed: &Checkpoint,
        _: &dyn super::Ledger,
        now: DateTime<Utc>,
    ) -> Result<Option<Window>> {
        let Some(window) = &self.feed.window else {
            return Ok(Some(Window::everything()));
        };
        let lo = match &committed.watermark {
            Some(w) => Some(w.clone()),
            None => window
                .start
                .as_deref()
                .map(|s| parse_bound(s, window.lake))
                .transpose()?,
        };
        let hi = match window.lake {
            LakeType::Date | LakeType::Timestamp | LakeType::TimestampUtc => {
                let lag = chrono::Duration::from_std(self.lag.unwrap_or_default())
                    .map_err(|_| Error::user("source.lag is too large"))?;
                let at = now - lag;
                // Whole seconds: what every bound format can say exactly.
                let at = DateTime::<Utc>::from_timestamp(at.timestamp(), 0).unwrap_or(at);
                Some(match window.lake {
                    LakeType::Date => CursorValue::Date(at.date_naive()),
                    LakeType::Timestamp => CursorValue::Timestamp(at.naive_utc()),
                    _ => CursorValue::TimestampUtc(at),
                })
            }
            _ => None,
        };
        if let (Some(lo), Some(hi)) = (&lo, &hi) {
            if std::mem::discriminant(lo) != std::mem::discriminant(hi) {
                return Err(Error::user(format!(
                    "the stored watermark {lo} does not match the type of cursor `{}` ({}); the record field changed type — rewind the job's state",
                    window.cursor,
                    window.lake.athena()
                )));
            }
            if hi <= lo {
                return Ok(None);
            }
        }
        Ok(Some(Window {
            cursor: Some(window.cursor.clone()),
            lo,
            hi,
        }))
    }

    fn extract(self: Box<Self>, _: Vec<SourceColumn>, window: Window, run: RunContext) -> Extract {
        super::produced("the API", move |tx| consume(*self, window, run, tx))
    }
}

/// One page of records, handed from the walker to the decoder.
pub struct Page {
    /// The page's body (REST) or its records (SOAP, as an array).
    value: Value,
    /// The texts of its numbers a `Value` does not hold exactly.
    exact: ExactNumbers,
    /// Where the records are in `value`.
    records: crate::jsonpath::Path,
    /// The parent record's fields, for a child request.
    parent: Option<Arc<Map<String, Value>>>,
    /// The request, for the quarantine table's keys (no secret in it).
    origin: String,
}

/// What the walker hands on.
pub type Pages = mpsc::Sender<Result<Page>>;

/// The values of a request's placeholders.
pub type Values = BTreeMap<String, String>;

async fn consume(
    source: ApiSource,
    window: Window,
    run: RunContext,
    tx: mpsc::Sender<Result<RecordBatch>>,
) -> Result<Consumed> {
    let ApiSource {
        client,
        feed,
        batch_rows,
        ..
    } = source;
    // What is asked for and kept: the run's window, reaching back by the lookback.
    let read = reread(feed.window.as_ref(), &window);
    if read.lo != window.lo {
        tracing::info!(
            from = %read.lo.as_ref().map(ToString::to_string).unwrap_or_default(),
            "reading again the part of the window the lookback covers"
        );
    }
    let (pages_tx, mut pages) = mpsc::channel::<Result<Page>>(2);
    let walker = {
        let client = client.clone();
        let feed = feed.clone();
        let read = read.clone();
        tokio::spawn(async move {
            let outcome = walk(&client, &feed, &read, &pages_tx).await;
            if let Err(e) = outcome {
                let _ = pages_tx.send(Err(client.redact(e))).await;
            }
        })
    };
    let size = super::BatchSize {
        rows: batch_rows,
        bytes: run.batches.per_batch(1),
    };
    let mut decoder = Decoder::new(&feed, &read, size);
    let mut first = true;
    while let Some(page) = pages.recv().await {
        let page = page?;
        if std::mem::take(&mut first) {
            crate::failpoint::reached("received").await;
        }
        for batch in decoder.page(&page)? {
            if tx.send(Ok(batch)).await.is_err() {
                return Err(Error::internal("the run stopped reading the API's batches"));
            }
        }
    }
    walker
        .await
        .map_err(|e| Error::internal(format!("the API walker failed: {e}")))?;
    let last = decoder.builder.finish()?;
    if last.num_rows() > 0 && tx.send(Ok(last)).await.is_err() {
        return Err(Error::internal("the run stopped reading the API's batches"));
    }
    let mut report = client.report();
    report.records = decoder.report.records;
    report.outside_window = decoder.report.outside_window;
    report.quarantined = decoder.poison.len() as u64;
    tracing::info!(
        requests = report.requests,
        retries = report.retries,
        bytes = report.bytes,
        records = report.records,
        "read the API"
    );
    let watermark = match (&feed.window, &window.hi) {
        (None, _) => run.committed.watermark,
        (Some(_), Some(hi)) => Some(hi.clone()),
        // An id cursor: the greatest read, or where it was.
        (Some(_), None) => decoder.greatest.or(window.lo.clone()),
    };
    let mut consumed = Consumed::checkpoint(Checkpoint {
        watermark,
        feed: None,
        changes: None,
    });
    consumed.poison = decoder.poison;
    consumed.report = super::Report::Api(report);
    Ok(consumed)
}

/// Walks every page the job's requests return, in order.
async fn walk(client: &Arc<Client>, feed: &HttpFeed, window: &Window, pages: &Pages) -> Result<()> {
    for (lo, hi) in steps(feed.window.as_ref(), window) {
        let mut values = Values::new();
        let mut params = Vec::new();
        if let Some(w) = &feed.window {
            let bounds = [
                (
                    SINCE,
                    lo.as_ref().map(|b| format_bound(b, &w.format)),
                    &w.since,
                ),
                (
                    UNTIL,
                    hi.as_ref().map(|b| format_bound(b, &w.format)),
                    &w.until,
                ),
                (
                    BEFORE,
                    hi.as_ref().map(|b| format_after(b, &w.format)),
                    &w.before,
                ),
            ];
            for (name, text, param) in bounds {
                if let (Some(param), Some(text)) = (param, &text) {
                    params.push((param.clone(), text.clone()));
                }
                values.insert(name.to_string(), text.unwrap_or_default());
            }
        }
        match &feed.call {
            Call::Rest(request) => match &feed.parent {
                None => rest::walk(client, request, &values, &params, None, pages).await?,
                Some(parent) => {
                    rest::children(client, parent, request, &values, &params, pages).await?
                }
            },
            Call::Soap(operation) => soap::walk(client, operation, &values, pages).await?,
        }
    }
    Ok(())
}

/// The window a run reads: `(lo, hi]`, its lower bound `lookback` earlier when the job
/// re-reads for late records (a timestamp or date cursor with a watermark).
fn reread(api: Option<&ApiWindow>, window: &Window) -> Window {
    let mut read = window.clone();
    if let (Some(lookback), Some(lo)) = (api.and_then(|w| w.lookback), window.lo.as_ref())
        && let Ok(lookback) = chrono::Duration::from_std(lookback)
        && let Some(at) = instant(lo).and_then(|at| at.checked_sub_signed(lookback))
    {
        read.lo = Some(like(lo, at));
    }
    read
}

/// The window's steps: `(lo, hi]` cut into `window.step` lengths when both are known.
fn steps(
    api: Option<&ApiWindow>,
    window: &Window,
) -> Vec<(Option<CursorValue>, Option<CursorValue>)> {
    let whole = vec![(window.lo.clone(), window.hi.clone())];
    let (Some(step), Some(lo), Some(hi)) = (
        api.and_then(|w| w.step),
        window.lo.as_ref(),
        window.hi.as_ref(),
    ) else {
        return whole;
    };
    let Ok(step) = chrono::Duration::from_std(step) else {
        return whole;
    };
    let (Some(mut at), Some(end)) = (instant(lo), instant(hi)) else {
        return whole;
    };
    let mut out = Vec::new();
    while at < end {
        let next = (at + step).min(end);
        out.push((Some(like(lo, at)), Some(like(lo, next))));
        at = next;
    }
    out
}

fn instant(v: &CursorValue) -> Option<DateTime<Utc>> {
    match v {
        CursorValue::TimestampUtc(t) => Some(*t),
        CursorValue::Timestamp(t) => Some(t.and_utc()),
        CursorValue::Date(d) => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        _ => None,
    }
}

fn like(template: &CursorValue, at: DateTime<Utc>) -> CursorValue {
    match template {
        CursorValue::Timestamp(_) => CursorValue::Timestamp(at.naive_utc()),
        CursorValue::Date(_) => CursorValue::Date(at.date_naive()),
        _ => CursorValue::TimestampUtc(at),
    }
}

/// A bound as the API is told it.
fn format_bound(value: &CursorValue, format: &BoundFormat) -> String {
    let Some(at) = instant(value) else {
        return match value {
            CursorValue::Text(t) => t.clone(),
            other => other.to_string(),
        };
    };
    match format {
        BoundFormat::Rfc3339 => match value {
            CursorValue::Date(d) => d.to_string(),
            _ => at.to_rfc3339_opts(SecondsFormat::Secs, true),
        },
        BoundFormat::Unix => at.timestamp().to_string(),
        BoundFormat::UnixMs => at.timestamp_millis().to_string(),
        BoundFormat::Date => at.format("%Y-%m-%d").to_string(),
        BoundFormat::Pattern(p) => at.format(p).to_string(),
    }
}

/// An upper bound written as an exclusive one (`{before}`): the first value after it
/// that the format writes differently — `hi` + 1 ms in `unix_ms`, + 1 s in `rfc3339` or
/// `unix`, the next day in `date`, the next hour of `%Y%m%d%H`. An API that returns the
/// records before it returns every record at or before `hi` (and perhaps some after it,
/// which the window's filter leaves to the next run): none on the bound is lost.
fn format_after(value: &CursorValue, format: &BoundFormat) -> String {
    let text = format_bound(value, format);
    let Some(at) = instant(value) else {
        return text;
    };
    let steps = [
        chrono::Duration::milliseconds(1),
        chrono::Duration::seconds(1),
        chrono::Duration::minutes(1),
        chrono::Duration::hours(1),
    ]
    .into_iter()
    .chain((1..=366).map(chrono::Duration::days));
    for step in steps {
        let Some(next) = at.checked_add_signed(step) else {
            break;
        };
        let after = format_bound(&like(value, next), format);
        if after != text {
            return after;
        }
    }
    text
}

/// `window.start` as a value of the cursor's type (checked when the row compiled).
fn parse_bound(text: &str, lake: LakeType) -> Result<CursorValue> {
    let bad = || {
        Error::user(format!(
            "source.window.start {text:?} is not a value of the cursor"
        ))
    };
    Ok(match lake {
        LakeType::Date => {
            CursorValue::Date(NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| bad())?)
        }
        LakeType::Timestamp | LakeType::TimestampUtc => {
            let at = DateTime::parse_from_rfc3339(text)
                .map_err(|_| bad())?
                .with_timezone(&Utc);
            if lake == LakeType::Timestamp {
                CursorValue::Timestamp(at.naive_utc())
            } else {
                CursorValue::TimestampUtc(at)
            }
        }
        LakeType::String => CursorValue::Text(text.to_string()),
        _ => CursorValue::Int(text.parse().map_err(|_| bad())?),
    })
}

/// The decoding side: records into batches, the window's filter, the quarantine.
struct Decoder {
    builder: RecordBuilder,
    /// The cursor field's index and type, with the window's bounds.
    cursor: Option<(usize, LakeType)>,
    lo: Option<CursorValue>,
    hi: Option<CursorValue>,
    greatest: Option<CursorValue>,
    poison: Vec<Poison>,
    report: ApiReport,
    received_at: DateTime<Utc>,
}

impl Decoder {
    fn new(feed: &HttpFeed, window: &Window, size: super::BatchSize) -> Self {
        let builder = RecordBuilder::new(&feed.records, size);
        let cursor = feed
            .window
            .as_ref()
            .and_then(|w| builder.field_index(&w.cursor).map(|i| (i, w.lake)));
        Self {
            builder,
            cursor,
            lo: window.lo.clone(),
            hi: window.hi.clone(),
            greatest: None,
            poison: Vec::new(),
            report: ApiReport::default(),
            received_at: Utc::now(),
        }
    }

    /// Decodes a page's records; returns the batches that filled.
    fn page(&mut self, page: &Page) -> Result<Vec<RecordBatch>> {
        let mut full = Vec::new();
        for (i, record) in page.records.records(&page.value).into_iter().enumerate() {
            self.report.records += 1;
            match self.decode(record, &page.exact, page.parent.as_deref()) {
                Ok(Some(row)) => {
                    self.builder.push(&row).map_err(Error::internal)?;
                    if self.builder.is_full() {
                        full.push(self.builder.finish()?);
                    }
                }
                Ok(None) => self.report.outside_window += 1,
                Err(error) => self.poison.push(Poison {
                    key: format!("{} #{i}", page.origin),
                    sent_at: None,
                    received_at: self.received_at,
                    error,
                    body: record.to_string(),
                }),
            }
        }
        Ok(full)
    }

    /// One record: its row, `None` when it is outside the window, or why it does not
    /// fit the record's fields.
    fn decode(
        &mut self,
        record: &Value,
        exact: &ExactNumbers,
        parent: Option<&Map<String, Value>>,
    ) -> std::result::Result<Option<Row>, String> {
        if !record.is_object() {
            return Err(format!(
                "the record is {}; a record is a JSON object (check the request's `records` path)",
                records::kind(record)
            ));
        }
        let row = self
            .builder
            .decode_record(record, exact, |name| parent.and_then(|p| p.get(name)))?;
        let Some((index, lake)) = self.cursor else {
            return Ok(Some(row));
        };
        let Some(at) = row.cursor(index, lake) else {
            return Err("the cursor field is null: the record belongs to no window".into());
        };
        let after_lo = self.lo.as_ref().is_none_or(|lo| &at > lo);
        let until_hi = self.hi.as_ref().is_none_or(|hi| &at <= hi);
        if !(after_lo && until_hi) {
            return Ok(None);
        }
        if self.greatest.as_ref().is_none_or(|g| &at > g) {
            self.greatest = Some(at);
        }
        Ok(Some(row))
    }
}

#[cfg(test)]
mod tests;
