//! The feed side of a job row: the record its messages carry, the message columns, and
//! how a queue is received. Pure, like the rest of compilation.

use std::time::Duration;

use crate::contract::Column;
use crate::jsonpath::Path;
use crate::spec::units::parse_duration;
use crate::spec::{Coerce, Dedup, JobSpec, MessageColumn, Mode, OnFail, SourceSpec};

/// The records a feed yields: the declared fields, then the message columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Records {
    pub fields: Vec<Column>,
    pub message_columns: Vec<MessageColumn>,
    /// Per field: whether its JSON text is read as its type (`source.coerce`, and every
    /// field of a text format).
    pub coerce: Vec<bool>,
    /// Fields read from a JSONPath in the record instead of their key (`source.fields`).
    pub paths: Vec<(String, Path)>,
    /// The record key a run deduplicates by (`source.dedup`).
    pub key: Option<RecordKey>,
}

/// A feed's record key and how long a committed key is remembered.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordKey {
    pub fields: Vec<String>,
    pub window: Duration,
}

pub const DEFAULT_KEY_WINDOW: Duration = Duration::from_secs(7 * 86_400);

impl Records {
    /// Every field read from text: the records of a format that has no other type.
    pub fn from_text(mut self) -> Self {
        self.coerce = vec![true; self.fields.len()];
        self
    }
}

/// A queue feed, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueFeed {
    pub records: Records,
    pub receivers: usize,
    pub visibility: Duration,
    pub wait: Duration,
    pub max_messages: u64,
    pub max_duration: Duration,
    pub dedup: Dedup,
}

pub const DEFAULT_RECEIVERS: usize = 4;
pub const DEFAULT_VISIBILITY: Duration = Duration::from_secs(60);
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
pub const DEFAULT_MAX_MESSAGES: u64 = 100_000;
pub const DEFAULT_MAX_SECONDS: u64 = 240;

/// The optional source fields, and whether the row gives each.
fn given(source: &SourceSpec) -> [(&'static str, bool); 21] {
    [
        ("table", source.table.is_some()),
        ("query", source.query.is_some()),
        ("cursor", source.cursor.is_some()),
        ("primary_key", source.primary_key.is_some()),
        ("lag", source.lag.is_some()),
        ("delete_when", source.delete_when.is_some()),
        ("tie_break", source.tie_break.is_some()),
        ("split", source.split.is_some()),
        ("record", source.record.is_some()),
        ("message_columns", source.message_columns.is_some()),
        ("queue", source.queue.is_some()),
        ("request", source.request.is_some()),
        ("soap", source.soap.is_some()),
        ("parent", source.parent.is_some()),
        ("window", source.window.is_some()),
        ("fields", source.fields.is_some()),
        ("coerce", source.coerce.is_some()),
        ("dedup", source.dedup.is_some()),
        ("files", source.files.is_some()),
        ("collect", source.collect.is_some()),
        ("changes", source.changes.is_some()),
    ]
}

/// The source fields each family of connection takes.
const TABLE_FIELDS: [&str; 9] = [
    "changes",
    "table",
    "query",
    "cursor",
    "primary_key",
    "lag",
    "split",
    "delete_when",
    "tie_break",
];
const QUEUE_FIELDS: [&str; 7] = [
    "record",
    "message_columns",
    "queue",
    "collect",
    "fields",
    "coerce",
    "dedup",
];
const API_FIELDS: [&str; 10] = [
    "record", "cursor", "lag", "request", "soap", "parent", "window", "fields", "coerce", "dedup",
];

/// A feed's source fields beyond its kind's: `primary_key` and `cursor` in mode `merge`.
fn merge_fields(spec: &JobSpec) -> &'static [&'static str] {
    match spec.mode {
        Some(Mode::Merge) => &["primary_key", "cursor"],
        _ => &[],
    }
}

/// The fields the row gives that a feed of kind `takes` does not take in its mode.
pub(super) fn foreign_to_feed(spec: &JobSpec, takes: &[&str]) -> Vec<&'static str> {
    let takes: Vec<&str> = takes.iter().chain(merge_fields(spec)).copied().collect();
    foreign(&spec.source, &takes)
}

