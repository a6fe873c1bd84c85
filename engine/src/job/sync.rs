//! `sluice jobs push | pull | diff`: the job files in git and the jobs table in DynamoDB.
//!
//! The folder remembers, in `.sluice-sync.json`, the checksum of every item as it was
//! when the folder was last pulled or pushed (its base). An item is overwritten or
//! deleted only if the table still holds exactly that base, so a row someone changed in
//! the console (or another engineer pushed) since is never replaced silently: push
//! refuses and names it, and `--force` means it. Each write is also conditional on the
//! item's `version`, so a change made between the check and the write is refused too.

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_dynamodb::Client;
use chrono::Utc;
use serde_json::Value;

use super::dynamo::{ItemType, RemoteItem, checksum, read_items};
use super::load::{CONNECTIONS_FILE, JobSet, load_dir};
use crate::aws::dynamo::{self, JOBS_TABLE, number, string};
use crate::aws::{classify_sdk, error_code};
use crate::error::{Error, Result};

/// Where a folder keeps its base.
pub const SYNC_FILE: &str = ".sluice-sync.json";

type Key = (ItemType, String);

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Base {
    table: String,
    /// `job/orders` → checksum of the item's content at the last pull or push.
    items: BTreeMap<String, String>,
}

fn key_name((t, id): &Key) -> String {
    format!("{}/{id}", t.name())
}

