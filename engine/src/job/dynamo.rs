//! Job rows and connections as DynamoDB items (`--jobs dynamodb://TABLE`).
//!
//! One item per job row (`item_type = job`, `id` = the job id) and per connection
//! (`item_type = connection`, `id` = its name). The row's fields are the item's own
//! attributes — maps, lists, strings, numbers — so an engineer can read and edit a row
//! in the console; sluice adds `version`, `updated_at`, `updated_by` and `checksum` (of
//! the row as sluice last wrote it, which is how an edit made in the console is told
//! apart). A row edited into something invalid fails alone, with the same messages as a
//! file.

use std::path::PathBuf;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::load::{Broken, JobSet, compile_connections_value, load_row, mark_duplicates};
use super::{ConfigError, job_schema};
use crate::aws::dynamo::{self, Item, JOBS_TABLE, get_number, get_string, query_all};
use crate::error::Result;

/// The two kinds of item in a jobs table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ItemType {
    Connection,
    Job,
}

impl ItemType {
    pub fn name(self) -> &'static str {
        match self {
            ItemType::Job => "job",
            ItemType::Connection => "connection",
        }
    }
}

/// Attributes sluice keeps beside the row's own fields.
pub const META_ATTRIBUTES: [&str; 6] = [
    "item_type",
    "id",
    "version",
    "updated_at",
    "updated_by",
    "checksum",
];

/// One item of the table: the row (without the key and sluice's attributes) and the
/// bookkeeping.
#[derive(Debug, Clone)]
pub struct RemoteItem {
    pub item_type: ItemType,
    pub id: String,
    /// The row's own fields, as JSON (for a job: without `job`, which is the key).
    pub content: Value,
    /// Why the item could not be read as JSON (a binary or set attribute).
    pub unreadable: Option<String>,
    pub version: Option<i64>,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
    /// What sluice wrote last; differs from `checksum(content)` after a console edit.
    pub checksum: Option<String>,
}

impl RemoteItem {
    pub fn origin(&self, table: &str) -> String {
        format!("dynamodb://{table}/{}/{}", self.item_type.name(), self.id)
    }
}

/// A stable hash of a row's content (key order does not matter).
pub fn checksum(content: &Value) -> String {
    let canonical = canonical(content).to_string();
    Sha256::digest(canonical.as_bytes())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), canonical(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

/// Reads every item of the jobs table.
pub async fn read_items(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<Vec<RemoteItem>> {
    let mut out = Vec::new();
    for item_type in [ItemType::Connection, ItemType::Job] {
        let items = query_all(
            client,
            table,
            (JOBS_TABLE.hash_key, item_type.name()),
            None,
            false,
            None,
        )
        .await?;
        out.extend(items.into_iter().map(|item| remote_item(item_type, item)));
    }
    Ok(out)
}

fn remote_item(item_type: ItemType, mut item: Item) -> RemoteItem {
    let id = get_string(&item, JOBS_TABLE.range_key)
        .unwrap_or_default()
        .to_string();
    let version = get_number(&item, "version");
    let updated_at = get_string(&item, "updated_at").map(str::to_string);
    let updated_by = get_string(&item, "updated_by").map(str::to_string);
    let checksum = get_string(&item, "checksum").map(str::to_string);
    for attribute in META_ATTRIBUTES {
        item.remove(attribute);
    }
    let (content, unreadable) = match dynamo::item_to_json(item) {
        Ok(v) => (v, None),
        Err(e) => (Value::Object(Map::new()), Some(e.message)),
    };
    RemoteItem {
        item_type,
        id,
        content,
        unreadable,
        version,
        updated_at,
        updated_by,
        checksum,
    }
}

/// Loads and compiles every row of the table, as [`super::load_dir`] does for a folder.
pub async fn load_table(location: &str) -> Result<JobSet> {
    let table = dynamo::check_table_name(location)?;
    let client = dynamo::client().await;
    let items = read_items(&client, table).await?;
    Ok(compile_items(table, &items))
}

/// Compiles the items read from `table`: connections first, then every job row.
pub fn compile_items(table: &str, items: &[RemoteItem]) -> JobSet {
    let mut set = JobSet {
        origin: format!("dynamodb://{table}"),
        ..Default::default()
    };
    let mut connections = Map::new();
    for item in items.iter().filter(|i| i.item_type == ItemType::Connection) {
        match &item.unreadable {
            Some(why) => {
                set.errors
                    .push(ConfigError::new(&item.origin(table), "(item)", why.clone()))
            }
            None => {
                connections.insert(item.id.clone(), item.content.clone());
            }
        }
    }
    let origin = format!("dynamodb://{table}/connection");
    let (connections, broken): (_, Broken) = if connections.is_empty() {
        Default::default()
    } else {
        compile_connections_value(
            Value::Object(connections),
            &origin,
            None::<PathBuf>,
            &mut set,
        )
    };
    let schema = job_schema();
    for item in items.iter().filter(|i| i.item_type == ItemType::Job) {
        let origin = item.origin(table);
        let mut row = load_row(&schema, &job_row(item), &origin, &connections, &broken);
        if let Some(why) = &item.unreadable {
            row.job = Err(vec![ConfigError::new(&origin, "(item)", why.clone())]);
        }
        if let Some(inner) = item.content.get("job")
            && inner.as_str() != Some(item.id.as_str())
        {
            let problem = ConfigError::new(
                &origin,
                "job",
                format!(
                    "the job id is the item's key `id` ({:?}); remove the `job` attribute or make it equal",
                    item.id
                ),
            );
            match &mut row.job {
                Ok(_) => row.job = Err(vec![problem]),
                Err(errors) => errors.push(problem),
            }
        }
        row.id = Some(item.id.clone());
        set.rows.push(row);
    }
    mark_duplicates(&mut set.rows);
    set
}

/// The job row of an item: its content with the key as `job`.
pub fn job_row(item: &RemoteItem) -> Value {
    let mut row = Map::new();
    row.insert("job".into(), Value::String(item.id.clone()));
    if let Value::Object(content) = &item.content {
        for (k, v) in content {
            if k != "job" {
                row.insert(k.clone(), v.clone());
            }
        }
    }
    Value::Object(row)
}