/// A feed's mode: `incremental` (it appends what each run consumed) or `merge` (into a
/// Delta table, by `source.primary_key`, the newest by `source.cursor` winning).
pub(super) fn check_feed_mode(spec: &JobSpec, what: &str, bad: &mut impl FnMut(&str, String)) {
    match spec.mode {
        None | Some(Mode::Incremental) => {}
        Some(Mode::Merge) => {
            if spec.source.cursor.is_none() {
                bad(
                    "source.cursor",
                    "missing: a feed's merge names the record field that orders a key's versions (such as updated_at or a version number): the newest record of a key wins".into(),
                );
            }
        }
        Some(mode) => bad(
            "mode",
            format!(
                "{what} appends what each run consumed (`incremental`, the default for feeds) or upserts it by key (`merge`, into a Delta table), not `{}`",
                super::check::mode_name(mode)
            ),
        ),
    }
}

/// The fields the row gives that `takes` does not list.
pub(super) fn foreign(source: &SourceSpec, takes: &[&str]) -> Vec<&'static str> {
    given(source)
        .into_iter()
        .filter_map(|(name, given)| (given && !takes.contains(&name)).then_some(name))
        .collect()
}

/// The connection kinds whose jobs take a source field, for messages.
fn kinds_taking(field: &str) -> &'static str {
    if field == "files" {
        return "file feeds (a connection of kind `sftp`, `s3` or `folder`)";
    }
    if matches!(field, "fields" | "coerce" | "dedup") {
        return "feeds (a connection of kind `sqs`, `http`, `sftp`, `s3` or `folder`)";
    }
    if field == "changes" {
        return "database tables (a connection of kind `postgres` or `mysql`)";
    }
    if field == "collect" {
        return "the event collector's feeds (a connection of kind `folder`, `s3`, `sftp` or `sqs`)";
    }
    match (QUEUE_FIELDS.contains(&field), API_FIELDS.contains(&field)) {
        (true, true) => "feeds (a connection of kind `sqs` or `http`)",
        (true, false) => "queue feeds (a connection of kind `sqs`)",
        _ => "API feeds (a connection of kind `http`)",
    }
}

/// A table job must not carry a feed's fields.
pub fn check_table_source(source: &SourceSpec, kind: &str, bad: &mut impl FnMut(&str, String)) {
    for field in foreign(source, &TABLE_FIELDS) {
        bad(
            &format!("source.{field}"),
            format!(
                "is for {}; connection `{}` is a {kind} database: read a `table` or a `query`",
                kinds_taking(field),
                source.connection
            ),
        );
    }
}

/// An API job must not carry a table's or a queue's fields.
pub fn check_api_source(spec: &JobSpec, bad: &mut impl FnMut(&str, String)) {
    let source = &spec.source;
    for field in foreign_to_feed(spec, &API_FIELDS) {
        let message = if TABLE_FIELDS.contains(&field) {
            format!(
                "connection `{}` is an API: it has no {}",
                source.connection,
                match field {
                    "primary_key" =>
                        "key columns to order by (its records come in the API's order; mode `merge` upserts by them)",
                    "split" => "split (see the connection's rate_limit.concurrency)",
                    "delete_when" | "tie_break" =>
                        "merge by key (mode `merge` reads database tables)",
                    "changes" =>
                        "log to capture changes from (source.changes reads PostgreSQL and MySQL/MariaDB tables)",
                    _ => "table or query (give source.request, or source.soap)",
                }
            )
        } else {
            format!(
                "is for {}; connection `{}` is an API",
                kinds_taking(field),
                source.connection
            )
        };
        bad(&format!("source.{field}"), message);
    }
}

