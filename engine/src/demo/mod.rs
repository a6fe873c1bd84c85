//! `sluice demo`: the embedded default, end to end, with no cloud and no server.
//!
//! Builds an on-premise-like SQLite database of a logistics company (customers, trucks,
//! orders, GPS pings, toll events), writes the demo jobs (the files of `jobs/`, built into
//! the binary) beside it, runs them all into a local lake, changes the source (new and
//! updated orders, new pings and tolls), runs again — incrementally — and queries the lake.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{Duration, NaiveDateTime, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection, Executor};

use crate::error::{Error, Result, classify_sqlx};
use crate::job;
use crate::pipeline;
use crate::sink::Lake;
use crate::store::LocalStore;

mod servers;
use self::servers::{collect_events, on_the_console, over_http};

/// The demo's job files, the same as the repository's `jobs/` folder.
pub const JOB_FILES: [(&str, &str); 12] = [
    (
        "connections.yaml",
        include_str!("../../../jobs/connections.yaml"),
    ),
    (
        "bank_transactions.yaml",
        include_str!("../../../jobs/bank_transactions.yaml"),
    ),
    (
        "customers.yaml",
        include_str!("../../../jobs/customers.yaml"),
    ),
    ("trucks.yaml", include_str!("../../../jobs/trucks.yaml")),
    ("orders.yaml", include_str!("../../../jobs/orders.yaml")),
    (
        "gps_pings.yaml",
        include_str!("../../../jobs/gps_pings.yaml"),
    ),
    (
        "gps_positions.yaml",
        include_str!("../../../jobs/gps_positions.yaml"),
    ),
    (
        "tag_transactions.yaml",
        include_str!("../../../jobs/tag_transactions.yaml"),
    ),
    (
        "toll_events.yaml",
        include_str!("../../../jobs/toll_events.yaml"),
    ),
    (
        "collect_events.yaml",
        include_str!("../../../jobs/collect_events.yaml"),
    ),
    (
        "collect_aliases.yaml",
        include_str!("../../../jobs/collect_aliases.yaml"),
    ),
    (
        "collect_profiles.yaml",
        include_str!("../../../jobs/collect_profiles.yaml"),
    ),
];

const CITIES: [&str; 12] = [
    "Rotterdam",
    "Antwerp",
    "Hamburg",
    "Lyon",
    "Milan",
    "Barcelona",
    "Warsaw",
    "Prague",
    "Vienna",
    "Munich",
    "Ghent",
    "Porto",
];
const STATUSES: [&str; 4] = ["booked", "picked_up", "in_transit", "delivered"];
const MODELS: [&str; 4] = ["Volvo FH16", "Scania R500", "DAF XF", "MAN TGX"];

/// The query the demo prints at the end: the latest version of each order, by status.
pub const SUMMARY_QUERY: &str = "SELECT status, count(*) AS orders, sum(price) AS revenue_eur, count(DISTINCT dt) AS days\nFROM orders GROUP BY status ORDER BY status";

