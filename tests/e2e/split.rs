//! Split reads of one PostgreSQL table: the parts share one exported snapshot, so a
//! transaction committed during the extract is either wholly in or wholly out, and the
//! union of the parts is exactly what one connection reads — no row twice, none missed.

use sqlx::Connection;

use crate::common::{Workspace, exec, lake_sql, postgres_db};

fn job(ws: &Workspace, id: &str, table: &str, split: &str) {
    ws.write_job(
        &format!("{id}.yaml"),
        &format!(
            "job: {id}\nsource:\n  connection: pg\n  table: {table}\n{split}target:\n  table: {id}\n  file_size: 1MiB\n"
        ),
    );
}

#[tokio::test]
async fn the_parts_of_a_split_read_are_one_consistent_view() {
    let ws = Workspace::new();
    let url = postgres_db("split_snapshot").await;
    exec(
        &url,
        "CREATE TABLE events (id bigint PRIMARY KEY, kind text NOT NULL, payload text);
         INSERT INTO events SELECT n, 'original', md5(n::text) || md5((n * 7)::text) FROM generate_series(1, 1000000) n;
         ANALYZE events;",
    )
    .await;
    ws.connections(&format!("pg:\n  kind: postgres\n  url: \"{url}\"\n"));
    job(
        &ws,
        "events",
        "events",
        "  primary_key: [id]\n  split:\n    parts: 4\n",
    );

    // Four COPYs read at once (polled from the start: by the time a first file is
    // written on a loaded machine, a part may have finished already).
    let log = ws.dir.path().join("run.log");
    let mut child = ws
        .command(&["run", "--job", "events", "--output", "json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("run log"))
        .spawn()
        .expect("spawn sluice");
    let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
    let started = std::time::Instant::now();
    loop {
        let copying: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'sluice' AND datname = current_database() \
             AND state = 'active' AND query ILIKE 'COPY%'",
        )
        .fetch_one(&mut admin)
        .await
        .expect("pg_stat_activity");
        if copying == 4 {
            break;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!(
                "the run ended ({status}) before four parts read at once (last seen: {copying}); its log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "four parts never read at once (last seen: {copying})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    // While the parts are being read: one transaction deletes 1,000 rows and inserts
    // 1,000 others. The snapshot predates it, so the lake must show none of it.
    exec(
        &url,
        "BEGIN; DELETE FROM events WHERE id <= 1000;
         INSERT INTO events SELECT n, 'late', 'x' FROM generate_series(2000001, 2001000) n; COMMIT;",
    )
    .await;
    let out = child.wait_with_output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let counts = lake_sql(
        &ws,
        "SELECT count(*) AS n, count(DISTINCT id) AS ids, sum(CASE WHEN kind = 'late' THEN 1 ELSE 0 END) AS late, \
         sum(CASE WHEN id <= 1000 THEN 1 ELSE 0 END) AS deleted_later FROM events",
    );
    assert!(
        counts.contains("| 1000000 | 1000000 | 0    | 1000          |"),
        "{counts}"
    );
}

#[tokio::test]
async fn split_reads_equal_a_single_read_by_key_and_by_pages() {
    let ws = Workspace::new();
    let url = postgres_db("split_union").await;
    exec(
        &url,
        "CREATE TABLE keyed (id int PRIMARY KEY, amount numeric(12,2), note text, at timestamptz);
         INSERT INTO keyed SELECT n, n * 1.25, CASE WHEN n % 10 = 0 THEN NULL ELSE repeat('é', n % 7) END,
                TIMESTAMPTZ '2024-01-01 00:00:00+00' + n * INTERVAL '1 minute' FROM generate_series(-5000, 25000) n;
         CREATE TABLE heap (id int, label text);
         INSERT INTO heap SELECT n % 9000, 'row ' || n FROM generate_series(1, 30000) n;
         DELETE FROM heap WHERE id % 5 = 0;",
    )
    .await;
    ws.connections(&format!("pg:\n  kind: postgres\n  url: \"{url}\"\n"));
    job(&ws, "keyed_one", "keyed", "  split:\n    parts: 1\n");
    job(
        &ws,
        "keyed_parts",
        "keyed",
        "  primary_key: [id]\n  split:\n    parts: 5\n",
    );
    job(&ws, "heap_one", "heap", "  split:\n    parts: 1\n");
    job(&ws, "heap_pages", "heap", "  split:\n    parts: 3\n");
    ws.sluice(&["run", "--all"]).assert_code(0);
    for (one, parts, order) in [
        ("keyed_one", "keyed_parts", "id"),
        ("heap_one", "heap_pages", "id, label"),
    ] {
        let single = lake_sql(&ws, &format!("SELECT * FROM {one} ORDER BY {order}"));
        let split = lake_sql(&ws, &format!("SELECT * FROM {parts} ORDER BY {order}"));
        assert_eq!(single.lines().count(), split.lines().count(), "{parts}");
        assert!(single == split, "{parts} differs from {one}");
    }
    let rows = lake_sql(&ws, "SELECT count(*) AS n FROM heap_pages");
    assert!(rows.contains("| 24000 |"), "{rows}");
}

#[tokio::test]
async fn mariadb_key_ranges_equal_a_single_read() {
    let ws = Workspace::new();
    let url = crate::common::mysql_db("split_my").await;
    exec(
        &url,
        "SET SESSION max_recursive_iterations = 100000;
         CREATE TABLE parcels (id BIGINT PRIMARY KEY, weight DECIMAL(8,3), city VARCHAR(40), seen DATETIME(6));
         INSERT INTO parcels
         WITH RECURSIVE g(n) AS (SELECT -300 UNION ALL SELECT n + 1 FROM g WHERE n < 20000)
         SELECT n, n / 7, IF(n % 9 = 0, NULL, CONCAT('city ', n % 31)), TIMESTAMP '2024-02-01 00:00:00' + INTERVAL n SECOND FROM g;",
    )
    .await;
    ws.connections(&format!("my:\n  kind: mysql\n  url: \"{url}\"\n"));
    for (id, split) in [("parcels_one", 1), ("parcels_parts", 3)] {
        ws.write_job(
            &format!("{id}.yaml"),
            &format!(
                "job: {id}\nsource:\n  connection: my\n  table: parcels\n  primary_key: [id]\n  cursor: id\n  split:\n    parts: {split}\nmode: incremental\ntarget:\n  table: {id}\n"
            ),
        );
    }
    ws.sluice(&["run", "--all"]).assert_code(0);
    // New rows: each part reads only up to the window's upper bound, once.
    exec(
        &url,
        "SET SESSION max_recursive_iterations = 100000;
         INSERT INTO parcels WITH RECURSIVE g(n) AS (SELECT 20001 UNION ALL SELECT n + 1 FROM g WHERE n < 26000)
         SELECT n, n / 7, 'late', TIMESTAMP '2024-03-01 00:00:00' FROM g;",
    )
    .await;
    ws.sluice(&["run", "--all"]).assert_code(0);
    let single = lake_sql(&ws, "SELECT * FROM parcels_one ORDER BY id");
    let split = lake_sql(&ws, "SELECT * FROM parcels_parts ORDER BY id");
    assert_eq!(single.lines().count(), 26301 + 4, "{}", &single[..200]);
    assert!(
        single == split,
        "the split read differs from the single one"
    );
}
