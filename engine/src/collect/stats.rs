//! The collector's counts: requests, events accepted and rejected by reason, latency and
//! buffer depth. Logged and, as CloudWatch Embedded Metric Format lines (dimension
//! `Job=collector`), printed once a minute — the awslogs driver of the ECS service turns
//! them into metrics at no API cost.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::telemetry::metrics::{Metric, emf_line};

/// Latency buckets' upper bounds, in milliseconds.
const BOUNDS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, u64::MAX];

/// Why requests were turned away (each a metric `Rejected<Reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    BadRequest,
    TooLarge,
    Unauthorized,
    MediaType,
    RateLimited,
    Unavailable,
}

impl Reason {
    const ALL: [Reason; 6] = [
        Reason::BadRequest,
        Reason::TooLarge,
        Reason::Unauthorized,
        Reason::MediaType,
        Reason::RateLimited,
        Reason::Unavailable,
    ];

    fn metric(self) -> &'static str {
        match self {
            Reason::BadRequest => "RejectedBadRequest",
            Reason::TooLarge => "RejectedTooLarge",
            Reason::Unauthorized => "RejectedUnauthorized",
            Reason::MediaType => "RejectedMediaType",
            Reason::RateLimited => "RejectedRateLimited",
            Reason::Unavailable => "RejectedUnavailable",
        }
    }
}

#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    rejected: [AtomicU64; 6],
    latency: [AtomicU64; 12],
}

impl Stats {
    pub fn accepted(&self, accepted: usize, duplicates: usize, started: std::time::Instant) {
        self.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
        self.duplicates
            .fetch_add(duplicates as u64, Ordering::Relaxed);
        self.answered(started);
    }

    pub fn rejected(&self, reason: Reason, started: std::time::Instant) {
        if let Some(i) = Reason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
        self.answered(started);
    }

    fn answered(&self, started: std::time::Instant) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MS.iter().position(|&b| ms < b).unwrap_or(11);
        self.latency[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts since the last call (they restart at zero), with the buffer's bytes.
    pub fn take(&self, buffered: u64) -> Vec<Metric> {
        let take = |c: &AtomicU64| c.swap(0, Ordering::Relaxed) as f64;
        let latency: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.swap(0, Ordering::Relaxed))
            .collect();
        let mut metrics = vec![
            metric("Requests", "Count", take(&self.requests)),
            metric("EventsAccepted", "Count", take(&self.accepted)),
            metric("EventsDuplicate", "Count", take(&self.duplicates)),
            metric("BufferBytes", "Bytes", buffered as f64),
            metric("LatencyP50", "Milliseconds", quantile(&latency, 0.5)),
            metric("LatencyP99", "Milliseconds", quantile(&latency, 0.99)),
        ];
        for (reason, count) in Reason::ALL.iter().zip(&self.rejected) {
            metrics.push(metric(reason.metric(), "Count", take(count)));
        }
        metrics
    }
}

fn metric(name: &'static str, unit: &'static str, value: f64) -> Metric {
    Metric { name, unit, value }
}

/// The upper bound of the bucket that holds quantile `q` (0 with no requests).
fn quantile(counts: &[u64], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (count, bound) in counts.iter().zip(BOUNDS_MS) {
        seen += count;
        if seen >= rank {
            return bound.min(10_000) as f64;
        }
    }
    10_000.0
}

/// Prints the counts every `every` until `stop`, and once more at `stop` for the part of
/// an interval that had passed, as a log line and (when `emf`) an EMF line on stdout.
pub async fn report(
    stats: std::sync::Arc<Stats>,
    gauges: std::sync::Arc<super::spool::Gauges>,
    every: std::time::Duration,
    emf: Option<String>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        // The last, partial interval is printed too: a stop loses no count.
        let last = tokio::select! {
            () = tokio::time::sleep(every) => false,
            _ = stop.wait_for(|s| *s) => true,
        };
        let metrics = stats.take(gauges.buffered());
        let value = |name: &str| {
            metrics
                .iter()
                .find(|m| m.name == name)
                .map_or(0.0, |m| m.value)
        };
        tracing::info!(
            requests = value("Requests"),
            accepted = value("EventsAccepted"),
            duplicates = value("EventsDuplicate"),
            buffer_bytes = value("BufferBytes"),
            p99_ms = value("LatencyP99"),
            "collector"
        );
        if let Some(namespace) = &emf {
            crate::outln!(
                "{}",
                emf_line(namespace, "collector", &metrics, chrono::Utc::now())
            );
        }
        if last {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_buckets() {
        let mut counts = [0u64; 12];
        counts[0] = 98; // under 1 ms
        counts[3] = 2; // under 10 ms
        assert_eq!(quantile(&counts, 0.5), 1.0);
        assert_eq!(quantile(&counts, 0.99), 10.0);
        assert_eq!(quantile(&[0; 12], 0.99), 0.0);
    }
}
