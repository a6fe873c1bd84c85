//! What the DynamoDB job store and state store share: the `dynamodb://TABLE` location,
//! the client, items as JSON, paging, and the tables' key schemas, which `sluice init`
//! creates and Terraform (`terraform/dynamodb.tf`) declares identically.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    PointInTimeRecoverySpecification, ScalarAttributeType, SseSpecification,
    TimeToLiveSpecification,
};

use super::{classify_sdk, config, error_code};
use crate::error::{Error, Result};

pub type Item = HashMap<String, AttributeValue>;

/// A table's key and optional time-to-live attribute.
#[derive(Debug, Clone, Copy)]
pub struct TableDef {
    pub what: &'static str,
    pub hash_key: &'static str,
    pub range_key: &'static str,
    pub ttl_attribute: Option<&'static str>,
}

/// Job rows and connections: `item_type` (`job` | `connection`) + `id`.
pub const JOBS_TABLE: TableDef = TableDef {
    what: "jobs",
    hash_key: "item_type",
    range_key: "id",
    ttl_attribute: None,
};

/// State, leases and run records: `job` + `sk` (`state`, `lease`, `run#<run id>`).
/// Lease items carry `ttl` so that DynamoDB removes abandoned ones eventually; expiry
/// itself is decided by the lease's own `expires_at`, not by TTL deletion.
pub const STATE_TABLE: TableDef = TableDef {
    what: "state",
    hash_key: "job",
    range_key: "sk",
    ttl_attribute: Some("ttl"),
};

/// The table name of a `dynamodb://TABLE` location, or `None` for other locations.
pub fn table_name(location: &str) -> Option<&str> {
    location
        .strip_prefix("dynamodb://")
        .map(|t| t.trim_end_matches('/'))
}

/// Checks a table name against DynamoDB's rules, so that a typo fails with a clear
/// message before any request.
pub fn check_table_name(location: &str) -> Result<&str> {
    let name = table_name(location)
        .ok_or_else(|| Error::user(format!("{location:?} is not dynamodb://TABLE")))?;
    let valid = (3..=255).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(name)
    } else {
        Err(Error::user(format!(
            "{location:?}: a DynamoDB table name is 3 to 255 letters, digits, `_`, `-` or `.`"
        )))
    }
}

pub async fn client() -> Client {
    Client::new(config().await)
}

/// An item as a JSON value (maps, lists, strings, numbers, booleans, nulls).
pub fn item_to_json(item: Item) -> Result<serde_json::Value> {
    serde_dynamo::from_item(item)
        .map_err(|e| Error::user(format!("item cannot be read as a job row: {e}")))
}

/// A JSON object as an item.
pub fn json_to_item(value: &serde_json::Value) -> Result<Item> {
    serde_dynamo::to_item(value)
        .map_err(|e| Error::internal(format!("cannot store the value as an item: {e}")))
}

pub fn string(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn get_string<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub fn get_number(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
}

/// Every item with hash key `key` = `value` (and range key starting with `prefix`), in
/// range-key order (newest first with `reverse`), at most `limit` when given.
pub async fn query_all(
    client: &Client,
    table: &str,
    (key, value): (&str, &str),
    range: Option<(&str, &str)>,
    reverse: bool,
    limit: Option<usize>,
) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let mut request = client
            .query()
            .table_name(table)
            .consistent_read(true)
            .scan_index_forward(!reverse)
            .expression_attribute_names("#k", key)
            .expression_attribute_values(":k", string(value))
            .set_exclusive_start_key(start.take());
        request = match range {
            Some((range_key, prefix)) => request
                .key_condition_expression("#k = :k AND begins_with(#r, :r)")
                .expression_attribute_names("#r", range_key)
                .expression_attribute_values(":r", string(prefix)),
            None => request.key_condition_expression("#k = :k"),
        };
        if let Some(limit) = limit {
            request = request.limit((limit - items.len()).min(1000) as i32);
        }
        let page = request
            .send()
            .await
            .map_err(|e| classify_sdk(e, &format!("reading DynamoDB table `{table}`")))?;
        items.extend(page.items.unwrap_or_default());
        match page.last_evaluated_key {
            Some(key) if !key.is_empty() && limit.is_none_or(|l| items.len() < l) => {
                start = Some(key)
            }
            _ => return Ok(items),
        }
    }
}