pub async fn run(dir: &Path) -> Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| {
            Error::user(format!(
                "cannot clear the demo folder {}: {e}",
                dir.display()
            ))
        })?;
    }
    let jobs_dir = dir.join("jobs");
    std::fs::create_dir_all(&jobs_dir)
        .map_err(|e| Error::user(format!("cannot create {}: {e}", jobs_dir.display())))?;
    for (name, text) in JOB_FILES {
        std::fs::write(jobs_dir.join(name), text)
            .map_err(|e| Error::user(format!("cannot write {name}: {e}")))?;
    }
    let db = jobs_dir.join("logistics.db");
    let now = Utc::now().naive_utc();
    crate::outln!("1. Building the source database {} …", db.display());
    let mut conn = open_db(&db).await?;
    let counts = seed(&mut conn, now).await?;
    crate::outln!("   {counts}");
    let drop = jobs_dir.join("bank/incoming");
    crate::outln!(
        "   The bank drops its first statements in {} …",
        drop.display()
    );
    bank_statement(&drop, now.date() - Duration::days(2), 1)?;
    bank_statement(&drop, now.date() - Duration::days(1), 2)?;

    let set = job::load_dir(&jobs_dir)?;
    let problems = set.problems();
    if !problems.is_empty() {
        return Err(job::config_error(&problems));
    }
    let lake = Lake::open(&dir.join("lake").display().to_string())?;
    let store = Arc::new(LocalStore::open(dir.join("state"))?);
    let ctx = pipeline::Context::new(lake.clone(), store);

    crate::outln!("2. First run of every job (full, snapshot and initial incremental loads):");
    run_all(&set, &ctx).await?;

    crate::outln!(
        "3. Changing the source: 400 orders move on, 800 new orders, 3000 pings, 250 tolls, a bank statement …"
    );
    change(&mut conn, now).await?;
    bank_statement(&drop, now.date(), 3)?;
    conn.close()
        .await
        .map_err(|e| classify_sqlx(e, "closing the demo database"))?;

    crate::outln!("4. Second run: incremental jobs read only what changed:");
    run_all(&set, &ctx).await?;

    let exe = std::env::current_exe().map_or_else(|_| "sluice".into(), |p| p.display().to_string());
    crate::outln!(
        "5. The website's events over HTTP, for a moment (sluice collect): each answered once durable, loaded when it stops:"
    );
    collect_events(
        dir,
        &set,
        pipeline::Context::new(lake.clone(), ctx.store.clone()),
        &exe,
    )
    .await?;

    crate::outln!("6. Querying the lake (sluice query):\n{SUMMARY_QUERY}");
    let batches =
        crate::query::query(&lake, SUMMARY_QUERY, crate::sink::delta::AsOf::Latest).await?;
    crate::outln!("{}", crate::query::render(&batches)?);
    crate::outln!("{EVENTS_QUERY}");
    let batches =
        crate::query::query(&lake, EVENTS_QUERY, crate::sink::delta::AsOf::Latest).await?;
    crate::outln!("{}", crate::query::render(&batches)?);
    crate::outln!("7. The same lake over HTTP, for a moment (sluice serve):");
    over_http(dir, &lake, &exe).await?;
    crate::outln!("8. The operators' console, for a moment (sluice console):");
    on_the_console(dir, &lake, ctx.store.clone(), &exe).await?;
    crate::outln!(
        "Done. Try:\n  {exe} --lake {lake} query \"SELECT dt, count(*) AS orders FROM orders GROUP BY dt ORDER BY dt\"\n  {exe} --lake {lake} query --as-of 1 \"SELECT status, count(*) AS orders FROM orders GROUP BY status\"   # the orders Delta table before the second run\n  {exe} --lake {lake} query \"SELECT counterparty, count(*) AS n, sum(amount) AS eur FROM bank_transactions GROUP BY counterparty\"",
        lake = dir.join("lake").display(),
    );
    Ok(())
}

/// The query the demo prints of the collected events.
pub const EVENTS_QUERY: &str = "SELECT event, count(*) AS events, count(DISTINCT anonymous_id) AS visitors, count(user_id) AS signed_in\nFROM events GROUP BY event ORDER BY event";

async fn run_all(set: &job::JobSet, ctx: &pipeline::Context) -> Result<()> {
    for row in &set.rows {
        let job = row.job.as_ref().map_err(|p| job::config_error(p))?;
        if !job.enabled {
            crate::outln!(
                "   {}: not run here (disabled: {})",
                job.id,
                job.description.as_deref().unwrap_or("enable it to run it")
            );
            continue;
        }
        let summary = pipeline::run_job(job, ctx).await;
        crate::outln!("   {}", summary.line());
        summary.outcome()?;
    }
    Ok(())
}

async fn open_db(path: &Path) -> Result<SqliteConnection> {
    let url = format!("sqlite://{}", path.display());
    SqliteConnectOptions::from_str(&url)
        .map_err(|e| Error::internal(format!("demo database url: {e}")))?
        .create_if_missing(true)
        .connect()
        .await
        .map_err(|e| classify_sqlx(e, "creating the demo database"))
}

