"""`sluice serve` under hostile queries, over HTTP (urllib) and Flight SQL (the ADBC
driver), against the real server: generated deep expressions and UNION chains, CPU-bound
cross joins, huge values, data-changing statements inside WITH, unicode look-alike
keywords, oversized statements and bodies. `/health` is polled throughout; after every
case the server must be alive and answering. The limits are the issue's: 3 s, 512 MiB a
query, 100,000 rows."""

import hashlib
import json
import os
import random
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pyarrow
import pyarrow.parquet
import pytest

HOSTILE = "hostile-" + "7" * 40
GOOD = "good-" + "3" * 40
# As `openssl rand -hex 24` makes them: 48 hex digits.
HEX_KEY = "9f2c4e1ab07d5c3e8f6a1b2c3d4e5f60718293a4b5c6d7e8"
TIMEOUT = 3.0
DEPTH = 200
STATEMENT = 64 * 1024


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def make_lake(lake):
    """t900: 900 rows to cross join; points: 10 days of 1,000 rows, partitioned by day."""
    (lake / "t900").mkdir(parents=True)
    pyarrow.parquet.write_table(
        pyarrow.table({"id": list(range(900)), "v": [i * 1.5 for i in range(900)], "s": [f"row {i}" for i in range(900)]}),
        lake / "t900" / "part-00000.parquet",
    )
    # A table and a column named in scripts other than Latin, with a space.
    (lake / "zoné 日本").mkdir(parents=True)
    pyarrow.parquet.write_table(
        pyarrow.table({"ünï": ["ß", "日本語", "🚚", ""], "x": [0.1 + 0.2, 1e-320, -0.0, 1.7976931348623157e308]}),
        lake / "zoné 日本" / "part-00000.parquet",
    )
    for day in range(10):
        folder = lake / "points" / f"dt=2024-01-{day + 1:02d}"
        folder.mkdir(parents=True)
        ids = list(range(day * 1000, day * 1000 + 1000))
        pyarrow.parquet.write_table(pyarrow.table({"id": ids, "x": [i / 7 for i in ids]}), folder / "part-00000.parquet")


