//! Compiles a raw job row into the [`Job`] the pipeline runs. Pure: no I/O, no
//! environment; every problem is reported at once. The checks of each kind of source are
//! in that kind's module (`table`, `changes`, `feed`, `http`, `files`); this holds what
//! every job shares (id, mode, batch, transform, target, quality) and picks the kind.

use std::time::Duration;

use super::ConfigError;
use super::check::{check_column_list, check_select, is_identifier};
use super::compiled::{
    Address, Connections, DEFAULT_BATCH_ROWS, DEFAULT_FILE_SIZE, From, Job, Target,
};
use super::table::{TableRead, table_read};
use super::{changes, feed, files, http};
use crate::spec::shape::{self, Problem};
use crate::spec::units::{parse_duration, parse_size};
use crate::spec::{Compression, ConnectionKind, JobSpec, Mode, OnSchemaChange, TableFormat};

/// Compiles one job row. `origin` names the file or item in every error.
pub fn compile(
    spec: &JobSpec,
    origin: &str,
    connections: &Connections,
) -> Result<Job, Vec<ConfigError>> {
    let mut problems: Vec<Problem> = Vec::new();
    let mut bad = |path: &str, message: String| {
        problems.push(Problem {
            path: path.to_string(),
            message,
        })
    };

    if !is_job_id(&spec.job) {
        bad(
            "job",
            format!(
                "{:?} is not a valid id: use lower-case letters, digits and `_`, starting with a letter, at most 64 characters",
                spec.job
            ),
        );
    }

    if let Some(task) = &spec.task_definition
        && !is_task_definition(task)
    {
        bad(
            "task_definition",
            format!(
                "{task:?} is not an ECS task definition: give a family (`sluice-large`), `family:revision` or an ARN"
            ),
        );
    }

    let freshness = spec
        .freshness
        .as_deref()
        .and_then(|text| check_freshness(text, &mut bad));

    let source = &spec.source;
    let connection = match connections.get(&source.connection) {
        Some(c) => Some(c.clone()),
        None => {
            let hint =
                shape::did_you_mean(&source.connection, connections.keys().map(String::as_str))
                    .map(|m| format!("; did you mean `{m}`?"))
                    .unwrap_or_else(|| ".".to_string());
            let known = if connections.is_empty() {
                "none are defined (add connections.yaml beside the job files)".to_string()
            } else {
                connections.keys().cloned().collect::<Vec<_>>().join(", ")
            };
            bad(
                "source.connection",
                format!(
                    "no connection named `{}`{hint} Known connections: {known}",
                    source.connection
                ),
            );
            None
        }
    };

    let kind = connection.as_ref().map(|c| c.kind);
    let is_feed = kind.is_some_and(ConnectionKind::is_feed);
    let mode = spec.mode.unwrap_or(match kind {
        // Changes are applied to a Delta table, appended to a Parquet one.
        _ if source.changes.is_some() => match spec.target.format {
            Some(TableFormat::Delta) => Mode::Merge,
            _ => Mode::Incremental,
        },
        Some(k) if k == ConnectionKind::Sqs || k.is_files() => Mode::Incremental,
        Some(ConnectionKind::Http) if source.cursor.is_some() => Mode::Incremental,
        _ => Mode::Full,
    });
    // A feed's merge upserts by record fields (`source.primary_key`).
    let feed_key = || source.primary_key.clone().unwrap_or_default();
    let table = if kind == Some(ConnectionKind::Http) {
        feed::check_api_source(spec, &mut bad);
        TableRead {
            relation: None,
            primary_key: feed_key(),
            lag: source.lag.as_deref().and_then(|l| parse_duration(l).ok()),
            split: None,
        }
    } else if is_feed {
        TableRead {
            relation: None,
            primary_key: feed_key(),
            lag: None,
            split: None,
        }
    } else if source.changes.is_some() {
        let kind = connection.as_ref().map_or("database", |c| c.kind.name());
        feed::check_table_source(source, kind, &mut bad);
        check_column_list(
            "source.primary_key",
            source.primary_key.as_deref().unwrap_or_default(),
            &mut bad,
        );
        TableRead {
            relation: None,
            primary_key: source.primary_key.clone().unwrap_or_default(),
            lag: None,
            split: changes::split(source),
        }
    } else {
        let kind = connection.as_ref().map_or("database", |c| c.kind.name());
        feed::check_table_source(source, kind, &mut bad);
        table_read(source, mode, &mut bad)
    };
    let changes = changes::compile(spec, kind, mode, &mut bad);

    let batch_rows = source.batch_rows.map_or(DEFAULT_BATCH_ROWS, |n| n as usize);
    if !(1024..=1 << 20).contains(&batch_rows) {
        bad(
            "source.batch_rows",
            format!("{batch_rows} is out of range (1024 to 1048576)"),
        );
    }

    let transform = match &spec.transform {
        None => None,
        Some(sql) => match check_select(sql) {
            Ok(q) => Some(q),
            Err(m) => {
                bad("transform", m);
                None
            }
        },
    };

    let target = &spec.target;
    if !is_table_name(&target.table) {
        bad(
            "target.table",
            format!(
                "{:?} is not a valid lake table name: use lower-case letters, digits and `_` (Athena folds names to lower case)",
                target.table
            ),
        );
    }
    let partition_by = target.partition_by.clone().unwrap_or_default();
    check_column_list("target.partition_by", &partition_by, &mut bad);
    if mode == Mode::Snapshot && partition_by.iter().any(|p| p == "snapshot") {
        bad(
            "target.partition_by",
            "`snapshot` is the partition that mode `snapshot` adds itself; remove it".into(),
        );
    }
    let file_size = match &target.file_size {
        None => DEFAULT_FILE_SIZE,
        Some(text) => match parse_size(text) {
            Ok(n) if (1 << 20..=5 << 30).contains(&n) => n,
            Ok(_) => {
                bad(
                    "target.file_size",
                    format!("{text} is out of range (1MiB to 5GiB)"),
                );
                DEFAULT_FILE_SIZE
            }
            Err(m) => {
                bad("target.file_size", m);
                DEFAULT_FILE_SIZE
            }
        },
    };

    let format = target.format.unwrap_or_default();
    let delete_when = check_merge(spec, format, &mut bad);
    let tie_break = check_tie_break(spec, &mut bad);
    if target.table.ends_with(crate::quality::QUARANTINE_SUFFIX) {
        bad(
            "target.table",
            format!(
                "names ending in `{}` are the quarantine tables sluice makes",
                crate::quality::QUARANTINE_SUFFIX
            ),
        );
    }
    let schema = match &target.schema {
        None => None,
        Some(specs) => match crate::contract::compile(specs) {
            Ok(columns) => Some(columns),
            Err(found) => {
                for (path, message) in found {
                    bad(&path, message);
                }
                None
            }
        },
    };
    if let Some(database) = target.catalog.as_ref().and_then(|c| c.database.as_ref())
        && !is_table_name(database)
    {
        bad(
            "target.catalog.database",
            format!("{database:?} is not a Glue database name: lower-case letters, digits and `_`"),
        );
    }
    if let Some(columns) = &schema {
        check_against_schema(
            columns,
            &partition_by,
            spec.quality.as_deref().unwrap_or_default(),
            source.cursor.as_deref(),
            &mut bad,
        );
    }
    let quality = match crate::quality::compile(
        spec.quality.as_deref().unwrap_or_default(),
        source.cursor.as_deref(),
    ) {
        Ok(rules) => rules,
        Err(found) => {
            for (path, message) in found {
                bad(&path, message);
            }
            Vec::new()
        }
    };

    let from = match connection.as_ref().map(|c| &c.address) {
        Some(Address::Http(api)) => http::compile_http(spec, schema.as_deref(), api, &mut bad)
            .map(|feed| From::Http(Box::new(feed))),
        Some(Address::Files(_)) => files::compile_feed(spec, schema.as_deref(), &mut bad)
            .map(|feed| From::Files(Box::new(feed))),
        _ if is_feed => feed::compile_queue(spec, schema.as_deref(), &mut bad).map(From::Queue),
        _ if spec.source.changes.is_some() => changes.map(|c| From::Changes(Box::new(c))),
        _ => table.relation.map(From::Relation),
    };
    match (problems.is_empty(), connection, from) {
        (true, Some(connection), Some(from)) => Ok(Job {
            id: spec.job.clone(),
            description: spec.description.clone(),
            enabled: spec.enabled.unwrap_or(true),
            freshness,
            origin: origin.to_string(),
            connection,
            from,
            cursor: source.cursor.clone(),
            primary_key: table.primary_key,
            lag: table.lag,
            batch_rows,
            split: table.split,
            mode,
            transform,
            delete_when,
            tie_break,
            target: Target {
                table: target.table.clone(),
                partition_by,
                compression: target.compression.unwrap_or(Compression::Zstd),
                file_size,
                schema,
                on_schema_change: target.on_schema_change.unwrap_or(OnSchemaChange::Fail),
                catalog_database: target.catalog.as_ref().and_then(|c| c.database.clone()),
                projection: target
                    .catalog
                    .as_ref()
                    .and_then(|c| c.projection)
                    .unwrap_or(false),
                format,
            },
            quality,
        }),
        _ => Err(problems
            .into_iter()
            .map(|p| ConfigError::new(origin, p.path, p.message))
            .collect()),
    }
}

