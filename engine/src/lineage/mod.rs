//! OpenLineage: every run announces itself with a START event and ends with a COMPLETE
//! or FAIL event (<https://openlineage.io/spec/2-0-2/OpenLineage.json>), naming the job
//! (`sluice` namespace, the job id), the source it read and the lake table it wrote
//! (`naming`), with the table's schema, the row, byte and file counts and, on failure,
//! the error. Events go to an HTTP endpoint (Marquez's or DataHub's `/api/v1/lineage`)
//! or are appended to a file, one JSON object a line (`emit`).
//!
//! Lineage is observability, not part of the commit: an event that cannot be sent is a
//! warning in the run's log, never a failed run.

pub mod emit;
pub mod naming;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

pub use self::emit::Lineage;
pub use self::naming::Dataset;
use crate::job::Job;
use crate::summary::{RunStatus, RunSummary};

/// Where the events say they come from.
pub const PRODUCER: &str = concat!(
    "https://github.com/sluice-etl/sluice/tree/v",
    env!("CARGO_PKG_VERSION")
);
/// The OpenLineage spec the events follow.
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// The job namespace when `SLUICE_LINEAGE_NAMESPACE` names none.
pub const DEFAULT_NAMESPACE: &str = "sluice";

const FACETS: &str = "https://openlineage.io/spec/facets";

/// The OpenLineage run id of a sluice run: a UUID made from the run id (the same run id
/// always gives the same UUID, so START and COMPLETE pair up, and a reader can find the
/// run's record from either).
pub fn run_uuid(run_id: &str) -> uuid::Uuid {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(run_id.as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A facet's two required fields.
fn facet(schema: &str, fields: Value) -> Value {
    let mut out = json!({"_producer": PRODUCER, "_schemaURL": format!("{FACETS}/{schema}")});
    if let (Some(out), Value::Object(fields)) = (out.as_object_mut(), fields) {
        out.extend(fields);
    }
    out
}

/// The START event of `summary`'s run (its counts are not known yet).
pub fn start_event(namespace: &str, job: &Job, lake_url: &str, summary: &RunSummary) -> Value {
    event(
        "START",
        summary.started_at,
        namespace,
        job,
        lake_url,
        summary,
    )
}

/// The COMPLETE (committed or up to date) or FAIL event of a finished run.
pub fn end_event(namespace: &str, job: &Job, lake_url: &str, summary: &RunSummary) -> Value {
    let kind = match summary.status {
        RunStatus::Failed => "FAIL",
        RunStatus::Committed | RunStatus::UpToDate => "COMPLETE",
    };
    let ended = summary.started_at
        + chrono::Duration::milliseconds((summary.seconds.total * 1000.0) as i64);
    event(kind, ended, namespace, job, lake_url, summary)
}

fn event(
    kind: &str,
    at: DateTime<Utc>,
    namespace: &str,
    job: &Job,
    lake_url: &str,
    summary: &RunSummary,
) -> Value {
    let ended = kind != "START";
    let mut run_facets = serde_json::Map::new();
    run_facets.insert(
        "processing_engine".into(),
        facet(
            "1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet",
            json!({"version": env!("CARGO_PKG_VERSION"), "name": "sluice"}),
        ),
    );
    if let (true, Some(message)) = (kind == "FAIL", &summary.error) {
        run_facets.insert(
            "errorMessage".into(),
            facet(
                "1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet",
                json!({
                    "message": message,
                    "programmingLanguage": "rust",
                }),
            ),
        );
    }
    let source = naming::source(job);
    let mut input = json!({"namespace": source.namespace, "name": source.name, "facets": {}});
    let table = naming::lake_table(lake_url, &job.target.table);
    let mut output_facets = serde_json::Map::new();
    if let Some(columns) = &job.target.schema {
        let fields: Vec<Value> = columns
            .iter()
            .map(|c| json!({"name": c.name, "type": c.lake.athena()}))
            .collect();
        output_facets.insert(
            "schema".into(),
            facet(
                "1-1-1/SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet",
                json!({ "fields": fields }),
            ),
        );
    }
    let mut output =
        json!({"namespace": table.namespace, "name": table.name, "facets": output_facets});
    if ended {
        input["inputFacets"] = json!({"inputStatistics": facet(
            "1-0-0/InputStatisticsInputDatasetFacet.json#/$defs/InputStatisticsInputDatasetFacet",
            json!({"rowCount": summary.rows_read}),
        )});
        output["outputFacets"] = json!({"outputStatistics": facet(
            "1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet",
            json!({"rowCount": summary.rows, "size": summary.bytes, "fileCount": summary.files}),
        )});
    }
    json!({
        "eventType": kind,
        "eventTime": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "run": {"runId": run_uuid(&summary.run_id).to_string(), "facets": run_facets},
        "job": {
            "namespace": namespace,
            "name": job.id,
            "facets": {
                "jobType": facet(
                    "2-0-3/JobTypeJobFacet.json#/$defs/JobTypeJobFacet",
                    json!({"processingType": "BATCH", "integration": "SLUICE", "jobType": "JOB"}),
                ),
            },
        },
        "inputs": [input],
        "outputs": [output],
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_gives_one_uuid() {
        let a = run_uuid("20240501T020000Z-1a2b3c4d");
        assert_eq!(a, run_uuid("20240501T020000Z-1a2b3c4d"));
        assert_ne!(a, run_uuid("20240501T020000Z-1a2b3c4e"));
        assert_eq!(a.get_version_num(), 4);
    }

    #[test]
    fn facets_carry_producer_and_schema() {
        let f = facet("x.json", json!({"a": 1}));
        assert_eq!(f["a"], 1);
        assert_eq!(f["_producer"], PRODUCER);
        assert!(
            f["_schemaURL"]
                .as_str()
                .is_some_and(|s| s.ends_with("/x.json"))
        );
    }
}
