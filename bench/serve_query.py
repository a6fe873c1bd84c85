"""The query-API benchmark (bench/serve). A lake made once (deterministic) into the
cache by DuckDB: `orders`, ROWS rows over 150 days, day-partitioned (dt=YYYY-MM-DD), ZSTD
Parquet, 8 columns; `customers`, 100,000 rows in one file; and the demo's lake (`sluice
demo`: 31,200 orders over the last month, 2,000 customers). Over each, 20 queries in five
classes, their parameters bound (never spliced):
- point: one order by id within its day;
- day aggregate: one day's orders by status;
- month aggregate: one month's orders by status (the demo's: its whole month);
- top 10: one month's ten biggest customers;
- join: one day's orders joined to customers, by country.
Each is asked, in interleaved rounds, of `sluice serve` over HTTP (one keep-alive
connection, JSON rows, the way a third party's script asks) and of DuckDB in-process over
the same files (views over read_parquet with Hive partitioning, the partition column
kept as text as sluice keeps it), after checking once that both give the same number of
rows. Prints p50 and p99 per class and the ratio to DuckDB; then 8 clients query the
server over the big lake at once for SECONDS: queries per second, 503s (every slot busy), and the server's
peak RSS beside its limits (each query's memory pool × queries at once). Last, the hostile
mix: /health and a point query from one key, quiet and while 4 clients of another key send
a CPU-bound cross join again and again: p50/p99 of both and the hostile/quiet ratio.

Usage: serve_query.py SLUICE_BIN ROWS ROUNDS CACHE_DIR
"""

import datetime
import hashlib
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

import duckdb