/// The most and least a `freshness` target may be: under a minute is shorter than any
/// schedule reports on; over a year is no target.
const FRESHNESS_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(366 * 86_400));

/// `freshness` as a duration, or the problem with it.
fn check_freshness(text: &str, bad: &mut impl FnMut(&str, String)) -> Option<Duration> {
    match parse_duration(text) {
        Ok(d) if (FRESHNESS_RANGE.0..=FRESHNESS_RANGE.1).contains(&d) => Some(d),
        Ok(_) => {
            bad(
                "freshness",
                format!("{text} is out of range: give from 1m to 366d, such as `6h` or `1d`"),
            );
            None
        }
        Err(m) => {
            bad("freshness", m);
            None
        }
    }
}

/// Mode `merge` and its `source.delete_when`: a Delta table, a primary key, and a
/// predicate that parses. Returns the predicate.
fn check_merge(
    spec: &JobSpec,
    format: TableFormat,
    bad: &mut impl FnMut(&str, String),
) -> Option<String> {
    let merge = spec.mode == Some(Mode::Merge);
    if merge && format != TableFormat::Delta {
        bad(
            "mode",
            "`merge` rewrites the rows it updates, which needs a table format with commits: set `target.format: delta`".into(),
        );
    }
    if merge && spec.source.primary_key.as_ref().is_none_or(Vec::is_empty) {
        bad(
            "source.primary_key",
            "is required for mode `merge`: name the columns that identify a row (such as [order_id])".into(),
        );
    }
    let predicate = spec.source.delete_when.as_ref()?;
    if !merge {
        bad(
            "source.delete_when",
            "only applies to mode `merge` (it deletes the table's row with the same key)".into(),
        );
        return None;
    }
    match check_select(&format!("SELECT 1 FROM source WHERE {predicate}")) {
        Ok(_) => Some(predicate.clone()),
        Err(m) => {
            bad(
                "source.delete_when",
                format!("{predicate:?} is not an SQL predicate: {m}"),
            );
            None
        }
    }
}

