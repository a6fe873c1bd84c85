//! The feed side of a job row as written: its record's key and coercion, the message
//! columns, how a queue is received, the collector's tables.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A feed's record key (`source.dedup`). A record whose key a run committed within
/// `window`, or that repeats within the run, is skipped and counted
/// (`record_duplicates` in the run record, the metric `RecordsDuplicate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordDedup {
    /// The record fields whose values together identify a record, e.g. `[device_id, seq]`
    /// (a NULL is a value like any other).
    pub key: Vec<String>,
    /// How long a committed key is remembered: `7d` (the default), from `1m` to `400d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// Which record fields a feed reads from JSON text (see `source.coerce`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Coerce {
    /// `true`: every field; `false`: none (the default).
    All(bool),
    /// These fields.
    Fields(Vec<String>),
}

/// A table of the event collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CollectTable {
    /// `POST /track`: events about users.
    Events,
    /// `POST /alias`: identifiers of one user.
    Aliases,
    /// `POST /profile`: users' attributes.
    Profiles,
}

impl CollectTable {
    /// The name its spool segments start with.
    pub fn name(self) -> &'static str {
        match self {
            CollectTable::Events => "events",
            CollectTable::Aliases => "aliases",
            CollectTable::Profiles => "profiles",
        }
    }
}

/// A column about a record's message.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum MessageColumn {
    /// `_message_id`: the message's key (the SNS MessageId for an SNS notification, else
    /// the SQS MessageId; with `dedup: body`, the body's SHA-256).
    MessageId,
    /// `_sent_at`: when the message was sent (published, for SNS), UTC.
    SentAt,
    /// `_received_at`: when this run first received it, UTC.
    ReceivedAt,
    /// `_file`: the path of the file the record is in (file feeds).
    File,
    /// `_line`: the line of its file the record starts on, from 1 (file feeds).
    Line,
    /// `_record`: the record's position in its file, from 0 (file feeds).
    Record,
}

impl MessageColumn {
    /// The column's name in `source`.
    pub fn column(self) -> &'static str {
        match self {
            MessageColumn::MessageId => "_message_id",
            MessageColumn::SentAt => "_sent_at",
            MessageColumn::ReceivedAt => "_received_at",
            MessageColumn::File => "_file",
            MessageColumn::Line => "_line",
            MessageColumn::Record => "_record",
        }
    }
}

/// How a queue job's runs receive. A run ends when the queue is drained (the first
/// long poll returns nothing, or a receiver's two later receives in a row do while no
/// other receiver is handed messages), after `max_messages`, after `max_seconds`, or
/// when a receive fails after the SDK's retries: then it commits what it received, and
/// fails (retryable) only if that was nothing new.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueSpec {
    /// Receive calls in flight at once, 10 messages each (1 to 32, default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receivers: Option<u32>,
    /// How long a received message stays hidden from other receivers beyond the run's
    /// `max_seconds`: `60s` (the default), from `10s` to `12h`. A run that outlives that
    /// extends it, every third of this, until it deletes the message after its commit;
    /// a killed run's messages come back this long after its `max_seconds` are up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<String>,
    /// How long the first receive waits on an empty queue (long polling): `20s` (the
    /// default and the most SQS allows) down to `0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<String>,
    /// A run takes at most this many messages (default 100000); the rest wait for the
    /// next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// A run stops receiving after this many seconds (default 240, so that a run every
    /// 5 minutes ends before the next starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_seconds: Option<u64>,
    /// What makes two messages the same, so that the second is skipped: `message_id`
    /// (default: the SNS MessageId of an SNS notification, else the SQS MessageId, which
    /// a redelivery keeps) or `body` (the body's SHA-256: also a producer that sends the
    /// same body twice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<Dedup>,
}

/// What identifies a message for deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dedup {
    /// The SNS MessageId of a notification, else the SQS MessageId.
    MessageId,
    /// The SHA-256 of the body (of the SNS Message, for a notification).
    Body,
}
