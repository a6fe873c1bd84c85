//! Delta Lake tables (`target.format: delta`): each mode's commit, merge by key with
//! deletes, time travel, the crash points of the commit protocol, optimize and vacuum.
//! (The independent readers — DuckDB's delta extension and the deltalake package — are
//! in tests/infra/test_delta.py.)

use crate::common::{Workspace, exec, first_row, lake_sql, start_at_failpoint};

const SCHEMA: &str = "CREATE TABLE orders (id INTEGER PRIMARY KEY, customer TEXT NOT NULL, amount REAL NOT NULL, day TEXT NOT NULL, deleted_at TEXT, updated_at INTEGER NOT NULL);";

fn merge_job(ws: &Workspace) {
    ws.write_job(
        "orders.yaml",
        "job: orders\nsource:\n  connection: src\n  table: orders\n  cursor: updated_at\n  primary_key: [id]\n  delete_when: deleted_at IS NOT NULL\nmode: merge\ntarget:\n  table: orders\n  format: delta\n  partition_by: [day]\n",
    );
}

async fn source(ws: &Workspace) -> String {
    let url = ws.sqlite_source(SCHEMA).await;
    ws.connections(&format!("src:\n  kind: sqlite\n  url: \"{url}\"\n"));
    url
}

/// `(rows, distinct ids, sum of amounts)` as `sluice query` reads the table.
fn totals(ws: &Workspace, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        "query",
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, CAST(sum(amount) AS BIGINT) AS total FROM orders",
    ];
    args.extend_from_slice(extra);
    let run = ws.sluice(&args);
    run.assert_code(0);
    first_row(&run.stdout())
}

/// Runs the job `orders` and expects the user's error saying `says`.
fn refused(ws: &Workspace, says: &str) {
    let run = ws.sluice(&["run", "--job", "orders"]);
    assert_eq!(run.code(), 2, "{}", run.stderr());
    assert!(run.stderr().contains(says), "{}", run.stderr());
}

