//! Incremental runs: only the window's rows arrive, a rerun changes nothing, rows within
//! `lag` wait for the next run, the same window gives the same files, and failures are
//! classified by exit code.

use std::collections::BTreeMap;

use crate::common::{Workspace, exec, lake_sql, mysql_db, postgres_db};

fn count_rows(ws: &Workspace, table: &str) -> String {
    lake_sql(
        ws,
        &format!("SELECT count(*) AS n_rows, count(DISTINCT id) AS n_ids FROM {table}"),
    )
}

fn files_with_bytes(ws: &Workspace, table: &str) -> BTreeMap<String, Vec<u8>> {
    ws.parquet_files(table)
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(ws.lake())
                .expect("in lake")
                .display()
                .to_string();
            (rel, std::fs::read(&p).expect("read"))
        })
        .collect()
}

#[tokio::test]
async fn postgres_incremental_windows_lag_and_reruns() {
    let url = postgres_db("sluice_incremental").await;
    exec(
        &url,
        "CREATE TABLE events (id serial PRIMARY KEY, kind text NOT NULL, updated_at timestamptz NOT NULL);
         INSERT INTO events (kind, updated_at)
           SELECT 'created', now() - interval '3 days' + g * interval '1 minute' FROM generate_series(1, 100) g;",
    )
    .await;
    let ws = Workspace::new();
    ws.connections(&format!("pg:\n  kind: postgres\n  url: \"{url}\"\n"));
    ws.write_job(
        "events.yaml",
        "job: events\nsource:\n  connection: pg\n  table: public.events\n  cursor: updated_at\n  primary_key: [id]\n  lag: 5s\nmode: incremental\ntransform: SELECT *, date_format(updated_at, '%Y-%m-%d') AS dt FROM source\ntarget:\n  table: events\n  partition_by: [dt]\n",
    );

    let first = ws.run_ok("events");
    assert_eq!(first["status"], "committed");
    assert_eq!(first["rows"], 100);
    assert!(
        count_rows(&ws, "events").contains("| 100    | 100   |"),
        "{}",
        count_rows(&ws, "events")
    );
    let files_after_first = files_with_bytes(&ws, "events");

    // Nothing new: up to date, and the lake is byte for byte the same.
    let again = ws.run_ok("events");
    assert_eq!(again["status"], "up_to_date");
    assert_eq!(files_with_bytes(&ws, "events"), files_after_first);

    // 10 updates and 5 inserts before the lag; 3 rows written just now wait.
    exec(
        &url,
        "UPDATE events SET kind = 'updated', updated_at = now() - interval '20 minutes' WHERE id <= 10;
         INSERT INTO events (kind, updated_at) SELECT 'late', now() - interval '15 minutes' FROM generate_series(1, 5);
         INSERT INTO events (kind, updated_at) SELECT 'fresh', now() FROM generate_series(1, 3);",
    )
    .await;
    let second = ws.run_ok("events");
    assert_eq!(second["rows"], 15, "{second}");
    assert!(
        count_rows(&ws, "events").contains("| 115    | 105   |"),
        "{}",
        count_rows(&ws, "events")
    );
    let kinds = lake_sql(
        &ws,
        "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
    );
    assert!(
        !kinds.contains("fresh"),
        "rows within the lag arrived early:\n{kinds}"
    );

    // Once the lag has passed, the waiting rows arrive, and only they.
    std::thread::sleep(std::time::Duration::from_millis(5500));
    let third = ws.run_ok("events");
    assert_eq!(third["rows"], 3, "{third}");
    let kinds = lake_sql(
        &ws,
        "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
    );
    assert!(kinds.contains("| fresh   | 3   |"), "{kinds}");
    assert!(
        count_rows(&ws, "events").contains("| 118    | 108   |"),
        "{}",
        count_rows(&ws, "events")
    );
}

