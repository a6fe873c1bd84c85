//! Job rows: the raw spec, its JSON Schema, the shape check, and compilation into runnable
//! [`Job`]s. Parse → check shape → deserialize → compile; every step is pure except
//! reading the files, and every step reports all of its problems at once.

pub mod changes;
mod check;
mod compile;
mod compiled;
mod connection;
pub mod dynamo;
pub mod feed;
pub mod files;
pub mod http;
mod load;
pub mod pattern;
pub mod sync;
mod table;

use std::fmt;

pub use changes::{ChangeFeed, ChangeLog};
pub use check::{is_identifier, mode_name};
pub use compile::compile;
pub use compiled::{Address, Connection, Connections, From, Job, Target};
pub use connection::compile_connections;
pub use feed::{QueueFeed, RecordKey, Records};
pub use http::{HttpConnection, HttpFeed};
pub use load::{JobSet, LoadedRow, load_dir};
pub use table::{Relation, Split};

/// Loads the job rows named by `--jobs`: a folder of YAML files, or `dynamodb://TABLE`.
pub async fn load(location: &str) -> crate::error::Result<JobSet> {
    if location.starts_with("dynamodb://") {
        dynamo::load_table(location).await
    } else {
        load_dir(std::path::Path::new(location))
    }
}
pub use crate::spec::{Compression, ConnectionKind, ConnectionsSpec, JobSpec, Mode};

use crate::error::Error;

/// One problem with a job row or a connection: where it is and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (or item) the row came from.
    pub origin: String,
    /// The field path inside the row, such as `source.cursor` or `target.partition_by[1]`.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(origin: &str, path: impl Into<String>, message: String) -> Self {
        Self {
            origin: origin.to_string(),
            path: path.into(),
            message,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.origin, self.path, self.message)
    }
}

/// Joins config problems into one user error (one problem a line).
pub fn config_error(problems: &[ConfigError]) -> Error {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Error::user(format!(
        "invalid job configuration ({} problem{}):\n  {}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        lines.join("\n  ")
    ))
}

/// The JSON Schema of a job row, as `sluice jobs schema` prints it.
pub fn job_schema() -> serde_json::Value {
    schemars::schema_for!(JobSpec).to_value()
}

/// The JSON Schema of `connections.yaml`.
pub fn connections_schema() -> serde_json::Value {
    schemars::schema_for!(ConnectionsSpec).to_value()
}

/// Checks a row's shape and deserializes it. Every shape problem is reported.
pub fn parse_row<T: serde::de::DeserializeOwned>(
    schema: &serde_json::Value,
    value: &serde_json::Value,
    origin: &str,
) -> Result<T, Vec<ConfigError>> {
    let problems = crate::spec::shape::check(schema, value);
    if !problems.is_empty() {
        return Err(problems
            .into_iter()
            .map(|p| ConfigError::new(origin, p.path, p.message))
            .collect());
    }
    serde_json::from_value(value.clone())
        .map_err(|e| vec![ConfigError::new(origin, "(top level)", e.to_string())])
}
