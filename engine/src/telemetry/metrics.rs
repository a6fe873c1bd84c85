//! Run metrics, dimension `Job`: as CloudWatch `PutMetricData` calls (batched, sent once
//! at the end of the command, failed runs included), or as CloudWatch Embedded Metric
//! Format lines on stdout, which the awslogs driver of an ECS task turns into metrics at
//! no API cost.

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::aws::{classify_sdk, config};
use crate::error::Result;
use crate::source::CursorValue;
use crate::summary::{RunStatus, RunSummary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricsOutput {
    /// `PutMetricData` to CloudWatch at the end of the command.
    Cloudwatch,
    /// Embedded Metric Format lines on stdout (one per run).
    Emf,
    Off,
}

/// PutMetricData takes at most 1000 values per call.
const MAX_DATUMS_PER_CALL: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub unit: &'static str,
    pub value: f64,
}

/// The metrics of one run.
pub fn run_metrics(run: &RunSummary, now: DateTime<Utc>) -> Vec<Metric> {
    let m = |name, unit, value: f64| Metric { name, unit, value };
    let failed = run.status == RunStatus::Failed;
    let mut out = vec![
        m("RowsRead", "Count", run.rows_read as f64),
        m("RowsWritten", "Count", run.rows as f64),
        m("BytesWritten", "Bytes", run.bytes as f64),
        m("FilesWritten", "Count", run.files as f64),
        m("PartitionsWritten", "Count", run.partitions as f64),
        m("ExtractSeconds", "Seconds", run.seconds.extract_transform),
        m("WriteSeconds", "Seconds", run.seconds.write),
        m("CommitSeconds", "Seconds", run.seconds.commit),
        m("RunSeconds", "Seconds", run.seconds.total),
        m("RunSucceeded", "Count", if failed { 0.0 } else { 1.0 }),
        m("RunFailed", "Count", if failed { 1.0 } else { 0.0 }),
    ];
    let failed_rows: u64 = run.quality.iter().map(|r| r.failed_rows).sum();
    let failed_rules = run.quality.iter().filter(|r| !r.passed).count();
    if !run.quality.is_empty() {
        out.push(m("QualityFailures", "Count", failed_rules as f64));
        out.push(m("QualityFailedRows", "Count", failed_rows as f64));
        out.push(m("QuarantinedRows", "Count", run.quarantined as f64));
    }
    if let Some(skipped) = run.record_duplicates {
        out.push(m("RecordsDuplicate", "Count", skipped as f64));
    }
    if let Some(feed) = &run.feed {
        out.push(m("MessagesReceived", "Count", feed.received as f64));
        out.push(m("MessagesDuplicate", "Count", feed.duplicates as f64));
        out.push(m("MessagesQuarantined", "Count", feed.quarantined as f64));
        out.push(m("MessagesDeleted", "Count", feed.deleted as f64));
        out.push(m("ReceiveFailures", "Count", feed.receive_failures as f64));
    }
    if let Some(api) = &run.api {
        out.push(m("ApiRequests", "Count", api.requests as f64));
        out.push(m("ApiRetries", "Count", api.retries as f64));
        out.push(m("ApiBytesReceived", "Bytes", api.bytes as f64));
        out.push(m("ApiRecordsQuarantined", "Count", api.quarantined as f64));
    }
    if let Some(files) = &run.source_files {
        out.push(m("FilesLoaded", "Count", files.loaded as f64));
        out.push(m("FilesWaiting", "Count", files.waiting as f64));
        out.push(m("FilesBad", "Count", files.bad_files as f64));
        out.push(m("FilesBytesRead", "Bytes", files.bytes as f64));
        out.push(m(
            "FileRecordsQuarantined",
            "Count",
            files.quarantined as f64,
        ));
    }
    out.push(m(
        "SchemaDriftEvents",
        "Count",
        run.schema_changes.len() as f64,
    ));
    if let Some(rss) = run.peak_rss {
        out.push(m("PeakMemory", "Bytes", rss as f64));
    }
    // Freshness: how far the lake's newest row is behind now (time cursors only).
    let watermark = match run.status {
        RunStatus::Committed => run.window.hi.as_ref(),
        RunStatus::UpToDate => run.window.lo.as_ref(),
        RunStatus::Failed => None,
    };
    if let Some(at) = watermark.and_then(cursor_time) {
        let lag = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
        out.push(m("WatermarkLagSeconds", "Seconds", lag));
    }
    out
}

