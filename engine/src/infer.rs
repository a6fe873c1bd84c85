//! `sluice schema infer`: what a Glue crawler would give, read from the source's own
//! catalog instead of by sampling files — a ready job row with the table's contract.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::job::{self, JobSet};
use crate::source;
use crate::spec::{ConnectionsSpec, JobSpec, SourceSpec, TargetSpec};

/// Reads `table` through `connection` (from the job set's connections) and returns the
/// job row as YAML.
pub async fn infer(
    set: &JobSet,
    jobs_dir: Option<PathBuf>,
    connection: &str,
    table: &str,
) -> Result<String> {
    let specs: ConnectionsSpec =
        serde_json::from_value(serde_json::Value::Object(set.connections.clone()))
            .map_err(|e| Error::user(format!("{}: connections: {e}", set.origin)))?;
    let (connections, problems) = job::compile_connections(&specs, &set.origin, jobs_dir);
    if let Some(problem) = problems.first() {
        return Err(job::config_error(std::slice::from_ref(problem)));
    }
    let bare = table.rsplit('.').next().unwrap_or(table);
    let lake_table = source::types::athena_name(bare);
    let mut spec = JobSpec {
        job: lake_table.chars().take(64).collect(),
        description: Some(format!(
            "{table} from {connection} (made by sluice schema infer)"
        )),
        enabled: None,
        freshness: None,
        task_definition: None,
        source: SourceSpec {
            connection: connection.to_string(),
            table: Some(table.to_string()),
            query: None,
            cursor: None,
            primary_key: None,
            lag: None,
            delete_when: None,
            tie_break: None,
            batch_rows: None,
            split: None,
            record: None,
            message_columns: None,
            queue: None,
            request: None,
            soap: None,
            parent: None,
            window: None,
            fields: None,
            coerce: None,
            dedup: None,
            files: None,
            collect: None,
            changes: None,
        },
        mode: None,
        transform: None,
        target: TargetSpec {
            table: lake_table,
            partition_by: None,
            compression: None,
            file_size: None,
            schema: None,
            on_schema_change: None,
            catalog: None,
            format: None,
        },
        quality: None,
    };
    let compiled =
        job::compile(&spec, "(schema infer)", &connections).map_err(|p| job::config_error(&p))?;
    let env = |k: &str| std::env::var(k).ok();
    let mut source = source::open(&compiled, &env).await?;
    let columns = source.columns().await?;
    let constraints = source.constraints().await?;
    let not_null = |name: &str| constraints.iter().any(|c| c.column == name && c.not_null);
    let mut key: Vec<(i64, String)> = constraints
        .iter()
        .filter(|c| c.key_position > 0)
        .map(|c| (c.key_position, c.column.clone()))
        .collect();
    key.sort();
    if !key.is_empty() {
        spec.source.primary_key = Some(key.into_iter().map(|(_, c)| c).collect());
    }
    spec.target.schema = Some(
        columns
            .iter()
            .map(|c| crate::contract::Column {
                name: c.lake_name.clone(),
                lake: c.lake,
                nullable: !not_null(&c.name),
            })
            .map(|c| c.spec())
            .collect(),
    );
    spec.target.on_schema_change = Some(crate::spec::OnSchemaChange::Fail);
    let yaml = serde_yaml::to_string(&spec)
        .map_err(|e| Error::internal(format!("writing the job row: {e}")))?;
    let sources: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "#   {} {} → {}",
                c.name,
                c.source_type,
                c.lake.contract_name()
            )
        })
        .collect();
    Ok(format!(
        "# {table} as read from connection `{connection}`: source type → lake type\n{}\n{yaml}",
        sources.join("\n")
    ))
}