BIN, ROWS, ROUNDS, CACHE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
SECONDS = int(os.environ.get("SLUICE_BENCH_SECONDS", "20"))
DAYS = 150
PER_DAY = -(-ROWS // DAYS)
CUSTOMERS = 100_000
QUERY_MEMORY_MIB = 256
CONCURRENT = 4
CLIENTS = 8
KEY = "bench-key"
HOSTILE_KEY = "bench-hostile-key"
HOSTILE_CLIENTS = 4
HOSTILE_TIMEOUT = 5
LAKE = os.path.join(CACHE, f"lake_{ROWS}")
START = datetime.date(2024, 1, 1)


def day(d):
    return (START + datetime.timedelta(days=d)).isoformat()


def make_lake():
    done = os.path.join(LAKE, ".complete")
    if os.path.exists(done):
        return
    shutil.rmtree(LAKE, ignore_errors=True)
    os.makedirs(os.path.join(LAKE, "customers"))
    print(f"making the lake: {ROWS} orders over {DAYS} days, {CUSTOMERS} customers", flush=True)
    con = duckdb.connect()
    con.execute(f"""
        COPY (SELECT i AS id,
                     (i * 7919 % {CUSTOMERS})::INTEGER AS customer_id,
                     ['booked', 'picked_up', 'in_transit', 'delivered', 'cancelled', 'returned'][i % 6 + 1] AS status,
                     ((i * 104729) % 1000000 / 100)::DECIMAL(12, 2) AS amount,
                     ['EUR', 'USD', 'GBP'][i % 3 + 1] AS currency,
                     (i % 20 + 1)::SMALLINT AS quantity,
                     TIMESTAMP '2024-01-01' + to_seconds((i * 86400 // {PER_DAY})::BIGINT) AS created_at,
                     strftime(DATE '2024-01-01' + (i // {PER_DAY})::INTEGER, '%Y-%m-%d') AS dt
              FROM range({ROWS}) t(i))
        TO '{LAKE}/orders' (FORMAT parquet, PARTITION_BY (dt), COMPRESSION zstd)""")
    con.execute(f"""
        COPY (SELECT i::INTEGER AS id, 'customer ' || i AS name,
                     'country ' || (i % 20) AS country, ['retail', 'wholesale', 'partner'][i % 3 + 1] AS segment
              FROM range({CUSTOMERS}) t(i))
        TO '{LAKE}/customers/part-00000.parquet' (FORMAT parquet, COMPRESSION zstd)""")
    open(done, "w").close()


def classes(days, picks, amount, months):
    """The 20 queries over a lake: `days` its partitions, `picks` (day, id) pairs of real
    orders, `amount` the column to add up, `months` [from, until) ranges of its days."""
    rng = random.Random(7)
    out = []
    for (order_day, order), d in zip(picks, rng.sample(days, 4)):
        first, after = rng.choice(months)
        out += [
            ("point", "SELECT * FROM orders WHERE dt = $1 AND id = $2", [order_day, order]),
            ("day aggregate",
             f"SELECT status, count(*) AS n, sum({amount}) AS total FROM orders WHERE dt = $1 GROUP BY status ORDER BY status",
             [d]),
            ("month aggregate",
             f"SELECT status, count(*) AS n, sum({amount}) AS total FROM orders WHERE dt >= $1 AND dt < $2 GROUP BY status ORDER BY status",
             [first, after]),
            ("top 10",
             f"SELECT customer_id, sum({amount}) AS total FROM orders WHERE dt >= $1 AND dt < $2 GROUP BY customer_id ORDER BY total DESC, customer_id LIMIT 10",
             [first, after]),
            ("join",
             f"SELECT c.country, count(*) AS n, sum(o.{amount}) AS total FROM orders o JOIN customers c ON o.customer_id = c.id WHERE o.dt = $1 GROUP BY c.country ORDER BY n DESC, c.country",
             [d]),
        ]
    return out


def generated_queries():
    rng = random.Random(11)
    days = [day(d) for d in range(DAYS)]
    picks = []
    for _ in range(4):
        order = rng.randrange(ROWS)
        picks.append((day(order // PER_DAY), order))
    months = [(f"2024-{m:02d}-01", f"2024-{m + 1:02d}-01") for m in range(1, 5)]
    return classes(days, picks, "amount", months)


def demo_queries(con):
    """The demo's lake: orders over the last month, customers; the month is its days."""
    days = [d for (d,) in con.execute("SELECT DISTINCT dt FROM orders ORDER BY dt").fetchall()]
    picks = con.execute("SELECT dt, id FROM orders ORDER BY hash(id) LIMIT 4").fetchall()
    after = (datetime.date.fromisoformat(days[-1]) + datetime.timedelta(days=1)).isoformat()
    return classes(days, picks, "price", [(days[0], after)])


class Client:
    """One keep-alive HTTP connection to the server, as a third party's script keeps."""

    def __init__(self, url):
        parsed = urllib.parse.urlparse(url)
        self.connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)

    def ask(self, sql, params, key=KEY):
        body = json.dumps({"sql": sql, "params": params})
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.connection.request("POST", "/v1/query", body, headers)
        reply = self.connection.getresponse()
        data = reply.read()
        if reply.status != 200:
            return reply.status, data
        return 200, json.loads(data)["rows"]


def start_server(lake, timeout="120s", concurrent=CONCURRENT, per_key=CONCURRENT):
    keys = os.path.join(CACHE, "keys.yaml")
    with open(keys, "w") as f:
        for key in (KEY, HOSTILE_KEY):
            f.write(f"- {{name: {key}, sha256: {hashlib.sha256(key.encode()).hexdigest()}, tables: ['*']}}\n")
    process = subprocess.Popen(
        [BIN, "--lake", lake, "serve", "--listen", "127.0.0.1:0", "--keys", keys,
         "--query-memory", f"{QUERY_MEMORY_MIB}MiB", "--max-concurrent", str(concurrent),
         "--max-concurrent-per-key", str(per_key), "--query-timeout", timeout],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = process.stdout.readline()
    if not line.startswith("listening on http://"):
        sys.exit(f"sluice serve did not start: {line}{process.stderr.read() if process.stderr else ''}")
    return process, line.split()[2]


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def duckdb_over(lake):
    """DuckDB's views of the lake's tables: a Parquet table's folder, or a Delta table's
    live files (its folder also holds the files older versions read)."""
    con = duckdb.connect()
    for table in ("orders", "customers"):
        folder = os.path.join(lake, table)
        if os.path.isdir(os.path.join(folder, "_delta_log")):
            from deltalake import DeltaTable

            files = ", ".join(f"'{uri}'" for uri in DeltaTable(folder).file_uris())
            source = f"[{files}]"
        else:
            source = f"'{folder}/**/*.parquet'"
        con.execute(
            f"CREATE VIEW {table} AS SELECT * FROM read_parquet({source}, "
            "hive_partitioning = true, hive_types_autocast = false)"
        )
    return con


def compare(title, url, con, asked):
    """Each query of `asked` of the server and of DuckDB, interleaved, ROUNDS rounds."""
    client = Client(url)
    for cls, sql, params in asked:
        status, rows = client.ask(sql, params)
        if status != 200:
            sys.exit(f"sluice serve answered {status} to {sql}: {rows[:500]}")
        reference = con.execute(sql, params).fetchall()
        if len(rows) != len(reference):
            sys.exit(f"{cls}: sluice gave {len(rows)} rows, DuckDB {len(reference)}: {sql} {params}")
    times = {(cls, tool): [] for cls, _, _ in asked for tool in ("sluice", "duckdb")}
    for round_ in range(ROUNDS):
        for cls, sql, params in asked:
            started = time.perf_counter()
            client.ask(sql, params)
            times[(cls, "sluice")].append(time.perf_counter() - started)
            started = time.perf_counter()
            con.execute(sql, params).fetchall()
            times[(cls, "duckdb")].append(time.perf_counter() - started)
    print(f"\n{title}; {ROUNDS} rounds of {len(asked)} queries; times in ms")
    print(f"{'class':<16} {'sluice p50':>10} {'p99':>8} {'duckdb p50':>10} {'p99':>8} {'p50 ratio':>10}")
    for cls in dict.fromkeys(c for c, _, _ in asked):
        s, d = times[(cls, "sluice")], times[(cls, "duckdb")]
        print(f"{cls:<16} {statistics.median(s) * 1e3:>10.1f} {percentile(s, 99) * 1e3:>8.1f} "
              f"{statistics.median(d) * 1e3:>10.1f} {percentile(d, 99) * 1e3:>8.1f} "
              f"{statistics.median(s) / statistics.median(d):>9.2f}x", flush=True)


def load(url, asked):
    """CLIENTS clients asking `asked` at random for SECONDS: queries/s and 503s."""
    done, busy, failed = [0], [0], []
    stop = time.monotonic() + SECONDS
    lock = threading.Lock()

    def worker(seed):
        rng, mine = random.Random(seed), Client(url)
        while time.monotonic() < stop:
            _, sql, params = rng.choice(asked)
            status, body = mine.ask(sql, params)
            with lock:
                if status == 200:
                    done[0] += 1
                elif status in (429, 503):
                    busy[0] += 1
                else:
                    failed.append((status, body[:200]))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        sys.exit(f"{len(failed)} queries failed under load, e.g. {failed[0]}")
    print(f"\n{CLIENTS} clients for {SECONDS} s: {done[0] / SECONDS:.1f} queries/s, {busy[0]} answered 503 or 429 (busy)")


# The worst a client can send: a CPU-bound cross join with an aggregate (3 days of orders
# joined with themselves), which no filter prunes and no memory limit stops.
WORST = ("SELECT count(*) AS n, sum(a.amount * b.amount) AS s FROM orders a, orders b "
         "WHERE a.dt = '2024-01-02' AND b.dt >= '2024-01-03' AND b.dt < '2024-01-06'")


def timed(seconds, ask):
    """`ask()` again and again for `seconds`: each answer's time."""
    out, stop = [], time.monotonic() + seconds
    while time.monotonic() < stop:
        started = time.perf_counter()
        ask()
        out.append(time.perf_counter() - started)
        time.sleep(0.01)
    return out


def hostile_mix(lake, asked):
    """/health and a pruned point query from a good key, quiet and then while
    HOSTILE_CLIENTS clients of another key send WORST again and again (each cut at the
    time limit): p50/p99 of both, and the ratio hostile/quiet."""
    process, url = start_server(lake, timeout=f"{HOSTILE_TIMEOUT}s", concurrent=HOSTILE_CLIENTS + 2,
                                per_key=HOSTILE_CLIENTS)
    try:
        parsed = urllib.parse.urlparse(url)
        health = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)

        def ask_health():
            health.request("GET", "/health")
            health.getresponse().read()

        good = Client(url)
        _, point, params = next(q for q in asked if q[0] == "point")

        def ask_point():
            status, body = good.ask(point, params)
            if status != 200:
                sys.exit(f"the point query answered {status} under hostile load: {body[:300]}")

        quiet = {"health": timed(SECONDS / 2, ask_health), "point": timed(SECONDS / 2, ask_point)}
        ended, stop = [], threading.Event()

        def hostile():
            mine = Client(url)
            while not stop.is_set():
                started = time.perf_counter()
                status, _ = mine.ask(WORST, [], key=HOSTILE_KEY)
                ended.append((status, time.perf_counter() - started))

        threads = [threading.Thread(target=hostile) for _ in range(HOSTILE_CLIENTS)]
        for t in threads:
            t.start()
        time.sleep(1)
        loud = {"health": timed(SECONDS / 2, ask_health), "point": timed(SECONDS / 2, ask_point)}
        stop.set()
        for t in threads:
            t.join()
        print(f"\nhostile mix: {HOSTILE_CLIENTS} clients send a CPU-bound cross join (time limit {HOSTILE_TIMEOUT} s); times in ms")
        print(f"{'asked':<8} {'quiet p50':>10} {'p99':>8} {'hostile p50':>12} {'p99':>8} {'p99 ratio':>10}")
        for name in ("health", "point"):
            q, h = quiet[name], loud[name]
            print(f"{name:<8} {statistics.median(q) * 1e3:>10.1f} {percentile(q, 99) * 1e3:>8.1f} "
                  f"{statistics.median(h) * 1e3:>12.1f} {percentile(h, 99) * 1e3:>8.1f} "
                  f"{percentile(h, 99) / percentile(q, 99):>9.2f}x")
        statuses = sorted({s for s, _ in ended})
        slowest = max(t for _, t in ended)
        print(f"hostile queries: {len(ended)} answered, statuses {statuses}, slowest {slowest:.2f} s "
              f"(limit {HOSTILE_TIMEOUT} s); server peak RSS {peak_rss_mib(process.pid):.0f} MiB "
              f"(limit {QUERY_MEMORY_MIB} MiB x {HOSTILE_CLIENTS + 2})")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main():
    os.makedirs(CACHE, exist_ok=True)
    make_lake()
    demo = os.path.join(CACHE, "demo")
    shutil.rmtree(demo, ignore_errors=True)
    made = subprocess.run([BIN, "demo", "--dir", demo], capture_output=True, text=True)
    if made.returncode != 0:
        sys.exit(f"sluice demo failed: {made.stdout[-2000:]} {made.stderr[-2000:]}")
    for title, lake, asked_of in [
        (f"{ROWS} orders over {DAYS} days", LAKE, lambda con: generated_queries()),
        ("the demo's lake (orders of the last month)", os.path.join(demo, "lake"), demo_queries),
    ]:
        con = duckdb_over(lake)
        asked = asked_of(con)
        process, url = start_server(lake)
        try:
            compare(title, url, con, asked)
            if lake == LAKE:
                load(url, asked)
                print(f"server peak RSS {peak_rss_mib(process.pid):.0f} MiB; limits: {QUERY_MEMORY_MIB} MiB per query "
                      f"x {CONCURRENT} at once = {QUERY_MEMORY_MIB * CONCURRENT} MiB")
        finally:
            process.terminate()
            process.wait(timeout=30)
        if lake == LAKE:
            hostile_mix(lake, asked)


if __name__ == "__main__":
    main()
