//! Delta tables correct for any data (issue 37): partition values in any script through
//! every command, time travel per table, a stated winner for every tie, vacuum's dry run
//! naming its files, and a table whose version 0 is its first load. (The independent
//! readers of the same hostile values, and `sluice serve`, are in
//! tests/infra/test_delta_values.py.)

use crate::common::{Workspace, exec, first_row, lake_sql};

/// Partition values a path must survive: other scripts, spaces, `/`, `%` (and text that
/// looks escaped already), `=`, quotes, Hive's own escapes, the empty string (NULL in
/// Hive and Delta) and NULL.
const HOSTILE: &[Option<&str>] = &[
    Some("São Paulo"),
    Some("東京"),
    Some("N/A"),
    Some("a b"),
    Some("100%"),
    Some("%2F"),
    Some("k=v"),
    Some("it's"),
    Some("\"q\""),
    Some("x:y?#[]^{}"),
    Some(""),
    None,
];

const SCHEMA: &str = "CREATE TABLE places (id INTEGER PRIMARY KEY, region TEXT, n INTEGER NOT NULL, updated_at INTEGER NOT NULL, seq INTEGER, deleted INTEGER NOT NULL DEFAULT 0);";

/// An SQL literal (SQLite) of a value.
fn literal(value: Option<&str>) -> String {
    value.map_or("NULL".to_string(), |v| {
        format!("'{}'", v.replace('\'', "''"))
    })
}

async fn places(ws: &Workspace, mode: &str, extra: &str) -> String {
    let url = ws.sqlite_source(SCHEMA).await;
    ws.connections(&format!("src:\n  kind: sqlite\n  url: \"{url}\"\n"));
    let merge = if mode == "merge" {
        "  cursor: updated_at\n  primary_key: [id]\n  delete_when: deleted = 1\n"
    } else {
        ""
    };
    ws.write_job(
        "places.yaml",
        &format!(
            "job: places\nsource:\n  connection: src\n  table: places\n{merge}{extra}mode: {mode}\ntarget:\n  table: places\n  format: delta\n  partition_by: [region]\n"
        ),
    );
    url
}

/// `(rows, sum of n, rows per hostile value in HOSTILE's order)` as `sluice query` reads
/// them; the empty string reads as NULL.
fn per_value(ws: &Workspace, as_of: &[&str]) -> Vec<String> {
    let cases = HOSTILE
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Some(v) if !v.is_empty() => format!(
                "CAST(sum(CASE WHEN region = {} THEN 1 ELSE 0 END) AS BIGINT) AS v{i}",
                literal(Some(*v))
            ),
            _ => format!("CAST(sum(CASE WHEN region IS NULL THEN 1 ELSE 0 END) AS BIGINT) AS v{i}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let sql =
        format!("SELECT count(*) AS rows, CAST(sum(n) AS BIGINT) AS total, {cases} FROM places");
    let mut args = vec!["query", sql.as_str()];
    args.extend_from_slice(as_of);
    let run = ws.sluice(&args);
    run.assert_code(0);
    first_row(&run.stdout())
}

/// Two rows a value (ids 10·i+1 and 10·i+2), n = 1.
fn insert_all(updated_at: i64) -> String {
    HOSTILE
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "INSERT INTO places (id, region, n, updated_at) VALUES ({a}, {r}, 1, {updated_at}), ({b}, {r}, 1, {updated_at});",
                a = i * 10 + 1,
                b = i * 10 + 2,
                r = literal(*v)
            )
        })
        .collect()
}

fn expected(rows_per_value: usize, null_values: usize) -> Vec<String> {
    let values = HOSTILE.len();
    let mut row = vec![
        (values * rows_per_value).to_string(),
        (values * rows_per_value).to_string(),
    ];
    for v in HOSTILE {
        let n = if v.is_none_or(str::is_empty) {
            rows_per_value * null_values
        } else {
            rows_per_value
        };
        row.push(n.to_string());
    }
    row
}