/// Compiles a queue job's source. `schema` is `target.schema`, which stands in for the
/// record when there is no transform.
pub fn compile_queue(
    spec: &JobSpec,
    schema: Option<&[Column]>,
    bad: &mut impl FnMut(&str, String),
) -> Option<QueueFeed> {
    let source = &spec.source;
    for field in foreign_to_feed(spec, &QUEUE_FIELDS) {
        if !TABLE_FIELDS.contains(&field) {
            bad(
                &format!("source.{field}"),
                format!(
                    "is for {}; connection `{}` is a queue",
                    kinds_taking(field),
                    source.connection
                ),
            );
            continue;
        }
        bad(
            &format!("source.{field}"),
            format!(
                "connection `{}` is a queue: a feed has no {}; its progress is the messages each run consumed",
                source.connection,
                match field {
                    "cursor" | "lag" => "cursor column",
                    "primary_key" =>
                        "key columns (it deduplicates by message, see source.queue.dedup, or by record, see source.dedup; mode `merge` upserts by them)",
                    "split" => "split (see source.queue.receivers)",
                    "delete_when" | "tie_break" =>
                        "merge by key (mode `merge` reads database tables)",
                    _ => "table or query (declare source.record instead)",
                }
            ),
        );
    }
    check_feed_mode(spec, "a queue job", bad);
    for (i, rule) in spec.quality.iter().flatten().enumerate() {
        if rule.on_fail == Some(OnFail::Quarantine) {
            bad(
                &format!("quality[{i}].on_fail"),
                "a queue job's quarantine table holds the messages that could not be decoded (with their raw body): its rules use `fail` or `warn`".into(),
            );
        }
    }
    let message_columns = message_columns(source, bad);
    let records = record(spec, schema, message_columns, "a queue job", bad)?;
    let options = source.queue.clone().unwrap_or_default();
    let receivers = options.receivers.map_or(DEFAULT_RECEIVERS, |n| n as usize);
    if !(1..=32).contains(&receivers) {
        bad(
            "source.queue.receivers",
            format!("{receivers} is out of range (1 to 32)"),
        );
    }
    let mut duration =
        |field: &str, text: Option<&String>, default: Duration, range: (u64, u64)| {
            let Some(text) = text else { return default };
            match parse_duration(text) {
                Ok(d) if (range.0..=range.1).contains(&d.as_secs()) => d,
                Ok(_) => {
                    bad(
                        &format!("source.queue.{field}"),
                        format!("{text} is out of range ({}s to {}s)", range.0, range.1),
                    );
                    default
                }
                Err(m) => {
                    bad(&format!("source.queue.{field}"), m);
                    default
                }
            }
        };
    let visibility = duration(
        "visibility",
        options.visibility.as_ref(),
        DEFAULT_VISIBILITY,
        (10, 12 * 3600),
    );
    let wait = duration("wait", options.wait.as_ref(), DEFAULT_WAIT, (0, 20));
    let max_messages = options.max_messages.unwrap_or(DEFAULT_MAX_MESSAGES);
    if max_messages == 0 {
        bad("source.queue.max_messages", "must be at least 1".into());
    }
    let max_seconds = options.max_seconds.unwrap_or(DEFAULT_MAX_SECONDS);
    if !(1..=12 * 3600).contains(&max_seconds) {
        bad(
            "source.queue.max_seconds",
            format!("{max_seconds} is out of range (1 to 43200)"),
        );
    }
    Some(QueueFeed {
        records,
        receivers,
        visibility,
        wait,
        max_messages,
        max_duration: Duration::from_secs(max_seconds),
        dedup: options.dedup.unwrap_or(Dedup::MessageId),
    })
}

fn message_columns(source: &SourceSpec, bad: &mut impl FnMut(&str, String)) -> Vec<MessageColumn> {
    let mut columns = source.message_columns.clone().unwrap_or_default();
    let given = columns.len();
    columns.sort();
    columns.dedup();
    if columns.len() != given {
        bad("source.message_columns", "lists a column twice".into());
    }
    columns
}

