//! The memory budget (`--memory-limit`) as a promise about the process's peak RSS. A
//! debug build's code is several times a release build's, and its pages count in RSS
//! whatever the run reads: so each test measures the same binary running a one-row job of
//! the same shape first, and holds the difference to the budget's share for the run's data
//! (the limit less `sluice::budget::PROCESS`, a release build's own). The bench
//! (bench/run) measures the release figure against the limit itself.

use crate::common::{Workspace, lake_sql};

/// Peak RSS of `job` run under `limit`, from its run summary; the summary's rows.
fn peak(ws: &Workspace, job: &str, limit: &str) -> (u64, serde_json::Value) {
    let run = ws.sluice(&[
        "run",
        "--job",
        job,
        "--memory-limit",
        limit,
        "--output",
        "json",
    ]);
    run.assert_code(0);
    let summary: serde_json::Value = serde_json::from_str(run.stdout().trim()).expect("summary");
    (summary["peak_rss"].as_u64().expect("peak rss"), summary)
}

/// Asserts that `job`'s peak held its data within `limit`, `one`'s (a one-row job of the
/// same shape) being the process's own; returns the job's summary.
fn within(ws: &Workspace, job: &str, one: &str, limit_mib: u64) -> serde_json::Value {
    let limit = format!("{limit_mib}MiB");
    let (base, _) = peak(ws, one, &limit);
    let (top, summary) = peak(ws, job, &limit);
    let share = (limit_mib << 20) - sluice::budget::PROCESS;
    assert!(
        top.saturating_sub(base) <= share,
        "under --memory-limit {limit}: peak RSS {} MiB, {} MiB over the one-row run's {} MiB, more than the {} MiB the budget gives the data",
        top >> 20,
        top.saturating_sub(base) >> 20,
        base >> 20,
        share >> 20
    );
    summary
}

#[tokio::test]
async fn a_365_partition_load_under_a_small_memory_limit_is_complete_and_correct() {
    let ws = Workspace::new();
    // Day = n * 37 mod 365: consecutive rows fall in different partitions, the worst case
    // for open files.
    let url = ws
        .sqlite_source(
            "CREATE TABLE readings (id INTEGER PRIMARY KEY, day TEXT NOT NULL, sensor INTEGER, value REAL, note TEXT);
             WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 146000)
             INSERT INTO readings SELECT n, date('2024-01-01', '+' || ((n * 37) % 365) || ' days'), n % 97, n * 0.25, hex(randomblob(16)) FROM g;
             CREATE TABLE one AS SELECT * FROM readings WHERE id = 1;",
        )
        .await;
    ws.connections(&format!("db:\n  kind: sqlite\n  url: {url}\n"));
    ws.write_job(
        "readings.yaml",
        "job: readings\nsource:\n  connection: db\n  table: readings\ntransform: SELECT id, sensor, value, note, day AS dt FROM source\ntarget:\n  table: readings\n  partition_by: [dt]\n",
    );
    ws.write_job(
        "one.yaml",
        "job: one\nsource:\n  connection: db\n  table: one\ntransform: SELECT id, sensor, value, note, day AS dt FROM source\ntarget:\n  table: one\n  partition_by: [dt]\n",
    );
    let summary = within(&ws, "readings", "one", 128);
    assert_eq!(summary["rows"], 146_000, "{summary}");
    assert_eq!(summary["partitions"], 365, "{summary}");

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

/// A table of wide rows (38 text and jsonb columns, about 4 KB a row) read in four parts
/// at once, day-partitioned, under a 128MiB limit: its data stays within the budget's
/// share. Batches of the default 65,536 rows would each hold a whole part.
#[tokio::test]
async fn wide_rows_read_in_parts_stay_within_the_memory_limit() {
    let ws = Workspace::new();
    let url = crate::common::postgres_db("memory_wide").await;
    let texts: Vec<String> = (1..=34)
        .map(|i| {
            format!(
                "substr(repeat(md5((g * {i})::text), 4), 1 + (g % 7)::int, (60 + (g * {i}) % 120)::int)"
            )
        })
        .collect();
    let columns: Vec<String> = (1..=34)
        .map(|i| format!("t{i:02} text"))
        .chain((1..=4).map(|i| format!("j{i} jsonb")))
        .collect();
    let jsons: Vec<String> = (1..=4)
        .map(|i| {
            format!(
                "jsonb_build_object('k', g % {}, 'note', md5(g::text), 'tags', jsonb_build_array('a', g % 5))",
                10 * i + 7
            )
        })
        .collect();
    crate::common::exec(
        &url,
        &format!(
            "CREATE TABLE wide (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, {});
             INSERT INTO wide SELECT g, timestamptz '2024-01-01 00:00+00' + g * interval '20 seconds', {}, {}
             FROM generate_series(1, 60000) g;
             CREATE TABLE wide_one AS SELECT * FROM wide WHERE id = 1;
             ANALYZE wide;",
            columns.join(", "),
            texts.join(", "),
            jsons.join(", ")
        ),
    )
    .await;
    ws.connections(&format!("pg:\n  kind: postgres\n  url: \"{url}\"\n"));
    for (job, table, split) in [
        ("wide", "wide", "  split:\n    parts: 4\n"),
        ("wide_one", "wide_one", ""),
    ] {
        ws.write_job(
            &format!("{job}.yaml"),
            &format!(
                "job: {job}\nsource:\n  connection: pg\n  table: {table}\n{split}\
                 transform: SELECT *, date_format(created_at, '%Y-%m-%d') AS dt FROM source\n\
                 target:\n  table: {job}\n  partition_by: [dt]\n"
            ),
        );
    }
    let summary = within(&ws, "wide", "wide_one", 128);
    assert_eq!(summary["rows"], 60_000, "{summary}");
    assert!(summary["bytes"].as_u64() > Some(8 << 20), "{summary}");
    let counts = lake_sql(
        &ws,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(length(t34)) AS chars FROM wide",
    );
    assert!(counts.contains("| 60000 | 60000 |"), "{counts}");
}