#[tokio::test]
async fn hostile_partition_values_round_trip_through_every_command() {
    let ws = Workspace::new();
    let url = places(&ws, "merge", "").await;
    exec(&url, &insert_all(1)).await;
    let first = ws.run_ok("places");
    assert_eq!(first["delta"]["version"], 0, "{first}");
    // "" and NULL are both the NULL partition: 2 values × 2 rows read as NULL.
    let after_load = expected(2, 2);
    assert_eq!(per_value(&ws, &[]), after_load);

    // The merge that exited 70: updates in every partition, a delete, a key moving
    // from one hostile value to another.
    exec(
        &url,
        "UPDATE places SET n = 1, updated_at = 2 WHERE id % 10 = 1;
         UPDATE places SET deleted = 1, updated_at = 2 WHERE id = 12;
         UPDATE places SET region = '東京', updated_at = 2 WHERE id = 2;",
    )
    .await;
    let merged = ws.run_ok("places");
    assert_eq!(merged["status"], "committed", "{merged}");
    assert_eq!(merged["delta"]["deletes"], 1, "{merged}");
    let moved = lake_sql(&ws, "SELECT region FROM places WHERE id = 2");
    assert!(moved.contains("東京"), "{moved}");
    let count = lake_sql(&ws, "SELECT count(*) AS n FROM places WHERE region = 'N/A'");
    assert_eq!(first_row(&count), ["2"]);
    let rows = lake_sql(&ws, "SELECT count(*) AS n FROM places");
    assert_eq!(first_row(&rows), [(HOSTILE.len() * 2 - 1).to_string()]);

    // Optimize packs each partition's files; vacuum removes the replaced ones; every
    // value reads the same before and after.
    let before = per_value(&ws, &[]);
    ws.sluice(&["optimize", "--job", "places"]).assert_code(0);
    assert_eq!(per_value(&ws, &[]), before);
    let dry = ws.sluice(&["vacuum", "--job", "places", "--retain", "0s", "--dry-run"]);
    dry.assert_code(0);
    ws.sluice(&["vacuum", "--job", "places", "--retain", "0s"])
        .assert_code(0);
    assert_eq!(per_value(&ws, &[]), before);
    assert!(dry.stdout().contains("places/region="), "{}", dry.stdout());
}

#[tokio::test]
async fn a_full_run_writes_hostile_values_that_query_reads() {
    let ws = Workspace::new();
    let url = places(&ws, "full", "").await;
    exec(&url, &insert_all(1)).await;
    ws.run_ok("places");
    assert_eq!(per_value(&ws, &[]), expected(2, 2));
    exec(&url, "DELETE FROM places WHERE id % 10 = 2;").await;
    let second = ws.run_ok("places");
    assert_eq!(second["delta"]["version"], 1, "{second}");
    let mut one_each = expected(1, 2);
    one_each[1] = HOSTILE.len().to_string();
    assert_eq!(per_value(&ws, &[]), one_each);
    // Version 0 is the first load (no empty version before it).
    assert_eq!(per_value(&ws, &["--as-of", "0"]), expected(2, 2));
}

#[tokio::test]
async fn vacuum_dry_run_lists_the_files_it_would_remove() {
    let ws = Workspace::new();
    let url = places(&ws, "full", "").await;
    exec(
        &url,
        "INSERT INTO places (id, region, n, updated_at) VALUES (1, 'N/A', 1, 1);",
    )
    .await;
    ws.run_ok("places");
    ws.run_ok("places");
    let dry = ws.sluice(&["vacuum", "--job", "places", "--retain", "0s", "--dry-run"]);
    dry.assert_code(0);
    let out = dry.stdout();
    assert!(out.contains("would remove 1 file"), "{out}");
    let listed: Vec<&str> = out
        .lines()
        .filter(|l| l.trim_start().starts_with("would remove places/"))
        .collect();
    assert_eq!(listed.len(), 1, "{out}");
    assert!(listed[0].contains("region=N%2FA/part-"), "{out}");
    // Nothing was removed: the listed file is still there.
    let file = listed[0].trim().trim_start_matches("would remove ");
    assert!(
        ws.lake().join(file).exists(),
        "{file} is gone after a dry run"
    );
}

