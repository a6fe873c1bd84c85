//! Schema contracts against a real PostgreSQL: each `on_schema_change` policy on each
//! kind of drift (a column added, dropped, widened, narrowed, renamed), after a first run
//! froze the contract; and `sluice schema infer` giving a row that runs.

use crate::common::{Workspace, exec, lake_sql, mysql_db, postgres_db};

const TABLE: &str =
    "CREATE TABLE items (id integer PRIMARY KEY, name text, qty integer, amount numeric(10,2));
INSERT INTO items VALUES (1, 'bolt', 10, 1.50), (2, 'nut', 20, 0.25);";

#[derive(Clone, Copy, Debug)]
enum Drift {
    Added,
    Dropped,
    Widened,
    Narrowed,
    Renamed,
}

impl Drift {
    fn alter(self) -> &'static str {
        match self {
            Drift::Added => {
                "ALTER TABLE items ADD COLUMN color text; UPDATE items SET color = 'red';"
            }
            Drift::Dropped => "ALTER TABLE items DROP COLUMN name;",
            Drift::Widened => {
                "ALTER TABLE items ALTER COLUMN qty TYPE bigint; UPDATE items SET qty = 5000000000 WHERE id = 2;"
            }
            Drift::Narrowed => "ALTER TABLE items ALTER COLUMN qty TYPE smallint;",
            Drift::Renamed => "ALTER TABLE items RENAME COLUMN name TO title;",
        }
    }
}

async fn setup(policy: &str, drift: Drift) -> Workspace {
    let db = format!("contract_{policy}_{drift:?}").to_lowercase();
    let url = postgres_db(&db).await;
    exec(&url, TABLE).await;
    let ws = Workspace::new();
    ws.connections(&format!("src:\n  kind: postgres\n  url: \"{url}\"\n"));
    ws.write_job(
        "items.yaml",
        &format!("job: items\nsource:\n  connection: src\n  table: items\n  primary_key: [id]\nmode: full\ntarget:\n  table: items\n  on_schema_change: {policy}\n"),
    );
    let first = ws.run_ok("items");
    assert_eq!(first["rows"], 2);
    exec(&url, drift.alter()).await;
    ws
}

fn rows(ws: &Workspace) -> String {
    lake_sql(ws, "SELECT * FROM items ORDER BY id")
}

fn contract(ws: &Workspace) -> serde_json::Value {
    let run = ws.sluice(&["state", "show", "items"]);
    run.assert_code(0);
    let shown: serde_json::Value = serde_json::from_str(&run.stdout()).expect("state json");
    shown["state"]["contract"]["columns"].clone()
}

fn types(ws: &Workspace) -> Vec<String> {
    contract(ws)
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c["name"].as_str().unwrap_or(""),
                c["type"].as_str().unwrap_or("")
            )
        })
        .collect()
}

const FROZEN: [&str; 4] = ["id int", "name string", "qty int", "amount decimal(10,2)"];

#[tokio::test]
async fn fail_refuses_every_drift_and_writes_nothing() {
    for (drift, says) in [
        (Drift::Added, "added `color` (string)"),
        (Drift::Dropped, "dropped `name` (string)"),
        (Drift::Widened, "widened `qty` (int → bigint)"),
        (Drift::Narrowed, "narrowed `qty` (int → smallint)"),
        (Drift::Renamed, "renamed `title` (was `name`"),
    ] {
        let ws = setup("fail", drift).await;
        let run = ws.sluice(&["run", "--job", "items"]);
        run.assert_code(2);
        let out = run.stdout() + &run.stderr();
        assert!(out.contains(says), "{drift:?}: {out}");
        assert!(out.contains("on_schema_change: fail"), "{out}");
        // The table still holds the first run's rows, in the first run's shape.
        let table = rows(&ws);
        assert!(
            table.contains("| 1  | bolt | 10  | 1.50   |"),
            "{drift:?}: {table}"
        );
        assert_eq!(types(&ws), FROZEN, "{drift:?}");
        let history = ws.sluice(&["state", "history", "items"]).stdout();
        assert!(history.contains("FAILED (user)"), "{history}");
    }
}