/// Whether `sluice init` made the table or found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    Existed,
}

/// Creates the table as Terraform does (on-demand billing, encryption at rest,
/// point-in-time recovery, TTL where the table has one), or checks that an existing one
/// has the same keys. Idempotent.
pub async fn ensure_table(client: &Client, name: &str, def: TableDef) -> Result<Created> {
    let key = |attr: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attr)
            .key_type(kind)
            .build()
            .map_err(|e| Error::internal(e.to_string()))
    };
    let attribute = |attr: &str| {
        AttributeDefinition::builder()
            .attribute_name(attr)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| Error::internal(e.to_string()))
    };
    let created = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(def.hash_key, KeyType::Hash)?)
        .key_schema(key(def.range_key, KeyType::Range)?)
        .attribute_definitions(attribute(def.hash_key)?)
        .attribute_definitions(attribute(def.range_key)?)
        .sse_specification(SseSpecification::builder().enabled(true).build())
        .send()
        .await;
    let outcome = match created {
        Ok(_) => Created::Created,
        Err(e) if error_code(&e) == Some("ResourceInUseException") => {
            check_keys(client, name, def).await?;
            Created::Existed
        }
        Err(e) => {
            return Err(classify_sdk(
                e,
                &format!("creating DynamoDB table `{name}`"),
            ));
        }
    };
    wait_active(client, name).await?;
    client
        .update_continuous_backups()
        .table_name(name)
        .point_in_time_recovery_specification(
            PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(|e| Error::internal(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| classify_sdk(e, &format!("enabling point-in-time recovery on `{name}`")))?;
    if let Some(ttl) = def.ttl_attribute {
        enable_ttl(client, name, ttl).await?;
    }
    Ok(outcome)
}

async fn check_keys(client: &Client, name: &str, def: TableDef) -> Result<()> {
    let described = client
        .describe_table()
        .table_name(name)
        .send()
        .await
        .map_err(|e| classify_sdk(e, &format!("describing DynamoDB table `{name}`")))?;
    let keys: Vec<(String, String)> = described
        .table
        .and_then(|t| t.key_schema)
        .unwrap_or_default()
        .into_iter()
        .map(|k| (k.attribute_name, k.key_type.as_str().to_string()))
        .collect();
    let want = vec![
        (def.hash_key.to_string(), "HASH".to_string()),
        (def.range_key.to_string(), "RANGE".to_string()),
    ];
    if keys == want {
        Ok(())
    } else {
        Err(Error::user(format!(
            "DynamoDB table `{name}` exists with keys {keys:?}, but a {} table has {want:?}: use another table name",
            def.what
        )))
    }
}

async fn wait_active(client: &Client, name: &str) -> Result<()> {
    for _ in 0..120 {
        let described = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| classify_sdk(e, &format!("describing DynamoDB table `{name}`")))?;
        let status = described.table.and_then(|t| t.table_status);
        if status.as_ref().map(|s| s.as_str()) == Some("ACTIVE") {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    Err(Error::external(format!(
        "DynamoDB table `{name}` did not become ACTIVE within a minute"
    )))
}

async fn enable_ttl(client: &Client, name: &str, attribute: &str) -> Result<()> {
    let current = client
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| classify_sdk(e, &format!("reading the TTL setting of `{name}`")))?;
    let enabled = current.time_to_live_description.is_some_and(|d| {
        d.attribute_name.as_deref() == Some(attribute)
            && d.time_to_live_status
                .is_some_and(|s| s.as_str() == "ENABLED")
    });
    if enabled {
        return Ok(());
    }
    client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(attribute)
                .build()
                .map_err(|e| Error::internal(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| classify_sdk(e, &format!("enabling TTL on `{name}`")))?;
    Ok(())
}
