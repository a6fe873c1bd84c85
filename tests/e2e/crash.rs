//! Crash safety: a run killed after writing files and before its commit, then rerun,
//! leaves each source row in the lake exactly once; a second run of a running job is
//! refused with the busy exit code; Ctrl-C stops a run the same way, releases its lease and
//! exits 130.

use crate::common::{Workspace, exec, lake_sql};

/// 400,000 poorly compressible rows written in 1 MiB files: a run writes many files
/// before it commits, which leaves time to stop it in between.
async fn pings_workspace() -> Workspace {
    let ws = Workspace::new();
    let url = ws
        .sqlite_source(
        "CREATE TABLE pings (id INTEGER PRIMARY KEY, truck INTEGER, note TEXT, at DATETIME);
         WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < 400000)
         INSERT INTO pings SELECT n, n % 150, hex(randomblob(24)), datetime('2024-05-01', '+' || (n / 20) || ' minutes') FROM g;",
    )
    .await;
    ws.connections(&format!("db:\n  kind: sqlite\n  url: {url}\n"));
    ws.write_job(
        "pings.yaml",
        "job: pings\nsource:\n  connection: db\n  table: pings\n  cursor: id\n  primary_key: [id]\n  batch_rows: 4096\nmode: incremental\ntransform: SELECT *, date_format(at, '%Y-%m-%d') AS dt FROM source\ntarget:\n  table: pings\n  partition_by: [dt]\n  file_size: 1MiB\n",
    );
    ws
}

/// The state of a run stopped before its commit: pending, the watermark not moved, files
/// written; then a rerun loads each row once.
fn assert_uncommitted_then_rerun_once(ws: &Workspace) {
    let state = std::fs::read_to_string(ws.state().join("pings.json")).expect("state");
    assert!(
        state.contains("\"pending\""),
        "the stopped run should be pending:\n{state}"
    );
    assert!(
        !state.contains("\"watermark\""),
        "the stopped run must not have moved the watermark:\n{state}"
    );
    assert!(!ws.parquet_files("pings").is_empty());

    let rerun = ws.run_ok("pings");
    assert_eq!(rerun["rows"], 400_000, "{rerun}");
    let counts = lake_sql(
        ws,
        "SELECT count(*) AS n_rows, count(DISTINCT id) AS n_ids FROM pings",
    );
    assert!(counts.contains("| 400000 | 400000 |"), "{counts}");
    let state = std::fs::read_to_string(ws.state().join("pings.json")).expect("state");
    assert!(!state.contains("\"pending\""), "{state}");
}

#[tokio::test]
async fn killed_before_commit_then_rerun_gives_each_row_once() {
    let ws = pings_workspace().await;
    let mut child = ws.start_until_first_file(&["run", "--job", "pings"], "pings");
    // While it runs, a second run of the same job is refused: busy, retry later.
    let second = ws.sluice(&["run", "--job", "pings"]);
    second.assert_code(3);
    assert!(
        second.stdout().contains("already running"),
        "{}",
        second.stdout()
    );

    child.kill().expect("kill");
    child.wait().expect("reap");
    assert_uncommitted_then_rerun_once(&ws);
}

#[tokio::test]
async fn ctrl_c_mid_run_stops_uncommitted_releases_the_lease_and_exits_130() {
    let ws = pings_workspace().await;
    let child = ws.start_until_first_file(&["run", "--job", "pings"], "pings");
    let kill = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    let out = child.wait_with_output().expect("reap");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(130), "{stdout}");
    assert!(stdout.contains("interrupted by SIGINT"), "{stdout}");
    // The lease is free: no holder, and the rerun below takes it.
    let shown = ws.sluice(&["state", "show", "pings"]);
    shown.assert_code(0);
    assert!(
        shown.stdout().contains("\"lease\": null"),
        "{}",
        shown.stdout()
    );
    assert_uncommitted_then_rerun_once(&ws);
}

#[tokio::test]
async fn a_connection_dropped_mid_extract_is_retryable_and_leaves_nothing() {
    let url = crate::common::postgres_db("sluice_dropped").await;
    exec(
        &url,
        "CREATE TABLE readings (id bigint PRIMARY KEY, sensor int, note text, at timestamptz);
         INSERT INTO readings SELECT g, g % 97, md5(g::text) || md5((g * 7)::text), timestamptz '2024-01-01' + g * interval '1 minute'
         FROM generate_series(1, 600000) g;",
    )
    .await;
    let ws = Workspace::new();
    ws.connections(&format!("pg:\n  kind: postgres\n  url: \"{url}\"\n"));
    ws.write_job(
        "readings.yaml",
        "job: readings\nsource:\n  connection: pg\n  table: readings\n  cursor: id\n  primary_key: [id]\n  batch_rows: 4096\nmode: incremental\ntransform: SELECT *, date_format(at, '%Y-%m') AS month FROM source\ntarget:\n  table: readings\n  partition_by: [month]\n  file_size: 1MiB\n",
    );
    let child = ws.start_until_first_file(
        &["run", "--job", "readings", "--output", "json"],
        "readings",
    );
    // The database drops sluice's connection, as a failover or a VPN outage would.
    exec(
        &url,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'sluice' AND pid <> pg_backend_pid()",
    )
    .await;
    let out = child.wait_with_output().expect("wait");
    let summary = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(75), "{summary}");
    assert!(
        summary.contains("\"error_class\":\"external\""),
        "{summary}"
    );
    assert!(
        ws.parquet_files("readings").is_empty(),
        "the failed attempt's files are removed"
    );
    let state = std::fs::read_to_string(ws.state().join("readings.json")).expect("state");
    assert!(
        !state.contains("\"watermark\"") && !state.contains("\"pending\""),
        "{state}"
    );

    let rerun = ws.run_ok("readings");
    assert_eq!(rerun["rows"], 600_000, "{rerun}");
    let counts = lake_sql(
        &ws,
        "SELECT count(*) AS n_rows, count(DISTINCT id) AS n_ids FROM readings",
    );
    assert!(counts.contains("| 600000 | 600000 |"), "{counts}");
}