/// Writes the bank's statement of `day` (number `n`): a JSON document with the
/// account and its transactions under `transactions`, as the bank sends it.
fn bank_statement(dir: &Path, day: chrono::NaiveDate, n: u64) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::user(format!("cannot create {}: {e}", dir.display())))?;
    let mut rng = Rng(0xba4c + n);
    let transactions: Vec<serde_json::Value> = (0..120)
        .map(|i| {
            let kind = rng.pick(&["fuel card", "motorway toll", "customer payment", "parking"]);
            let cents = (rng.below(40_000) + 500) as i64;
            let amount = if kind == "customer payment" {
                cents * 7
            } else {
                -cents
            };
            serde_json::json!({
                "txnId": format!("{}-{n:02}-{i:04}", day.format("%Y%m%d")),
                "bookedAt": format!("{} {:02}:{:02}:00", day, 6 + i % 14, (i * 7) % 60),
                "valueDate": day.to_string(),
                "amount": format!(
                    "{}{}.{:02}",
                    if amount < 0 { "-" } else { "" },
                    amount.abs() / 100,
                    amount.abs() % 100
                ),
                "currency": "EUR",
                "counterparty": kind,
                "reference": format!("{} {}", kind, rng.pick(&CITIES)),
            })
        })
        .collect();
    let statement = serde_json::json!({
        "account": {"iban": "NL91ABNA0417164300", "currency": "EUR"},
        "statement": n,
        "transactions": transactions,
    });
    let path = dir.join(format!("statement_{}.json", day.format("%Y%m%d")));
    let text = serde_json::to_vec_pretty(&statement)
        .map_err(|e| Error::internal(format!("the demo's bank statement: {e}")))?;
    std::fs::write(&path, text)
        .map_err(|e| Error::user(format!("cannot write {}: {e}", path.display())))
}

/// A small deterministic generator: the demo's data is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

