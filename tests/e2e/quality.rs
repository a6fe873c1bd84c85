//! Data-quality rules on a real PostgreSQL source: every rule, every `on_fail`, and the
//! quarantine table's contents.

use crate::common::{Workspace, exec, lake_sql, postgres_db};

/// Ten orders; the bad ones: 3 has no customer, 4 and 5 share an id-like key `ref`,
/// 6 has an unknown status, 7 a negative amount, 8 ships before it was placed.
const ORDERS: &str = "CREATE TABLE orders (id integer PRIMARY KEY, ref text, customer integer, status text, amount numeric(10,2), placed date, shipped date, updated_at timestamp);
INSERT INTO orders VALUES
 (1, 'A1', 10, 'new', 10.00, '2024-05-01', '2024-05-02', (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (2, 'A2', 11, 'paid', 20.00, '2024-05-01', '2024-05-03', (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (3, 'A3', NULL, 'paid', 30.00, '2024-05-02', '2024-05-03', (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (4, 'A4', 12, 'new', 40.00, '2024-05-02', NULL, (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (5, 'A4', 13, 'new', 50.00, '2024-05-02', NULL, (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (6, 'A6', 14, 'lost', 60.00, '2024-05-03', NULL, (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (7, 'A7', 15, 'paid', -5.00, '2024-05-03', '2024-05-04', (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (8, 'A8', 16, 'paid', 80.00, '2024-05-04', '2024-05-01', (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (9, 'A9', 17, 'new', 90.00, '2024-05-04', NULL, (now() AT TIME ZONE 'UTC') - interval '1 hour'),
 (10, 'A10', 18, NULL, 100.00, '2024-05-04', NULL, (now() AT TIME ZONE 'UTC') - interval '1 hour');";

fn rules(on_fail: &str) -> String {
    format!(
        "quality:
  - not_null: [customer]
    on_fail: {on_fail}
  - unique: [ref]
    on_fail: {on_fail}
  - accepted_values: {{column: status, values: [new, paid, shipped]}}
    on_fail: {on_fail}
  - range: {{column: amount, min: 0, max: 1000}}
    on_fail: {on_fail}
  - name: ships_after_placed
    sql: shipped IS NULL OR shipped >= placed
    on_fail: {on_fail}
"
    )
}

async fn workspace(db: &str, rules: &str) -> Workspace {
    let url = postgres_db(db).await;
    exec(&url, ORDERS).await;
    let ws = Workspace::new();
    ws.connections(&format!("src:\n  kind: postgres\n  url: \"{url}\"\n"));
    ws.write_job(
        "orders.yaml",
        &format!("job: orders\nsource:\n  connection: src\n  table: orders\n  primary_key: [id]\n  cursor: updated_at\nmode: incremental\ntransform: SELECT *, CAST(placed AS VARCHAR) AS dt FROM source\ntarget:\n  table: orders\n  partition_by: [dt]\n{rules}"),
    );
    ws
}

fn failed(summary: &serde_json::Value) -> Vec<(String, u64, bool)> {
    summary["quality"]
        .as_array()
        .expect("quality results")
        .iter()
        .map(|r| {
            (
                r["rule"].as_str().unwrap_or("").to_string(),
                r["failed_rows"].as_u64().unwrap_or(0),
                r["passed"].as_bool().unwrap_or(true),
            )
        })
        .collect()
}

fn expected() -> Vec<(String, u64, bool)> {
    [
        ("not_null(customer)", 1),
        ("unique(ref)", 2),
        ("accepted_values(status)", 1),
        ("range(amount)", 1),
        ("ships_after_placed", 1),
    ]
    .iter()
    .map(|(r, n)| (r.to_string(), *n, false))
    .collect()
}

#[tokio::test]
async fn warn_commits_every_row_and_reports_each_rule() {
    let ws = workspace("quality_warn", &rules("warn")).await;
    let summary = ws.run_ok("orders");
    assert_eq!(summary["rows"], 10);
    assert_eq!(failed(&summary), expected());
    assert_eq!(summary["quarantined"], 0);
    let history = ws.sluice(&["state", "history", "orders"]).stdout();
    assert!(
        history.contains("quality `unique(ref)` failed: 2 rows failed"),
        "{history}"
    );
}

#[tokio::test]
async fn fail_commits_nothing_and_names_the_rules() {
    let ws = workspace("quality_fail", &rules("fail")).await;
    let run = ws.sluice(&[
        "run",
        "--job",
        "orders",
        "--output",
        "json",
        "--metrics",
        "emf",
    ]);
    run.assert_code(2);
    let lines: Vec<serde_json::Value> = run
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    let summary = lines
        .iter()
        .find(|l| l.get("quality").is_some())
        .expect("summary");
    let emf = lines
        .iter()
        .find(|l| l.get("_aws").is_some())
        .expect("EMF document");
    assert_eq!(emf["QualityFailures"], 5.0, "{emf}");
    assert_eq!(emf["QualityFailedRows"], 6.0, "{emf}");
    assert_eq!(emf["QuarantinedRows"], 0.0, "{emf}");
    assert_eq!(emf["RunFailed"], 1.0, "{emf}");
    assert_eq!(failed(summary), expected());
    let error = summary["error"].as_str().unwrap_or("");
    for rule in ["not_null(customer)", "unique(ref)", "ships_after_placed"] {
        assert!(error.contains(rule), "{error}");
    }
    assert!(
        ws.parquet_files("orders").is_empty(),
        "a failed run leaves no files"
    );
    let state = ws.sluice(&["state", "show", "orders"]).stdout();
    assert!(
        !state.contains("watermark"),
        "the watermark did not move: {state}"
    );
}

#[tokio::test]
async fn quarantine_moves_the_failing_rows_with_their_rules() {
    let ws = workspace("quality_quarantine", &rules("quarantine")).await;
    let summary = ws.run_ok("orders");
    assert_eq!(summary["rows"], 4, "{summary}");
    assert_eq!(summary["quarantined"], 6);
    let kept = lake_sql(&ws, "SELECT id FROM orders ORDER BY id");
    for id in ["| 1  |", "| 2  |", "| 9  |", "| 10 |"] {
        assert!(kept.contains(id), "{kept}");
    }
    let moved = lake_sql(
        &ws,
        "SELECT id, _quality_rule, dt FROM orders__quarantine ORDER BY id",
    );
    for line in [
        "| 3  | not_null(customer)      | 2024-05-02 |",
        "| 4  | unique(ref)             | 2024-05-02 |",
        "| 5  | unique(ref)             | 2024-05-02 |",
        "| 6  | accepted_values(status) | 2024-05-03 |",
        "| 7  | range(amount)           | 2024-05-03 |",
        "| 8  | ships_after_placed      | 2024-05-04 |",
    ] {
        assert!(moved.contains(line), "{line}\n{moved}");
    }
    let runs = lake_sql(
        &ws,
        "SELECT count(DISTINCT _run_id) AS n FROM orders__quarantine",
    );
    assert!(runs.contains("| 1 |"), "{runs}");
    // A rerun reads nothing new: neither table changes.
    let again = ws.sluice(&["run", "--job", "orders"]);
    again.assert_code(0);
    assert!(again.stdout().contains("up to date"), "{}", again.stdout());
}

#[tokio::test]
async fn table_rules_judge_the_run() {
    let ws = workspace(
        "quality_table",
        "quality:
  - row_count: {min: 11}
    on_fail: warn
  - freshness: {max_age: 2h}
  - name: stale
    freshness: {column: placed, max_age: 1d}
    on_fail: warn
",
    )
    .await;
    let summary = ws.run_ok("orders");
    let results = summary["quality"].as_array().expect("results");
    assert_eq!(results[0]["passed"], false);
    assert_eq!(results[0]["detail"], "10 rows; expected at least 11");
    assert_eq!(results[1]["rule"], "freshness(updated_at)");
    assert_eq!(results[1]["passed"], true, "{summary}");
    assert_eq!(results[2]["passed"], false);
    assert!(
        results[2]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("newest `placed` 2024-05-04")
    );

    // row_count with on_fail fail stops the run.
    ws.write_job(
        "orders.yaml",
        &std::fs::read_to_string(ws.jobs().join("orders.yaml"))
            .unwrap()
            .replace(
                "row_count: {min: 11}\n    on_fail: warn",
                "row_count: {max: 0}",
            ),
    );
    let url_change = ws.sluice(&["state", "rewind", "orders", "--to", "start"]);
    url_change.assert_code(0);
    let run = ws.sluice(&["run", "--job", "orders"]);
    run.assert_code(2);
    assert!(
        run.stderr()
            .contains("`row_count`: 10 rows; expected at most 0"),
        "{}",
        run.stderr()
    );
}

#[tokio::test]
async fn broken_rules_are_config_errors() {
    let ws = workspace(
        "quality_broken",
        "quality:
  - row_count: {min: 1}
    on_fail: quarantine
  - not_null: [a]
    unique: [b]
  - sql: \"amount > 0; DROP TABLE orders\"
  - accepted_values: {column: status, values: [[1]]}
",
    )
    .await;
    let run = ws.sluice(&["jobs", "validate"]);
    run.assert_code(2);
    let err = run.stderr();
    for expected in [
        "quality[0].on_fail: `quarantine` moves failing rows",
        "quality[1]: needs exactly one check",
        "quality[2].sql: must be one expression",
        "quality[3].accepted_values.values: [1] is not a value",
    ] {
        assert!(err.contains(expected), "{expected}\n{err}");
    }
}