def start(sluice_bin, sluice_env, base, timeout=TIMEOUT, drain="3s"):
    keys = base / "keys.yaml"
    keys.write_text(
        f"- {{name: hostile, sha256: {sha(HOSTILE)}, tables: ['*']}}\n"
        f"- {{name: good, sha256: {sha(GOOD)}, tables: ['*']}}\n"
        f"- {{name: hex, sha256: {sha(HEX_KEY)}, tables: ['*']}}\n"
    )
    process = subprocess.Popen(
        [sluice_bin, "--lake", str(base / "lake"), "serve", "--listen", "127.0.0.1:0", "--keys", str(keys),
         "--flight-listen", "127.0.0.1:0", "--query-timeout", f"{timeout:g}s", "--query-memory", "512MiB",
         "--max-rows", "100000", "--max-concurrent", "6", "--max-concurrent-per-key", "4",
         "--max-statement-bytes", "64KiB", "--max-sql-depth", str(DEPTH), "--max-answer-bytes", "8MiB",
         "--drain", drain],
        env=sluice_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("listening on http://"), line + process.stderr.read()
    url = line.split()[2]
    flight = process.stdout.readline().split()[3]
    log = []
    threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
    return {"url": url, "flight": flight, "process": process, "log": log}


@pytest.fixture(scope="module")
def server(tmp_path_factory, sluice_bin, sluice_env):
    base = tmp_path_factory.mktemp("hostile")
    make_lake(base / "lake")
    served = start(sluice_bin, sluice_env, base)
    served["base"] = base
    yield served
    served["process"].terminate()
    assert served["process"].wait(timeout=15) == 0


def call(server, body=None, key=HOSTILE, path="/v1/query", headers=None, data=None, timeout=30):
    request = urllib.request.Request(server["url"] + path)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if body is not None or data is not None:
        request.data = data if data is not None else json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            status, text = reply.status, reply.read()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read()
    return status, text, time.monotonic() - started


def query(server, sql, key=HOSTILE, **body):
    status, text, took = call(server, {"sql": sql, **body}, key=key)
    parsed = json.loads(text) if text[:1] == b"{" else None
    return status, parsed, took


def assert_alive(server):
    assert server["process"].poll() is None, "the server died:\n" + "".join(server["log"][-30:])
    status, text, took = call(server, key=None, path="/health", timeout=5)
    assert status == 200 and text == b"ok", (status, text)
    status, page, _ = query(server, "SELECT 1 AS one", key=GOOD)
    assert status == 200 and page["rows"] == [{"one": 1}], page


class Health:
    """Polls /health every 20 ms while a case runs: every answer 200, and how long the
    slowest took."""

    def __init__(self, server):
        self.server, self.latencies, self.failures = server, [], []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.is_set():
            try:
                status, _, took = call(self.server, key=None, path="/health", timeout=5)
                self.latencies.append(took)
                if status != 200:
                    self.failures.append(status)
            except Exception as e:  # a refused or timed-out connection is a failure
                self.failures.append(repr(e))
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        self.thread.join()
        assert not self.failures, self.failures
        assert self.latencies and max(self.latencies) < 1.0, max(self.latencies)


def and_chain(n):
    return "SELECT " + " AND ".join(["true"] * n) + " AS b"


def union_chain(n):
    return " UNION ALL ".join(f"SELECT {i} AS x" for i in range(n))


def cast_chain(n):
    return "SELECT 1" + "::bigint" * n + " AS x"


def nested_subqueries(n):
    sql = "SELECT 1 AS x"
    for _ in range(n):
        sql = f"SELECT x FROM ({sql}) AS s"
    return sql


SHAPES = {"and": and_chain, "union": union_chain, "cast": cast_chain, "subquery": nested_subqueries}
# Levels of nesting a unit of each shape makes: a subquery is a query and its SELECT.
COST = {"and": 1, "union": 1, "cast": 1, "subquery": 2}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("size", [20, 150, 250, 1000, 5000, 20000])
def test_deep_statements_answer_or_are_refused_naming_the_limit(server, shape, size):
    sql = SHAPES[shape](size)
    status, page, _ = query(server, sql)
    if len(sql.encode()) > STATEMENT:
        assert status == 413 and page["error"]["code"] == "statement_too_large", page
        assert "--max-statement-bytes" in page["error"]["message"]
    elif size * COST[shape] <= 150:
        assert status == 200, page
    elif size * COST[shape] >= 250:
        assert status == 400 and page["error"]["code"] == "too_deep", page
        assert str(DEPTH) in page["error"]["message"] and "--max-sql-depth" in page["error"]["message"]
    assert_alive(server)


def test_random_depths_never_crash_and_are_refused_exactly_past_the_limit(server):
    rng = random.Random(34)
    for _ in range(40):
        shape, size = rng.choice(sorted(SHAPES)), rng.randint(1, 3000)
        sql = SHAPES[shape](size)
        status, page, _ = query(server, sql)
        assert status in (200, 400, 413), (shape, size, status, page)
        depth = size * COST[shape]
        if status == 200:
            assert depth < DEPTH, (shape, size)
        elif depth < DEPTH - 10:
            pytest.fail(f"{shape} {size} refused under the limit: {page}")
        assert server["process"].poll() is None, (shape, size)
    assert_alive(server)


CROSS = "SELECT count(*) AS n, sum(a.v * b.v + c.v * d.v) AS s FROM t900 a, t900 b, t900 c, t900 d"


def test_a_cpu_bound_cross_join_is_cut_at_its_time_limit_while_health_answers(server):
    with Health(server):
        status, page, took = query(server, CROSS)
    assert status == 408 and page["error"]["code"] == "time_limit", page
    assert took < TIMEOUT + 1, took
    assert_alive(server)


def test_four_cpu_bound_queries_leave_health_and_a_point_query_answering(server):
    results = []

    def hostile():
        results.append(query(server, CROSS))

    threads = [threading.Thread(target=hostile) for _ in range(4)]
    with Health(server) as health:
        for t in threads:
            t.start()
        time.sleep(0.5)
        point = [query(server, "SELECT x FROM points WHERE dt = '2024-01-05' AND id = 4321", key=GOOD) for _ in range(10)]
        for t in threads:
            t.join()
    assert all(status == 200 and page["rows"] == [{"x": 4321 / 7}] for status, page, _ in point), point
    assert max(took for *_, took in point) < 1.0, [took for *_, took in point]
    assert sorted(status for status, *_ in results) == [408] * 4, results
    assert all(took < TIMEOUT + 1 for *_, took in results), results
    assert health.latencies
    assert_alive(server)


def test_a_key_past_its_share_of_the_slots_gets_429_and_others_still_run(server):
    results = []
    threads = [threading.Thread(target=lambda: results.append(query(server, CROSS))) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    status, page, _ = query(server, "SELECT count(*) AS n FROM t900", key=GOOD)
    assert status == 200 and page["rows"] == [{"n": 900}], page
    for t in threads:
        t.join()
    codes = sorted(status for status, *_ in results)
    assert codes.count(408) == 4 and codes.count(429) == 2, codes
    refused = next(page for status, page, _ in results if status == 429)
    assert refused["error"]["code"] == "key_busy" and "--max-concurrent-per-key" in refused["error"]["message"]
    assert_alive(server)


def rss_peak_mib(server):
    status = open(f"/proc/{server['process'].pid}/status").read()
    return int(next(l for l in status.splitlines() if l.startswith("VmHWM:")).split()[1]) // 1024


@pytest.mark.parametrize(
    "sql, codes",
    [
        # Refused before the value is made (also when the planner folds the constant).
        ("SELECT repeat('x', 200000000) AS big", {"memory_limit"}),
        ("SELECT repeat('x', 600000000) AS big", {"memory_limit"}),
        ("SELECT repeat('x', 100000) AS big FROM t900", {"answer_limit", "memory_limit"}),
        ("SELECT lpad('x', 300000000) AS big", {"memory_limit"}),
        # Each value fits; the page of both does not (16 MiB).
        ("SELECT repeat('x', 10000000 + i) AS big FROM (VALUES (1), (2)) t(i)", {"answer_limit"}),
        ("SELECT array_repeat(1, 1000000000) AS big", {"memory_limit"}),
        ("SELECT range(0, 10000000000) AS big", {"memory_limit"}),
        ("SELECT string_agg(repeat(a.s, 5000), ',') AS big FROM t900 a, t900 b", {"memory_limit", "time_limit"}),
    ],
)
def test_huge_values_are_refused_with_their_limit_and_memory_stays_bounded(server, sql, codes):
    status, page, took = query(server, sql)
    assert status in (408, 413) and page["error"]["code"] in codes, page
    assert took < TIMEOUT + 1
    # Six queries of 512 MiB at most, and the server's own share.
    assert rss_peak_mib(server) < 6 * 512 + 256
    assert_alive(server)


def test_a_stream_past_its_answer_bytes_ends_with_that_error(server):
    status, text, _ = call(server, {"sql": "SELECT repeat(a.s, 100) AS s FROM t900 a, t900 b", "format": "ndjson"})
    assert status == 200
    last = json.loads(text.decode().splitlines()[-1])
    assert last["error"]["code"] in ("answer_limit", "row_limit"), last
    assert_alive(server)


@pytest.mark.parametrize(
    "sql, named",
    [
        ("WITH x AS (SELECT 1) DELETE FROM t900", "DELETE FROM is not allowed"),
        ("WITH x AS (SELECT 1 AS id) INSERT INTO t900 SELECT * FROM x", "INSERT INTO is not allowed"),
        ("WITH x AS (SELECT 1) UPDATE t900 SET v = 0", "UPDATE is not allowed"),
        ("EXPLAIN WITH x AS (SELECT 1) DELETE FROM t900", "not allowed"),
    ],
)
def test_data_changing_statements_inside_with_are_refused(server, sql, named):
    status, page, _ = query(server, sql)
    assert status == 400 and page["error"]["code"] == "refused" and named in page["error"]["message"], page
    assert_alive(server)


@pytest.mark.parametrize(
    "sql",
    [
        "ＳＥＬＥＣＴ 1",  # fullwidth letters
        "SELECT 1 ＵＮＩＯＮ SELECT 2",
        "DЕLETE FROM t900",  # a Cyrillic Е
        "SE\u200bLECT 1",  # a zero-width space inside the keyword
        "SELECT \u202e1\u202c",  # right-to-left override
        "SELECT 'a' ‘b’",  # typographic quotes
        "SELECT * FROM t900 WHERE s = 'row 1' ＯＲ 1=1",
        "SELECT \x00 1",
        "SELECT '\ud7ff\ue000' AS s",
    ],
)
def test_unicode_look_alikes_are_refused_or_answered_never_crash(server, sql):
    status, page, _ = query(server, sql)
    assert status in (200, 400), (status, page)
    assert_alive(server)


def test_oversized_bodies_and_statements_are_refused_as_json(server):
    # The server answers 413 as soon as the body passes its limit and closes the
    # connection; a client still sending then may see its pipe break before it reads the
    # answer (urllib does not read a response after a failed send): it sends again.
    for _ in range(5):
        try:
            status, text, _ = call(server, data=b'{"sql": "' + b"x" * (3 << 20) + b'"}')
            break
        except urllib.error.URLError as e:
            assert isinstance(e.reason, (BrokenPipeError, ConnectionResetError)), e
    assert status == 413 and json.loads(text)["error"]["code"] == "body_too_large", text[:200]
    status, page, _ = query(server, "SELECT '" + "y" * (STATEMENT + 1) + "' AS y")
    assert status == 413 and page["error"]["code"] == "statement_too_large"
    assert_alive(server)


def test_a_quoted_path_as_a_table_name_is_named_whole(server):
    status, page, _ = query(server, 'SELECT * FROM "/tmp/some.file.parquet"')
    assert status == 400 and "/tmp/some.file.parquet" in page["error"]["message"], page


def test_a_long_statement_is_logged_by_a_bounded_prefix_and_its_hash(server):
    sql = "SELECT 1 AS one -- " + "z" * 20000
    assert query(server, sql)[0] == 200
    digest = sha(sql)[:16]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(digest in line for line in server["log"]):
        time.sleep(0.1)
    line = next(line for line in server["log"] if digest in line)
    assert len(line) < 2000 and "20019 bytes" in line, line[:300]


def flight(server, **options):
    from adbc_driver_flightsql import dbapi

    return dbapi.connect(server["flight"], db_kwargs=options)


def bearer(key):
    from adbc_driver_flightsql import DatabaseOptions

    return {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {key}"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT repeat('x', 3) AS big",
        "SELECT 1 AS one, 'a' AS a, NULL AS n, CAST(NULL AS INT) AS i",
        "SELECT count(*) AS n, max(v) AS m FROM t900",
        "SELECT * FROM t900 ORDER BY id LIMIT 3",
        "SELECT id, coalesce(s, 'none') AS s FROM t900 WHERE id < 2",
        "SELECT [1, 2] AS l, {'a': 1} AS st",
        "SELECT x FROM points WHERE dt = '2024-01-02' AND id = 1001",
    ],
)
def test_flight_sql_streams_the_schema_it_announced(server, sql):
    with flight(server, **bearer(GOOD)) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        table = cursor.fetch_arrow_table()
    status, page, _ = query(server, sql, key=GOOD)
    assert status == 200 and table.num_rows == len(page["rows"]), page
    assert table.column_names == [c["name"] for c in page["columns"]]


@pytest.mark.parametrize("user", ["a", "ab", "abc", "apikey", "analyst-ü", ""])
def test_flight_sql_basic_auth_takes_any_user_and_padding(server, user):
    with flight(server, username=user, password=HEX_KEY) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) AS n FROM t900")
        assert cursor.fetchall() == [(900,)]


