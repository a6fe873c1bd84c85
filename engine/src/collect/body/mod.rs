//! The bodies of `POST /track`, `/alias`, `/profile` and `/batch` (the OpenAPI
//! document's `trackBody`, `aliasBody`, `profileBody` and `batchBody`), checked field by
//! field and turned into the lines the spool keeps: one JSON object per event, in the
//! shape of the collector's tables (`jobs/collect_*.yaml`).
//!
//! Time: `timestamp` is when the event happened by the client's clock, `sentAt` when
//! the client sent it by the same clock; the event's corrected time is `receivedAt −
//! (sentAt − timestamp)` (Segment's and RudderStack's clock-skew correction), so a
//! device whose clock is an hour off still lands its events at the right hour. Without
//! `sentAt` the client's `timestamp` is taken as it is; without either, `receivedAt`.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::source::records::{ExactNumbers, kind as what};

mod fields;
use fields::{identifier, optional_object, optional_time, refuse_unknown};

/// The most bytes one event may take (Segment's limit).
pub const MAX_EVENT_BYTES: usize = 32 << 10;
/// The most bytes one request may take.
pub const MAX_REQUEST_BYTES: usize = 512 << 10;
/// The most events one `/batch` may hold.
pub const MAX_BATCH_EVENTS: usize = 2_500;
/// Identifiers (`userId`, `anonymousId`, `previousId`, `messageId`) and event names.
const MAX_ID_CHARS: usize = 255;

/// Which table an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Track,
    Alias,
    Profile,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Track, Kind::Alias, Kind::Profile];

    /// The lake table (and the spool's segment prefix).
    pub fn table(self) -> &'static str {
        match self {
            Kind::Track => "events",
            Kind::Alias => "aliases",
            Kind::Profile => "profiles",
        }
    }

    /// The `type` a `/batch` item names it by.
    fn name(self) -> &'static str {
        match self {
            Kind::Track => "track",
            Kind::Alias => "alias",
            Kind::Profile => "profile",
        }
    }

    /// The keys a body of this kind may have.
    fn keys(self) -> &'static [&'static str] {
        match self {
            Kind::Track => &[
                "type",
                "messageId",
                "userId",
                "anonymousId",
                "event",
                "properties",
                "context",
                "timestamp",
                "sentAt",
                "integrations",
            ],
            Kind::Alias => &[
                "type",
                "messageId",
                "userId",
                "previousId",
                "context",
                "timestamp",
                "sentAt",
                "integrations",
            ],
            Kind::Profile => &[
                "type",
                "messageId",
                "userId",
                "anonymousId",
                "traits",
                "context",
                "timestamp",
                "sentAt",
                "integrations",
            ],
        }
    }

    /// The object whose keys fill a table's extra columns (those its job row declares
    /// beyond the standard ones): an event's `properties`, a profile's `traits`.
    fn extras(self) -> Option<&'static str> {
        match self {
            Kind::Track => Some("properties"),
            Kind::Profile => Some("traits"),
            Kind::Alias => None,
        }
    }
}

/// What the server knows of a request besides its body.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: DateTime<Utc>,
    /// The write key's source name.
    pub source: String,
    /// The client's address, as the configured policy keeps it.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// One accepted event, as the spool keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: Kind,
    /// What identifies it for deduplication: the source and the `messageId`.
    pub key: u64,
    /// The line (no newline).
    pub line: Vec<u8>,
}

/// A body that is not valid: where, and what would be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field, as a JSONPath (`$.batch[3].event`).
    pub path: String,
    pub message: String,
    /// Past a size limit (413) rather than malformed (400).
    pub too_large: bool,
}

impl Invalid {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            too_large: false,
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The columns each table's job row may add, read from the event's `properties` or
/// `traits` (declared fields beyond the standard ones).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    pub events: Vec<String>,
    pub profiles: Vec<String>,
}

impl Extras {
    fn of(&self, kind: Kind) -> &[String] {
        match kind {
            Kind::Track => &self.events,
            Kind::Profile => &self.profiles,
            Kind::Alias => &[],
        }
    }
}

/// The standard columns of each table: anything else a job row declares is an extra.
pub fn standard_columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Track => &[
            "message_id",
            "event",
            "user_id",
            "anonymous_id",
            "properties",
            "context",
            "timestamp",
            "original_timestamp",
            "sent_at",
            "received_at",
            "source",
            "ip",
            "user_agent",
        ],
        Kind::Alias => &[
            "message_id",
            "previous_id",
            "user_id",
            "context",
            "timestamp",
            "original_timestamp",
            "sent_at",
            "received_at",
            "source",
            "ip",
            "user_agent",
        ],
        Kind::Profile => &[
            "message_id",
            "user_id",
            "anonymous_id",
            "traits",
            "context",
            "timestamp",
            "original_timestamp",
            "sent_at",
            "received_at",
            "source",
            "ip",
            "user_agent",
        ],
    }
}