fn cursor_time(value: &CursorValue) -> Option<DateTime<Utc>> {
    match value {
        CursorValue::Timestamp(t) => Some(t.and_utc()),
        CursorValue::TimestampUtc(t) => Some(*t),
        CursorValue::Date(d) => d.and_hms_opt(0, 0, 0).map(|t| t.and_utc()),
        CursorValue::Int(_) | CursorValue::Text(_) => None,
    }
}

/// One EMF document for a run.
pub fn emf_line(namespace: &str, job: &str, metrics: &[Metric], at: DateTime<Utc>) -> String {
    let mut doc = Map::new();
    doc.insert(
        "_aws".into(),
        json!({
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["Job"]],
                "Metrics": metrics.iter().map(|m| json!({"Name": m.name, "Unit": m.unit})).collect::<Vec<_>>(),
            }],
        }),
    );
    doc.insert("Job".into(), Value::String(job.to_string()));
    for metric in metrics {
        doc.insert(metric.name.into(), json!(metric.value));
    }
    Value::Object(doc).to_string()
}

/// Collects the runs' metrics and delivers them.
pub struct Metrics {
    output: MetricsOutput,
    namespace: String,
    pending: Vec<MetricDatum>,
}

impl Metrics {
    pub fn new(output: MetricsOutput, namespace: &str) -> Self {
        Self {
            output,
            namespace: namespace.to_string(),
            pending: Vec::new(),
        }
    }

    pub fn record(&mut self, run: &RunSummary) {
        let now = Utc::now();
        let metrics = run_metrics(run, now);
        match self.output {
            MetricsOutput::Off => {}
            MetricsOutput::Emf => {
                crate::outln!("{}", emf_line(&self.namespace, &run.job, &metrics, now))
            }
            MetricsOutput::Cloudwatch => {
                let timestamp =
                    aws_sdk_cloudwatch::primitives::DateTime::from_millis(now.timestamp_millis());
                let job = Dimension::builder().name("Job").value(&run.job).build();
                self.pending.extend(metrics.into_iter().map(|m| {
                    MetricDatum::builder()
                        .metric_name(m.name)
                        .dimensions(job.clone())
                        .unit(StandardUnit::from(m.unit))
                        .value(m.value)
                        .timestamp(timestamp)
                        .build()
                }));
            }
        }
    }

    /// Sends what `record` collected (CloudWatch output), in as few calls as allowed.
    pub async fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let client = aws_sdk_cloudwatch::Client::new(config().await);
        let data = std::mem::take(&mut self.pending);
        for chunk in data.chunks(MAX_DATUMS_PER_CALL) {
            client
                .put_metric_data()
                .namespace(&self.namespace)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| classify_sdk(e, "sending metrics to CloudWatch"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Window;

    #[test]
    fn emf_documents_declare_every_metric_they_carry() -> Result<(), serde_json::Error> {
        let mut run = RunSummary::named("orders", "incremental", "orders", "r1");
        run.status = RunStatus::Committed;
        run.rows = 7;
        let hi = chrono::NaiveDate::from_ymd_opt(2026, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .map(CursorValue::Timestamp);
        run.window = Window {
            cursor: Some("updated_at".into()),
            lo: None,
            hi,
        };
        let now = Utc::now();
        let metrics = run_metrics(&run, now);
        let doc: Value = serde_json::from_str(&emf_line("Sluice", "orders", &metrics, now))?;
        let declared = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declared["Dimensions"], json!([["Job"]]));
        assert_eq!(doc["Job"], "orders");
        assert_eq!(doc["RowsWritten"], 7.0);
        assert!(doc["WatermarkLagSeconds"].as_f64().is_some_and(|s| s > 0.0));
        let names: Vec<&str> = declared["Metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["Name"].as_str())
            .collect();
        assert_eq!(names.len(), metrics.len());
        assert!(names.iter().all(|n| doc[*n].is_number()));
        Ok(())
    }
}
