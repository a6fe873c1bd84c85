//! Reads a folder of job files (`*.yaml`, one or more rows each, separated by `---`) and
//! its `connections.yaml`. A broken row fails alone: the others still compile and run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use super::{ConfigError, connections_schema, job_schema, parse_row};
use super::{Connections, Job, compile, compile_connections};
use crate::error::{Error, Result};
use crate::spec::{ConnectionsSpec, JobSpec};

pub const CONNECTIONS_FILE: &str = "connections.yaml";

/// One job row as loaded: compiled, or with every problem it has.
#[derive(Debug)]
pub struct LoadedRow {
    pub origin: String,
    /// The row's `job` id, when it has one.
    pub id: Option<String>,
    /// The row as written (for `sluice jobs push`).
    pub value: serde_json::Value,
    pub job: Result<Job, Vec<ConfigError>>,
}

/// Every row of a folder or table, plus problems that belong to no row (connections).
#[derive(Debug, Default)]
pub struct JobSet {
    /// Where the rows came from, for messages.
    pub origin: String,
    pub rows: Vec<LoadedRow>,
    /// The connections as written: name → `{kind, url | secret, description}`.
    pub connections: serde_json::Map<String, serde_json::Value>,
    pub errors: Vec<ConfigError>,
}

impl JobSet {
    /// Every problem, in file order.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut all = self.errors.clone();
        for row in &self.rows {
            if let Err(errors) = &row.job {
                all.extend(errors.iter().cloned());
            }
        }
        all
    }

    pub fn find(&self, id: &str) -> Option<&LoadedRow> {
        self.rows.iter().find(|r| r.id.as_deref() == Some(id))
    }

    pub fn ids(&self) -> Vec<&str> {
        self.rows.iter().filter_map(|r| r.id.as_deref()).collect()
    }
}

/// Loads every job row under `dir`. Fails only when the folder cannot be read.
pub fn load_dir(dir: &Path) -> Result<JobSet> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::user(format!(
            "cannot read the job folder {}: {e} (set --jobs or SLUICE_JOBS to the folder of job files)",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                && p.file_name().and_then(|n| n.to_str()) != Some(CONNECTIONS_FILE)
        })
        .collect();
    files.sort();

    let mut set = JobSet {
        origin: dir.display().to_string(),
        ..Default::default()
    };
    let (connections, broken) = load_connections(dir, &mut set);
    let schema = job_schema();
    for file in &files {
        let origin = file.display().to_string();
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                set.errors.push(ConfigError::new(
                    &origin,
                    "(file)",
                    format!("cannot be read: {e}"),
                ));
                continue;
            }
        };
        let documents = match yaml_documents(&text) {
            Ok(d) => d,
            Err(e) => {
                set.errors.push(ConfigError::new(&origin, "(file)", e));
                continue;
            }
        };
        let many = documents.len() > 1;
        for (i, doc) in documents.iter().enumerate() {
            let origin = if many {
                format!("{origin}#{}", i + 1)
            } else {
                origin.clone()
            };
            set.rows
                .push(load_row(&schema, doc, &origin, &connections, &broken));
        }
    }
    mark_duplicates(&mut set.rows);
    Ok(set)
}

/// Compiles one row given as a JSON value (from a YAML document or a DynamoDB item).
pub fn load_row(
    schema: &serde_json::Value,
    value: &serde_json::Value,
    origin: &str,
    connections: &Connections,
    broken: &Broken,
) -> LoadedRow {
    let id = value
        .get("job")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let job = parse_row::<JobSpec>(schema, value, origin).and_then(|spec| {
        let compiled = compile(&spec, origin, connections);
        match broken.get(&spec.source.connection) {
            Some(problems) => {
                let mut errors = compiled.err().unwrap_or_default();
                errors.push(ConfigError::new(
                    origin,
                    "source.connection",
                    format!(
                        "connection `{}` is invalid: {}",
                        spec.source.connection,
                        problems
                            .iter()
                            .map(|p| p.message.as_str())
                            .collect::<Vec<_>>()
                            .join("; ")
                    ),
                ));
                Err(errors)
            }
            None => compiled,
        }
    });
    LoadedRow {
        origin: origin.to_string(),
        id,
        value: value.clone(),
        job,
    }
}