/// Reads a request's body for `kind` (`None`: `/batch`).
pub fn parse(
    body: &[u8],
    kind: Option<Kind>,
    received: &Received,
    extras: &Extras,
) -> Result<Vec<Event>, Invalid> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        Invalid::new(
            "$",
            format!("the body is not JSON ({e}); send one JSON object"),
        )
    })?;
    // Found before the tree is taken apart: its nodes keep their place in it.
    let exact = ExactNumbers::of(body, &value);
    let Value::Object(object) = value else {
        return Err(Invalid::new(
            "$",
            format!("is {}; send one JSON object", what(&value)),
        ));
    };
    // No event is larger than the body it came in (written compactly again it takes at
    // most the bytes it took): only a larger body needs its events measured.
    let measure = body.len() > MAX_EVENT_BYTES;
    let facts = Facts {
        received,
        extras,
        measure,
        exact: &exact,
    };
    match kind {
        Some(kind) => {
            let event = one(kind, object, "$", None, None, &facts)?;
            Ok(vec![event])
        }
        None => batch(object, &facts),
    }
}

/// What every event of a request shares.
struct Facts<'a> {
    received: &'a Received,
    extras: &'a Extras,
    /// Whether events may be past `MAX_EVENT_BYTES` (so must be measured).
    measure: bool,
    /// The body's numbers beyond a double's digits, as sent.
    exact: &'a ExactNumbers,
}

fn batch(mut object: Map<String, Value>, facts: &Facts) -> Result<Vec<Event>, Invalid> {
    refuse_unknown(&object, &["batch", "sentAt", "context"], "$")?;
    let sent_at = optional_time(&object, "sentAt", "$")?;
    let context = match object.remove("context") {
        None | Some(Value::Null) => None,
        Some(Value::Object(c)) => Some(c),
        Some(other) => {
            return Err(Invalid::new(
                "$.context",
                format!("is {}; it must be an object", what(&other)),
            ));
        }
    };
    let items = match object.remove("batch") {
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(Invalid::new(
                "$.batch",
                format!("is {}; it must be an array of events", what(&other)),
            ));
        }
        None => {
            return Err(Invalid::new(
                "$.batch",
                "is missing; send {\"batch\": [{\"type\": \"track\", …}, …]}",
            ));
        }
    };
    if items.is_empty() || items.len() > MAX_BATCH_EVENTS {
        return Err(Invalid::new(
            "$.batch",
            format!(
                "holds {} events; a batch holds 1 to {MAX_BATCH_EVENTS}",
                items.len()
            ),
        ));
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("$.batch[{i}]");
            let Value::Object(item) = item else {
                return Err(Invalid::new(
                    &at,
                    format!("is {}; an event is an object", what(&item)),
                ));
            };
            let kind = match item.get("type").and_then(Value::as_str) {
                Some("track") => Kind::Track,
                Some("alias") => Kind::Alias,
                Some("profile") => Kind::Profile,
                other => {
                    return Err(Invalid::new(
                        format!("{at}.type"),
                        format!(
                            "is {}; a batch item's type is one of track, alias, profile",
                            other.map_or_else(|| "missing".into(), |t| format!("`{t}`"))
                        ),
                    ));
                }
            };
            one(kind, item, &at, sent_at, context.as_ref(), facts)
        })
        .collect()
}