/// `source.tie_break`: a column name, in mode `merge` with a cursor (it orders what the
/// cursor leaves tied). Returns it lower-cased, as output columns are.
fn check_tie_break(spec: &JobSpec, bad: &mut impl FnMut(&str, String)) -> Option<String> {
    let column = spec.source.tie_break.as_ref()?;
    if spec.mode != Some(Mode::Merge) || spec.source.cursor.is_none() {
        bad(
            "source.tie_break",
            "only applies to mode `merge` with a source.cursor (it decides between rows of one key with the same cursor)".into(),
        );
        return None;
    }
    if !is_identifier(column) {
        bad(
            "source.tie_break",
            format!("{column:?} is not a column name (such as change_id)"),
        );
        return None;
    }
    Some(column.to_lowercase())
}

/// With `target.schema` given, the partition keys and the columns quality rules name
/// must be among its columns (checked here, without a database; without a schema the
/// run checks them against its output).
fn check_against_schema(
    columns: &[crate::contract::Column],
    partition_by: &[String],
    rules: &[crate::spec::QualitySpec],
    cursor: Option<&str>,
    bad: &mut impl FnMut(&str, String),
) {
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let missing = |name: &str| {
        (!names.contains(&crate::lake_type::athena_name(name).as_str())).then(|| {
            format!(
                "`{name}` is not a column of target.schema (its columns: {})",
                names.join(", ")
            )
        })
    };
    for (i, key) in partition_by.iter().enumerate() {
        if let Some(m) = missing(key) {
            bad(&format!("target.partition_by[{i}]"), m);
        }
    }
    for (i, rule) in rules.iter().enumerate() {
        for (field, column) in crate::quality::named_columns(rule, cursor) {
            if let Some(m) = missing(column) {
                bad(&format!("quality[{i}].{field}"), m);
            }
        }
    }
}

/// An ECS task definition family (letters, digits, `-`, `_`, up to 255), optionally with
/// `:revision`, or an ARN.
fn is_task_definition(text: &str) -> bool {
    if text.starts_with("arn:") {
        return text.contains(":task-definition/");
    }
    let (family, revision) = text.split_once(':').unwrap_or((text, "1"));
    (1..=255).contains(&family.len())
        && family
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && revision.parse::<u32>().is_ok_and(|r| r > 0)
}

fn is_job_id(s: &str) -> bool {
    s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn is_table_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.starts_with(|c: char| c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}