fn ts(t: NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

fn sql_text(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

const SCHEMA: &str = "
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, city TEXT, country CHAR(2),
  credit_limit DECIMAL(12,2), vip BOOLEAN NOT NULL, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL);
CREATE TABLE trucks (id INTEGER PRIMARY KEY, plate TEXT NOT NULL, model TEXT, capacity_kg INTEGER, fuel_type TEXT,
  in_service_since DATE, active BOOLEAN NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, truck_id INTEGER, status TEXT NOT NULL,
  weight_kg REAL, price DECIMAL(10,2), pickup_city TEXT, delivery_city TEXT, created_at DATETIME NOT NULL,
  updated_at DATETIME NOT NULL);
CREATE INDEX orders_updated_at ON orders (updated_at);
CREATE TABLE gps_pings (id INTEGER PRIMARY KEY, truck_id INTEGER NOT NULL, lat REAL, lon REAL, speed_kmh REAL,
  recorded_at DATETIME NOT NULL);
CREATE TABLE toll_events (id INTEGER PRIMARY KEY, truck_id INTEGER NOT NULL, gate TEXT, amount DECIMAL(8,2),
  currency CHAR(3), passed_at DATETIME NOT NULL);
";

/// Inserts `rows` in chunks of multi-row INSERTs inside one transaction.
async fn insert(conn: &mut SqliteConnection, table: &str, rows: &[String]) -> Result<()> {
    let mut tx = conn
        .begin()
        .await
        .map_err(|e| classify_sqlx(e, "demo insert"))?;
    for chunk in rows.chunks(500) {
        let sql = format!("INSERT INTO {table} VALUES {}", chunk.join(","));
        tx.execute(sql.as_str())
            .await
            .map_err(|e| classify_sqlx(e, "demo insert"))?;
    }
    tx.commit()
        .await
        .map_err(|e| classify_sqlx(e, "demo insert"))
}

async fn seed(conn: &mut SqliteConnection, now: NaiveDateTime) -> Result<String> {
    conn.execute(SCHEMA)
        .await
        .map_err(|e| classify_sqlx(e, "creating the demo tables"))?;
    let mut rng = Rng(0x5eed_cafe_f00d);
    let start = now - Duration::days(30);
    let customers: Vec<String> = (1..=2000)
        .map(|id| {
            let city = rng.pick(&CITIES);
            let created = start - Duration::days(rng.below(700) as i64);
            format!(
                "({id}, {}, {}, {}, {}, {}.{:02}, {}, '{}', '{}')",
                sql_text(&format!("Customer {id} {city} BV")),
                sql_text(&format!("ops{id}@example.com")),
                sql_text(city),
                sql_text(
                    ["NL", "BE", "DE", "FR", "IT", "ES", "PL", "CZ", "AT", "PT"]
                        [rng.below(10) as usize]
                ),
                5_000 + rng.below(95_000),
                rng.below(100),
                rng.below(10) == 0,
                ts(created),
                ts(created)
            )
        })
        .collect();
    insert(conn, "customers", &customers).await?;
    let trucks: Vec<String> = (1..=150)
        .map(|id| {
            format!(
                "({id}, 'NL-{:03}-{}', {}, {}, {}, '{}', {})",
                id,
                ["BX", "KT", "ZR", "VP"][rng.below(4) as usize],
                sql_text(rng.pick(&MODELS)),
                18_000 + rng.below(8) * 1000,
                sql_text(if rng.below(5) == 0 { "lng" } else { "diesel" }),
                (start - Duration::days(100 + rng.below(2000) as i64)).date(),
                rng.below(20) != 0
            )
        })
        .collect();
    insert(conn, "trucks", &trucks).await?;
    let orders: Vec<String> = (1..=30_000)
        .map(|id| order_row(&mut rng, id, start, now))
        .collect();
    insert(conn, "orders", &orders).await?;
    let pings: Vec<String> = (1..=60_000)
        .map(|id| ping_row(&mut rng, id, start + Duration::seconds(id * 43)))
        .collect();
    insert(conn, "gps_pings", &pings).await?;
    let tolls: Vec<String> = (1..=10_000)
        .map(|id| toll_row(&mut rng, id, start + Duration::seconds(id * 250)))
        .collect();
    insert(conn, "toll_events", &tolls).await?;
    Ok("2000 customers, 150 trucks, 30000 orders, 60000 GPS pings, 10000 toll events".into())
}

/// An order created in `[start, end - 15 min]` and last updated at most ten hours later,
/// but not after `end - 10 min`.
fn order_row(rng: &mut Rng, id: i64, start: NaiveDateTime, end: NaiveDateTime) -> String {
    let span = (end - Duration::minutes(15) - start).num_seconds().max(1) as u64;
    let created = start + Duration::seconds(rng.below(span) as i64);
    let updated =
        (created + Duration::minutes(rng.below(600) as i64)).min(end - Duration::minutes(10));
    order_values(rng, id, created, updated.max(created))
}

fn order_values(rng: &mut Rng, id: i64, created: NaiveDateTime, updated: NaiveDateTime) -> String {
    format!(
        "({id}, {}, {}, {}, {}.{}, {}.{:02}, {}, {}, '{}', '{}')",
        1 + rng.below(2000),
        1 + rng.below(150),
        sql_text(rng.pick(&STATUSES)),
        100 + rng.below(24_000),
        rng.below(10),
        80 + rng.below(4000),
        rng.below(100),
        sql_text(rng.pick(&CITIES)),
        sql_text(rng.pick(&CITIES)),
        ts(created),
        ts(updated)
    )
}

fn ping_row(rng: &mut Rng, id: i64, at: NaiveDateTime) -> String {
    format!(
        "({id}, {}, {:.5}, {:.5}, {:.1}, '{}')",
        1 + rng.below(150),
        43.0 + rng.below(1_000_000) as f64 / 100_000.0,
        -8.0 + rng.below(2_400_000) as f64 / 100_000.0,
        rng.below(1100) as f64 / 10.0,
        ts(at)
    )
}

fn toll_row(rng: &mut Rng, id: i64, at: NaiveDateTime) -> String {
    format!(
        "({id}, {}, 'gate-{}', {}.{:02}, 'EUR', '{}')",
        1 + rng.below(150),
        rng.below(80),
        2 + rng.below(60),
        rng.below(100),
        ts(at)
    )
}

/// Between the runs: orders move on (updated), new orders, pings and tolls arrive. Their
/// times are after everything seeded (which ends ten minutes ago) and before the orders
/// job's `lag` of one minute, so the second run picks them all up.
async fn change(conn: &mut SqliteConnection, now: NaiveDateTime) -> Result<()> {
    let mut rng = Rng(0xc0ffee);
    let updated = ts(now - Duration::minutes(5));
    conn.execute(
        format!(
            "UPDATE orders SET status = 'delivered', updated_at = '{updated}' \
             WHERE id IN (SELECT id FROM orders WHERE status <> 'delivered' ORDER BY id LIMIT 400)"
        )
        .as_str(),
    )
    .await
    .map_err(|e| classify_sqlx(e, "updating demo orders"))?;
    let arriving = now - Duration::minutes(4);
    let orders: Vec<String> = (30_001..=30_800)
        .map(|id| {
            let at = arriving + Duration::milliseconds((id - 30_000) * 100);
            order_values(&mut rng, id, at, at)
        })
        .collect();
    insert(conn, "orders", &orders).await?;
    let pings: Vec<String> = (60_001..=63_000)
        .map(|id| {
            ping_row(
                &mut rng,
                id,
                arriving + Duration::milliseconds((id - 60_000) * 50),
            )
        })
        .collect();
    insert(conn, "gps_pings", &pings).await?;
    let tolls: Vec<String> = (10_001..=10_250)
        .map(|id| toll_row(&mut rng, id, arriving + Duration::seconds(id - 10_000)))
        .collect();
    insert(conn, "toll_events", &tolls).await
}
