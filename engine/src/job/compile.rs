//! Compiles a raw job row into the [`Job`] the pipeline runs. Pure: no I/O, no
//! environment; every problem is reported at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use datafusion::sql::parser::{DFParser, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Statement;

use super::ConfigError;
use super::feed::{self, QueueFeed};
use super::http::{self, HttpConnection, HttpFeed};
use crate::spec::shape::{self, Problem};
use crate::spec::units::{parse_duration, parse_size};
use crate::spec::{
    Compression, ConnectionKind, ConnectionSpec, JobSpec, Mode, OnSchemaChange, SourceSpec,
    TableFormat,
};

pub const DEFAULT_BATCH_ROWS: usize = 65_536;
pub const DEFAULT_FILE_SIZE: u64 = 128 << 20;

/// A job ready to run: every default applied, every reference resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub description: Option<String>,
    pub enabled: bool,
    /// `freshness`: how old the job's data may get (its last successful run's age)
    /// before the console shows it stale; `None`: freshness is not watched.
    pub freshness: Option<Duration>,
    /// Where the row came from (`jobs/orders.yaml`, `dynamodb://jobs/orders`).
    pub origin: String,
    pub connection: Connection,
    pub from: From,
    pub cursor: Option<String>,
    pub primary_key: Vec<String>,
    pub lag: Option<Duration>,
    pub batch_rows: usize,
    /// `None`: the source decides from the table's size.
    pub split: Option<Split>,
    pub mode: Mode,
    pub transform: Option<String>,
    /// Mode `merge`: the SQL predicate over an output row that makes it a delete.
    pub delete_when: Option<String>,
    /// Mode `merge`: the column that decides a tie of the cursor within a run.
    pub tie_break: Option<String>,
    pub target: Target,
    /// Data-quality rules, in the order written.
    pub quality: Vec<crate::quality::Rule>,
}

impl Job {
    /// A feed's records (`None` for a table).
    pub fn records(&self) -> Option<&feed::Records> {
        match &self.from {
            From::Relation(_) | From::Changes(_) => None,
            From::Queue(feed) => Some(&feed.records),
            From::Http(feed) => Some(&feed.records),
            From::Files(feed) => Some(&feed.records),
        }
    }
}

/// How a table read is split into parts read at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    pub parts: usize,
    pub column: Option<String>,
}

/// A named connection; its address is resolved when the job connects.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    pub name: String,
    pub kind: ConnectionKind,
    pub address: Address,
    /// The folder relative SQLite paths are resolved against.
    pub base_dir: Option<PathBuf>,
}

/// Where a connection's URL comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Address {
    /// A URL that may still hold `${VAR}` placeholders.
    Url(String),
    /// The name or ARN of a Secrets Manager secret in the RDS JSON shape.
    Secret(String),
    /// An API: its base URL, auth and limits.
    Http(Box<HttpConnection>),
    /// A file store: an SFTP server, an S3 bucket or a local folder.
    Files(Box<super::files::FileStore>),
}

/// What the extract reads: a relation of a database, or a feed.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    Relation(Relation),
    Queue(QueueFeed),
    Http(Box<HttpFeed>),
    Files(Box<super::files::FilesFeed>),
    /// A table's changes, read from the database's log (`source.changes`).
    Changes(Box<super::changes::ChangeFeed>),
}

