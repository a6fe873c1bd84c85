//! The job row as users write it: in `jobs/*.yaml`, or as a DynamoDB item.
//!
//! These raw types mirror the file exactly (`Option`s, no defaults applied) and carry the
//! documentation that `sluice jobs schema` publishes for editor completion. They are
//! turned into a runnable job by `job::compile`, which checks everything the types
//! cannot.

pub mod changes;
pub mod feed;
pub mod files;
pub mod http;
pub mod shape;
pub mod units;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use changes::{ChangeSetup, ChangesSpec};
pub use feed::{Coerce, CollectTable, Dedup, MessageColumn, QueueSpec, RecordDedup};

/// One job: one table (or query) of one source database, or one feed (a queue), copied
/// into one lake table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The job's id: lower-case letters, digits and `_`, starting with a letter (at most
    /// 64 characters). Used in state, metrics, logs and file names.
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]{0,63}$"))]
    pub job: String,
    /// What the job copies, for people reading the job list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `false` keeps the row but leaves it out of `sluice run --all` and the scheduled
    /// runs. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// How old the job's data may get before operators should worry: the age of its last
    /// successful run, against which `sluice console` colours the job (green within it,
    /// amber up to twice it, red beyond), e.g. `6h`, `90m`, `1d`. From 1m to 366d.
    /// Without it, freshness plays no part in the job's health.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<String>,
    /// The ECS task definition (family, `family:revision` or ARN) the scheduled runs of
    /// this job use, for a job that needs more CPU or memory than the platform's default
    /// task (the state machine reads it; a run started by hand ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_definition: Option<String>,
    /// Where the rows come from.
    pub source: SourceSpec,
    /// How each run treats the lake table. Default `full`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    /// Optional DataFusion SQL run over the extracted rows, which are the table `source`;
    /// its result is what lands in the lake. Example:
    /// `SELECT *, date_format(created_at, '%Y-%m-%d') AS dt FROM source`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform: Option<String>,
    /// Where the rows go.
    pub target: TargetSpec,
    /// Data-quality rules, checked on the run's output before it commits. Each rule has
    /// one check (`not_null`, `unique`, `accepted_values`, `range`, `row_count`,
    /// `freshness` or `sql`) and what a failure does (`on_fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<Vec<QualitySpec>>,
}

