//! Change capture from MariaDB's row binlog (`source.changes`) into a Delta table: the
//! first run copies the table in a consistent snapshot, later runs apply inserts,
//! updates that move no cursor, hard deletes, key moves and truncates, with ENUM, SET,
//! TIME, DECIMAL, BINARY and unsigned values as the snapshot reads them; a kill -9
//! before the commit or after it loses and doubles nothing; a dropped column, a purged
//! binlog and another server are exit 2 with the recovery, nothing written.

use std::sync::LazyLock;

use sqlx::Connection;

use crate::common::{Workspace, exec, lake_sql, mysql_db, start_at_failpoint};

/// Held by each test here for its whole length: one of them purges the binlog and
/// changes the server's id, which no other reader may see.
static BINLOG: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

const TABLE: &str = "CREATE TABLE orders (
    id INT PRIMARY KEY, note VARCHAR(100), amount DECIMAL(10,2), status ENUM('new','paid','sent'),
    flags SET('a','b','c'), t TIME(3), at DATETIME(6), bin BINARY(4), u TINYINT UNSIGNED
  ) ENGINE=InnoDB";

fn job(ws: &Workspace, url: &str, name: &str) {
    ws.connections(&format!("my:\n  kind: mysql\n  url: \"{url}\"\n"));
    ws.write_job(
        &format!("{name}.yaml"),
        &format!(
            "job: {name}\nsource:\n  connection: my\n  table: orders\n  primary_key: [id]\n  changes: {{}}\nmode: merge\ntarget:\n  table: {name}\n  format: delta\n  on_schema_change: evolve\n"
        ),
    );
}

/// The source's rows as text, in id order.
async fn source_rows(url: &str) -> Vec<(i32, Vec<String>)> {
    let mut conn = sqlx::MySqlConnection::connect(url).await.expect("connect");
    let rows = sqlx::query(
        "SELECT id, CAST(note AS CHAR), CAST(amount AS CHAR), CAST(status AS CHAR), CAST(flags AS CHAR), \
                CAST(t AS CHAR), CAST(u AS CHAR) FROM orders ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read the source");
    rows.iter()
        .map(|row| {
            let id: i32 = sqlx::Row::get(row, 0);
            let values = (1..7)
                .filter_map(|i| sqlx::Row::get::<Option<String>, _>(row, i))
                .collect();
            (id, values)
        })
        .collect()
}

/// The lake equals the source: the same ids, no duplicates, and each row's values.
async fn assert_converged(ws: &Workspace, url: &str, table: &str) {
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
    let lake = lake_sql(
        ws,
        &format!("SELECT id, note, amount, status, flags, t, u FROM {table} ORDER BY id"),
    );
    for (id, values) in source {
        let found = lake
            .lines()
            .find(|l| {
                l.trim_start_matches('|')
                    .trim_start()
                    .starts_with(&format!("{id} "))
            })
            .unwrap_or_else(|| panic!("id {id} missing from the lake:\n{lake}"));
        for v in values {
            assert!(found.contains(&v), "id {id}: {found} lacks {v:?}");
        }
    }
}

#[tokio::test]
async fn mariadb_changes_snapshot_updates_deletes_and_truncate() {
    let _only = BINLOG.lock().await;
    let url = mysql_db("sluice_my_changes").await;
    exec(&url, TABLE).await;
    exec(
        &url,
        "INSERT INTO orders SELECT seq, CONCAT('new ', seq), seq / 4, 'new', 'a,c', '01:02:03.456', NOW(6), 'ab', 200 \
         FROM seq_1_to_100",
    )
    .await;
    let ws = Workspace::new();
    job(&ws, &url, "my_orders");

    let first = ws.run_ok("my_orders");
    assert_eq!(first["status"], "committed", "{first}");
    assert_eq!(first["changes"]["snapshot"], true, "{first}");
    assert_eq!(first["rows"], 100, "{first}");
    assert_converged(&ws, &url, "my_orders").await;

    // Updates that move no cursor, hard deletes, a key move, inserts, one row changed
    // twice, and a transaction rolled back (never in the binlog).
    exec(
        &url,
        "UPDATE orders SET note = 'updated', status = 'paid', flags = 'b', t = '-838:59:59' WHERE id <= 10;
         DELETE FROM orders WHERE id BETWEEN 11 AND 15;
         UPDATE orders SET id = 1000 WHERE id = 16;
         INSERT INTO orders (id, note, amount, status, u) VALUES (101, 'inserted', -1.5, 'sent', 0), (102, 'gone', 0, NULL, NULL);
         UPDATE orders SET note = 'twice' WHERE id = 101;
         DELETE FROM orders WHERE id = 102;
         START TRANSACTION; DELETE FROM orders; ROLLBACK;",
    )
    .await;
    let second = ws.run_ok("my_orders");
    assert_eq!(second["status"], "committed", "{second}");
    // The source's deletes: five, and 102's; the key move (16 → 1000) is an update of the
    // source's row (it removes key 16 from the lake: the Delta commit's seventh delete).
    assert_eq!(second["changes"]["deletes"], 6, "{second}");
    assert_eq!(second["delta"]["deletes"], 7, "{second}");
    assert_converged(&ws, &url, "my_orders").await;

    // Nothing new for this table: no commit.
    exec(
        &url,
        "CREATE TABLE other (x INT); INSERT INTO other VALUES (1), (2);",
    )
    .await;
    let idle = ws.run_ok("my_orders");
    assert_eq!(idle["status"], "up_to_date", "{idle}");

    // A truncate empties the table; the rows after it stay.
    exec(
        &url,
        "TRUNCATE TABLE orders; INSERT INTO orders (id, note) VALUES (7, 'after');",
    )
    .await;
    let truncated = ws.run_ok("my_orders");
    assert_eq!(truncated["changes"]["truncates"], 1, "{truncated}");
    assert_converged(&ws, &url, "my_orders").await;

    // ADD COLUMN (NULL, no default) is followed; a dropped column is refused.
    exec(
        &url,
        "ALTER TABLE orders ADD COLUMN extra INT NULL; UPDATE orders SET extra = 5;",
    )
    .await;
    let added = ws.run_ok("my_orders");
    let added = if added["status"] == "committed" {
        added
    } else {
        ws.run_ok("my_orders")
    };
    assert_eq!(added["status"], "committed", "{added}");
    let extra = lake_sql(&ws, "SELECT extra FROM my_orders");
    assert!(extra.contains("| 5 "), "{extra}");
    exec(&url, "ALTER TABLE orders DROP COLUMN extra;").await;
    let refused = ws.sluice(&["run", "--job", "my_orders"]);
    refused.assert_code(2);
    assert!(refused.stderr().contains("is gone"), "{}", refused.stderr());
}