/// One event of `kind` at `at` (`$` or `$.batch[i]`); `sent_at` and `context` are the
/// batch's, which the event's own override.
fn one(
    kind: Kind,
    mut body: Map<String, Value>,
    at: &str,
    sent_at: Option<DateTime<Utc>>,
    context: Option<&Map<String, Value>>,
    facts: &Facts,
) -> Result<Event, Invalid> {
    let (received, extras) = (facts.received, facts.extras);
    let size = if facts.measure {
        serde_json::to_vec(&body).map_or(0, |b| b.len())
    } else {
        0
    };
    if size > MAX_EVENT_BYTES {
        return Err(Invalid {
            path: at.to_string(),
            message: format!(
                "the event takes {size} bytes; an event may take at most {MAX_EVENT_BYTES} (32 KiB)"
            ),
            too_large: true,
        });
    }
    refuse_unknown(&body, kind.keys(), at)?;
    if let Some(t) = body.get("type")
        && t.as_str() != Some(kind.name())
    {
        return Err(Invalid::new(
            format!("{at}.type"),
            format!("is {t}; here it is `{}` or left out", kind.name()),
        ));
    }
    let field = |name: &str| format!("{at}.{name}");
    let message_id = match identifier(&body, "messageId", at)? {
        Some(id) => id,
        None => uuid::Uuid::new_v4().to_string(),
    };
    let user_id = identifier(&body, "userId", at)?;
    let original = optional_time(&body, "timestamp", at)?;
    let sent = optional_time(&body, "sentAt", at)?.or(sent_at);
    let timestamp = match (original, sent) {
        // A correction that leaves years 1 to 9999 (a clock set to nonsense) is not made.
        (Some(original), Some(sent)) => received
            .at
            .checked_sub_signed(sent.signed_duration_since(original))
            .filter(|t| (1..=9999).contains(&t.year()))
            .unwrap_or(original),
        (Some(original), None) => original,
        (None, _) => received.at,
    };
    let mut line = Map::new();
    line.insert("message_id".into(), Value::String(message_id.clone()));
    match kind {
        Kind::Track => {
            let event = identifier(&body, "event", at)?.ok_or_else(|| {
                Invalid::new(
                    field("event"),
                    "is missing; a track names its event, e.g. \"Order Completed\"",
                )
            })?;
            line.insert("event".into(), Value::String(event));
        }
        Kind::Alias => {
            let previous = identifier(&body, "previousId", at)?.ok_or_else(|| {
                Invalid::new(
                    field("previousId"),
                    "is missing; an alias names the identifier it joins to userId",
                )
            })?;
            if user_id.is_none() {
                return Err(Invalid::new(
                    field("userId"),
                    "is missing; an alias names the userId the previousId becomes",
                ));
            }
            line.insert("previous_id".into(), Value::String(previous));
        }
        Kind::Profile => {}
    }
    line.insert(
        "user_id".into(),
        user_id.clone().map_or(Value::Null, Value::String),
    );
    if kind != Kind::Alias {
        let anonymous = identifier(&body, "anonymousId", at)?;
        if user_id.is_none() && anonymous.is_none() {
            return Err(Invalid::new(
                field("userId"),
                "is missing, and so is anonymousId; give either (or both)",
            ));
        }
        line.insert(
            "anonymous_id".into(),
            anonymous.map_or(Value::Null, Value::String),
        );
    }
    // Numbers keep the text they were sent with (beyond a double's digits too).
    let exact = facts.exact;
    let mut numbers = BTreeMap::new();
    if let Some(name) = kind.extras() {
        let object = optional_object(&mut body, name, at)?;
        for column in extras.of(kind) {
            let value = object.as_ref().and_then(|o| o.get(column));
            if let Some(text) = value.and_then(|v| exact.text(v)) {
                numbers.insert(column.clone(), text.to_string());
            }
            line.insert(column.clone(), value.cloned().unwrap_or(Value::Null));
        }
        line.insert(
            name.into(),
            object.map_or(Value::Null, |o| {
                Value::String(exact.object(&o, &BTreeMap::new()))
            }),
        );
    }
    let own = optional_object(&mut body, "context", at)?;
    line.insert(
        "context".into(),
        own.as_ref().or(context).map_or(Value::Null, |c| {
            Value::String(exact.object(c, &BTreeMap::new()))
        }),
    );
    if let Some(integrations) = body.get("integrations")
        && !(integrations.is_object() || integrations.is_null())
    {
        return Err(Invalid::new(
            field("integrations"),
            format!("is {}; it must be an object", what(integrations)),
        ));
    }
    let time = |t: DateTime<Utc>| Value::String(t.to_rfc3339_opts(SecondsFormat::Micros, true));
    line.insert("timestamp".into(), time(timestamp));
    line.insert(
        "original_timestamp".into(),
        original.map_or(Value::Null, time),
    );
    line.insert("sent_at".into(), sent.map_or(Value::Null, time));
    line.insert("received_at".into(), time(received.at));
    line.insert("source".into(), Value::String(received.source.clone()));
    let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
    line.insert("ip".into(), text(&received.ip));
    line.insert("user_agent".into(), text(&received.user_agent));
    Ok(Event {
        kind,
        key: dedup_key(&received.source, &message_id),
        line: exact.object(&line, &numbers).into_bytes(),
    })
}

/// The deduplication key of a source's `messageId`.
pub fn dedup_key(source: &str, message_id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same key in every process of this build, so the
    // keys rebuilt from the spool after a restart match the ones the requests made.
    let mut hasher = std::hash::DefaultHasher::new();
    source.hash(&mut hasher);
    message_id.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests;