def test_flight_sql_refuses_the_hostile_corpus_as_http_does(server):
    import adbc_driver_manager

    def refused(sql):
        started = time.monotonic()
        with pytest.raises(adbc_driver_manager.Error) as caught:
            with flight(server, **bearer(HOSTILE)) as connection, connection.cursor() as cursor:
                cursor.execute(sql)
                cursor.fetch_arrow_table()
        return str(caught.value), time.monotonic() - started

    with Health(server):
        message, _ = refused(and_chain(1000))
        assert "INVALID_ARGUMENT" in message and "--max-sql-depth" in message, message
        message, _ = refused(union_chain(500))
        assert "--max-sql-depth" in message, message
        message, _ = refused("WITH x AS (SELECT 1) DELETE FROM t900")
        assert "DELETE FROM is not allowed" in message, message
        message, took = refused(CROSS)
        assert "DEADLINE_EXCEEDED" in message or "time limit" in message, message
        assert took < TIMEOUT + 2, took
        message, _ = refused("SELECT repeat('x', 600000000) AS big")
        assert "RESOURCE_EXHAUSTED" in message or "ResourceExhausted" in message, message
        message, _ = refused("SELECT '" + "y" * (STATEMENT + 1) + "' AS y")
        assert "--max-statement-bytes" in message, message
    assert_alive(server)