fn log_versions(ws: &Workspace, table: &str) -> usize {
    std::fs::read_dir(ws.lake().join(table).join("_delta_log"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn merge_upserts_and_deletes_by_key_with_time_travel() {
    let ws = Workspace::new();
    let url = source(&ws).await;
    merge_job(&ws);
    exec(
        &url,
        "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 1000)
         INSERT INTO orders SELECT i, 'c' || (i % 7), i, '2024-05-0' || (1 + i % 5), NULL, 1 FROM g;",
    )
    .await;
    let first = ws.run_ok("orders");
    assert_eq!(
        first["delta"]["version"], 0,
        "the first load is version 0: {first}"
    );
    assert_eq!(totals(&ws, &[]), ["1000", "1000", "500500"]);

    // Updates (one moves to another day's partition), inserts, deletes.
    exec(
        &url,
        "UPDATE orders SET amount = amount + 1000, updated_at = 2 WHERE id <= 10;
         UPDATE orders SET day = '2024-06-30', updated_at = 2 WHERE id = 500;
         UPDATE orders SET deleted_at = '2024-05-09', updated_at = 2 WHERE id IN (20, 21, 22);
         INSERT INTO orders VALUES (1001, 'new', 5, '2024-05-01', NULL, 2), (1002, 'new', 5, '2024-05-02', NULL, 2);",
    )
    .await;
    let second = ws.run_ok("orders");
    assert_eq!(second["status"], "committed");
    assert_eq!(second["delta"]["version"], 1, "{second}");
    assert_eq!(second["delta"]["deletes"], 3, "{second}");
    assert_eq!(
        second["delta"]["matched"], 14,
        "11 updated, 3 deleted: {second}"
    );
    // 1000 − 3 deleted + 2 new, one row per id; the sum moved by 10×1000 + 10 − (20+21+22).
    assert_eq!(
        totals(&ws, &[]),
        ["999", "999", &(500_500 + 10_000 + 10 - 63).to_string()]
    );
    let moved = lake_sql(&ws, "SELECT day, customer FROM orders WHERE id = 500");
    assert!(moved.contains("2024-06-30"), "{moved}");
    // Time travel: version 0 is the first load, as it was (no empty version before it).
    assert_eq!(totals(&ws, &["--as-of", "0"]), ["1000", "1000", "500500"]);
    let bad = ws.sluice(&["query", "SELECT 1", "--as-of", "soon"]);
    assert_eq!(bad.code(), 2, "{}", bad.stderr());
    assert!(bad.stderr().contains("--as-of"), "{}", bad.stderr());

    // Nothing new: no version is added.
    let again = ws.run_ok("orders");
    assert_eq!(again["status"], "up_to_date");
    assert_eq!(
        log_versions(&ws, "orders"),
        2,
        "load (creating the table), merge"
    );
}

#[tokio::test]
async fn full_reload_replaces_in_one_version_and_keeps_the_old_for_time_travel() {
    let ws = Workspace::new();
    let url = source(&ws).await;
    ws.write_job(
        "orders.yaml",
        "job: orders\nsource:\n  connection: src\n  table: orders\nmode: full\ntarget:\n  table: orders\n  format: delta\n",
    );
    exec(
        &url,
        "INSERT INTO orders VALUES (1, 'a', 10, 'd', NULL, 1), (2, 'b', 20, 'd', NULL, 1);",
    )
    .await;
    ws.run_ok("orders");
    exec(
        &url,
        "INSERT INTO orders VALUES (3, 'c', 30, 'd', NULL, 1);",
    )
    .await;
    let second = ws.run_ok("orders");
    assert_eq!(second["delta"]["version"], 1, "{second}");
    assert_eq!(totals(&ws, &[]), ["3", "3", "60"]);
    assert_eq!(totals(&ws, &["--as-of", "0"]), ["2", "2", "30"]);
    // The replaced file is still there for version 1's readers, until vacuum.
    assert_eq!(ws.parquet_files("orders").len(), 2);
    let vacuum = ws.sluice(&["vacuum", "--job", "orders", "--retain", "0s"]);
    vacuum.assert_code(0);
    assert!(
        vacuum.stdout().contains("removed 1 file"),
        "{}",
        vacuum.stdout()
    );
    assert_eq!(ws.parquet_files("orders").len(), 1);
    assert_eq!(totals(&ws, &[]), ["3", "3", "60"]);
}

#[tokio::test]
async fn incremental_appends_and_snapshot_replaces_its_day() {
    let ws = Workspace::new();
    let url = source(&ws).await;
    ws.write_job(
        "appended.yaml",
        "job: appended\nsource:\n  connection: src\n  table: orders\n  cursor: updated_at\nmode: incremental\ntarget:\n  table: appended\n  format: delta\n",
    );
    ws.write_job(
        "daily.yaml",
        "job: daily\nsource:\n  connection: src\n  table: orders\nmode: snapshot\ntarget:\n  table: daily\n  format: delta\n",
    );
    exec(
        &url,
        "INSERT INTO orders VALUES (1, 'a', 10, 'd', NULL, 1);",
    )
    .await;
    ws.run_ok("appended");
    ws.run_ok("daily");
    exec(
        &url,
        "INSERT INTO orders VALUES (2, 'b', 20, 'd', NULL, 2);",
    )
    .await;
    ws.run_ok("appended");
    ws.run_ok("daily");
    let appended = lake_sql(&ws, "SELECT count(*) AS n FROM appended");
    assert_eq!(first_row(&appended), ["2"], "{appended}");
    // Two runs on one day: the second replaced the first's partition.
    let daily = lake_sql(
        &ws,
        "SELECT count(*) AS n, count(DISTINCT snapshot) AS days FROM daily",
    );
    assert_eq!(first_row(&daily), ["2", "1"], "{daily}");
}

/// Kill -9 at each step of the commit; a rerun converges to the source, no key twice.
#[tokio::test]
async fn a_killed_merge_is_settled_by_the_next_run() {
    for point in ["written", "prepared", "delta-committed"] {
        let ws = Workspace::new();
        let url = source(&ws).await;
        merge_job(&ws);
        exec(
            &url,
            "WITH RECURSIVE g(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM g WHERE i < 100)
             INSERT INTO orders SELECT i, 'c', i, '2024-05-0' || (1 + i % 3), NULL, 1 FROM g;",
        )
        .await;
        ws.run_ok("orders");
        exec(
            &url,
            "UPDATE orders SET amount = amount * 2, updated_at = 2 WHERE id <= 50;
             UPDATE orders SET deleted_at = 'x', updated_at = 2 WHERE id = 100;",
        )
        .await;
        let mut child = start_at_failpoint(ws.command(&["run", "--job", "orders"]), point);
        child.kill().expect("kill");
        child.wait().expect("wait");
        // The table is a consistent version either way: before the merge or after it.
        let seen = totals(&ws, &[]);
        let before = ["100", "100", "5050"];
        let after = ["99", "99", &(5050 + 1275 - 100).to_string()].map(str::to_string);
        assert!(
            seen == before || seen == after,
            "{point}: a half-applied merge {seen:?}"
        );
        let rerun = ws.run_ok("orders");
        assert!(
            rerun["status"] == "committed" || rerun["status"] == "up_to_date",
            "{point}: {rerun}"
        );
        assert_eq!(totals(&ws, &[]), after, "{point}: the rerun converges");
        let state = ws.sluice(&["state", "show", "orders"]).stdout();
        assert!(!state.contains("pending"), "{point}: {state}");
    }
}

#[tokio::test]
async fn optimize_packs_small_files_with_the_same_rows() {
    let ws = Workspace::new();
    let url = source(&ws).await;
    ws.write_job(
        "appended.yaml",
        "job: appended\nsource:\n  connection: src\n  table: orders\n  cursor: updated_at\nmode: incremental\ntarget:\n  table: appended\n  format: delta\n  partition_by: [day]\n",
    );
    for run in 1..=6 {
        exec(
            &url,
            &format!(
                "INSERT INTO orders VALUES ({a}, 'a', {a}, 'd1', NULL, {run}), ({b}, 'b', {b}, 'd2', NULL, {run});",
                a = run * 10,
                b = run * 10 + 1
            ),
        )
        .await;
        ws.run_ok("appended");
    }
    let query = "SELECT count(*) AS n, CAST(sum(amount) AS BIGINT) AS s FROM appended";
    let before = first_row(&lake_sql(&ws, query));
    assert_eq!(ws.parquet_files("appended").len(), 12);

    // Killed before its commit: the table is unchanged and the packed files are in no
    // version (vacuum removes them).
    let mut killed = start_at_failpoint(
        ws.command(&["optimize", "--job", "appended"]),
        "optimize-written",
    );
    killed.kill().expect("kill");
    killed.wait().expect("wait");
    assert_eq!(first_row(&lake_sql(&ws, query)), before);

    let optimize = ws.sluice(&["optimize", "--job", "appended"]);
    optimize.assert_code(0);
    assert!(
        optimize
            .stdout()
            .contains("packs 12 files into 2 in 2 partitions"),
        "{}",
        optimize.stdout()
    );
    assert_eq!(first_row(&lake_sql(&ws, query)), before);
    // Again: nothing left to pack.
    let again = ws.sluice(&["optimize", "--job", "appended"]);
    assert!(
        again.stdout().contains("nothing to pack"),
        "{}",
        again.stdout()
    );
    // The previous version still reads the same rows from the small files.
    let as_of = ws.sluice(&["query", query, "--as-of", "5"]);
    as_of.assert_code(0);
    assert_eq!(first_row(&as_of.stdout()), before);
    // Vacuum: the 12 small files and the killed optimize's leftovers go, the 2 packed stay.
    ws.sluice(&["vacuum", "--job", "appended", "--retain", "0s"])
        .assert_code(0);
    assert_eq!(ws.parquet_files("appended").len(), 2);
    assert_eq!(first_row(&lake_sql(&ws, query)), before);
}

/// `on_schema_change: evolve` on Delta: the new column joins the table's schema in the
/// run's commit (older rows read it as NULL); `sluice ddl` prints Athena's Delta form.
#[tokio::test]
async fn evolve_is_a_delta_schema_change_and_ddl_says_delta() {
    let ws = Workspace::new();
    let url = source(&ws).await;
    ws.write_job(
        "orders.yaml",
        "job: orders\nsource:\n  connection: src\n  table: orders\n  cursor: updated_at\n  primary_key: [id]\nmode: merge\ntarget:\n  table: orders\n  format: delta\n  on_schema_change: evolve\n",
    );
    exec(
        &url,
        "INSERT INTO orders VALUES (1, 'a', 10, 'd', NULL, 1);",
    )
    .await;
    ws.run_ok("orders");
    exec(
        &url,
        "ALTER TABLE orders ADD COLUMN channel TEXT;
         INSERT INTO orders VALUES (2, 'b', 20, 'd', NULL, 2, 'web');
         UPDATE orders SET amount = 11, updated_at = 2 WHERE id = 1;",
    )
    .await;
    ws.run_ok("orders");
    let rows = lake_sql(&ws, "SELECT id, amount, channel FROM orders ORDER BY id");
    assert!(rows.contains("| 1  | 11.0   |         |"), "{rows}");
    assert!(rows.contains("| 2  | 20.0   | web     |"), "{rows}");
    assert_eq!(totals(&ws, &[]), ["2", "2", "31"], "{rows}");
    let log = std::fs::read_to_string(
        ws.lake()
            .join("orders/_delta_log/00000000000000000001.json"),
    )
    .expect("version 1 (the first load is version 0)");
    assert!(
        log.contains("\"metaData\"") && log.contains("channel"),
        "the commit carries the new schema: {log}"
    );
    let ddl = ws.sluice(&["ddl", "--job", "orders"]);
    ddl.assert_code(0);
    let text = ddl.stdout();
    assert!(
        text.contains("TBLPROPERTIES ('table_type'='DELTA');")
            && text.contains("LOCATION '")
            && text.contains("--   `channel` string")
            && !text.contains("PARTITIONED BY"),
        "{text}"
    );
}

/// A Parquet table whose job turns to Delta: an append-only mode would hide its files, so
/// the first Delta commit is refused with what to do; a full run replaces them.
#[tokio::test]
async fn a_parquet_table_is_not_hidden_by_a_new_delta_log() {
    let ws = Workspace::new();
    let url = source(&ws).await;
    let job = |mode: &str, format: &str| {
        format!(
            "job: orders\nsource:\n  connection: src\n  table: orders\n  cursor: updated_at\n  primary_key: [id]\nmode: {mode}\ntarget:\n  table: orders\n  format: {format}\n"
        )
    };
    exec(
        &url,
        "INSERT INTO orders VALUES (1, 'a', 10, 'd', NULL, 1);",
    )
    .await;
    ws.write_job("orders.yaml", &job("incremental", "parquet"));
    ws.run_ok("orders");
    exec(
        &url,
        "INSERT INTO orders VALUES (2, 'b', 20, 'd', NULL, 2);",
    )
    .await;
    ws.write_job("orders.yaml", &job("merge", "delta"));
    refused(&ws, "mode full");
    assert_eq!(
        totals(&ws, &[]),
        ["1", "1", "10"],
        "the Parquet table is intact"
    );
    ws.write_job("orders.yaml", &job("full", "delta"));
    ws.run_ok("orders");
    assert_eq!(totals(&ws, &[]), ["2", "2", "30"]);
}

/// A Delta table's columns keep their types: an `evolve` that widens one is refused before
/// anything is committed, and a full run may replace the schema.
#[tokio::test]
async fn a_widened_column_is_refused_unless_a_full_run_replaces_the_table() {
    let ws = Workspace::new();
    let url = source(&ws).await;
    let job = |mode: &str, cast: &str| {
        format!(
            "job: orders\nsource:\n  connection: src\n  table: orders\n  cursor: updated_at\n  primary_key: [id]\nmode: {mode}\ntransform: SELECT id, CAST(amount AS {cast}) AS amount, updated_at FROM source\ntarget:\n  table: orders\n  format: delta\n  on_schema_change: evolve\n"
        )
    };
    exec(
        &url,
        "INSERT INTO orders VALUES (1, 'a', 10, 'd', NULL, 1);",
    )
    .await;
    ws.write_job("orders.yaml", &job("incremental", "INT"));
    ws.run_ok("orders");
    exec(
        &url,
        "INSERT INTO orders VALUES (2, 'b', 20, 'd', NULL, 2);",
    )
    .await;
    ws.write_job("orders.yaml", &job("incremental", "BIGINT"));
    refused(&ws, "changes the type of `amount`");
    assert_eq!(totals(&ws, &[]), ["1", "1", "10"], "nothing committed");
    ws.write_job("orders.yaml", &job("full", "BIGINT"));
    ws.run_ok("orders");
    assert_eq!(totals(&ws, &[]), ["2", "2", "30"]);
    let types = lake_sql(&ws, "SELECT arrow_typeof(amount) AS t FROM orders LIMIT 1");
    assert!(types.contains("Int64"), "{types}");
}
