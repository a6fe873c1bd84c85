//! Change capture from PostgreSQL's log (`source.changes`) into a Delta table: the first
//! run copies the table, later runs apply inserts, updates that move no cursor, hard
//! deletes, key moves, unchanged TOASTed values and truncates; a kill -9 between the
//! commit and the slot's advance loses and doubles nothing; an idle table's slot still
//! advances; a missing prerequisite or a lost slot is exit 2 with the fix, nothing
//! written.

use sqlx::Connection;

use crate::common::{Workspace, exec, lake_sql, postgres_db, start_at_failpoint};

/// A fresh database for one test, after dropping the slots an earlier run of the test
/// left on it (a slot keeps its database from being dropped).
async fn fresh_db(name: &str) -> String {
    let admin = std::env::var("SLUICE_TEST_POSTGRES_URL")
        .expect("SLUICE_TEST_POSTGRES_URL: run the tests with scripts/test");
    let mut conn = sqlx::PgConnection::connect(&admin).await.expect("connect");
    sqlx::query(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = $1",
    )
    .bind(name)
    .execute(&mut conn)
    .await
    .expect("drop the test's slots");
    postgres_db(name).await
}

/// The slot's confirmed position, as text.
async fn confirmed(url: &str, slot: &str) -> Option<String> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_scalar(
        "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
    )
    .bind(slot)
    .fetch_optional(&mut conn)
    .await
    .expect("read the slot")
    .flatten()
}

fn job(ws: &Workspace, url: &str, name: &str, table: &str) {
    ws.connections(&format!("pg:\n  kind: postgres\n  url: \"{url}\"\n"));
    ws.write_job(
        &format!("{name}.yaml"),
        &format!(
            "job: {name}\nsource:\n  connection: pg\n  table: public.{table}\n  primary_key: [id]\n  changes: {{}}\nmode: merge\ntarget:\n  table: {name}\n  format: delta\n  on_schema_change: evolve\n"
        ),
    );
}

/// The lake's rows (id, note, big's length) in id order, as `sluice query` prints them.
fn lake_rows(ws: &Workspace, table: &str) -> String {
    lake_sql(
        ws,
        &format!("SELECT id, note, length(big) AS big_len FROM {table} ORDER BY id"),
    )
}