/// A table or query of a database.
#[derive(Debug, Clone, PartialEq)]
pub enum Relation {
    /// A table, with its schema (PostgreSQL) or database (MySQL) when given.
    Table {
        schema: Option<String>,
        name: String,
    },
    /// A SELECT, read as a subquery.
    Query(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub table: String,
    pub partition_by: Vec<String>,
    pub compression: Compression,
    pub file_size: u64,
    /// `target.schema`: the contract, when the row gives one.
    pub schema: Option<Vec<crate::contract::Column>>,
    pub on_schema_change: OnSchemaChange,
    /// The Glue database (`None`: the default `--catalog` names).
    pub catalog_database: Option<String>,
    /// Partition projection instead of registered partitions.
    pub projection: bool,
    pub format: TableFormat,
}

/// The connections a set of job rows may name.
pub type Connections = BTreeMap<String, Connection>;

/// Turns `connections.yaml` entries into connections, checking their URLs' shape.
pub fn compile_connections(
    specs: &BTreeMap<String, ConnectionSpec>,
    origin: &str,
    base_dir: Option<PathBuf>,
) -> (Connections, Vec<ConfigError>) {
    let mut errors = Vec::new();
    let mut out = Connections::new();
    for (name, spec) in specs {
        let at = |field: &str, message: String| {
            ConfigError::new(origin, format!("{name}.{field}"), message)
        };
        if !is_identifier(name) {
            errors.push(ConfigError::new(
                origin,
                name.clone(),
                "connection names are letters, digits and `_`, starting with a letter".into(),
            ));
        }
        let mut problem = |field: &str, message: String| errors.push(at(field, message));
        if !spec.kind.is_files() {
            super::files::refuse_file_fields(spec, &mut problem);
        }
        let address = match spec.kind {
            ConnectionKind::Sqs => queue_address(spec, &mut problem),
            ConnectionKind::Http => Address::Http(Box::new(http::compile_connection(
                spec,
                base_dir.as_deref(),
                &mut problem,
            ))),
            ConnectionKind::Sftp | ConnectionKind::S3 | ConnectionKind::Folder => {
                Address::Files(Box::new(super::files::compile_connection(
                    spec,
                    base_dir.as_deref(),
                    &mut problem,
                )))
            }
            ConnectionKind::Postgres | ConnectionKind::Mysql | ConnectionKind::Sqlite => {
                http_fields(spec, &mut problem);
                database_address(spec, &mut problem)
            }
        };
        out.insert(
            name.clone(),
            Connection {
                name: name.clone(),
                kind: spec.kind,
                address,
                base_dir: base_dir.clone(),
            },
        );
    }
    (out, errors)
}

/// A database connection's address: its URL or its Secrets Manager secret.
fn database_address(spec: &ConnectionSpec, problem: &mut impl FnMut(&str, String)) -> Address {
    if spec.queue_url.is_some() {
        problem(
            "queue_url",
            format!(
                "is for kind `sqs`; a {} connection gives `url` or `secret`",
                spec.kind.name()
            ),
        );
    }
    match (&spec.url, &spec.secret) {
        (Some(url), None) => {
            for p in url_problems(spec.kind, url) {
                problem("url", p);
            }
            Address::Url(url.clone())
        }
        (None, Some(secret)) => {
            if spec.kind == ConnectionKind::Sqlite {
                problem(
                    "secret",
                    "a sqlite connection is a file: give its `url`".into(),
                );
            }
            if secret.trim().is_empty() {
                problem("secret", "must name a secret or give its ARN".into());
            }
            Address::Secret(secret.clone())
        }
        (Some(_), Some(_)) => {
            problem("secret", "give either `url` or `secret`, not both".into());
            Address::Secret(String::new())
        }
        (None, None) => {
            problem(
                "url",
                "missing: give the connection's `url`, or the Secrets Manager `secret` that holds it".into(),
            );
            Address::Secret(String::new())
        }
    }
}

/// The connection fields only APIs take, and whether the row gives each.
pub(super) fn api_fields(spec: &ConnectionSpec) -> [(&'static str, bool); 8] {
    [
        ("base_url", spec.base_url.is_some()),
        ("auth", spec.auth.is_some()),
        ("headers", spec.headers.is_some()),
        ("timeout", spec.timeout.is_some()),
        ("connect_timeout", spec.connect_timeout.is_some()),
        ("rate_limit", spec.rate_limit.is_some()),
        ("retry", spec.retry.is_some()),
        ("ca_bundle", spec.ca_bundle.is_some()),
    ]
}

/// A database's connection must not carry an API's fields.
fn http_fields(spec: &ConnectionSpec, problem: &mut impl FnMut(&str, String)) {
    for (field, given) in api_fields(spec) {
        if given {
            problem(
                field,
                format!(
                    "is for kind `http` (an API); a {} connection gives {}",
                    spec.kind.name(),
                    if spec.kind == ConnectionKind::Sqs {
                        "`queue_url`"
                    } else {
                        "`url` or `secret`"
                    }
                ),
            );
        }
    }
}

/// A queue's address: its URL (the credentials come from the AWS chain).
fn queue_address(spec: &ConnectionSpec, problem: &mut impl FnMut(&str, String)) -> Address {
    http_fields(spec, problem);
    for (field, given) in [
        ("url", spec.url.is_some()),
        ("secret", spec.secret.is_some()),
    ] {
        if given {
            problem(
                field,
                "a queue connection gives `queue_url` only; its credentials come from the AWS chain (the task role)".into(),
            );
        }
    }
    let Some(queue) = &spec.queue_url else {
        problem(
            "queue_url",
            "missing: give the queue's URL, `https://sqs.<region>.amazonaws.com/<account>/<queue>`"
                .into(),
        );
        return Address::Url(String::new());
    };
    if let Err(p) = check_placeholders(queue) {
        problem("queue_url", p);
    } else if !queue.starts_with("https://")
        && !queue.starts_with("http://")
        && !queue.starts_with("${")
    {
        problem(
            "queue_url",
            format!(
                "{queue:?} is not a queue URL: give `https://sqs.<region>.amazonaws.com/<account>/<queue>`"
            ),
        );
    }
    Address::Url(queue.clone())
}

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
            split: super::changes::split(source),
        }
    } else {
        let kind = connection.as_ref().map_or("database", |c| c.kind.name());
        feed::check_table_source(source, kind, &mut bad);
        table_read(source, mode, &mut bad)
    };
    let changes = super::changes::compile(spec, kind, mode, &mut bad);

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
        Some(Address::Files(_)) => super::files::compile_feed(spec, schema.as_deref(), &mut bad)
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