#[tokio::test]
async fn the_same_window_gives_the_same_files() {
    let url = mysql_db("sluice_same_window").await;
    exec(
        &url,
        "CREATE TABLE pings (id BIGINT PRIMARY KEY, truck INT, at DATETIME(6));
         INSERT INTO pings SELECT seq, seq % 7, TIMESTAMP('2024-05-01') + INTERVAL seq MINUTE FROM seq_1_to_5000;",
    )
    .await;
    let job = "job: pings\nsource:\n  connection: my\n  table: pings\n  cursor: id\n  primary_key: [id]\n  batch_rows: 1024\nmode: incremental\ntransform: SELECT *, date_format(at, '%Y-%m-%d') AS day FROM source\ntarget:\n  table: pings\n  partition_by: [day]\n";
    let runs: Vec<BTreeMap<String, Vec<u8>>> = (0..2)
        .map(|_| {
            let ws = Workspace::new();
            ws.connections(&format!("my:\n  kind: mysql\n  url: \"{url}\"\n"));
            ws.write_job("pings.yaml", job);
            let summary = ws.run_ok("pings");
            assert_eq!(summary["rows"], 5000);
            assert_eq!(summary["partitions"], 4, "{summary}");
            files_with_bytes(&ws, "pings")
        })
        .collect();
    assert!(!runs[0].is_empty());
    assert_eq!(
        runs[0].keys().collect::<Vec<_>>(),
        runs[1].keys().collect::<Vec<_>>()
    );
    assert!(runs[0] == runs[1], "same window, different file contents");
}

#[tokio::test]
async fn mysql_integer_cursor_reads_only_new_rows() {
    let url = mysql_db("sluice_incremental").await;
    exec(&url, "CREATE TABLE tolls (id INT PRIMARY KEY, amount DECIMAL(8,2)); INSERT INTO tolls SELECT seq, seq / 100 FROM seq_1_to_50;").await;
    let ws = Workspace::new();
    ws.connections(&format!("my:\n  kind: mysql\n  url: \"{url}\"\n"));
    ws.write_job("tolls.yaml", "job: tolls\nsource:\n  connection: my\n  query: SELECT id, amount * 2 AS doubled FROM tolls\n  cursor: id\nmode: incremental\ntarget:\n  table: tolls\n");
    assert_eq!(ws.run_ok("tolls")["rows"], 50);
    exec(&url, "INSERT INTO tolls SELECT seq, 1 FROM seq_51_to_70;").await;
    let second = ws.run_ok("tolls");
    assert_eq!(second["rows"], 20);
    assert_eq!(second["window"]["lo"]["value"], 50);
    assert_eq!(second["window"]["hi"]["value"], 70);
    assert_eq!(ws.run_ok("tolls")["status"], "up_to_date");
    assert!(
        count_rows(&ws, "tolls").contains("| 70     | 70    |"),
        "{}",
        count_rows(&ws, "tolls")
    );
}

#[test]
fn a_database_that_is_down_is_retryable_and_the_password_stays_secret() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let ws = Workspace::new();
    ws.connections(&format!(
        "pg:\n  kind: postgres\n  url: \"postgres://etl:${{PG_PASSWORD}}@127.0.0.1:{port}/sales\"\n"
    ));
    ws.write_job(
        "a.yaml",
        "job: a\nsource:\n  connection: pg\n  table: t\ntarget:\n  table: a\n",
    );
    let run = sluice_with_env(&ws, &["run", "--job", "a"], "PG_PASSWORD", "hunter2-secret");
    run.assert_code(75);
    let out = format!("{}{}", run.stdout(), run.stderr());
    assert!(out.contains("connecting to PostgreSQL"), "{out}");
    assert!(!out.contains("hunter2"), "the password leaked:\n{out}");

    let missing = ws.sluice(&["run", "--job", "a"]);
    missing.assert_code(2);
    assert!(
        missing
            .stdout()
            .contains("needs the environment variable PG_PASSWORD"),
        "{}",
        missing.stdout()
    );
}