#[tokio::test]
async fn evolve_adds_and_widens_never_renames_or_narrows() {
    let ws = setup("evolve", Drift::Added).await;
    let summary = ws.run_ok("items");
    assert_eq!(summary["schema_changes"][0]["change"], "added", "{summary}");
    assert_eq!(types(&ws)[4], "color string");
    assert!(
        rows(&ws).contains("| 2  | nut  | 20  | 0.25   | red   |"),
        "{}",
        rows(&ws)
    );

    let ws = setup("evolve", Drift::Dropped).await;
    let summary = ws.run_ok("items");
    assert_eq!(summary["schema_changes"][0]["action"], "written as NULL");
    assert_eq!(types(&ws), FROZEN, "the contract keeps the column");
    assert!(
        rows(&ws).contains("| 1  |      | 10  | 1.50   |"),
        "{}",
        rows(&ws)
    );

    let ws = setup("evolve", Drift::Widened).await;
    ws.run_ok("items");
    assert_eq!(types(&ws)[2], "qty bigint", "the contract widened");
    assert!(rows(&ws).contains("5000000000"), "{}", rows(&ws));

    let ws = setup("evolve", Drift::Narrowed).await;
    let summary = ws.run_ok("items");
    assert_eq!(summary["schema_changes"][0]["action"], "cast to int");
    assert_eq!(types(&ws), FROZEN, "never narrowed");

    let ws = setup("evolve", Drift::Renamed).await;
    let summary = ws.run_ok("items");
    assert_eq!(
        summary["schema_changes"][0]["change"], "renamed",
        "{summary}"
    );
    let after = types(&ws);
    assert_eq!(after[1], "name string", "the old column stays");
    assert_eq!(after[4], "title string", "the new one is added");
    assert!(
        rows(&ws).contains("| 1  |      | 10  | 1.50   | bolt  |"),
        "{}",
        rows(&ws)
    );
}

#[tokio::test]
async fn ignore_keeps_the_contract() {
    let ws = setup("ignore", Drift::Added).await;
    let summary = ws.run_ok("items");
    assert_eq!(summary["schema_changes"][0]["action"], "dropped");
    assert!(!rows(&ws).contains("color"), "{}", rows(&ws));
    assert_eq!(types(&ws), FROZEN);

    let ws = setup("ignore", Drift::Dropped).await;
    ws.run_ok("items");
    assert!(
        rows(&ws).contains("| 2  |      | 20  | 0.25   |"),
        "{}",
        rows(&ws)
    );

    let ws = setup("ignore", Drift::Narrowed).await;
    ws.run_ok("items");
    assert_eq!(types(&ws), FROZEN);

    let ws = setup("ignore", Drift::Renamed).await;
    ws.run_ok("items");
    assert_eq!(types(&ws), FROZEN, "no rename, no new column");
    assert!(
        rows(&ws).contains("| 1  |      | 10  | 1.50   |"),
        "{}",
        rows(&ws)
    );

    // A wider type is cast back to the contract's; a value that does not fit fails the
    // run (nothing is truncated) and the table keeps its rows.
    let ws = setup("ignore", Drift::Widened).await;
    let run = ws.sluice(&["run", "--job", "items"]);
    run.assert_code(2);
    let out = run.stderr() + &run.stdout();
    assert!(out.contains("5000000000"), "{out}");
    assert!(
        rows(&ws).contains("| 2  | nut  | 20  | 0.25   |"),
        "{}",
        rows(&ws)
    );
}

#[tokio::test]
async fn a_contract_in_the_row_is_authoritative_and_drift_is_recorded() {
    let url = postgres_db("contract_row").await;
    exec(&url, TABLE).await;
    let ws = Workspace::new();
    ws.connections(&format!("src:\n  kind: postgres\n  url: \"{url}\"\n"));
    // The row declares qty as bigint and amount NOT NULL: under `fail` the int source is
    // a difference; under `evolve` it is cast up.
    let job = "job: items\nsource:\n  connection: src\n  table: items\nmode: full\ntarget:\n  table: items\n  on_schema_change: POLICY\n  schema:\n    - {name: id, type: int, nullable: false}\n    - {name: name, type: string}\n    - {name: qty, type: bigint}\n    - {name: amount, type: \"decimal(10,2)\", nullable: false}\n";
    ws.write_job("items.yaml", &job.replace("POLICY", "fail"));
    let run = ws.sluice(&["run", "--job", "items"]);
    run.assert_code(2);
    assert!(
        run.stdout().contains("narrowed `qty` (bigint → int)"),
        "{}",
        run.stdout()
    );
    ws.write_job("items.yaml", &job.replace("POLICY", "evolve"));
    let summary = ws.run_ok("items");
    assert_eq!(
        summary["schema_changes"][0]["change"], "narrowed",
        "{summary}"
    );
    let batches = ws.read_table("items");
    assert_eq!(
        batches[0]
            .schema()
            .field_with_name("qty")
            .expect("qty")
            .data_type(),
        &datafusion::arrow::datatypes::DataType::Int64
    );
    let history = ws.sluice(&["state", "history", "items"]).stdout();
    assert!(history.contains("narrowed `qty`"), "{history}");
    // NOT NULL in the contract: a NULL fails the run.
    exec(&url, "INSERT INTO items VALUES (3, 'washer', 1, NULL)").await;
    let run = ws.sluice(&["run", "--job", "items"]);
    run.assert_code(2);
    assert!(
        run.stderr().contains("schema.not_null(amount)"),
        "{}",
        run.stderr()
    );
}