/// What a table job reads and how: the relation, the key, the lag and the split.
struct TableRead {
    relation: Option<Relation>,
    primary_key: Vec<String>,
    lag: Option<Duration>,
    split: Option<Split>,
}

fn table_read(source: &SourceSpec, mode: Mode, mut bad: impl FnMut(&str, String)) -> TableRead {
    let relation = match (&source.table, &source.query) {
        (Some(_), Some(_)) => {
            bad(
                "source",
                "has both `table` and `query`; give exactly one".into(),
            );
            None
        }
        (None, None) => {
            bad(
                "source",
                "needs `table` (a table name) or `query` (a SELECT)".into(),
            );
            None
        }
        (Some(table), None) => match parse_table_name(table) {
            Ok(from) => Some(from),
            Err(m) => {
                bad("source.table", m);
                None
            }
        },
        (None, Some(query)) => match check_select(query) {
            Ok(q) => Some(Relation::Query(q)),
            Err(m) => {
                bad("source.query", m);
                None
            }
        },
    };

    if let Some(cursor) = &source.cursor
        && !is_identifier(cursor)
    {
        bad("source.cursor", format!("{cursor:?} is not a column name"));
    }
    if mode.reads_window() && source.cursor.is_none() {
        bad(
            "source.cursor",
            format!(
                "is required for mode `{}`: name the column that grows with every change (such as updated_at or id)",
                mode_name(mode)
            ),
        );
    }

    let primary_key = source.primary_key.clone().unwrap_or_default();
    check_column_list("source.primary_key", &primary_key, &mut bad);

    let lag = match &source.lag {
        None => None,
        Some(text) => {
            if !mode.reads_window() {
                bad(
                    "source.lag",
                    format!(
                        "only applies to modes `incremental` and `merge` (this job's mode is `{}`)",
                        mode_name(mode)
                    ),
                );
            }
            match parse_duration(text) {
                Ok(d) => Some(d),
                Err(m) => {
                    bad("source.lag", m);
                    None
                }
            }
        }
    };

    let split = source.split.as_ref().map(|s| Split {
        parts: s.parts as usize,
        column: s.column.clone(),
    });
    if let Some(split) = &source.split {
        if !(1..=32).contains(&split.parts) {
            bad(
                "source.split.parts",
                format!("{} is out of range (1 to 32)", split.parts),
            );
        }
        if source.table.is_none() {
            bad(
                "source.split",
                "splits a `table`; a `query` is read on one connection".into(),
            );
        }
        if let Some(column) = &split.column
            && !is_identifier(column)
        {
            bad(
                "source.split.column",
                format!("{column:?} is not a column name"),
            );
        }
    }

    TableRead {
        relation,
        primary_key,
        lag,
        split,
    }
}