/// The record's fields: `source.record`, or `target.schema` less the message columns
/// when there is no transform. `what` names the job in messages ("a queue job").
pub(super) fn record(
    spec: &JobSpec,
    schema: Option<&[Column]>,
    message_columns: Vec<MessageColumn>,
    what: &str,
    bad: &mut impl FnMut(&str, String),
) -> Option<Records> {
    let fields = fields(spec, schema, &message_columns, what, bad)?;
    let source = &spec.source;
    let mut paths = Vec::new();
    for (name, path) in source.fields.iter().flatten() {
        if !fields.iter().any(|f| &f.name == name) {
            bad(
                &format!("source.fields.{name}"),
                format!(
                    "is not a field of the record (its fields: {})",
                    field_names(&fields)
                ),
            );
        }
        match Path::parse(path) {
            Ok(p) => paths.push((name.clone(), p)),
            Err(m) => bad(&format!("source.fields.{name}"), m),
        }
    }
    let coerce = match &source.coerce {
        None | Some(Coerce::All(false)) => vec![false; fields.len()],
        Some(Coerce::All(true)) => vec![true; fields.len()],
        Some(Coerce::Fields(names)) => {
            for (i, name) in names.iter().enumerate() {
                if !fields.iter().any(|f| &f.name == name) {
                    bad(
                        &format!("source.coerce[{i}]"),
                        format!(
                            "`{name}` is not a field of the record (its fields: {})",
                            field_names(&fields)
                        ),
                    );
                }
            }
            fields.iter().map(|f| names.contains(&f.name)).collect()
        }
    };
    let key = source
        .dedup
        .as_ref()
        .map(|dedup| record_key(dedup, &fields, bad));
    Some(Records {
        fields,
        message_columns,
        coerce,
        paths,
        key,
    })
}

fn record_key(
    dedup: &crate::spec::RecordDedup,
    fields: &[Column],
    bad: &mut impl FnMut(&str, String),
) -> RecordKey {
    if dedup.key.is_empty() {
        bad(
            "source.dedup.key",
            "is empty: name the record fields that identify a record, e.g. [device_id, seq]".into(),
        );
    }
    for (i, name) in dedup.key.iter().enumerate() {
        if !fields.iter().any(|f| &f.name == name) {
            bad(
                &format!("source.dedup.key[{i}]"),
                format!(
                    "`{name}` is not a field of the record (its fields: {})",
                    field_names(fields)
                ),
            );
        }
        if dedup.key[..i].contains(name) {
            bad(
                &format!("source.dedup.key[{i}]"),
                format!("`{name}` is named twice"),
            );
        }
    }
    let text = dedup.window.as_deref().unwrap_or_default();
    let window = match dedup.window.as_deref().map(parse_duration) {
        None => DEFAULT_KEY_WINDOW,
        Some(Ok(w)) if (60..=400 * 86_400).contains(&w.as_secs()) => w,
        Some(Ok(_)) => {
            bad(
                "source.dedup.window",
                format!("{text} is out of range (1m to 400d)"),
            );
            DEFAULT_KEY_WINDOW
        }
        Some(Err(m)) => {
            bad("source.dedup.window", m);
            DEFAULT_KEY_WINDOW
        }
    };
    RecordKey {
        fields: dedup.key.clone(),
        window,
    }
}

/// The fields' names, for messages.
pub(super) fn field_names(fields: &[Column]) -> String {
    fields
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn fields(
    spec: &JobSpec,
    schema: Option<&[Column]>,
    message_columns: &[MessageColumn],
    what: &str,
    bad: &mut impl FnMut(&str, String),
) -> Option<Vec<Column>> {
    let is_message_column = |name: &str| message_columns.iter().any(|m| m.column() == name);
    for (i, field) in spec.source.record.iter().flatten().enumerate() {
        if is_message_column(&field.name) {
            bad(
                &format!("source.record[{i}].name"),
                format!(
                    "`{}` is a message column (source.message_columns adds it)",
                    field.name
                ),
            );
        }
    }
    let fields = match (&spec.source.record, &spec.transform, schema) {
        (Some(specs), _, _) => match crate::contract::compile(specs) {
            Ok(columns) => columns,
            Err(found) => {
                for (path, message) in found {
                    bad(&path.replacen("target.schema", "source.record", 1), message);
                }
                return None;
            }
        },
        (None, None, Some(schema)) => schema
            .iter()
            .filter(|c| !is_message_column(&c.name))
            .cloned()
            .collect(),
        (None, Some(_), _) => {
            bad(
                "source.record",
                format!(
                    "is missing: {what} with a `transform` declares the fields of one record (name and type each), because the transform derives the output from them and target.schema describes the output"
                ),
            );
            return None;
        }
        (None, None, None) => {
            bad(
                "source.record",
                "is missing: declare the fields of one record (name and type each, as in target.schema), or give target.schema".into(),
            );
            return None;
        }
    };
    if fields.is_empty() {
        bad(
            "source.record",
            "has no fields: a record needs at least one".into(),
        );
    }
    Some(fields)
}