#[tokio::test]
async fn mariadb_changes_survive_kills_before_and_after_the_commit() {
    let _only = BINLOG.lock().await;
    let url = mysql_db("sluice_my_changes_kill").await;
    exec(&url, TABLE).await;
    exec(
        &url,
        "INSERT INTO orders (id, note) SELECT seq, 'new' FROM seq_1_to_50",
    )
    .await;
    let ws = Workspace::new();
    job(&ws, &url, "my_kill");
    ws.run_ok("my_kill");

    // Killed after the commit: the position is committed with the rows; the next run
    // reads nothing twice.
    exec(
        &url,
        "UPDATE orders SET note = 'u' WHERE id <= 20; DELETE FROM orders WHERE id > 45;",
    )
    .await;
    let mut child = start_at_failpoint(ws.command(&["run", "--job", "my_kill"]), "committed");
    child.kill().expect("kill -9");
    let _ = child.wait();
    assert_converged(&ws, &url, "my_kill").await;
    let again = ws.run_ok("my_kill");
    assert_eq!(again["status"], "up_to_date", "{again}");
    assert_converged(&ws, &url, "my_kill").await;

    // Killed before the commit: nothing of it stands, the rerun applies it once.
    exec(
        &url,
        "INSERT INTO orders (id, note) VALUES (200, 'late'); DELETE FROM orders WHERE id = 1;",
    )
    .await;
    let mut child = start_at_failpoint(ws.command(&["run", "--job", "my_kill"]), "written");
    child.kill().expect("kill -9");
    let _ = child.wait();
    let rerun = ws.run_ok("my_kill");
    assert_eq!(rerun["status"], "committed", "{rerun}");
    assert_converged(&ws, &url, "my_kill").await;
}

#[tokio::test]
async fn mariadb_changes_refuse_a_purged_binlog_and_another_server() {
    let _only = BINLOG.lock().await;
    let url = mysql_db("sluice_my_changes_lost").await;
    exec(&url, TABLE).await;
    exec(&url, "INSERT INTO orders (id, note) VALUES (1, 'a');").await;
    let ws = Workspace::new();
    job(&ws, &url, "my_lost");
    ws.run_ok("my_lost");

    // Another server_id (a failover, a blue/green switch): exit 2, the recovery named.
    exec(&url, "SET GLOBAL server_id = 99;").await;
    let other = ws.sluice(&["run", "--job", "my_lost"]);
    exec(&url, "SET GLOBAL server_id = 1;").await;
    other.assert_code(2);
    assert!(other.stderr().contains("server_id"), "{}", other.stderr());

    // Changes after the position purged from the binlog: exit 2, nothing written.
    exec(&url, "INSERT INTO orders (id, note) VALUES (2, 'b');").await;
    let mut conn = sqlx::MySqlConnection::connect(&url).await.expect("connect");
    let (file,): (String,) = sqlx::query_as("SELECT CAST(@@log_bin_basename AS CHAR)")
        .fetch_one(&mut conn)
        .await
        .expect("basename");
    // MariaDB keeps a binlog file its engines have not checkpointed yet (PURGE skips it
    // without a word): rotate once, then purge until the oldest file left is that one.
    sqlx::raw_sql("FLUSH BINARY LOGS; FLUSH ENGINE LOGS")
        .execute(&mut conn)
        .await
        .expect("flush");
    let names = |rows: &[sqlx::mysql::MySqlRow]| -> Vec<String> {
        rows.iter()
            .map(|r| sqlx::Row::try_get_unchecked(r, 0).expect("name"))
            .collect()
    };
    let logs = sqlx::raw_sql("SHOW BINARY LOGS")
        .fetch_all(&mut conn)
        .await
        .expect("logs");
    let last = names(&logs).pop().expect("a binlog");
    let mut purged_all = false;
    for _ in 0..100 {
        sqlx::raw_sql(&format!("PURGE BINARY LOGS TO '{last}'"))
            .execute(&mut conn)
            .await
            .expect("purge");
        let logs = sqlx::raw_sql("SHOW BINARY LOGS")
            .fetch_all(&mut conn)
            .await
            .expect("logs");
        if names(&logs) == [last.clone()] {
            purged_all = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        purged_all,
        "the binlog files before {last} were not purged in 20 s"
    );
    let purged = ws.sluice(&["run", "--job", "my_lost"]);
    purged.assert_code(2);
    assert!(
        purged.stderr().contains("purged"),
        "{file}: {}",
        purged.stderr()
    );
    let n = lake_sql(&ws, "SELECT count(*) AS n FROM my_lost");
    assert!(n.contains("| 1 "), "{n}");
}