fn load_connections(dir: &Path, set: &mut JobSet) -> (Connections, Broken) {
    let path = dir.join(CONNECTIONS_FILE);
    let origin = path.display().to_string();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Default::default(),
        Err(e) => {
            set.errors.push(ConfigError::new(
                &origin,
                "(file)",
                format!("cannot be read: {e}"),
            ));
            return Default::default();
        }
    };
    let value = match yaml_documents(&text) {
        Ok(mut docs) if docs.len() == 1 => docs.remove(0),
        Ok(_) => {
            set.errors.push(ConfigError::new(
                &origin,
                "(file)",
                "must hold one mapping of connection name → {kind, url}".into(),
            ));
            return Default::default();
        }
        Err(e) => {
            set.errors.push(ConfigError::new(&origin, "(file)", e));
            return Default::default();
        }
    };
    let base = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    compile_connections_value(value, &origin, Some(base), set)
}

/// Connections that failed, by name, with their problems: rows naming one fail too.
pub type Broken = BTreeMap<String, Vec<ConfigError>>;

/// Compiles a connections mapping (from `connections.yaml` or the table's items) into
/// `set`, and returns the usable ones and the broken ones.
pub fn compile_connections_value(
    value: serde_json::Value,
    origin: &str,
    base: Option<PathBuf>,
    set: &mut JobSet,
) -> (Connections, Broken) {
    if let serde_json::Value::Object(map) = &value {
        set.connections = map.clone();
    }
    let specs: ConnectionsSpec = match parse_row(&connections_schema(), &value, origin) {
        Ok(s) => s,
        Err(problems) => {
            set.errors.extend(problems);
            return Default::default();
        }
    };
    let (connections, problems) = compile_connections(&specs, origin, base);
    let mut broken = Broken::new();
    for p in &problems {
        let name = p.path.split('.').next().unwrap_or_default().to_string();
        broken.entry(name).or_default().push(p.clone());
    }
    set.errors.extend(problems);
    (connections, broken)
}

/// Splits a YAML file into its documents, as JSON values. Empty documents are skipped.
pub fn yaml_documents(text: &str) -> std::result::Result<Vec<serde_json::Value>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value =
            serde_json::Value::deserialize(doc).map_err(|e| format!("is not valid YAML: {e}"))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// Two rows with one id, or two jobs writing one lake table, would overwrite each other's
/// state or data: both rows fail.
pub fn mark_duplicates(rows: &mut [LoadedRow]) {
    let mut by_id: HashMap<String, Vec<usize>> = HashMap::new();
    let mut by_table: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, row) in rows.iter().enumerate() {
        if let Some(id) = &row.id {
            by_id.entry(id.clone()).or_default().push(i);
        }
        if let Ok(job) = &row.job {
            by_table
                .entry(job.target.table.clone())
                .or_default()
                .push(i);
        }
    }
    let mut add: Vec<(usize, ConfigError)> = Vec::new();
    for (key, field, what) in [
        (&by_id, "job", "job id"),
        (&by_table, "target.table", "lake table"),
    ] {
        for (name, at) in key.iter().filter(|(_, at)| at.len() > 1) {
            for &i in at {
                let others: Vec<&str> = at
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| rows[j].origin.as_str())
                    .collect();
                add.push((
                    i,
                    ConfigError::new(
                        &rows[i].origin,
                        field,
                        format!(
                            "{what} `{name}` is also used by {}; each must be unique",
                            others.join(", ")
                        ),
                    ),
                ));
            }
        }
    }
    for (i, error) in add {
        let row = &mut rows[i];
        match &mut row.job {
            Err(errors) => errors.push(error),
            Ok(_) => row.job = Err(vec![error]),
        }
    }
}