fn read_base(dir: &Path, table: &str) -> BTreeMap<String, String> {
    std::fs::read(dir.join(SYNC_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice::<Base>(&b).ok())
        .filter(|b| b.table == table)
        .map(|b| b.items)
        .unwrap_or_default()
}

fn write_base(dir: &Path, table: &str, items: BTreeMap<String, String>) -> Result<()> {
    let base = Base {
        table: table.to_string(),
        items,
    };
    let bytes = serde_json::to_vec_pretty(&base).map_err(|e| Error::internal(e.to_string()))?;
    let path = dir.join(SYNC_FILE);
    std::fs::write(&path, bytes)
        .map_err(|e| Error::user(format!("cannot write {}: {e}", path.display())))
}

/// The items a folder holds: each job row (without `job`, the key) and each connection.
fn local_items(set: &JobSet) -> BTreeMap<Key, Value> {
    let mut out = BTreeMap::new();
    for row in &set.rows {
        if let (Some(id), Value::Object(fields)) = (&row.id, &row.value) {
            let mut content = fields.clone();
            content.remove("job");
            out.insert((ItemType::Job, id.clone()), Value::Object(content));
        }
    }
    for (name, value) in &set.connections {
        out.insert((ItemType::Connection, name.clone()), value.clone());
    }
    out
}

fn remote_map(items: Vec<RemoteItem>) -> BTreeMap<Key, RemoteItem> {
    items
        .into_iter()
        .map(|i| ((i.item_type, i.id.clone()), i))
        .collect()
}

/// Loads the folder; a folder with invalid rows is not pushed.
fn load_valid(dir: &Path) -> Result<JobSet> {
    let set = load_dir(dir)?;
    let problems = set.problems();
    if !problems.is_empty() {
        return Err(super::config_error(&problems)
            .context("the folder has invalid rows; fix them before pushing"));
    }
    Ok(set)
}

fn who_changed(remote: &RemoteItem) -> String {
    let by = remote.updated_by.as_deref().unwrap_or("someone");
    let edited = remote.checksum.as_deref() != Some(checksum(&remote.content).as_str());
    match (&remote.updated_at, edited) {
        (_, true) => "edited in the table (not by sluice) since the last pull".into(),
        (Some(at), false) => format!("changed in the table since the last pull (by {by} at {at})"),
        (None, false) => "changed in the table since the last pull".into(),
    }
}

enum Action {
    Create,
    Update { version: Option<i64> },
    Delete { version: Option<i64> },
}

/// Pushes the folder's rows to the table. Returns one line per change.
pub async fn push(dir: &Path, location: &str, force: bool, prune: bool) -> Result<Vec<String>> {
    let table = dynamo::check_table_name(location)?;
    let set = load_valid(dir)?;
    let local = local_items(&set);
    let client = dynamo::client().await;
    let remote = remote_map(read_items(&client, table).await?);
    let base = read_base(dir, table);

    let mut actions: Vec<(Key, Action)> = Vec::new();
    let mut conflicts = Vec::new();
    let mut unchanged = 0;
    for (key, content) in &local {
        let based = base.get(&key_name(key));
        match remote.get(key) {
            None if based.is_some() && !force => conflicts.push(format!(
                "{}: deleted from the table since the last pull",
                key_name(key)
            )),
            None => actions.push((key.clone(), Action::Create)),
            Some(r) if checksum(&r.content) == checksum(content) => unchanged += 1,
            Some(_) if !force && based.is_none() => conflicts.push(format!(
                "{}: exists in the table and differs, but this folder never pulled it",
                key_name(key)
            )),
            Some(r) if !force && based != Some(&checksum(&r.content)) => {
                conflicts.push(format!("{}: {}", key_name(key), who_changed(r)))
            }
            Some(r) => actions.push((key.clone(), Action::Update { version: r.version })),
        }
    }
    let mut kept = Vec::new();
    for (key, r) in remote.iter().filter(|(k, _)| !local.contains_key(*k)) {
        if !prune {
            kept.push(key_name(key));
        } else if !force && base.get(&key_name(key)) != Some(&checksum(&r.content)) {
            conflicts.push(format!(
                "{}: only in the table, and changed there since the last pull (not deleted)",
                key_name(key)
            ));
        } else {
            actions.push((key.clone(), Action::Delete { version: r.version }));
        }
    }
    if !conflicts.is_empty() {
        return Err(Error::user(format!(
            "nothing pushed: {} item{} of `{table}` changed since this folder last synced:\n  {}\n\
             Run `sluice jobs diff` to see the differences, `sluice jobs pull` to take the table's version, or push with --force to overwrite.",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            conflicts.join("\n  ")
        )));
    }

    let by = format!(
        "sluice jobs push ({})",
        std::env::var("USER").unwrap_or_else(|_| "unknown user".into())
    );
    let mut lines = Vec::new();
    for (key, action) in actions {
        let line = write(&client, table, &key, local.get(&key), action, &by).await?;
        lines.push(line);
    }
    lines.push(format!("{unchanged} unchanged"));
    if !kept.is_empty() {
        lines.push(format!(
            "only in the table (kept; --prune deletes them): {}",
            kept.join(", ")
        ));
    }
    let mut synced: BTreeMap<String, String> = local
        .iter()
        .map(|(k, v)| (key_name(k), checksum(v)))
        .collect();
    if !prune {
        for (key, r) in remote.iter().filter(|(k, _)| !local.contains_key(*k)) {
            if let Some(b) = base.get(&key_name(key)) {
                synced.insert(key_name(key), b.clone());
            } else if force {
                synced.insert(key_name(key), checksum(&r.content));
            }
        }
    }
    write_base(dir, table, synced)?;
    Ok(lines)
}

async fn write(
    client: &Client,
    table: &str,
    key: &Key,
    content: Option<&Value>,
    action: Action,
    by: &str,
) -> Result<String> {
    let name = key_name(key);
    let refused = |e| {
        Error::user(format!(
            "{name} changed in the table while pushing; nothing more was pushed after it: run `sluice jobs diff` and push again ({e})"
        ))
    };
    let condition = |version: Option<i64>| match version {
        Some(v) => ("version = :v".to_string(), Some(number(v))),
        None => ("attribute_not_exists(version)".to_string(), None),
    };
    match action {
        Action::Delete { version } => {
            let (expr, value) = condition(version);
            let result = client
                .delete_item()
                .table_name(table)
                .key(JOBS_TABLE.hash_key, string(key.0.name()))
                .key(JOBS_TABLE.range_key, string(&key.1))
                .condition_expression(expr)
                .set_expression_attribute_values(value.map(|v| [(":v".to_string(), v)].into()))
                .send()
                .await;
            match result {
                Ok(_) => Ok(format!("deleted {name}")),
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                    Err(refused("its version moved"))
                }
                Err(e) => Err(classify_sdk(e, &format!("deleting {name} from `{table}`"))),
            }
        }
        Action::Create | Action::Update { .. } => {
            let content = content.ok_or_else(|| Error::internal("push without content"))?;
            let (expr, value, version) = match action {
                Action::Update { version } => {
                    let (expr, value) = condition(version);
                    (expr, value, version.unwrap_or(0) + 1)
                }
                _ => ("attribute_not_exists(id)".to_string(), None, 1),
            };
            let mut item = dynamo::json_to_item(content)?;
            item.insert(JOBS_TABLE.hash_key.into(), string(key.0.name()));
            item.insert(JOBS_TABLE.range_key.into(), string(&key.1));
            item.insert("version".into(), number(version));
            item.insert("updated_at".into(), string(Utc::now().to_rfc3339()));
            item.insert("updated_by".into(), string(by));
            item.insert("checksum".into(), string(checksum(content)));
            let result = client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression(expr)
                .set_expression_attribute_values(value.map(|v| [(":v".to_string(), v)].into()))
                .send()
                .await;
            match result {
                Ok(_) if version == 1 => Ok(format!("created {name}")),
                Ok(_) => Ok(format!("updated {name} (version {version})")),
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                    Err(refused("it was written by someone else meanwhile"))
                }
                Err(e) => Err(classify_sdk(e, &format!("writing {name} to `{table}`"))),
            }
        }
    }
}

