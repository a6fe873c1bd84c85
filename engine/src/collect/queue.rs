//! The collector on AWS: each table's events go to its SQS queue (the queue of its
//! job's connection), and the 2xx follows `SendMessageBatch` succeeding for every one of
//! them — SQS keeps them redundantly across availability zones, so a task that is
//! replaced or killed loses nothing it acknowledged. The jobs `collect_*` load the queues
//! on their schedule (the queue feed: exactly once, deleting only after the commit).
//!
//! A message holds a JSON array of events of one table (up to 240 KiB); a call sends up to
//! ten of them (240 KiB in all). Entries SQS refuses are sent once more; if some still
//! fail, the request gets 503, and the events that did go are remembered as taken, so
//! the client's resend of the whole request lands each event once. Deduplication by
//! `messageId` is this task's memory within the window (a resend that reaches another
//! task, or follows a restart, is not recognised here).

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use super::body::{Event, Kind};
use super::dedup::Seen;
use super::store::{Appended, Refused, Store};

/// A message's body at most, and a call's bodies together (SQS takes 256 KiB).
const MAX_BODY: usize = 240 << 10;
/// Entries a call takes at most.
const PER_CALL: usize = 10;

pub struct Queues {
    client: Client,
    urls: BTreeMap<Kind, String>,
    seen: Mutex<Seen>,
}

impl Queues {
    pub async fn new(urls: BTreeMap<Kind, String>, seen: Seen) -> Self {
        Self {
            client: Client::new(crate::aws::config().await),
            urls,
            seen: Mutex::new(seen),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sends one call's entries (twice for those refused the first time); the entries
    /// that are in the queue.
    async fn send(&self, url: &str, messages: &[Message]) -> Vec<usize> {
        let mut left: Vec<usize> = (0..messages.len()).collect();
        let mut sent = Vec::new();
        for _ in 0..2 {
            let entries: Vec<SendMessageBatchRequestEntry> = left
                .iter()
                .filter_map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&messages[i].body)
                        .build()
                        .ok()
                })
                .collect();
            let outcome = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await;
            match outcome {
                Ok(reply) => {
                    for ok in reply.successful() {
                        if let Ok(i) = ok.id().parse::<usize>() {
                            sent.push(i);
                        }
                    }
                    for failed in reply.failed() {
                        tracing::warn!(
                            queue = url,
                            code = failed.code(),
                            message = failed.message().unwrap_or(""),
                            "SQS refused a message of events"
                        );
                    }
                }
                Err(e) => {
                    let e = crate::aws::classify_sdk(e, &format!("sending events to {url}"));
                    tracing::warn!(error = %e.report(), "SendMessageBatch failed");
                }
            }
            left.retain(|i| !sent.contains(i));
            if left.is_empty() {
                break;
            }
        }
        sent
    }
}

/// One SQS message: a JSON array of a table's events, and their keys.
struct Message {
    body: String,
    keys: Vec<u64>,
}

/// Packs a table's events into messages of at most `MAX_BODY`, then the messages into
/// calls of at most ten and `MAX_BODY` together.
fn pack(events: &[&Event]) -> Vec<Vec<Message>> {
    let mut messages: Vec<Message> = Vec::new();
    for event in events {
        let line = String::from_utf8_lossy(&event.line);
        let fits = messages
            .last()
            .is_some_and(|m| m.body.len() + 1 + line.len() < MAX_BODY);
        if !fits {
            messages.push(Message {
                body: String::from("["),
                keys: Vec::new(),
            });
        }
        if let Some(message) = messages.last_mut() {
            if message.body.len() > 1 {
                message.body.push(',');
            }
            message.body.push_str(&line);
            message.keys.push(event.key);
        }
    }
    let mut calls: Vec<Vec<Message>> = Vec::new();
    let mut size = 0;
    for mut message in messages {
        message.body.push(']');
        let fits = calls.last().is_some_and(|c: &Vec<Message>| {
            c.len() < PER_CALL && size + message.body.len() <= MAX_BODY
        });
        if !fits {
            calls.push(Vec::new());
            size = 0;
        }
        size += message.body.len();
        if let Some(call) = calls.last_mut() {
            call.push(message);
        }
    }
    calls
}

#[async_trait]
impl Store for Queues {
    async fn append(&self, events: Vec<Event>, now: i64) -> Result<Appended, Refused> {
        let (fresh, duplicates) = {
            let mut seen = self.seen();
            let mut fresh: Vec<&Event> = Vec::new();
            let mut taken = std::collections::HashSet::new();
            let mut duplicates = 0;
            for event in &events {
                if seen.contains(event.key, now) || !taken.insert(event.key) {
                    duplicates += 1;
                } else {
                    fresh.push(event);
                }
            }
            (fresh, duplicates)
        };
        let mut calls = Vec::new();
        for kind in Kind::ALL {
            let Some(url) = self.urls.get(&kind) else {
                continue;
            };
            let mine: Vec<&Event> = fresh.iter().copied().filter(|e| e.kind == kind).collect();
            for call in pack(&mine) {
                calls.push((url.as_str(), call));
            }
        }
        let sent =
            futures::future::join_all(calls.iter().map(|(url, messages)| self.send(url, messages)))
                .await;
        let mut all = true;
        let mut seen = self.seen();
        for ((_, messages), sent) in calls.iter().zip(sent) {
            all &= sent.len() == messages.len();
            for i in sent {
                for &key in &messages[i].keys {
                    seen.insert(key, now);
                }
            }
        }
        if all {
            Ok(Appended {
                accepted: fresh.len(),
                duplicates,
            })
        } else {
            Err(Refused::Failed)
        }
    }

    fn ready(&self) -> bool {
        true
    }

    fn describe(&self) -> String {
        let urls: Vec<&str> = self.urls.values().map(String::as_str).collect();
        format!("SQS {}", urls.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_pack_into_messages_and_calls_within_the_limits() {
        let events: Vec<Event> = (0..100)
            .map(|i| Event {
                kind: Kind::Track,
                key: i,
                line: format!(
                    "{{\"message_id\":\"{i}\",\"pad\":\"{}\"}}",
                    "x".repeat(20_000)
                )
                .into_bytes(),
            })
            .collect();
        let refs: Vec<&Event> = events.iter().collect();
        let calls = pack(&refs);
        let mut keys: Vec<u64> = Vec::new();
        for call in &calls {
            assert!(call.len() <= PER_CALL);
            assert!(call.iter().map(|m| m.body.len()).sum::<usize>() <= MAX_BODY);
            for message in call {
                let parsed: Vec<serde_json::Value> =
                    serde_json::from_str(&message.body).unwrap_or_default();
                assert_eq!(parsed.len(), message.keys.len());
                keys.extend(&message.keys);
            }
        }
        assert_eq!(keys, (0..100).collect::<Vec<u64>>());
    }
}