pub fn mode_name(mode: Mode) -> &'static str {
    match mode {
        Mode::Full => "full",
        Mode::Incremental => "incremental",
        Mode::Snapshot => "snapshot",
        Mode::Merge => "merge",
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

fn check_column_list(path: &str, columns: &[String], bad: &mut impl FnMut(&str, String)) {
    let mut seen = std::collections::HashSet::new();
    for (i, c) in columns.iter().enumerate() {
        if !is_identifier(c) {
            bad(
                &format!("{path}[{i}]"),
                format!("{c:?} is not a column name"),
            );
        } else if !seen.insert(c.to_ascii_lowercase()) {
            bad(&format!("{path}[{i}]"), format!("`{c}` is listed twice"));
        }
    }
}

/// `name`, `schema.name`: plain identifiers (letters, digits, `_`, `$`), no quoting, so
/// that sluice quotes them itself for each database.
fn parse_table_name(text: &str) -> Result<Relation, String> {
    let parts: Vec<&str> = text.trim().split('.').collect();
    let valid = "a table name such as `orders` or `sales.orders` (letters, digits, `_`)";
    if parts.iter().any(|p| !is_identifier(p)) || parts.len() > 2 {
        return Err(format!("{text:?} is not {valid}"));
    }
    Ok(match parts.as_slice() {
        [name] => Relation::Table {
            schema: None,
            name: name.to_string(),
        },
        [schema, name] => Relation::Table {
            schema: Some(schema.to_string()),
            name: name.to_string(),
        },
        _ => return Err(format!("{text:?} is not {valid}")),
    })
}

/// Checks that `sql` is exactly one SELECT (or WITH … SELECT), parsed with the generic
/// dialect: what the source database or DataFusion accepts is checked when the job runs.
fn check_select(sql: &str) -> Result<String, String> {
    let trimmed = sql.trim().trim_end_matches(';').trim();
    if trimmed.is_empty() {
        return Err("is empty; expected a SELECT".into());
    }
    let statements = DFParser::parse_sql(trimmed).map_err(|e| format!("is not valid SQL: {e}"))?;
    match statements.iter().collect::<Vec<_>>().as_slice() {
        [DfStatement::Statement(s)] if matches!(**s, Statement::Query(_)) => {
            Ok(trimmed.to_string())
        }
        [_] => Err("must be a SELECT (or WITH … SELECT); it only reads".into()),
        _ => Err(format!(
            "must be one SELECT, found {} statements",
            statements.len()
        )),
    }
}

/// `${VAR}` placeholders must be closed and name a variable.
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

/// A URL's placeholders must be well formed and its scheme match the connection's kind.
fn url_problems(kind: ConnectionKind, url: &str) -> Vec<String> {
    let mut problems: Vec<String> = check_placeholders(url).err().into_iter().collect();
    let schemes: &[&str] = match kind {
        ConnectionKind::Postgres => &["postgres://", "postgresql://"],
        ConnectionKind::Mysql => &["mysql://", "mariadb://"],
        ConnectionKind::Sqlite => &["sqlite:"],
        _ => &["https://", "http://"],
    };
    if !schemes.iter().any(|s| url.starts_with(s)) {
        problems.push(format!(
            "a {} URL starts with {}",
            kind.name(),
            schemes.join(" or ")
        ));
    }
    problems
}

pub(super) fn check_placeholders(url: &str) -> Result<(), String> {
    let mut rest = url;
    while let Some(start) = rest.find("${") {
        let Some(end) = rest[start..].find('}') else {
            return Err("has an unclosed `${` placeholder; write `${VAR_NAME}`".into());
        };
        let name = &rest[start + 2..start + end];
        if !is_identifier(name) {
            return Err(format!(
                "placeholder `${{{name}}}` is not an environment variable name"
            ));
        }
        rest = &rest[start + end + 1..];
    }
    Ok(())
}

pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn select_checks() {
        assert!(check_select("SELECT 1;").is_ok());
        assert!(check_select("WITH a AS (SELECT 1) SELECT * FROM a").is_ok());
        assert!(check_select("DELETE FROM t").is_err());
        assert!(check_select("SELECT 1; SELECT 2").is_err());
        assert!(check_select("SELEC 1").is_err());
    }

    #[test]
    fn table_names() {
        assert_eq!(
            parse_table_name("public.orders"),
            Ok(Relation::Table {
                schema: Some("public".into()),
                name: "orders".into()
            })
        );
        assert!(parse_table_name("a.b.c").is_err());
        assert!(parse_table_name("orders; drop table x").is_err());
    }

    #[test]
    fn queue_connections_take_a_queue_url_only() {
        let spec = |yaml: &str| -> ConnectionSpec {
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
        };
        let specs = BTreeMap::from([
            (
                "gps".to_string(),
                spec("kind: sqs\nqueue_url: https://sqs.eu-west-1.amazonaws.com/1/gps\n"),
            ),
            ("no_url".to_string(), spec("kind: sqs\n")),
            (
                "db_url".to_string(),
                spec("kind: sqs\nurl: https://sqs.x/1/q\n"),
            ),
            (
                "not_url".to_string(),
                spec("kind: sqs\nqueue_url: gps-positions\n"),
            ),
            (
                "pg_queue".to_string(),
                spec("kind: postgres\nurl: postgres://h/db\nqueue_url: https://x\n"),
            ),
        ]);
        let (connections, errors) = compile_connections(&specs, "c.yaml", None);
        assert_eq!(
            connections.get("gps").map(|c| &c.address),
            Some(&Address::Url(
                "https://sqs.eu-west-1.amazonaws.com/1/gps".into()
            ))
        );
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "c.yaml: no_url.queue_url: missing",
            "c.yaml: db_url.url: a queue connection gives `queue_url` only",
            "c.yaml: db_url.queue_url: missing",
            "c.yaml: not_url.queue_url: \"gps-positions\" is not a queue URL",
            "c.yaml: pg_queue.queue_url: is for kind `sqs`",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(expected)),
                "{expected}\nin {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 5, "{lines:#?}");
    }

    #[test]
    fn http_connections_say_what_each_auth_kind_takes() {
        let spec = |yaml: &str| -> ConnectionSpec {
            serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("{e}"))
        };
        let specs = BTreeMap::from([
            (
                "good".to_string(),
                spec(
                    "kind: http\nbase_url: https://api.x/v2\nauth: {kind: api_key, name: X-Key, value: \"${KEY}\", in: query}\nrate_limit: {per_second: 5, concurrency: 2}\n",
                ),
            ),
            (
                "basic".to_string(),
                spec(
                    "kind: http\nbase_url: https://api.x\nauth: {kind: basic, username: u, token: t}\n",
                ),
            ),
            ("bare".to_string(), spec("kind: http\n")),
            (
                "limits".to_string(),
                spec(
                    "kind: http\nbase_url: ftp://x\ntimeout: 0s\nrate_limit: {per_second: 0, concurrency: 100}\nretry: {attempts: 0}\n",
                ),
            ),
            (
                "pg".to_string(),
                spec("kind: postgres\nurl: postgres://h/db\nbase_url: https://x\n"),
            ),
        ]);
        let (connections, errors) = compile_connections(&specs, "c.yaml", None);
        let Some(Address::Http(good)) = connections.get("good").map(|c| &c.address) else {
            panic!("good is an http connection");
        };
        assert_eq!(good.concurrency, 2);
        assert_eq!(good.per_second, Some(5.0));
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        for expected in [
            "c.yaml: basic.auth.token: is not a field of auth kind `basic` (it takes `username`, `password`)",
            "c.yaml: basic.auth.password: missing: auth kind `basic` needs it",
            "c.yaml: bare.base_url: missing",
            "c.yaml: limits.base_url: \"ftp://x\" is not an HTTP URL",
            "c.yaml: limits.timeout: 0s is out of range",
            "c.yaml: limits.rate_limit.per_second: 0 is out of range",
            "c.yaml: limits.rate_limit.concurrency: 100 is out of range (1 to 64)",
            "c.yaml: limits.retry.attempts: 0 is out of range (1 to 20)",
            "c.yaml: pg.base_url: is for kind `http` (an API); a postgres connection gives `url` or `secret`",
        ] {
            assert!(
                lines.iter().any(|l| l.starts_with(expected)),
                "{expected}\nin {lines:#?}"
            );
        }
        assert_eq!(lines.len(), 9, "{lines:#?}");
    }

    #[test]
    fn placeholders() {
        assert!(check_placeholders("postgres://u:${PW}@h/db").is_ok());
        assert!(check_placeholders("postgres://u:${PW@h/db").is_err());
        assert!(check_placeholders("postgres://u:${1x}@h/db").is_err());
    }
}
