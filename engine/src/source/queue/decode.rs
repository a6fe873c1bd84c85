//! Turning received messages into records: an SNS envelope taken off, the message's key
//! (`dedup`), and a redelivery of what a committed run (or this one) consumed skipped.

use std::borrow::Cow;
use std::collections::HashSet;

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use chrono::{DateTime, TimeZone, Utc};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::source::records::{MessageFacts, RecordBuilder};
use crate::source::{FeedReport, Poison, RunContext};
use crate::spec::Dedup;

/// How much earlier than a message's send time a committed run may have taken it, in
/// seconds: clock skew between SQS, SNS and this machine, and (for `dedup: body`) a
/// producer resending a body up to this long after the first send was committed.
pub(super) const SKEW: i64 = 900;

/// Turns messages into records, skipping what was consumed before.
pub(super) struct Decoder {
    pub(super) builder: RecordBuilder,
    dedup: Dedup,
    ledger: Remembered,
    /// Keys this run took.
    taken: HashSet<String>,
    /// The keys of what the run consumed, in the order received (for its manifest).
    pub(super) keys: Vec<String>,
    pub(super) poison: Vec<Poison>,
    pub(super) report: FeedReport,
}

impl Decoder {
    pub(super) fn new(builder: RecordBuilder, dedup: Dedup, run: &RunContext) -> Self {
        Self {
            builder,
            dedup,
            ledger: Remembered::new(run),
            taken: HashSet::new(),
            keys: Vec::new(),
            poison: Vec::new(),
            report: FeedReport::default(),
        }
    }

    /// Whether the run took anything new: a key to commit (a record or a poison
    /// message). Every received message is either that or a duplicate of a committed
    /// run's, so a run that took nothing new holds only what is committed already.
    pub(super) fn took_anything(&self) -> bool {
        !self.keys.is_empty() || !self.poison.is_empty()
    }

    pub(super) async fn message(
        &mut self,
        message: &Message,
        received_at: DateTime<Utc>,
        run: &RunContext,
    ) -> Result<()> {
        self.report.received += 1;
        let body = message.body().unwrap_or_default();
        let sent_at = message
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
            .and_then(|ms| ms.parse::<i64>().ok())
            .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
        let unwrapped = Unwrapped::of(body, message.message_id().unwrap_or_default(), sent_at);
        let key = match self.dedup {
            Dedup::MessageId => unwrapped.id.to_string(),
            Dedup::Body => body_key(&unwrapped.payload),
        };
        let origin = unwrapped.sent_at.unwrap_or(received_at);
        if self.taken.contains(&key) || self.ledger.contains(&key, origin, run).await? {
            self.report.duplicates += 1;
            return Ok(());
        }
        let facts = MessageFacts {
            key: &key,
            sent_at: unwrapped.sent_at,
            received_at,
        };
        if let Err(error) = self.builder.append_json(&unwrapped.payload, &facts) {
            tracing::warn!(message_id = %key, %error, "message quarantined");
            self.poison.push(Poison {
                key: key.clone(),
                sent_at: unwrapped.sent_at,
                received_at,
                error,
                body: body.to_string(),
            });
        }
        self.taken.insert(key.clone());
        self.keys.push(key);
        Ok(())
    }
}

/// The SHA-256 of a payload, as the key of `dedup: body` (32 hex digits).
fn body_key(payload: &str) -> String {
    Sha256::digest(payload.as_bytes())
        .iter()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A body with its SNS envelope taken off, when it has one.
struct Unwrapped<'a> {
    payload: Cow<'a, str>,
    id: &'a str,
    sent_at: Option<DateTime<Utc>>,
}

/// The fields of an SNS notification that sluice reads.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Envelope<'a> {
    #[serde(rename = "Type")]
    kind: &'a str,
    message_id: &'a str,
    topic_arn: &'a str,
    #[serde(borrow)]
    message: Cow<'a, str>,
    timestamp: Option<&'a str>,
}

impl<'a> Unwrapped<'a> {
    fn of(body: &'a str, sqs_id: &'a str, sent_at: Option<DateTime<Utc>>) -> Unwrapped<'a> {
        // Cheap test first: raw records rarely hold the envelope's field names.
        let envelope = (body.contains("\"TopicArn\"") && body.contains("\"Notification\""))
            .then(|| serde_json::from_str::<Envelope<'a>>(body).ok())
            .flatten()
            .filter(|e| e.kind == "Notification" && e.topic_arn.starts_with("arn:"));
        match envelope {
            Some(e) => Unwrapped {
                payload: e.message,
                id: e.message_id,
                sent_at: e
                    .timestamp
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .or(sent_at),
            },
            None => Unwrapped {
                payload: Cow::Borrowed(body),
                id: sqs_id,
                sent_at,
            },
        }
    }
}

/// The keys of committed runs, read from their manifests as far back as needed.
struct Remembered {
    /// (run key, commit time), oldest first.
    runs: Vec<(String, i64)>,
    /// Runs from this index on are loaded.
    loaded_from: usize,
    keys: HashSet<String>,
}

impl Remembered {
    fn new(run: &RunContext) -> Self {
        let runs = run
            .committed
            .feed
            .as_ref()
            .map(|f| f.runs.clone())
            .unwrap_or_default();
        Self {
            loaded_from: runs.len(),
            runs,
            keys: HashSet::new(),
        }
    }

    /// Whether a run that committed after `origin` (less the skew) consumed `key`.
    async fn contains(
        &mut self,
        key: &str,
        origin: DateTime<Utc>,
        run: &RunContext,
    ) -> Result<bool> {
        let since = origin.timestamp() - SKEW;
        let first = self.runs.partition_point(|(_, at)| *at < since);
        while self.loaded_from > first {
            self.loaded_from -= 1;
            let run_key = &self.runs[self.loaded_from].0;
            let keys = run.ledger.keys(run_key).await.map_err(|e| {
                e.context(format!(
                    "reading the keys committed run {run_key} consumed (its manifest)"
                ))
            })?;
            self.keys.extend(keys);
        }
        Ok(self.keys.contains(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sns_envelopes_are_unwrapped_and_keyed_by_the_sns_message_id() {
        let body = r#"{"Type":"Notification","MessageId":"sns-1","TopicArn":"arn:aws:sns:eu-west-1:1:gps","Message":"{\"truck_id\":\"T1\"}","Timestamp":"2024-05-01T12:00:00.000Z","SignatureVersion":"1"}"#;
        let u = Unwrapped::of(body, "sqs-1", None);
        assert_eq!(u.id, "sns-1");
        assert_eq!(u.payload, r#"{"truck_id":"T1"}"#);
        let plain = Unwrapped::of(
            r#"{"Type":"Notification","MessageId":"sns-2","TopicArn":"arn:aws:sns:eu-west-1:1:gps","Message":"plain text"}"#,
            "sqs-2",
            None,
        );
        assert_eq!((plain.id, plain.payload.as_ref()), ("sns-2", "plain text"));
        assert_eq!(u.sent_at.map(|t| t.timestamp()), Some(1_714_564_800));
        let raw = Unwrapped::of(r#"{"truck_id":"T1"}"#, "sqs-1", None);
        assert_eq!(
            (raw.id, raw.payload.as_ref()),
            ("sqs-1", r#"{"truck_id":"T1"}"#)
        );
    }

    #[test]
    fn body_keys_are_the_same_for_the_same_body() {
        assert_eq!(body_key("a"), body_key("a"));
        assert_ne!(body_key("a"), body_key("b"));
        assert_eq!(body_key("a").len(), 32);
    }
}
