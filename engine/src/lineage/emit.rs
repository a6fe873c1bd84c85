//! Where OpenLineage events go: `--lineage` (`SLUICE_LINEAGE`) names an HTTP endpoint
//! (`https://marquez.internal:5000/api/v1/lineage`: each event POSTed as JSON, with
//! `SLUICE_LINEAGE_API_KEY` as a bearer token when set) or a file (`file:///var/log/
//! lineage.ndjson` or a plain path: each event appended as one line). Sending is bounded
//! in time and never fails the run.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};

/// How long one event may take to send: a lineage server that hangs must not hold a run.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a run's lineage events go, and the job namespace they are in.
#[derive(Debug, Clone)]
pub struct Lineage {
    target: Target,
    /// The OpenLineage job namespace (`SLUICE_LINEAGE_NAMESPACE`, default `sluice`).
    pub namespace: String,
}

#[derive(Debug, Clone)]
enum Target {
    Http {
        url: String,
        client: reqwest::Client,
        api_key: Option<String>,
    },
    File(PathBuf),
}

impl Lineage {
    /// The lineage `setting` names (`none`, an `http(s)://` endpoint, a `file://` URL or a
    /// path); `None` for `none` or empty.
    pub fn parse(setting: &str, namespace: Option<String>) -> Result<Option<Self>> {
        let setting = setting.trim();
        let namespace = namespace
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| super::DEFAULT_NAMESPACE.to_string());
        let target = match setting {
            "" | "none" | "off" => return Ok(None),
            url if url.starts_with("http://") || url.starts_with("https://") => {
                let client = reqwest::Client::builder()
                    .timeout(SEND_TIMEOUT)
                    .build()
                    .map_err(|e| Error::internal(format!("the lineage HTTP client: {e}")))?;
                Target::Http {
                    url: url.to_string(),
                    client,
                    api_key: std::env::var("SLUICE_LINEAGE_API_KEY")
                        .ok()
                        .filter(|k| !k.is_empty()),
                }
            }
            other if other.contains("://") && !other.starts_with("file://") => {
                return Err(Error::user(format!(
                    "--lineage {other:?}: give an http(s):// endpoint (Marquez: http://HOST:5000/api/v1/lineage), a file (file:///path or a path) or `none`"
                )));
            }
            path => Target::File(PathBuf::from(path.trim_start_matches("file://"))),
        };
        Ok(Some(Self { target, namespace }))
    }

    /// The lineage of the environment: `SLUICE_LINEAGE` and `SLUICE_LINEAGE_NAMESPACE`
    /// (what a run started by the console or the demo inherits). A setting that is not
    /// valid is logged and ignored: lineage never stops a run.
    pub fn from_env() -> Option<Self> {
        let setting = std::env::var("SLUICE_LINEAGE").ok()?;
        match Self::parse(&setting, std::env::var("SLUICE_LINEAGE_NAMESPACE").ok()) {
            Ok(lineage) => lineage,
            Err(e) => {
                tracing::warn!(error = %e.report(), "SLUICE_LINEAGE is not valid: no lineage events are sent");
                None
            }
        }
    }

    /// Sends one event; a failure is logged, not returned.
    pub async fn send(&self, event: &Value) {
        if let Err(e) = self.try_send(event).await {
            tracing::warn!(
                event_type = event["eventType"].as_str().unwrap_or(""),
                error = %e.report(),
                "could not send the OpenLineage event (the run is not affected)"
            );
        }
    }

    async fn try_send(&self, event: &Value) -> Result<()> {
        match &self.target {
            Target::Http {
                url,
                client,
                api_key,
            } => {
                let mut request = client.post(url).json(event);
                if let Some(key) = api_key {
                    request = request.bearer_auth(key);
                }
                let reply = request
                    .send()
                    .await
                    .map_err(|e| Error::external(format!("POST {url}: {e}")))?;
                if !reply.status().is_success() {
                    return Err(Error::external(format!(
                        "POST {url}: the lineage server answered {}",
                        reply.status()
                    )));
                }
                Ok(())
            }
            Target::File(path) => {
                let mut line = serde_json::to_vec(event)
                    .map_err(|e| Error::internal(format!("encoding a lineage event: {e}")))?;
                line.push(b'\n');
                let path = path.clone();
                // One write of the whole line to a file opened for appending: lines of
                // runs in other processes do not interleave.
                tokio::task::spawn_blocking(move || {
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(&path)
                        .and_then(|mut f| f.write_all(&line))
                        .map_err(|e| {
                            Error::user(format!(
                                "cannot append to the lineage file {}: {e}",
                                path.display()
                            ))
                        })
                })
                .await
                .map_err(|e| Error::internal(format!("writing a lineage event: {e}")))?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_name_an_endpoint_a_file_or_nothing() -> Result<()> {
        assert!(Lineage::parse("none", None)?.is_none());
        assert!(Lineage::parse("", None)?.is_none());
        let http = Lineage::parse("http://marquez:5000/api/v1/lineage", None)?;
        assert!(matches!(http.map(|l| l.target), Some(Target::Http { .. })));
        let file = Lineage::parse("file:///tmp/l.ndjson", Some("prod".into()))?;
        assert!(file.as_ref().is_some_and(|l| l.namespace == "prod"));
        assert!(
            matches!(file.map(|l| l.target), Some(Target::File(p)) if p == std::path::Path::new("/tmp/l.ndjson"))
        );
        assert!(Lineage::parse("kafka://broker/topic", None).is_err());
        Ok(())
    }
}