/// The source's rows, in the same shape, for comparison.
async fn source_rows(url: &str) -> Vec<(i32, Option<String>, Option<i32>)> {
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    sqlx::query_as("SELECT id, note, length(big) FROM orders ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .expect("read the source")
}

/// The lake equals the source: same ids, notes and big values' lengths.
async fn assert_converged(ws: &Workspace, url: &str, table: &str) {
    let lake = lake_rows(ws, table);
    let source = source_rows(url).await;
    let n = lake_sql(
        ws,
        &format!("SELECT count(*) AS n, count(DISTINCT id) AS k FROM {table}"),
    );
    assert!(
        n.contains(&format!("| {} ", source.len())),
        "lake {n} vs source {} rows",
        source.len()
    );
    for (id, note, big) in source {
        let note = note.unwrap_or_default();
        let line = format!("| {id} ");
        let found = lake
            .lines()
            .find(|l| l.starts_with(&line) || l.contains(&format!("| {id} |")));
        let found = found.unwrap_or_else(|| panic!("id {id} missing from the lake:\n{lake}"));
        assert!(found.contains(&note), "id {id}: {found} vs note {note}");
        if let Some(big) = big {
            assert!(
                found.contains(&big.to_string()),
                "id {id}: {found} vs big {big}"
            );
        }
    }
}

#[tokio::test]
async fn postgres_changes_snapshot_updates_deletes_toast_and_truncate() {
    let url = fresh_db("sluice_changes").await;
    exec(
        &url,
        "CREATE TABLE orders (id int PRIMARY KEY, note text, big text);
         ALTER TABLE orders ALTER COLUMN big SET STORAGE EXTERNAL;
         ALTER TABLE orders REPLICA IDENTITY FULL;
         INSERT INTO orders SELECT g, 'new', repeat(md5(g::text), 700) FROM generate_series(1, 100) g;",
    )
    .await;
    let ws = Workspace::new();
    job(&ws, &url, "orders_changes", "orders");

    let first = ws.run_ok("orders_changes");
    assert_eq!(first["status"], "committed", "{first}");
    assert_eq!(first["changes"]["snapshot"], true, "{first}");
    assert_eq!(first["rows"], 100, "{first}");
    assert_converged(&ws, &url, "orders_changes").await;

    // Updates that move no cursor and leave the TOASTed column alone, hard deletes, a
    // key move, inserts, and one row changed twice in one run.
    exec(
        &url,
        "UPDATE orders SET note = 'updated' WHERE id <= 10;
         DELETE FROM orders WHERE id BETWEEN 11 AND 15;
         UPDATE orders SET id = 1000 WHERE id = 16;
         INSERT INTO orders VALUES (101, 'inserted', 'small'), (102, 'inserted', NULL);
         UPDATE orders SET note = 'twice' WHERE id = 101;
         DELETE FROM orders WHERE id = 102;",
    )
    .await;
    let second = ws.run_ok("orders_changes");
    assert_eq!(second["status"], "committed", "{second}");
    assert_eq!(second["changes"]["deletes"], 6, "{second}");
    assert_converged(&ws, &url, "orders_changes").await;

    // Nothing new for this table (only WAL of another): no commit, the slot moves on.
    let before = confirmed(&url, "sluice_orders_changes").await;
    exec(
        &url,
        "CREATE TABLE other (x int); INSERT INTO other SELECT generate_series(1, 1000);",
    )
    .await;
    let idle = ws.run_ok("orders_changes");
    assert_eq!(idle["status"], "up_to_date", "{idle}");
    let after = confirmed(&url, "sluice_orders_changes").await;
    assert_ne!(before, after, "an idle table's slot must advance");

    // A truncate empties the table; the rows after it stay.
    exec(
        &url,
        "TRUNCATE orders; INSERT INTO orders VALUES (7, 'after', 'x');",
    )
    .await;
    let truncated = ws.run_ok("orders_changes");
    assert_eq!(truncated["changes"]["truncates"], 1, "{truncated}");
    assert_converged(&ws, &url, "orders_changes").await;

    // ADD COLUMN without a default is followed (evolve); a dropped column is refused.
    exec(
        &url,
        "ALTER TABLE orders ADD COLUMN extra int; UPDATE orders SET extra = 5;",
    )
    .await;
    let added = ws.run_ok("orders_changes");
    assert_eq!(added["status"], "committed", "{added}");
    let extra = lake_sql(&ws, "SELECT extra FROM orders_changes");
    assert!(extra.contains("| 5 "), "{extra}");
    exec(&url, "ALTER TABLE orders DROP COLUMN extra;").await;
    let refused = ws.sluice(&["run", "--job", "orders_changes"]);
    refused.assert_code(2);
    assert!(refused.stderr().contains("is gone"), "{}", refused.stderr());
}

#[tokio::test]
async fn postgres_changes_survive_a_kill_between_commit_and_slot_advance() {
    let url = fresh_db("sluice_changes_kill").await;
    exec(
        &url,
        "CREATE TABLE orders (id int PRIMARY KEY, note text, big text);
         ALTER TABLE orders REPLICA IDENTITY FULL;
         INSERT INTO orders SELECT g, 'new', NULL FROM generate_series(1, 50) g;",
    )
    .await;
    let ws = Workspace::new();
    job(&ws, &url, "kill_changes", "orders");
    ws.run_ok("kill_changes");
    exec(
        &url,
        "UPDATE orders SET note = 'u' WHERE id <= 20; DELETE FROM orders WHERE id > 45;",
    )
    .await;
    let slot_before = confirmed(&url, "sluice_kill_changes").await;

    // Killed after the commit, before the slot moved: the next run advances the slot
    // and reads nothing twice.
    let mut child = start_at_failpoint(ws.command(&["run", "--job", "kill_changes"]), "committed");
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_eq!(confirmed(&url, "sluice_kill_changes").await, slot_before);
    assert_converged(&ws, &url, "kill_changes").await;
    let again = ws.run_ok("kill_changes");
    assert_eq!(again["status"], "up_to_date", "{again}");
    assert_ne!(confirmed(&url, "sluice_kill_changes").await, slot_before);
    assert_converged(&ws, &url, "kill_changes").await;

    // Killed before the commit: nothing of it stands, the rerun applies it once.
    exec(
        &url,
        "INSERT INTO orders VALUES (200, 'late', NULL); DELETE FROM orders WHERE id = 1;",
    )
    .await;
    let mut child = start_at_failpoint(ws.command(&["run", "--job", "kill_changes"]), "written");
    child.kill().expect("kill -9");
    let _ = child.wait();
    let rerun = ws.run_ok("kill_changes");
    assert_eq!(rerun["status"], "committed", "{rerun}");
    assert_converged(&ws, &url, "kill_changes").await;
}

#[tokio::test]
async fn postgres_changes_refuse_what_they_cannot_read() {
    let url = fresh_db("sluice_changes_refused").await;
    exec(
        &url,
        "CREATE TABLE orders (id int PRIMARY KEY, note text, big text);
         INSERT INTO orders VALUES (1, 'a', NULL);",
    )
    .await;
    let ws = Workspace::new();
    job(&ws, &url, "refused_changes", "orders");

    // A TOAST-able column without REPLICA IDENTITY FULL: exit 2 with the statement.
    let run = ws.sluice(&["run", "--job", "refused_changes"]);
    run.assert_code(2);
    assert!(
        run.stderr().contains("REPLICA IDENTITY FULL"),
        "{}",
        run.stderr()
    );
    assert!(!ws.lake().join("refused_changes").exists());

    // A slot dropped under the job: exit 2, the recovery named, nothing written.
    exec(&url, "ALTER TABLE orders REPLICA IDENTITY FULL;").await;
    ws.run_ok("refused_changes");
    exec(&url, "INSERT INTO orders VALUES (2, 'b', NULL);").await;
    exec(
        &url,
        "SELECT pg_drop_replication_slot('sluice_refused_changes');",
    )
    .await;
    let lost = ws.sluice(&["run", "--job", "refused_changes"]);
    lost.assert_code(2);
    assert!(lost.stderr().contains("is gone"), "{}", lost.stderr());
    let n = lake_sql(&ws, "SELECT count(*) AS n FROM refused_changes");
    assert!(n.contains("| 1 "), "{n}");

    // A job row that asks for the impossible fails validation, naming the field.
    ws.write_job(
        "bad_changes.yaml",
        "job: bad_changes\nsource:\n  connection: pg\n  table: public.orders\n  cursor: id\n  changes: {server_id: 5}\nmode: full\ntarget:\n  table: bad_changes\n",
    );
    let invalid = ws.sluice(&["jobs", "validate"]);
    invalid.assert_code(2);
    let out = format!("{}{}", invalid.stdout(), invalid.stderr());
    for field in [
        "source.cursor",
        "source.changes.server_id",
        "mode",
        "source.primary_key",
    ] {
        assert!(out.contains(field), "{field} not named:\n{out}");
    }
}