/// The source side of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// Name of a connection in `connections.yaml` beside the job files.
    pub connection: String,
    /// The table to read, as `table` or `schema.table` (`database.table` on MySQL).
    /// Exactly one of `table` and `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// A SELECT to read instead of a table. Exactly one of `table` and `query`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The incremental column (a timestamp, date, integer or text column that grows).
    /// Required for modes `incremental` and `merge`. A feed's merge: the record field
    /// that orders a key's versions (the newest wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    /// The columns that identify a row. Orders the extract, so the same window always
    /// gives the same files. A feed's merge: the record fields it upserts by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<Vec<String>>,
    /// Rows whose cursor is newer than now minus `lag` wait for the next run, so that
    /// transactions still committing are not skipped. A duration such as `90s`, `5m`,
    /// `1h30m`, `2d`. Only with a timestamp or date cursor in modes `incremental` and `merge`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<String>,
    /// Mode `merge`: an SQL predicate over the source row (after `transform`) that marks
    /// it deleted, such as `deleted_at IS NOT NULL`: the row with its key leaves the
    /// table instead of being upserted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_when: Option<String>,
    /// Mode `merge`: the column that decides between rows of one key with the same
    /// `cursor` in one run (a sequence or change id, such as the log position): the
    /// greatest wins, NULL least. A tie it does not decide either goes to the delete
    /// (`delete_when`) over an upsert, then to the greatest row by the other columns in
    /// order; without it, that rule decides every tie. The run counts its ties either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tie_break: Option<String>,
    /// Rows per Arrow batch read from the source (default 65536, from 1024 to 1048576).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_rows: Option<u32>,
    /// Reads the table in parts on as many connections at once (PostgreSQL: all parts
    /// share one snapshot, so together they are one consistent view; MySQL: primary-key
    /// ranges). Default: chosen from the table's size and the machine's cores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitSpec>,
    /// Feeds (a queue connection): the fields of one record, in order, in the shape of
    /// `target.schema`'s columns. A message body is one JSON object or an array of them;
    /// each object's keys are matched to these names (also when spelled in another case
    /// or style: `TruckId`, `truckId` and `TRUCK_ID` find `truck_id`). The records are the table `source` that `transform` reads, so this
    /// is required with a `transform`; without one it defaults to `target.schema` less
    /// the message columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<Vec<ColumnSpec>>,
    /// Feeds: columns about where each record came from, added after the record's
    /// fields. Queue feeds: `message_id` (`_message_id`, the key a message is
    /// deduplicated by), `sent_at` (`_sent_at`) and `received_at` (`_received_at`). File
    /// feeds: `file` (`_file`, the file's path), `line` (`_line`, the line a record
    /// starts on, from 1) and `record` (`_record`, its position in the file, from 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_columns: Option<Vec<MessageColumn>>,
    /// Queue feeds: how a run receives (every field has a default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueSpec>,
    /// REST feeds (an `http` connection): the request that returns the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<http::RequestSpec>,
    /// SOAP feeds (an `http` connection): the operation that returns the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub soap: Option<http::SoapSpec>,
    /// REST feeds: a parent listing whose every record is the subject of one request
    /// (list the tags, then each tag's transactions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<http::ParentSpec>,
    /// API feeds in mode `incremental`: how the window over `cursor` is asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<http::WindowSpec>,
    /// File feeds (an `sftp`, `s3` or `folder` connection): which files, their format,
    /// and what happens to them after the commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<files::FilesSpec>,
    /// Feeds whose records are JSON (queue bodies, API pages, JSON and NDJSON files):
    /// record fields taken from a path in the record instead of its key of the same name:
    /// field → JSONPath (RFC 9535), e.g. `{tag_id: $.tag.id, lat: $.position.coordinates[1]}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<BTreeMap<String, String>>,
    /// Feeds whose records are JSON: the fields whose JSON text is read as their type.
    /// Without it a record is typed strictly: a string where a number, a decimal or a
    /// boolean belongs (`"heading": "090"` for an `int`) does not fit, and the record goes
    /// to the quarantine table with the field and the value. `true` reads every field's
    /// text as its type (`"090"` → 90, `"12.50"` → 12.50, `"true"`/`"1"` → true); a list
    /// names the fields that may come as text. Text formats (CSV files, SOAP's XML) are
    /// text by nature: their fields are always read from text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coerce: Option<Coerce>,
    /// Feeds: the record key that makes two records the same business record, so that a
    /// record re-sent under a new message, page or file is loaded once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedup: Option<RecordDedup>,
    /// The event collector's feeds (`sluice collect`): which of its tables this job
    /// loads, `events`, `aliases` or `profiles`. With a folder (or S3, SFTP) connection —
    /// the collector's spool — the job loads the spool's sealed segments
    /// (`ready/<table>-*.ndjson`, NDJSON, moved to `loaded/` after the commit); with an
    /// `sqs` connection, the queue the collector sends that table's events to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collect: Option<CollectTable>,
    /// Database tables (PostgreSQL, MySQL/MariaDB): read the table's changes from the
    /// database's log instead of a cursor window — hard deletes included (see
    /// [`ChangesSpec`]). Needs `table` and `primary_key`; mode `merge` (Delta) applies
    /// them, mode `incremental` appends them as a change table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<ChangesSpec>,
}

/// How a table read is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// How many parts (1 to 32); 1 reads on one connection.
    #[schemars(range(min = 1, max = 32))]
    pub parts: u32,
    /// An integer column whose value ranges make the parts (default: the integer primary
    /// key; for PostgreSQL tables without one, physical page ranges).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
}

/// How a run treats the lake table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every run copies the whole source and replaces the table's data.
    Full,
    /// Every run appends the rows whose cursor is in the window (last watermark, now].
    Incremental,
    /// Every run copies the whole source under a `snapshot=YYYY-MM-DD` partition; earlier
    /// snapshots are kept, a rerun on the same day replaces that day's.
    Snapshot,
    /// Every run reads the rows whose cursor is in the window, as `incremental`, and
    /// upserts them by `source.primary_key`: a row whose key is in the table replaces
    /// it, a new key is inserted, and a row `source.delete_when` holds for deletes it.
    /// Only with `target.format: delta`.
    Merge,
}

impl Mode {
    /// Whether a run reads only the rows whose cursor is in its window.
    pub fn reads_window(self) -> bool {
        matches!(self, Mode::Incremental | Mode::Merge)
    }
}

/// How the lake table is stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TableFormat {
    /// Hive-partitioned Parquet files and sluice's manifests (the default). Readers list
    /// the folder: a full reload is not atomic for them.
    #[default]
    Parquet,
    /// The same Parquet files committed to a Delta Lake log with the job's progress:
    /// atomic replace, merge by key, optimize, vacuum, time travel; Athena reads it
    /// natively (`table_type = DELTA`).
    Delta,
}