/// Writes the table's rows into `dir` as YAML: one `<job>.yaml` per job row and
/// `connections.yaml`. Refuses if the folder holds changes that were never pushed.
pub async fn pull(dir: &Path, location: &str, force: bool) -> Result<Vec<String>> {
    let table = dynamo::check_table_name(location)?;
    let client = dynamo::client().await;
    let remote = remote_map(read_items(&client, table).await?);
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::user(format!("cannot create {}: {e}", dir.display())))?;
    let base = read_base(dir, table);
    let set = load_dir(dir)?;
    let local = local_items(&set);
    if !force {
        let unpushed: Vec<String> = local
            .iter()
            .filter(|(key, content)| {
                let sum = checksum(content);
                let remote_sum = remote.get(*key).map(|r| checksum(&r.content));
                base.get(&key_name(key)) != Some(&sum) && remote_sum.as_ref() != Some(&sum)
            })
            .map(|(key, _)| key_name(key))
            .collect();
        if !unpushed.is_empty() {
            return Err(Error::user(format!(
                "nothing pulled: {} holds changes that are not in `{table}`: {}; push them, or pull with --force to discard them",
                dir.display(),
                unpushed.join(", ")
            )));
        }
    }
    remove_yaml_files(dir)?;
    let mut connections = serde_yaml::Mapping::new();
    let mut lines = Vec::new();
    for ((item_type, id), item) in &remote {
        match item_type {
            ItemType::Connection => {
                connections.insert(
                    serde_yaml::Value::String(id.clone()),
                    ordered(&item.content, CONNECTION_ORDER),
                );
            }
            ItemType::Job => {
                let path = dir.join(format!("{id}.yaml"));
                let row = super::dynamo::job_row(item);
                write_yaml(&path, &ordered(&row, JOB_ORDER))?;
                lines.push(format!("wrote {}", path.display()));
            }
        }
    }
    if !connections.is_empty() {
        let path = dir.join(CONNECTIONS_FILE);
        write_yaml(&path, &serde_yaml::Value::Mapping(connections))?;
        lines.push(format!("wrote {}", path.display()));
    }
    let synced = remote
        .iter()
        .map(|(k, r)| (key_name(k), checksum(&r.content)))
        .collect();
    write_base(dir, table, synced)?;
    Ok(lines)
}

fn remove_yaml_files(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| Error::user(format!("cannot read {}: {e}", dir.display())))?;
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            std::fs::remove_file(&path)
                .map_err(|e| Error::user(format!("cannot remove {}: {e}", path.display())))?;
        }
    }
    Ok(())
}

fn write_yaml(path: &Path, value: &serde_yaml::Value) -> Result<()> {
    let text = serde_yaml::to_string(value).map_err(|e| Error::internal(e.to_string()))?;
    std::fs::write(path, text)
        .map_err(|e| Error::user(format!("cannot write {}: {e}", path.display())))
}

