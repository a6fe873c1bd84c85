//! Publishing in the Glue catalog (moto): tables and partitions after first and later
//! runs, `catalog sync` idempotent and removing partitions the lake lost, partition
//! projection properties, the catalog following an evolving contract, and `sluice ddl`.

use std::collections::BTreeMap;

use crate::cloud::Cloud;
use crate::common::exec;

const EVENTS: &str = "CREATE TABLE events (id INTEGER PRIMARY KEY, kind TEXT, at TIMESTAMP, amount REAL);
INSERT INTO events VALUES (1, 'scan', '2024-05-01 10:00:00', 1.5), (2, 'scan', '2024-05-01 11:00:00', 2.5),
 (3, 'drop', '2024-05-02 09:00:00', 3.5);";

fn job(id: &str, projection: bool, policy: &str) -> String {
    format!(
        "job: {id}\nsource:\n  connection: src\n  table: events\n  cursor: id\n  primary_key: [id]\nmode: incremental\ntransform: SELECT *, date_format(at, '%Y-%m-%d') AS dt FROM source\ntarget:\n  table: {id}\n  partition_by: [dt]\n  on_schema_change: {policy}\n  catalog: {{projection: {projection}}}\n"
    )
}

async fn columns(
    cloud: &Cloud,
    table: &str,
) -> (Vec<String>, Vec<String>, BTreeMap<String, String>, String) {
    let glue = cloud.glue().await;
    let t = glue
        .get_table()
        .database_name(&cloud.database)
        .name(table)
        .send()
        .await
        .expect("the table is in Glue")
        .table
        .expect("table");
    let sd = t.storage_descriptor().expect("storage descriptor");
    let cols = sd
        .columns()
        .iter()
        .map(|c| format!("{} {}", c.name(), c.r#type().unwrap_or("")))
        .collect();
    let keys = t
        .partition_keys()
        .iter()
        .map(|c| format!("{} {}", c.name(), c.r#type().unwrap_or("")))
        .collect();
    assert_eq!(
        sd.serde_info().and_then(|s| s.serialization_library()),
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
    );
    assert_eq!(t.table_type(), Some("EXTERNAL_TABLE"));
    (
        cols,
        keys,
        t.parameters()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        sd.location().unwrap_or("").to_string(),
    )
}

async fn partitions(cloud: &Cloud, table: &str) -> Vec<(String, String)> {
    let glue = cloud.glue().await;
    let out = glue
        .get_partitions()
        .database_name(&cloud.database)
        .table_name(table)
        .send()
        .await
        .expect("partitions");
    let mut found: Vec<(String, String)> = out
        .partitions()
        .iter()
        .map(|p| {
            (
                p.values().join("/"),
                p.storage_descriptor()
                    .and_then(|s| s.location())
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    found.sort();
    found
}

#[tokio::test]
async fn tables_and_partitions_follow_the_runs() {
    let cloud = Cloud::new("catalog");
    let url = cloud.ws.sqlite_source(EVENTS).await;
    cloud
        .ws
        .connections(&format!("src:\n  kind: sqlite\n  url: \"{url}\"\n"));
    cloud
        .ws
        .write_job("events.yaml", &job("events", false, "evolve"));
    cloud.push_jobs();

    let summary = cloud.run_ok("events");
    assert!(
        summary["catalog"]
            .as_str()
            .unwrap_or("")
            .contains("created, 2 partitions added"),
        "{summary}"
    );
    let (cols, keys, params, location) = columns(&cloud, "events").await;
    assert_eq!(
        cols,
        ["id bigint", "kind string", "at timestamp", "amount double"]
    );
    assert_eq!(keys, ["dt string"]);
    assert_eq!(location, format!("s3://{}/lake/events/", cloud.bucket));
    assert_eq!(params["classification"], "parquet");
    assert_eq!(params["parquet.compression"], "ZSTD");
    let lake = format!("s3://{}/lake/events", cloud.bucket);
    assert_eq!(
        partitions(&cloud, "events").await,
        [
            ("2024-05-01".to_string(), format!("{lake}/dt=2024-05-01/")),
            ("2024-05-02".to_string(), format!("{lake}/dt=2024-05-02/")),
        ]
    );

    // A later run adds a day and a column; the contract evolves and the catalog follows.
    exec(
        &format!("sqlite://{}", url.trim_start_matches("sqlite:")),
        "ALTER TABLE events ADD COLUMN site TEXT; INSERT INTO events VALUES (4, 'scan', '2024-05-03 08:00:00', 4.5, 'lyon');",
    )
    .await;
    let summary = cloud.run_ok("events");
    assert!(
        summary["catalog"]
            .as_str()
            .unwrap_or("")
            .contains("updated, 1 partitions added, 0 removed"),
        "{summary}"
    );
    let (cols, _, _, _) = columns(&cloud, "events").await;
    assert_eq!(cols.last().map(String::as_str), Some("site string"));
    assert_eq!(partitions(&cloud, "events").await.len(), 3);

    // Sync changes nothing when in line, twice.
    for _ in 0..2 {
        let run = cloud.sluice(&["catalog", "sync"]);
        run.assert_code(0);
        assert!(
            run.stdout().contains(&format!(
                "events: {}.events: unchanged, 0 partitions added, 0 removed",
                cloud.database
            )),
            "{}",
            run.stdout()
        );
    }
    // A rewind takes the files out of the lake; sync takes their partitions out of Glue.
    cloud
        .sluice(&["state", "rewind", "events", "--to", "start"])
        .assert_code(0);
    let run = cloud.sluice(&["catalog", "sync", "--job", "events"]);
    run.assert_code(0);
    assert!(
        run.stdout().contains("0 partitions added, 3 removed"),
        "{}",
        run.stdout()
    );
    assert!(partitions(&cloud, "events").await.is_empty());
    let summary = cloud.run_ok("events");
    assert!(
        summary["catalog"]
            .as_str()
            .unwrap_or("")
            .contains("3 partitions added"),
        "{summary}"
    );

    let ddl = cloud.sluice(&["ddl", "--job", "events"]);
    ddl.assert_code(0);
    let text = ddl.stdout();
    assert!(
        text.starts_with(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS `{}`.`events` (\n  `id` bigint,\n  `kind` string,\n  `at` timestamp,\n  `amount` double,\n  `site` string\n)\nPARTITIONED BY (`dt` string)\n",
            cloud.database
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("LOCATION 's3://{}/lake/events/'", cloud.bucket)),
        "{text}"
    );
}

#[tokio::test]
async fn projection_writes_properties_instead_of_partitions() {
    let cloud = Cloud::new("projection");
    let url = cloud.ws.sqlite_source(EVENTS).await;
    cloud
        .ws
        .connections(&format!("src:\n  kind: sqlite\n  url: \"{url}\"\n"));
    cloud
        .ws
        .write_job("events.yaml", &job("events", true, "fail"));
    cloud.push_jobs();
    cloud.run_ok("events");
    let (_, keys, params, _) = columns(&cloud, "events").await;
    assert_eq!(keys, ["dt string"]);
    assert_eq!(params["projection.enabled"], "true");
    assert_eq!(params["projection.dt.type"], "date");
    assert_eq!(params["projection.dt.format"], "yyyy-MM-dd");
    assert_eq!(params["projection.dt.range"], "2024-05-01,NOW");
    assert_eq!(params["projection.dt.interval.unit"], "DAYS");
    assert_eq!(
        params["storage.location.template"],
        format!("s3://{}/lake/events/dt=${{dt}}/", cloud.bucket)
    );
    assert!(
        partitions(&cloud, "events").await.is_empty(),
        "projection registers no partitions"
    );
    let run = cloud.sluice(&["catalog", "sync"]);
    run.assert_code(0);
    assert!(
        run.stdout().contains("events: unchanged"),
        "{}",
        run.stdout()
    );
    let ddl = cloud.sluice(&["ddl", "--job", "events"]).stdout();
    assert!(ddl.contains("'projection.dt.type'='date'"), "{ddl}");
}
