//! What answers a query, behind one interface, so that the HTTP API and Flight SQL serve
//! any engine the same way and neither knows which one it has: DataFusion over the lake
//! in this process (`local`, the default), or Athena (`athena`) for lakes and queries
//! that outgrow one machine.

pub mod athena;
mod bounded;
mod checked;
pub mod leash;
pub mod local;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};

use self::leash::Leash;
use super::keys::Key;
use super::refusal::Refusal;

/// A query as a client sends it: the SQL and its parameters, bound by the engine (never
/// spliced into the text here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub sql: String,
    /// Positional (`[…]`) or named (`{…}`) parameters, as JSON values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
    /// Time travel: the Delta tables the query names read as of this version (`12`) or
    /// time (RFC 3339, or a date); checked (`sink::delta::AsOf::parse`) when the request
    /// is taken. Carried in continuation tokens, so that every page reads one version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

/// Rows as they come, ending early with the refusal that stopped them.
pub type Batches = BoxStream<'static, Result<RecordBatch, Refusal>>;

/// One page of a result, and where the next one starts (the engine's own cursor).
pub struct Rows {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub next: Option<String>,
}

/// A table as `/v1/tables` describes it.
#[derive(Debug, Clone, Serialize)]
pub struct TableInfo {
    pub name: String,
    pub columns: Vec<serde_json::Value>,
    pub partition_columns: Vec<String>,
    /// Partitions and files where the engine knows them (Athena's catalog lists no files).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// For a quarantine table, the table whose rejected rows it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine_of: Option<String>,
    /// The columns as the engine answers them (Flight SQL's GetTables).
    #[serde(skip)]
    pub schema: SchemaRef,
}

impl TableInfo {
    /// The table a quarantine table's name belongs to.
    pub fn quarantine_of(name: &str) -> Option<String> {
        name.strip_suffix(crate::quality::QUARANTINE_SUFFIX)
            .map(str::to_string)
    }
}

/// What answers the queries of `sluice serve`. The `Service` calls it for every request
/// of either front end, concurrently, after the key was authenticated and the statement
/// passed the guard, on the query threads, inside the query's slot and time limit (a
/// call cut short is dropped: an engine holds nothing across calls that a drop would
/// leak). The engine makes sure a key reads only its tables, bounds its own memory, ends
/// its work between batches once the `leash` says so, counts the rows it answers
/// against the leash, and answers a cursor it gave only for the query it gave it for.
/// The columns `schema` tells are exactly those `stream` and `page` answer with.
#[async_trait::async_trait]
pub trait Engine: Send + Sync {
    /// `--engine`'s name for it.
    fn name(&self) -> &'static str;

    /// `limit` rows of the result from `cursor` (none: the first row), and the cursor of
    /// the rest when there is more.
    async fn page(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
        limit: usize,
        leash: &Leash,
    ) -> Result<Rows, Refusal>;

    /// Whether `schema` plans without running the query (a prepared statement then
    /// tells its columns at once).
    fn plans(&self) -> bool {
        true
    }

    /// The result's columns, planned where the engine can plan; an engine that must run
    /// the query to know them also gives the cursor its rows can be read from, so that
    /// `stream` does not run it again.
    async fn schema(
        &self,
        key: &Key,
        query: &Query,
        leash: &Leash,
    ) -> Result<(SchemaRef, Option<String>), Refusal>;

    /// The result's columns and every row of it from `cursor` (none: the first row), as
    /// it comes.
    async fn stream(
        &self,
        key: &Key,
        query: &Query,
        cursor: Option<&str>,
        leash: &Leash,
    ) -> Result<(SchemaRef, Batches), Refusal>;

    /// The tables the key sees, sorted by name; with `only`, that one table if the key sees
    /// it (nothing is described but what is asked for).
    async fn tables(&self, key: &Key, only: Option<&str>) -> Result<Vec<TableInfo>, Refusal>;
}