/// Field order in pulled files: the order of the job row's documentation; other keys
/// follow alphabetically.
const JOB_ORDER: &[&str] = &[
    "job",
    "description",
    "enabled",
    "freshness",
    "task_definition",
    "mode",
    "source",
    "transform",
    "target",
    // source
    "connection",
    "table",
    "query",
    "cursor",
    "primary_key",
    "lag",
    "delete_when",
    "tie_break",
    "batch_rows",
    "split",
    "parts",
    // target
    "partition_by",
    "compression",
    "file_size",
    "format",
];
const CONNECTION_ORDER: &[&str] = &["kind", "url", "secret", "description"];

fn ordered(value: &Value, order: &[&str]) -> serde_yaml::Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by_key(|k| {
                (
                    order.iter().position(|o| o == k).unwrap_or(usize::MAX),
                    k.as_str(),
                )
            });
            let mut out = serde_yaml::Mapping::new();
            for k in keys {
                out.insert(
                    serde_yaml::Value::String(k.clone()),
                    ordered(&map[k], order),
                );
            }
            serde_yaml::Value::Mapping(out)
        }
        Value::Array(items) => {
            serde_yaml::Value::Sequence(items.iter().map(|v| ordered(v, order)).collect())
        }
        other => serde_yaml::to_value(other).unwrap_or(serde_yaml::Value::Null),
    }
}

/// The differences between the folder and the table, one line per item that differs
/// (with its fields), and a count of those that do not.
pub async fn diff(dir: &Path, location: &str) -> Result<Vec<String>> {
    let table = dynamo::check_table_name(location)?;
    let set = load_dir(dir)?;
    let local = local_items(&set);
    let client = dynamo::client().await;
    let remote = remote_map(read_items(&client, table).await?);
    let base = read_base(dir, table);
    let mut keys: Vec<&Key> = local.keys().chain(remote.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut lines = Vec::new();
    let mut same = 0;
    for key in keys {
        let name = key_name(key);
        match (local.get(key), remote.get(key)) {
            (Some(_), None) => lines.push(format!("+ {name}: only in the folder")),
            (None, Some(_)) => lines.push(format!("- {name}: only in the table")),
            (Some(l), Some(r)) if checksum(l) == checksum(&r.content) => same += 1,
            (Some(l), Some(r)) => {
                let note = if base.get(&name) == Some(&checksum(l)) {
                    format!(" ({})", who_changed(r))
                } else {
                    String::new()
                };
                lines.push(format!("~ {name}{note}:"));
                let mut fields = Vec::new();
                field_diffs(l, &r.content, "", &mut fields);
                lines.extend(fields.into_iter().map(|f| format!("    {f}")));
            }
            (None, None) => {}
        }
    }
    lines.push(format!("{same} the same"));
    Ok(lines)
}

fn field_diffs(folder: &Value, table: &Value, path: &str, out: &mut Vec<String>) {
    let at = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (folder, table) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            let null = Value::Null;
            for k in keys {
                field_diffs(
                    a.get(k).unwrap_or(&null),
                    b.get(k).unwrap_or(&null),
                    &at(k),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {a} in the folder, {b} in the table")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_ignore_key_order() {
        let a: Value = serde_json::json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b: Value = serde_json::json!({"b": {"y": "z", "x": [1, 2]}, "a": 1});
        assert_eq!(checksum(&a), checksum(&b));
        assert_ne!(checksum(&a), checksum(&serde_json::json!({"a": 2})));
    }

    #[test]
    fn field_diffs_name_the_paths() {
        let mut out = Vec::new();
        field_diffs(
            &serde_json::json!({"target": {"table": "a", "file_size": "64MiB"}, "mode": "full"}),
            &serde_json::json!({"target": {"table": "a", "file_size": "128MiB"}}),
            "",
            &mut out,
        );
        assert_eq!(
            out,
            [
                "mode: \"full\" in the folder, null in the table",
                "target.file_size: \"64MiB\" in the folder, \"128MiB\" in the table"
            ]
        );
    }

    #[test]
    fn pulled_rows_keep_the_documented_order() -> Result<()> {
        let row = serde_json::json!({"target": {"table": "t"}, "source": {"table": "s", "connection": "c"}, "job": "j"});
        let text = serde_yaml::to_string(&ordered(&row, JOB_ORDER))
            .map_err(|e| Error::internal(e.to_string()))?;
        assert_eq!(
            text,
            "job: j\nsource:\n  connection: c\n  table: s\ntarget:\n  table: t\n"
        );
        Ok(())
    }
}