/// The lake side of a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetSpec {
    /// The lake (and Athena) table name: lower-case letters, digits and `_`.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,254}$"))]
    pub table: String,
    /// Columns of the output (after `transform`) that become Hive partitions
    /// (`dt=2024-05-01/`), outermost first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_by: Option<Vec<String>>,
    /// Parquet compression. Default `zstd`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
    /// Files roll when they reach this size: `128MiB` (the default), `1GiB`, `512MB`.
    /// From 1MiB to 5GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_size: Option<String>,
    /// The table's schema contract: its columns (after `transform`, partition columns
    /// included) in order. Authoritative when given; when absent, the first run's output
    /// is frozen as the contract (`sluice ddl` shows it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Vec<ColumnSpec>>,
    /// What a run does when the output differs from the contract. Default `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_schema_change: Option<OnSchemaChange>,
    /// Where the table is published in the Glue catalog (when runs publish: `--catalog`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<CatalogSpec>,
    /// `parquet` (the default) or `delta`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TableFormat>,
}

/// One column of a schema contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// The lake (Athena) name: lower-case letters, digits and `_`.
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_]{0,254}$"))]
    pub name: String,
    /// The lake type: `boolean`, `tinyint`, `smallint`, `int`, `bigint`, `float`,
    /// `double`, `decimal(p,s)`, `string`, `binary`, `date`, `timestamp` or
    /// `timestamp with time zone`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// `false`: a NULL in this column fails the run. Default `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nullable: Option<bool>,
}

/// What a run does when the output's columns differ from the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnSchemaChange {
    /// The run fails and lists every difference; nothing is written.
    Fail,
    /// New columns join the contract (nullable), a type widens when every old value fits
    /// the new type; the catalog follows. A column that disappears is written as NULL. No
    /// rename, no narrowing: those fail.
    Evolve,
    /// The contract stays: extra columns are dropped, missing ones written as NULL, other
    /// types cast to the contract's (a value that does not fit fails the run).
    Ignore,
}

/// Publishing in the Glue Data Catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogSpec {
    /// The Glue database (default: the one `--catalog glue://DATABASE` names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// `true`: partition projection properties on the table instead of registered
    /// partitions (Athena computes the partitions; nothing to register per run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projection: Option<bool>,
}

/// One data-quality rule: exactly one check, and what its failure does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualitySpec {
    /// The rule's name in run records, metrics and the quarantine table (default: the
    /// check and its columns, such as `not_null(id)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// These columns are never NULL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_null: Option<Vec<String>>,
    /// These columns together identify a row within the run's output (rows with a NULL
    /// in them are not compared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<Vec<String>>,
    /// A column's values are among these (NULL passes; add `not_null` to refuse it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_values: Option<AcceptedValuesSpec>,
    /// A column's values are within bounds, inclusive (NULL passes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeSpec>,
    /// The run's output has this many rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<RowCountSpec>,
    /// The newest value of a timestamp or date column is at most this old when the run
    /// ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<FreshnessSpec>,
    /// A DataFusion SQL predicate over the output's columns that every row satisfies
    /// (a row where it is false or NULL fails), e.g. `amount >= 0 OR status = 'refund'`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql: Option<String>,
    /// `fail` (default): the run fails and commits nothing; `warn`: the run commits and
    /// reports the failure; `quarantine`: the failing rows go to the table
    /// `<table>__quarantine` with the rule's name, the others commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_fail: Option<OnFail>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptedValuesSpec {
    pub column: String,
    /// The accepted values (strings, numbers or booleans).
    pub values: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeSpec {
    pub column: String,
    /// The smallest valid value (a number, or a string for dates and timestamps).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<serde_json::Value>,
    /// The greatest valid value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RowCountSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FreshnessSpec {
    /// The column (default: `source.cursor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The greatest age, such as `90m`, `1d`.
    pub max_age: String,
}

/// What a failed quality rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnFail {
    /// The run fails; nothing it wrote is committed.
    Fail,
    /// The run commits; the failure is logged, recorded and counted.
    Warn,
    /// The failing rows go to `<table>__quarantine`; the others commit.
    Quarantine,
}

/// Parquet compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// ZSTD (level 3): the smallest files at a good speed.
    Zstd,
    /// Snappy: faster, larger files.
    Snappy,
    /// No compression.
    None,
}

/// `connections.yaml`: connection name → how to reach the database, queue or API.
pub type ConnectionsSpec = BTreeMap<String, ConnectionSpec>;

