//! The memory budget: a full load whose rows jump between 365 day partitions completes
//! under a tight `--memory-limit` (the writer flushes the largest row groups and closes
//! the least recently written files instead of growing), and every row lands once, in
//! its partition.

use crate::common::{Workspace, lake_sql};

#[tokio::test]
async fn a_365_partition_load_under_a_tight_memory_limit_is_complete_and_correct() {
    let ws = Workspace::new();
    // Day = n * 37 mod 365: consecutive rows fall in different partitions, the worst case
    // for open files.
    let url = ws
        .sqlite_source(
            "CREATE TABLE readings (id INTEGER PRIMARY KEY, day TEXT NOT NULL, sensor INTEGER, value REAL, note TEXT);
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 146000)
             INSERT INTO readings SELECT n, date('2024-01-01', '+' || ((n * 37) % 365) || ' days'), n % 97, n * 0.25, hex(randomblob(16)) FROM g;",
        )
        .await;
    ws.connections(&format!("db:\n  kind: sqlite\n  url: {url}\n"));
    ws.write_job(
        "readings.yaml",
        "job: readings\nsource:\n  connection: db\n  table: readings\ntransform: SELECT id, sensor, value, note, day AS dt FROM source\ntarget:\n  table: readings\n  partition_by: [dt]\n",
    );
    let run = ws.sluice(&[
        "run",
        "--job",
        "readings",
        "--memory-limit",
        "16MiB",
        "--output",
        "json",
    ]);
    run.assert_code(0);
    let summary: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("summary");
    assert_eq!(summary["rows"], 146_000, "{summary}");
    assert_eq!(summary["partitions"], 365, "{summary}");
    let peak = summary["peak_rss"].as_u64().expect("peak rss");
    assert!(
        peak < 128 << 20,
        "peak RSS {} MiB under a 16 MiB budget",
        peak >> 20
    );

    let counts = lake_sql(
        &ws,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, count(DISTINCT dt) AS days, min(n_day) AS smallest, max(n_day) AS largest \
         FROM readings, (SELECT dt AS d, count(*) AS n_day FROM readings GROUP BY dt) per_day WHERE readings.dt = per_day.d",
    );
    assert!(
        counts.contains("| 146000 | 146000 | 365  | 400      | 400     |"),
        "{counts}"
    );
    // Each row is in the partition of its own day.
    let misplaced = lake_sql(
        &ws,
        "SELECT count(*) AS misplaced FROM readings WHERE CAST(date_part('doy', CAST(dt AS DATE)) AS BIGINT) - 1 <> (id * 37) % 365",
    );
    assert!(misplaced.contains("| 0         |"), "{misplaced}");
}