def test_sigterm_under_a_cpu_bound_query_exits_within_the_drain(tmp_path, sluice_bin, sluice_env):
    make_lake(tmp_path / "lake")
    served = start(sluice_bin, sluice_env, tmp_path, timeout=60, drain="2s")
    def worker_query():
        try:
            query(served, CROSS)
        except OSError:  # the server went away under it, as it should
            pass

    worker = threading.Thread(target=worker_query, daemon=True)
    worker.start()
    time.sleep(1.0)
    assert served["process"].poll() is None
    started = time.monotonic()
    served["process"].send_signal(signal.SIGTERM)
    code = served["process"].wait(timeout=10)
    took = time.monotonic() - started
    # The drain (2 s) and a moment to stop.
    assert took < 2 + 3, took
    assert code == 0, code


def test_unicode_table_and_column_names_and_exact_doubles_over_http_and_flight(server):
    sql = 'SELECT "ünï", x FROM "zoné 日本" ORDER BY "ünï"'
    status, page, _ = query(server, sql, key=GOOD)
    assert status == 200, page
    expected = sorted(zip(["ß", "日本語", "🚚", ""], [0.1 + 0.2, 1e-320, -0.0, 1.7976931348623157e308]))
    assert [(r["ünï"], r["x"]) for r in page["rows"]] == expected
    listed = [t["name"] for t in json.loads(call(server, key=GOOD, path="/v1/tables")[1])["tables"]]
    assert "zoné 日本" in listed
    with flight(server, **bearer(GOOD)) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        table = cursor.fetch_arrow_table()
    assert list(zip(table["ünï"].to_pylist(), table["x"].to_pylist())) == expected
    assert_alive(server)