/// How to reach one source database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    /// The database engine.
    pub kind: ConnectionKind,
    /// The connection URL, e.g. `postgres://etl:${SALES_PASSWORD}@10.0.0.5:5432/sales`.
    /// `${VAR}` is replaced by the environment variable VAR when the job runs, so that no
    /// password sits in a file (percent-escaped in the user-info; `${URL}` alone works too). For SQLite, a relative path is relative to the folder of
    /// this file: `sqlite:data/logistics.db`. Give either `url` or `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The name or ARN of an AWS Secrets Manager secret in the standard RDS shape
    /// (`{"engine", "host", "port", "username", "password", "dbname"}`), read when the job
    /// runs: the password is never in a job row, an environment variable or a log. For
    /// kind `http`, a JSON object whose keys fill the `${KEY}` placeholders of `auth`,
    /// `headers` and `base_url` (before the environment).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The queue's URL (kind `sqs`), e.g.
    /// `https://sqs.eu-west-1.amazonaws.com/123456789012/gps-positions`; `${VAR}`
    /// placeholders as in `url`. The SQS endpoint is the SDK's (`AWS_ENDPOINT_URL_SQS`
    /// or `AWS_ENDPOINT_URL` override it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    /// An API's base URL (kind `http`), e.g. `https://api.tags.example/v2`; request
    /// paths are relative to it. `${VAR}` placeholders as in `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// How requests authenticate (kind `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<http::AuthSpec>,
    /// Headers sent with every request (kind `http`); values may hold `${VAR}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// The most a request may take, response included (kind `http`, default `30s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// The most connecting may take (kind `http`, default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// Requests per second and in flight at most (kind `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<http::RateLimitSpec>,
    /// How failed requests are retried (kind `http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<http::RetrySpec>,
    /// A PEM file of the certificate authorities to trust instead of the system's
    /// (kind `http`; relative to this file's folder), for a partner's private CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    /// The SFTP server's host name or address (kind `sftp`); `${VAR}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The SFTP server's port (kind `sftp`, default 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The user to log in as (kind `sftp`); `${VAR}` placeholders.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The password (kind `sftp`), always as a `${VAR}` placeholder filled from the
    /// connection's `secret` or the environment. Give `password` or `private_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// An OpenSSH private key (kind `sftp`; PEM text, unencrypted), always as a
    /// `${VAR}` placeholder filled from the connection's `secret` or the environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// The server's host key fingerprint, pinned (kind `sftp`): `SHA256:…` as
    /// `ssh-keygen -lf` or `ssh-keyscan` show it. A server presenting any other key is
    /// refused before the password or key is sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_key: Option<String>,
    /// The folder job patterns are relative to: on the SFTP server (kind `sftp`,
    /// default the login folder), a key prefix in the bucket (kind `s3`), or a local
    /// folder (kind `folder`; relative to this file's folder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The bucket (kind `s3`); `${VAR}` placeholders. Region, credentials and endpoint
    /// come from the standard AWS chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket: Option<String>,
    /// What this source is, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The kinds of source sluice reads from: databases (tables), queues and APIs (feeds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionKind {
    /// PostgreSQL 12 or newer.
    Postgres,
    /// MySQL 8 or MariaDB 10.5 or newer.
    Mysql,
    /// SQLite 3 (a file).
    Sqlite,
    /// An Amazon SQS queue (standard or FIFO), fed directly or by an SNS topic: a feed.
    Sqs,
    /// A partner's REST or SOAP API over HTTP(S): a feed.
    Http,
    /// Files on an SFTP server: a feed.
    Sftp,
    /// Files in an S3 bucket: a feed.
    S3,
    /// Files in a local folder: a feed.
    Folder,
}

impl ConnectionKind {
    pub fn name(self) -> &'static str {
        match self {
            ConnectionKind::Postgres => "postgres",
            ConnectionKind::Mysql => "mysql",
            ConnectionKind::Sqlite => "sqlite",
            ConnectionKind::Sqs => "sqs",
            ConnectionKind::Http => "http",
            ConnectionKind::Sftp => "sftp",
            ConnectionKind::S3 => "s3",
            ConnectionKind::Folder => "folder",
        }
    }

    /// A feed: progress is what a run consumed, not a column's value.
    pub fn is_feed(self) -> bool {
        !matches!(
            self,
            ConnectionKind::Postgres | ConnectionKind::Mysql | ConnectionKind::Sqlite
        )
    }

    /// A file feed's store.
    pub fn is_files(self) -> bool {
        matches!(
            self,
            ConnectionKind::Sftp | ConnectionKind::S3 | ConnectionKind::Folder
        )
    }
}