#[tokio::test]
async fn as_of_applies_to_the_tables_the_query_names() {
    let ws = Workspace::new();
    let url = ws.sqlite_source(SCHEMA).await;
    ws.connections(&format!("src:\n  kind: sqlite\n  url: \"{url}\"\n"));
    for name in ["ta", "tb"] {
        ws.write_job(
            &format!("{name}.yaml"),
            &format!(
                "job: {name}\nsource:\n  connection: src\n  table: places\nmode: full\ntarget:\n  table: {name}\n  format: delta\n"
            ),
        );
    }
    exec(
        &url,
        "INSERT INTO places (id, region, n, updated_at) VALUES (1, 'a', 1, 1);",
    )
    .await;
    // ta gets versions 0, 1, 2; tb only 0.
    ws.run_ok("tb");
    for id in 2..=3 {
        ws.run_ok("ta");
        exec(
            &url,
            &format!("INSERT INTO places (id, region, n, updated_at) VALUES ({id}, 'a', 1, 1);"),
        )
        .await;
    }
    ws.run_ok("ta");
    let count = |sql: &str, as_of: &str| {
        let run = ws.sluice(&["query", sql, "--as-of", as_of]);
        run.assert_code(0);
        first_row(&run.stdout())
    };
    assert_eq!(count("SELECT count(*) AS n FROM ta", "2"), ["3"]);
    assert_eq!(count("SELECT count(*) AS n FROM ta", "0"), ["1"]);
    // A table the query does not name is not asked for version 2.
    assert_eq!(
        count(
            "WITH x AS (SELECT * FROM ta) SELECT count(*) AS n FROM x",
            "1"
        ),
        ["2"]
    );
    // A table that has no version 2 is the user's error, naming it and its versions.
    let missing = ws.sluice(&["query", "SELECT count(*) FROM tb", "--as-of", "2"]);
    assert_eq!(missing.code(), 2, "{}", missing.stderr());
    assert!(missing.stderr().contains("`tb`"), "{}", missing.stderr());
    assert!(
        missing.stderr().contains("versions are 0 to 0"),
        "{}",
        missing.stderr()
    );
    let joined = ws.sluice(&[
        "query",
        "SELECT count(*) FROM ta JOIN tb ON ta.id = tb.id",
        "--as-of",
        "2",
    ]);
    assert_eq!(joined.code(), 2, "{}", joined.stderr());
    // A time before a table's first commit.
    let early = ws.sluice(&["query", "SELECT count(*) FROM ta", "--as-of", "2001-01-01"]);
    assert_eq!(early.code(), 2, "{}", early.stderr());
    assert!(early.stderr().contains("`ta`"), "{}", early.stderr());
}

/// Rows of one key with the same cursor in one run: the same winner every time, by the
/// stated rule. The source table has no key of its own, so that rows can share one.
async fn tied_run(tie_break: bool) -> (String, serde_json::Value) {
    let ws = Workspace::new();
    let url = ws
        .sqlite_source("CREATE TABLE events (k INTEGER NOT NULL, region TEXT NOT NULL, n INTEGER NOT NULL, updated_at INTEGER NOT NULL, seq INTEGER, deleted INTEGER NOT NULL);")
        .await;
    ws.connections(&format!("src:\n  kind: sqlite\n  url: \"{url}\"\n"));
    let extra = if tie_break { "  tie_break: seq\n" } else { "" };
    ws.write_job(
        "events.yaml",
        &format!(
            "job: events\nsource:\n  connection: src\n  table: events\n  cursor: updated_at\n  primary_key: [k]\n  delete_when: deleted = 1\n{extra}mode: merge\ntarget:\n  table: events\n  format: delta\n  partition_by: [region]\n"
        ),
    );
    exec(
        &url,
        // Key 1: n 5 with seq 2 against n 9 with seq 1 (the other columns prefer n 9).
        // Key 2: a delete (seq 1) tied with an upsert (seq 2).
        // Key 3: no tie.
        "INSERT INTO events VALUES
           (1, 'a', 5, 2, 2, 0), (1, 'a', 9, 2, 1, 0),
           (2, 'a', 7, 2, 1, 1), (2, 'a', 3, 2, 2, 0),
           (3, 'a', 4, 2, 1, 0);",
    )
    .await;
    let run = ws.run_ok("events");
    let rows = lake_sql(&ws, "SELECT k, n FROM events ORDER BY k");
    (rows, run)
}

#[tokio::test]
async fn ties_go_to_the_tie_break_column() {
    let (rows, run) = tied_run(true).await;
    // Key 1: seq 2 wins (n 5); key 2: the upsert's seq 2 beats the delete's seq 1.
    let lines: Vec<Vec<String>> = rows
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert_eq!(lines, [["1", "5"], ["2", "3"], ["3", "4"]], "{rows}");
    assert_eq!(run["delta"]["ties"], 2, "{run}");
    assert_eq!(run["delta"]["ties_by_rule"], 0, "{run}");
}

#[tokio::test]
async fn without_a_tie_break_the_delete_wins_then_the_other_columns() {
    let (rows, run) = tied_run(false).await;
    // Key 1: the greater n (9); key 2: the delete wins, the key is gone.
    let lines: Vec<Vec<String>> = rows
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1)
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert_eq!(lines, [["1", "9"], ["3", "4"]], "{rows}");
    assert_eq!(run["delta"]["ties"], 2, "{run}");
    assert_eq!(run["delta"]["ties_by_rule"], 2, "{run}");
}
