//! State in a DynamoDB table (`dynamodb://TABLE`, keys `job` + `sk`):
//!
//! - `sk = state`: `version` and the job's `state` as a native map. `save` is a
//!   conditional put on `version`, so a stale writer is refused.
//! - `sk = lease`: `owner`, `expires_at` (epoch milliseconds), `ttl`. Taken by a
//!   conditional put that succeeds only if there is no lease or it has expired, renewed
//!   by a heartbeat every third of its life while held, deleted on release. A killed
//!   run's lease simply expires.
//! - `sk = run#<run id>`: the run record, kept for audit (run ids sort by start time).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use chrono::Utc;

use super::{JobState, Lease, StateStore, Versioned};
use crate::aws::dynamo::{
    self, Item, STATE_TABLE, get_number, get_string, number, query_all, string,
};
use crate::aws::{classify_sdk, error_code};
use crate::error::{Error, Result};
use crate::summary::RunSummary;

const STATE: &str = "state";
const LEASE: &str = "lease";
const RUN_PREFIX: &str = "run#";
/// Lease items stay a day past expiry before DynamoDB's TTL removes them.
const LEASE_TTL_GRACE_SECONDS: i64 = 86_400;

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub async fn open(location: &str) -> Result<Self> {
        let table = dynamo::check_table_name(location)?.to_string();
        Ok(Self {
            client: dynamo::client().await,
            table,
        })
    }

    async fn get(&self, job: &str, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(STATE_TABLE.hash_key, string(job))
            .key(STATE_TABLE.range_key, string(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify_sdk(e, &self.doing("reading", job)))?;
        Ok(out.item)
    }

    fn doing(&self, what: &str, job: &str) -> String {
        format!(
            "{what} the state of job `{job}` in DynamoDB table `{}`",
            self.table
        )
    }

    fn holder_text(item: &Item) -> String {
        let owner = get_string(item, "owner").unwrap_or("unknown run");
        match get_number(item, "expires_at").and_then(chrono::DateTime::from_timestamp_millis) {
            Some(at) => format!("held by {owner} until {}", at.to_rfc3339()),
            None => format!("held by {owner}"),
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(item: &Item, attribute: &str, what: &str) -> Result<T> {
    let value = item
        .get(attribute)
        .cloned()
        .ok_or_else(|| Error::user(format!("{what} has no `{attribute}` attribute")))?;
    serde_dynamo::from_attribute_value(value).map_err(|e| {
        Error::user(format!(
            "{what} is not valid: {e}; restore it (point-in-time recovery) or delete it to start the job from scratch"
        ))
    })
}

fn encode<T: serde::Serialize>(value: &T) -> Result<aws_sdk_dynamodb::types::AttributeValue> {
    serde_dynamo::to_attribute_value(value)
        .map_err(|e| Error::internal(format!("encoding state for DynamoDB: {e}")))
}

#[async_trait]
impl StateStore for DynamoStore {
    async fn load(&self, job: &str) -> Result<Versioned<JobState>> {
        let Some(item) = self.get(job, STATE).await? else {
            return Ok(Versioned {
                value: JobState::default(),
                version: 0,
            });
        };
        let what = format!("the state item of job `{job}` in `{}`", self.table);
        Ok(Versioned {
            value: decode(&item, "state", &what)?,
            version: get_number(&item, "version").unwrap_or(0) as u64,
        })
    }

    async fn save(&self, job: &str, state: &JobState, expected: u64) -> Result<u64> {
        let version = expected + 1;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(STATE_TABLE.hash_key, string(job))
            .item(STATE_TABLE.range_key, string(STATE))
            .item("version", number(version))
            .item("state", encode(state)?)
            .item("updated_at", string(Utc::now().to_rfc3339()));
        put = if expected == 0 {
            put.condition_expression("attribute_not_exists(#v)")
        } else {
            put.condition_expression("#v = :expected")
                .expression_attribute_values(":expected", number(expected))
        };
        match put.expression_attribute_names("#v", "version").send().await {
            Ok(_) => Ok(version),
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                Err(Error::busy(format!(
                    "the state of job `{job}` changed under this run (expected version {expected}); another run wrote it"
                )))
            }
            Err(e) => Err(classify_sdk(e, &self.doing("writing", job))),
        }
    }

    async fn lease(&self, job: &str, owner: &str, ttl: Duration) -> Result<Box<dyn Lease>> {
        let now = Utc::now().timestamp_millis();
        let expires = now + ttl.as_millis() as i64;
        let taken = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(STATE_TABLE.hash_key, string(job))
            .item(STATE_TABLE.range_key, string(LEASE))
            .item("owner", string(owner))
            .item("acquired_at", string(Utc::now().to_rfc3339()))
            .item("expires_at", number(expires))
            .item("ttl", number(expires / 1000 + LEASE_TTL_GRACE_SECONDS))
            .condition_expression("attribute_not_exists(#owner) OR expires_at < :now")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", number(now))
            .send()
            .await;
        match taken {
            Ok(_) => {}
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                let holder = self
                    .get(job, LEASE)
                    .await?
                    .map(|item| Self::holder_text(&item))
                    .unwrap_or_else(|| "just released".into());
                return Err(Error::busy(format!(
                    "job `{job}` is already running ({holder}); try again when it has finished"
                )));
            }
            Err(e) => return Err(classify_sdk(e, &self.doing("taking the lease of", job))),
        }
        let lease = Arc::new(LeaseKey {
            client: self.client.clone(),
            table: self.table.clone(),
            job: job.to_string(),
            owner: owner.to_string(),
        });
        let heartbeat = tokio::spawn(lease.clone().keep_alive(ttl));
        Ok(Box::new(DynamoLease { lease, heartbeat }))
    }

    async fn lease_holder(&self, job: &str) -> Result<Option<String>> {
        let now = Utc::now().timestamp_millis();
        Ok(self.get(job, LEASE).await?.and_then(|item| {
            (get_number(&item, "expires_at").unwrap_or(0) >= now).then(|| Self::holder_text(&item))
        }))
    }

    async fn record_run(&self, run: &RunSummary) -> Result<()> {
        let mut item = match encode(run)? {
            aws_sdk_dynamodb::types::AttributeValue::M(m) => m,
            _ => return Err(Error::internal("a run record is not a map")),
        };
        item.insert(STATE_TABLE.hash_key.into(), string(&run.job));
        item.insert(
            STATE_TABLE.range_key.into(),
            string(format!("{RUN_PREFIX}{}", run.run_id)),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| classify_sdk(e, &self.doing("recording a run of", &run.job)))?;
        Ok(())
    }

    async fn runs(&self, job: &str, limit: usize) -> Result<Vec<RunSummary>> {
        let items = query_all(
            &self.client,
            &self.table,
            (STATE_TABLE.hash_key, job),
            Some((STATE_TABLE.range_key, RUN_PREFIX)),
            true,
            Some(limit),
        )
        .await?;
        items
            .into_iter()
            .map(|mut item| {
                item.remove(STATE_TABLE.range_key);
                serde_dynamo::from_item(item).map_err(|e| {
                    Error::user(format!("a run record of job `{job}` is not valid: {e}"))
                })
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!("dynamodb://{}", self.table)
    }
}

/// What identifies a held lease.
struct LeaseKey {
    client: Client,
    table: String,
    job: String,
    owner: String,
}

impl LeaseKey {
    /// Pushes the expiry forward every third of the lease's life. If the lease was lost
    /// (this process stalled past the expiry and another run took it), says so: the
    /// state's compare-and-set then refuses this run's commit.
    async fn keep_alive(self: Arc<Self>, ttl: Duration) {
        let every = (ttl / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            let expires = Utc::now().timestamp_millis() + ttl.as_millis() as i64;
            let renewed = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(STATE_TABLE.hash_key, string(&self.job))
                .key(STATE_TABLE.range_key, string(LEASE))
                .update_expression("SET expires_at = :e, #ttl = :t")
                .condition_expression("#owner = :me")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":e", number(expires))
                .expression_attribute_values(":t", number(expires / 1000 + LEASE_TTL_GRACE_SECONDS))
                .expression_attribute_values(":me", string(&self.owner))
                .send()
                .await;
            match renewed {
                Ok(_) => {}
                Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => {
                    tracing::error!(job = %self.job, "the job's lease was taken over by another run; this run's commit will be refused");
                    return;
                }
                Err(e) => {
                    let e = classify_sdk(e, "renewing the job's lease");
                    tracing::warn!(job = %self.job, error = %e.report(), "lease renewal failed; retrying");
                }
            }
        }
    }
}

struct DynamoLease {
    lease: Arc<LeaseKey>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Drop for DynamoLease {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

#[async_trait]
impl Lease for DynamoLease {
    async fn release(self: Box<Self>) -> Result<()> {
        self.heartbeat.abort();
        let key = &self.lease;
        let released = key
            .client
            .delete_item()
            .table_name(&key.table)
            .key(STATE_TABLE.hash_key, string(&key.job))
            .key(STATE_TABLE.range_key, string(LEASE))
            .condition_expression("#owner = :me")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":me", string(&key.owner))
            .send()
            .await;
        match released {
            Ok(_) => Ok(()),
            // Someone else holds it now: nothing of ours to release.
            Err(e) if error_code(&e) == Some("ConditionalCheckFailedException") => Ok(()),
            Err(e) => Err(classify_sdk(e, "releasing the job's lease")),
        }
    }
}
