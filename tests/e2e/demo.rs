//! The embedded default: `sluice demo` from a clean folder.

use datafusion::arrow::datatypes::DataType;

use crate::common::{Workspace, parquet_files, read_parquet_dir};

#[test]
fn demo_runs_end_to_end_from_a_clean_folder() {
    let ws = Workspace::new();
    let run = ws.sluice(&["demo", "--dir", "demo"]);
    run.assert_code(0);
    let out = run.stdout();
    assert!(out.contains("orders: 30000 rows"), "{out}");
    assert!(
        out.contains("orders: 1200 rows"),
        "second run reads only the changes:\n{out}"
    );
    assert!(out.contains("gps_pings: 3000 rows"), "{out}");
    // The bank's statements arrive in a folder: two, then one more, each loaded once and
    // moved out of the way after its commit.
    assert!(out.contains("bank_transactions: 240 rows"), "{out}");
    assert!(out.contains("bank_transactions: 120 rows"), "{out}");
    let drop = ws.dir.path().join("demo/jobs/bank");
    assert_eq!(
        std::fs::read_dir(drop.join("incoming"))
            .expect("incoming")
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(drop.join("processed"))
            .expect("processed")
            .count(),
        3
    );
    assert!(
        out.contains("gps_positions: not run here (disabled"),
        "the queue job needs SQS; the demo says so and goes on: {out}"
    );
    assert!(
        out.contains("| status     | orders | revenue_eur | days |"),
        "{out}"
    );
    assert!(out.contains("| delivered  |"), "{out}");
    // The same lake over HTTP: sluice serve answered the demo's query, and the demo says
    // how to ask it again.
    let http = out
        .lines()
        .find(|l| l.trim_start().starts_with("{\"columns\""))
        .unwrap_or_else(|| panic!("no HTTP answer in:\n{out}"));
    let answer: serde_json::Value = serde_json::from_str(http.trim()).expect("JSON answer");
    let statuses: Vec<&str> = answer["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["status"].as_str())
        .collect();
    assert!(
        statuses.contains(&"delivered") && !statuses.contains(&"cancelled"),
        "{http}"
    );
    assert!(
        out.contains("serve --keys") && out.contains("curl -s -H 'Authorization: Bearer "),
        "{out}"
    );
    // The demo ends with the console: it answered its home page, and says how to open it.
    assert!(
        out.contains("8. The operators' console") && out.contains("answered 200 OK: 11 jobs"),
        "{out}"
    );
    assert!(
        out.contains("console --keys") && out.contains("sign in with the key"),
        "{out}"
    );

    // The website's events: sent to sluice collect over HTTP, loaded when it stopped; the
    // batch sent twice landed once.
    assert!(out.contains("303 events accepted, 100 duplicates"), "{out}");
    assert!(
        out.contains("stopped: every accepted event is in the lake"),
        "{out}"
    );
    assert!(out.contains("| Page Viewed     | 270    |"), "{out}");
    assert!(out.contains("| Signed Up       | 1      |"), "{out}");

    let lake = ws.dir.path().join("demo/lake");
    // Full mode: the second run replaced the first run's file.
    assert_eq!(parquet_files(&lake.join("customers")).len(), 1);
    // Snapshot mode: both runs were today, so today's snapshot holds the second run only.
    let trucks = parquet_files(&lake.join("trucks"));
    assert_eq!(trucks.len(), 1, "{trucks:?}");
    let today = chrono::Utc::now().format("snapshot=%Y-%m-%d").to_string();
    assert!(trucks[0].to_string_lossy().contains(&today), "{trucks:?}");
    // Every committed run of an incremental job left its manifest.
    let manifests = std::fs::read_dir(lake.join("_sluice/manifests/orders"))
        .expect("manifests")
        .count();
    assert_eq!(manifests, 2);

    // The lake answers SQL; a query that is wrong is the user's error.
    let query = |sql| ws.sluice(&["--lake", lake.to_str().expect("utf-8"), "query", sql]);
    let bad = query("SELECT nope FROM orders");
    bad.assert_code(2);
    assert!(bad.stderr().contains("nope"), "{}", bad.stderr());
    // A table that is not there: the message names the closest and lists the lake's tables.
    let missing = query("SELECT count(*) FROM toll_event");
    missing.assert_code(2);
    let said = missing.stderr();
    assert!(said.contains("no table `toll_event`"), "{said}");
    assert!(said.contains("Did you mean `toll_events`?"), "{said}");
    assert!(said.contains("orders") && said.contains("trucks"), "{said}");
    let bank = query(
        "SELECT count(*) AS n, count(DISTINCT txn_id) AS ids, count(DISTINCT _file) AS files FROM bank_transactions",
    );
    bank.assert_code(0);
    assert!(
        bank.stdout().contains("| 360 | 360 | 3     |"),
        "{}",
        bank.stdout()
    );

    // The toll events come through a query (a join with trucks): money stays a decimal.
    let tolls = read_parquet_dir(&lake.join("toll_events"));
    let schema = tolls[0].schema();
    let amount = schema.field_with_name("amount").expect("amount");
    assert_eq!(
        amount.data_type(),
        &DataType::Decimal128(8, 2),
        "{schema:?}"
    );
}