#[tokio::test]
async fn a_missing_table_fails_that_job_alone() {
    let ws = Workspace::new();
    let url = ws
        .sqlite_source(
            "CREATE TABLE present (id INTEGER PRIMARY KEY); INSERT INTO present VALUES (1), (2);",
        )
        .await;
    ws.connections(&format!("db:\n  kind: sqlite\n  url: {url}\n"));
    ws.write_job(
        "a.yaml",
        "job: present\nsource:\n  connection: db\n  table: present\ntarget:\n  table: present\n",
    );
    ws.write_job(
        "b.yaml",
        "job: absent\nsource:\n  connection: db\n  table: absent\ntarget:\n  table: absent\n",
    );
    ws.write_job("c.yaml", "job: broken\nsource:\n  connection: db\n  table: present\n  cursor: id\nmode: incremental\ntarget:\n  table: Broken\n");
    let run = ws.sluice(&["run", "--all"]);
    run.assert_code(2);
    let out = run.stdout();
    assert!(out.contains("present: 2 rows"), "{out}");
    assert!(
        out.contains("absent: FAILED (user)") && out.contains("absent"),
        "{out}"
    );
    assert!(
        out.contains("broken: FAILED (user)") && out.contains("target.table"),
        "{out}"
    );
}

fn sluice_with_env(ws: &Workspace, args: &[&str], key: &str, value: &str) -> crate::common::Run {
    crate::common::Run(ws.command(args).env(key, value).output().expect("run"))
}

/// MySQL TIMESTAMP (UTC) and DATETIME cursors: windows bound as parameters, and rows
/// newer than now − lag wait.
#[tokio::test]
async fn mysql_timestamp_and_datetime_cursors_with_lag() {
    let url = mysql_db("sluice_mysql_ts").await;
    exec(
        &url,
        "SET time_zone = '+00:00';
         CREATE TABLE ev (id INT PRIMARY KEY, changed_at TIMESTAMP(6) NULL, changed_local DATETIME(6));
         INSERT INTO ev SELECT seq, NOW(6) - INTERVAL 2 HOUR + INTERVAL seq SECOND, UTC_TIMESTAMP(6) - INTERVAL 2 HOUR + INTERVAL seq SECOND FROM seq_1_to_30;",
    )
    .await;
    let ws = Workspace::new();
    ws.connections(&format!("my:\n  kind: mysql\n  url: \"{url}\"\n"));
    for (job, cursor) in [("by_ts", "changed_at"), ("by_dt", "changed_local")] {
        ws.write_job(
            &format!("{job}.yaml"),
            &format!("job: {job}\nsource:\n  connection: my\n  table: ev\n  cursor: {cursor}\n  primary_key: [id]\n  lag: 30s\nmode: incremental\ntarget:\n  table: {job}\n"),
        );
    }
    for job in ["by_ts", "by_dt"] {
        assert_eq!(ws.run_ok(job)["rows"], 30, "{job}");
    }
    exec(
        &url,
        "SET time_zone = '+00:00';
         INSERT INTO ev SELECT 100 + seq, NOW(6) - INTERVAL 1 HOUR, UTC_TIMESTAMP(6) - INTERVAL 1 HOUR FROM seq_1_to_5;
         INSERT INTO ev SELECT 200 + seq, NOW(6), UTC_TIMESTAMP(6) FROM seq_1_to_3;",
    )
    .await;
    for job in ["by_ts", "by_dt"] {
        let second = ws.run_ok(job);
        assert_eq!(
            second["rows"], 5,
            "{job}: only the rows before now − lag: {second}"
        );
        let ids = lake_sql(
            &ws,
            &format!("SELECT count(*) AS n, max(id) AS top FROM {job}"),
        );
        assert!(ids.contains("| 35 | 105 |"), "{job}:\n{ids}");
    }
}
