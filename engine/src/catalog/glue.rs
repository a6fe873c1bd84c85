//! Publishing a [`TableDef`] in the Glue Data Catalog: create or update the table when
//! it differs, then bring its registered partitions in line with the lake.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_glue::Client;
use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, PartitionValueList, SerDeInfo, StorageDescriptor, Table,
    TableInput,
};

use super::{INPUT_FORMAT, OUTPUT_FORMAT, SERDE, TableDef};
use crate::aws::{classify_sdk, config, error_code};
use crate::error::{Error, Result};

/// BatchCreatePartition takes at most 100 partitions, BatchDeletePartition 25.
const CREATE_BATCH: usize = 100;
const DELETE_BATCH: usize = 25;

pub async fn client() -> Client {
    Client::new(config().await)
}

fn built<T>(what: &str, r: std::result::Result<T, aws_sdk_glue::error::BuildError>) -> Result<T> {
    r.map_err(|e| Error::internal(format!("building the Glue {what}: {e}")))
}

fn storage(def: &TableDef, location: &str) -> Result<StorageDescriptor> {
    let columns = def
        .columns
        .iter()
        .map(|(name, t)| built("column", Column::builder().name(name).r#type(t).build()))
        .collect::<Result<Vec<_>>>()?;
    Ok(StorageDescriptor::builder()
        .set_columns(Some(columns))
        .location(location)
        .input_format(INPUT_FORMAT)
        .output_format(OUTPUT_FORMAT)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(SERDE)
                .parameters("serialization.format", "1")
                .build(),
        )
        .build())
}

fn table_input(def: &TableDef) -> Result<TableInput> {
    let keys = def
        .partition_keys
        .iter()
        .map(|k| {
            built(
                "partition key",
                Column::builder().name(k).r#type("string").build(),
            )
        })
        .collect::<Result<Vec<_>>>()?;
    built(
        "table",
        TableInput::builder()
            .name(&def.name)
            .table_type("EXTERNAL_TABLE")
            .set_partition_keys(Some(keys))
            .storage_descriptor(storage(def, &def.location)?)
            .set_parameters(Some(def.all_parameters().into_iter().collect()))
            .build(),
    )
}

/// Whether the stored table already is `def` (columns, keys, location, formats and the
/// parameters sluice sets; parameters others added are not compared).
fn same(table: &Table, def: &TableDef) -> bool {
    let sd = table.storage_descriptor();
    let columns: Vec<(String, String)> = sd
        .map(|sd| {
            sd.columns()
                .iter()
                .map(|c| (c.name().to_string(), c.r#type().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let keys: Vec<&str> = table.partition_keys().iter().map(|c| c.name()).collect();
    let parameters = table.parameters().cloned().unwrap_or_default();
    let wanted = def.all_parameters();
    let stale_projection = parameters
        .keys()
        .any(|k| k.starts_with("projection.") && !wanted.contains_key(k));
    columns == def.columns
        && keys
            == def
                .partition_keys
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
        && sd.and_then(|s| s.location()) == Some(def.location.as_str())
        && sd
            .and_then(|s| s.serde_info())
            .and_then(|s| s.serialization_library())
            == Some(SERDE)
        && wanted.iter().all(|(k, v)| parameters.get(k) == Some(v))
        && !stale_projection
}

/// Creates the database if it does not exist (what `sluice init` does with --catalog).
pub async fn ensure_database(client: &Client, database: &str) -> Result<bool> {
    match client.get_database().name(database).send().await {
        Ok(_) => Ok(false),
        Err(e) if error_code(&e) == Some("EntityNotFoundException") => {
            client
                .create_database()
                .database_input(built(
                    "database",
                    DatabaseInput::builder()
                        .name(database)
                        .description("Lake tables published by sluice")
                        .build(),
                )?)
                .send()
                .await
                .map_err(|e| classify_sdk(e, &format!("creating Glue database `{database}`")))?;
            Ok(true)
        }
        Err(e) => Err(classify_sdk(
            e,
            &format!("reading Glue database `{database}`"),
        )),
    }
}

/// Publishes one table; returns what changed.
pub async fn publish(client: &Client, def: &TableDef) -> Result<String> {
    let name = format!("{}.{}", def.database, def.name);
    let existing = match client
        .get_table()
        .database_name(&def.database)
        .name(&def.name)
        .send()
        .await
    {
        Ok(out) => out.table,
        Err(e) if error_code(&e) == Some("EntityNotFoundException") => None,
        Err(e) => {
            let mut err = classify_sdk(e, &format!("reading Glue table `{name}`"));
            if err.message.contains("Database") {
                err.message.push_str(&format!(
                    " (create the database with Terraform, or `sluice init --catalog glue://{}`)",
                    def.database
                ));
            }
            return Err(err);
        }
    };
    let table = match &existing {
        None => {
            client
                .create_table()
                .database_name(&def.database)
                .table_input(table_input(def)?)
                .send()
                .await
                .map_err(|e| classify_sdk(e, &format!("creating Glue table `{name}`")))?;
            "created"
        }
        Some(t) if same(t, def) => "unchanged",
        Some(_) => {
            client
                .update_table()
                .database_name(&def.database)
                .table_input(table_input(def)?)
                .send()
                .await
                .map_err(|e| classify_sdk(e, &format!("updating Glue table `{name}`")))?;
            "updated"
        }
    };
    if def.projection || def.partition_keys.is_empty() {
        return Ok(format!("{name}: {table}"));
    }
    let (added, removed) = sync_partitions(client, def).await?;
    Ok(format!(
        "{name}: {table}, {added} partitions added, {removed} removed"
    ))
}

/// Registers the lake's partitions that Glue lacks and removes those the lake no longer
/// has (a full reload or a rewind took their files).
async fn sync_partitions(client: &Client, def: &TableDef) -> Result<(usize, usize)> {
    let name = format!("{}.{}", def.database, def.name);
    let mut registered = BTreeSet::new();
    let mut pages = client
        .get_partitions()
        .database_name(&def.database)
        .table_name(&def.name)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| classify_sdk(e, &format!("listing partitions of `{name}`")))?;
        for p in page.partitions() {
            registered.insert(p.values().to_vec());
        }
    }
    let wanted: BTreeMap<Vec<String>, &str> = def
        .partitions
        .iter()
        .map(|p| (p.values.clone(), p.path.as_str()))
        .collect();
    let missing: Vec<(&Vec<String>, &str)> = wanted
        .iter()
        .filter(|(v, _)| !registered.contains(*v))
        .map(|(v, p)| (v, *p))
        .collect();
    for chunk in missing.chunks(CREATE_BATCH) {
        let inputs = chunk
            .iter()
            .map(|(values, path)| {
                Ok(PartitionInput::builder()
                    .set_values(Some(values.to_vec()))
                    .storage_descriptor(storage(def, &format!("{}{path}/", def.location))?)
                    .build())
            })
            .collect::<Result<Vec<_>>>()?;
        let out = client
            .batch_create_partition()
            .database_name(&def.database)
            .table_name(&def.name)
            .set_partition_input_list(Some(inputs))
            .send()
            .await
            .map_err(|e| classify_sdk(e, &format!("registering partitions of `{name}`")))?;
        // A partition registered meanwhile (another sync) is what we wanted.
        let failed: Vec<String> = out
            .errors()
            .iter()
            .filter(|e| {
                e.error_detail().and_then(|d| d.error_code()) != Some("AlreadyExistsException")
            })
            .map(|e| {
                format!(
                    "{:?}: {}",
                    e.partition_values(),
                    e.error_detail()
                        .and_then(|d| d.error_message())
                        .unwrap_or("failed")
                )
            })
            .collect();
        if !failed.is_empty() {
            return Err(Error::external(format!(
                "registering partitions of `{name}` failed: {}",
                failed.join("; ")
            )));
        }
    }
    let stale: Vec<&Vec<String>> = registered
        .iter()
        .filter(|v| !wanted.contains_key(*v))
        .collect();
    for chunk in stale.chunks(DELETE_BATCH) {
        let values = chunk
            .iter()
            .map(|v| {
                built(
                    "partition values",
                    PartitionValueList::builder()
                        .set_values(Some(v.to_vec()))
                        .build(),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        client
            .batch_delete_partition()
            .database_name(&def.database)
            .table_name(&def.name)
            .set_partitions_to_delete(Some(values))
            .send()
            .await
            .map_err(|e| classify_sdk(e, &format!("removing partitions of `{name}`")))?;
    }
    Ok((missing.len(), stale.len()))
}