#[tokio::test]
async fn schema_infer_prints_a_row_that_runs() {
    let url = postgres_db("contract_infer").await;
    exec(
        &url,
        "CREATE TABLE \"Shipments\" (region text NOT NULL, \"No\" integer NOT NULL, \"Sent At\" timestamptz, weight numeric(8,3), PRIMARY KEY (region, \"No\"));
         INSERT INTO \"Shipments\" VALUES ('eu', 1, '2024-05-01 10:00:00+02', 12.5);",
    )
    .await;
    let ws = Workspace::new();
    ws.connections(&format!("src:\n  kind: postgres\n  url: \"{url}\"\n"));
    let run = ws.sluice(&[
        "schema",
        "infer",
        "--connection",
        "src",
        "--table",
        "public.Shipments",
    ]);
    run.assert_code(0);
    let yaml = run.stdout();
    let row: serde_yaml::Value = serde_yaml::from_str(&yaml).expect("yaml");
    assert_eq!(row["job"], "shipments");
    assert_eq!(
        row["source"]["primary_key"],
        serde_yaml::from_str::<serde_yaml::Value>("[region, No]").unwrap()
    );
    let schema: Vec<String> = row["target"]["schema"]
        .as_sequence()
        .expect("schema")
        .iter()
        .map(|c| {
            format!(
                "{} {} {:?}",
                c["name"].as_str().unwrap(),
                c["type"].as_str().unwrap(),
                c["nullable"].as_bool()
            )
        })
        .collect();
    assert_eq!(
        schema,
        [
            "region string Some(false)",
            "no int Some(false)",
            "sent_at timestamp with time zone None",
            "weight decimal(8,3) None",
        ]
    );
    ws.write_job("shipments.yaml", &yaml);
    let summary = ws.run_ok("shipments");
    assert_eq!(summary["rows"], 1);
    assert!(summary.get("schema_changes").is_none(), "{summary}");
    assert!(lake_sql(&ws, "SELECT sent_at FROM shipments").contains("2024-05-01T08:00:00Z"));
}

/// MySQL/MariaDB and SQLite read NOT NULL and the primary key from their own catalogs.
#[tokio::test]
async fn schema_infer_reads_mysql_and_sqlite_catalogs() {
    let table = "CREATE TABLE parcels (site VARCHAR(8) NOT NULL, num INT NOT NULL, weight DECIMAL(8,3), sent DATE, PRIMARY KEY (site, num))";
    let url = mysql_db("contract_infer").await;
    exec(&url, table).await;
    let ws = Workspace::new();
    let sqlite = ws.sqlite_source(table).await;
    ws.connections(&format!(
        "my:\n  kind: mysql\n  url: \"{url}\"\nlite:\n  kind: sqlite\n  url: \"{sqlite}\"\n"
    ));
    for connection in ["my", "lite"] {
        let run = ws.sluice(&[
            "schema",
            "infer",
            "--connection",
            connection,
            "--table",
            "parcels",
        ]);
        run.assert_code(0);
        let row: serde_yaml::Value = serde_yaml::from_str(&run.stdout()).expect("yaml");
        assert_eq!(
            row["source"]["primary_key"],
            serde_yaml::from_str::<serde_yaml::Value>("[site, num]").unwrap(),
            "{connection}"
        );
        let nullable: Vec<bool> = row["target"]["schema"]
            .as_sequence()
            .expect("schema")
            .iter()
            .map(|c| c["nullable"].as_bool().unwrap_or(true))
            .collect();
        assert_eq!(nullable, [false, false, true, true], "{connection}");
        assert_eq!(
            row["target"]["schema"][2]["type"], "decimal(8,3)",
            "{connection}"
        );
    }
}

/// Appended files written under an evolving contract read as one table: the older ones
/// into the newer schema (a column they lack as NULL, a narrower type cast).
#[tokio::test]
async fn files_of_an_evolving_contract_read_as_one_table() {
    let url = postgres_db("contract_appends").await;
    exec(&url, TABLE).await;
    let ws = Workspace::new();
    ws.connections(&format!("src:\n  kind: postgres\n  url: \"{url}\"\n"));
    ws.write_job(
        "items.yaml",
        "job: items\nsource:\n  connection: src\n  table: items\n  cursor: id\n  primary_key: [id]\nmode: incremental\ntarget:\n  table: items\n  on_schema_change: evolve\n",
    );
    ws.run_ok("items");
    exec(
        &url,
        "ALTER TABLE items ALTER COLUMN qty TYPE bigint; ALTER TABLE items ADD COLUMN color text;
         INSERT INTO items VALUES (3, 'gear', 5000000000, 9.99, 'red');",
    )
    .await;
    let summary = ws.run_ok("items");
    assert_eq!(summary["rows"], 1);
    assert_eq!(ws.parquet_files("items").len(), 2);
    let table = lake_sql(&ws, "SELECT id, qty, color FROM items ORDER BY id");
    for line in ["| 1  | 10         |       |", "| 3  | 5000000000 | red   |"] {
        assert!(table.contains(line), "{line}\n{table}");
    }
}
