//! A compiled job: what the pipeline runs, every default applied and every reference
//! resolved (no `Option` left that the row could have left out). The types of each kind
//! of source come from that kind's module; this gathers them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::changes::ChangeFeed;
use super::feed::{self, QueueFeed};
use super::files::{FileStore, FilesFeed};
use super::http::{HttpConnection, HttpFeed};
use super::table::{Relation, Split};
use crate::spec::{Compression, ConnectionKind, Mode, OnSchemaChange, TableFormat};

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
    Files(Box<FileStore>),
}

/// What the extract reads: a relation of a database, or a feed.
#[derive(Debug, Clone, PartialEq)]
pub enum From {
    Relation(Relation),
    Queue(QueueFeed),
    Http(Box<HttpFeed>),
    Files(Box<FilesFeed>),
    /// A table's changes, read from the database's log (`source.changes`).
    Changes(Box<ChangeFeed>),
}

/// Where and how a job's rows land in the lake.
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
