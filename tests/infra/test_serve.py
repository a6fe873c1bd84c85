"""`sluice serve` over the demo's lake, with real clients: urllib for every route, pandas
reading the CSV format and pyarrow the CSV, Arrow and Parquet ones, the ADBC Flight SQL
driver on the Flight SQL port, DuckDB over the same Parquet files as the reference."""

import hashlib
import io
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas
import pyarrow.csv
import pyarrow.ipc
import pyarrow.parquet
import pytest
from deltalake import DeltaTable

from conftest import duckdb_with_delta

PARTNER_KEY = "partner-secret-1"
ANALYST_KEY = "analyst-secret-2"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def server(tmp_path_factory, sluice_bin, sluice_env):
    base = tmp_path_factory.mktemp("serve")
    demo = subprocess.run([sluice_bin, "demo", "--dir", str(base / "demo")], env=sluice_env, capture_output=True, text=True)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    keys = base / "keys.yaml"
    keys.write_text(
        f"- {{name: partner, sha256: {sha(PARTNER_KEY)}, tables: [customers]}}\n"
        f"- {{name: analysts, sha256: {sha(ANALYST_KEY)}, tables: ['*']}}\n"
    )
    lake = base / "demo" / "lake"
    process = subprocess.Popen(
        [sluice_bin, "--lake", str(lake), "serve", "--listen", "127.0.0.1:0", "--keys", str(keys),
         "--flight-listen", "127.0.0.1:0", "--cors-origin", "https://app.example.com",
         "--page-rows", "100", "--max-page-rows", "5000", "--max-rows", "20000", "--listing-ttl", "1s",
         "--query-timeout", "5s", "--query-memory", "16MiB"],
        env=sluice_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("listening on http://"), line + process.stderr.read()
    url = line.split()[2]
    line = process.stdout.readline()
    assert line.startswith("Flight SQL on grpc://"), line
    flight = line.split()[3]
    log = []
    threading.Thread(target=lambda: log.extend(process.stderr), daemon=True).start()
    yield {"url": url, "flight": flight, "lake": lake, "process": process, "log": log}
    process.terminate()
    assert process.wait(timeout=10) == 0


def call(server, path, body=None, key=ANALYST_KEY, headers=None, method=None):
    request = urllib.request.Request(server["url"] + path, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def error(reply):
    status, _, body = reply
    return status, json.loads(body)["error"]


def reference(server, sql):
    """The same question asked of DuckDB over the lake: customers' Parquet files, the
    orders Delta table through the delta extension."""
    con = duckdb_with_delta()
    con.execute(f"CREATE VIEW orders AS SELECT * FROM delta_scan('{server['lake']}/orders')")
    con.execute(
        f"CREATE VIEW customers AS SELECT * FROM read_parquet('{server['lake']}/customers/**/*.parquet', hive_partitioning = true)"
    )
    return con.execute(sql).fetchall()


def test_health_and_the_openapi_document_need_no_key(server):
    assert call(server, "/health", key=None)[0] == 200
    status, headers, body = call(server, "/openapi.json", key=None)
    assert status == 200 and headers["content-type"] == "application/json"
    assert set(json.loads(body)["paths"]) >= {"/v1/query", "/v1/tables", "/v1/tables/{name}"}


def test_a_query_answers_in_every_format_with_the_same_rows(server):
    sql = "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status"
    expected = reference(server, sql)
    status, headers, body = call(server, "/v1/query", {"sql": sql})
    assert status == 200 and headers["content-type"] == "application/json"
    page = json.loads(body)
    assert [c["name"] for c in page["columns"]] == ["status", "n"] and page["next"] is None
    assert [(r["status"], r["n"]) for r in page["rows"]] == expected

    columns = json.loads(call(server, "/v1/query", {"sql": sql, "format": "columns"})[2])
    assert list(zip(columns["data"]["status"], columns["data"]["n"])) == expected

    ndjson = call(server, "/v1/query", {"sql": sql}, headers={"Accept": "application/x-ndjson"})
    assert ndjson[1]["content-type"] == "application/x-ndjson"
    assert [tuple(json.loads(l).values()) for l in ndjson[2].decode().splitlines()] == expected

    csv_body = call(server, "/v1/query", {"sql": sql, "format": "csv"})[2]
    csv = pyarrow.csv.read_csv(io.BytesIO(csv_body))
    assert list(zip(csv["status"].to_pylist(), csv["n"].to_pylist())) == expected
    frame = pandas.read_csv(io.BytesIO(csv_body))
    assert list(frame.itertuples(index=False, name=None)) == expected

    arrow = pyarrow.ipc.open_stream(call(server, "/v1/query", {"sql": sql, "format": "arrow"})[2]).read_all()
    assert list(zip(arrow["status"].to_pylist(), arrow["n"].to_pylist())) == expected

    parquet = pyarrow.parquet.read_table(io.BytesIO(call(server, "/v1/query", {"sql": sql, "format": "parquet"})[2]))
    assert list(zip(parquet["status"].to_pylist(), parquet["n"].to_pylist())) == expected

    quoted = urllib.request.quote(sql)
    assert json.loads(call(server, f"/v1/query?sql={quoted}&format=json")[2])["rows"] == page["rows"]


def test_json_functions_answer_as_duckdb_does(server):
    sql = ("SELECT json_get_str(j, 'a', 'b') AS s, json_get_int(j, 'n') AS n, json_get_float(j, 'f') AS f, "
           "json_length(j, 'arr') AS l, j->>'a' AS a FROM (SELECT '{\"a\": {\"b\": \"ü\"}, \"n\": 42, "
           "\"f\": 0.30000000000000004, \"arr\": [1, 2, 3]}' AS j) t")
    status, _, body = call(server, "/v1/query", {"sql": sql})
    assert status == 200, body
    [row] = json.loads(body)["rows"]
    con = duckdb_with_delta()
    expected = con.execute(
        "SELECT j->'a'->>'b', CAST(j->>'n' AS BIGINT), CAST(j->>'f' AS DOUBLE), json_array_length(j, '$.arr') "
        "FROM (SELECT '{\"a\": {\"b\": \"ü\"}, \"n\": 42, \"f\": 0.30000000000000004, \"arr\": [1, 2, 3]}'::JSON AS j)"
    ).fetchone()
    assert (row["s"], row["n"], row["f"], row["l"]) == expected
    assert json.loads(row["a"]) == {"b": "ü"}


def test_parameters_are_bound_and_pages_follow_their_token(server):
    [(total,)] = reference(server, "SELECT count(*) FROM orders WHERE status = 'delivered'")
    sql = "SELECT id FROM orders WHERE status = $1 ORDER BY id"
    seen, body = [], {"sql": sql, "params": ["delivered"], "limit": 700}
    while True:
        status, headers, raw = call(server, "/v1/query", body)
        assert status == 200, raw
        page = json.loads(raw)
        seen += [r["id"] for r in page["rows"]]
        if page["next"] is None:
            assert "sluice-next" not in {k.lower() for k in headers}
            break
        assert headers["sluice-next"] == page["next"]
        body = {"next": page["next"]}
    assert len(seen) == total and seen == sorted(set(seen))

    named = json.loads(call(server, "/v1/query", {"sql": "SELECT $who AS who, $n + 1 AS n", "params": {"who": "x'; DROP TABLE orders; --", "n": 41}})[2])
    assert named["rows"] == [{"who": "x'; DROP TABLE orders; --", "n": 42}]


def test_tables_are_listed_with_their_partitions(server):
    listed = json.loads(call(server, "/v1/tables")[2])["tables"]
    orders = next(t for t in listed if t["name"] == "orders")
    assert orders["partition_columns"] == ["dt"] and orders["partitions"] > 1 and orders["files"] >= orders["partitions"]
    assert "id" in [c["name"] for c in orders["columns"]]
    assert call(server, "/v1/tables/orders")[0] == 200
    assert error(call(server, "/v1/tables/nosuch"))[0] == 404


def test_a_key_sees_only_its_tables(server):
    listed = json.loads(call(server, "/v1/tables", key=PARTNER_KEY)[2])["tables"]
    assert [t["name"] for t in listed] == ["customers"]
    status, problem = error(call(server, "/v1/query", {"sql": "SELECT count(*) FROM orders"}, key=PARTNER_KEY))
    assert status == 400 and "no table `orders`" in problem["message"] and "customers" in problem["message"]
    assert error(call(server, "/v1/tables/orders", key=PARTNER_KEY))[0] == 404
    assert call(server, "/v1/query", {"sql": "SELECT count(*) FROM customers"}, key=PARTNER_KEY)[0] == 200


@pytest.mark.parametrize(
    "sql, named",
    [
        ("INSERT INTO orders VALUES (1)", "INSERT INTO"),
        ("DROP TABLE orders", "DROP TABLE"),
        ("COPY (SELECT 1) TO '/tmp/sluice-copy.csv'", "COPY"),
        ("CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'", "CREATE EXTERNAL TABLE"),
        ("SELECT 1; SELECT 2", "one statement"),
    ],
)
def test_anything_but_a_query_is_refused_before_planning(server, sql, named):
    status, problem = error(call(server, "/v1/query", {"sql": sql}))
    assert status == 400 and problem["code"] == "refused" and named in problem["message"], problem


@pytest.mark.parametrize(
    "sql",
    ["SELECT * FROM '/etc/passwd'", "SELECT * FROM 'file:///etc/passwd'", "SELECT * FROM read_csv('/etc/passwd')",
     "SELECT * FROM read_parquet('/etc/passwd')", "SELECT * FROM read_json('/etc/passwd')"],
)
def test_no_path_or_url_is_read_and_the_lakes_place_is_not_told(server, sql):
    status, problem = error(call(server, "/v1/query", {"sql": sql}))
    assert status == 400, problem
    assert "root:" not in problem["message"] and str(server["lake"]) not in problem["message"], problem


def test_bad_requests_get_their_status_and_the_server_keeps_serving(server):
    assert error(call(server, "/v1/query", {"sql": "SELECT 1"}, key=None))[0] == 401
    assert error(call(server, "/v1/query", {"sql": "SELECT 1"}, key="wrong"))[0] == 401
    assert error(call(server, "/v1/query", {"sql": "SELECT 1", "format": "xml"}))[0] == 406
    assert error(call(server, "/v1/query", {"sql": "SELECT 1"}, headers={"Accept": "text/html"}))[0] == 406
    assert error(call(server, "/v1/query", {"sql": "SELECT 1", "limit": 6000}))[0] == 400
    assert error(call(server, "/v1/query", {"sqll": "SELECT 1"}))[0] == 400
    assert error(call(server, "/v1/query", {"next": "not-a-token"}))[0] == 400
    assert error(call(server, "/v1/query", {"sql": "SELECT nosuch FROM orders"}))[0] == 400
    status, _, _ = call(server, "/v1/query", headers={"Content-Type": "text/plain"}, method="POST")
    assert status == 415
    # Past the memory pool (16 MiB): a sort that must hold every row.
    status, problem = error(call(server, "/v1/query", {"sql": "SELECT a.id FROM orders a CROSS JOIN orders b ORDER BY a.pickup_city, b.delivery_city, a.id, b.id LIMIT 1"}))
    assert status in (408, 413), problem
    assert problem["code"] in ("time_limit", "memory_limit")
    assert call(server, "/v1/query", {"sql": "SELECT 1 AS one"})[0] == 200
    assert server["process"].poll() is None


def test_a_filter_on_the_partition_column_opens_only_that_folder(server):
    days = sorted(p.name for p in (server["lake"] / "orders").iterdir() if p.name.startswith("dt="))
    day = days[len(days) // 2]

    def files(sql):
        rows = json.loads(call(server, "/v1/query", {"sql": f"EXPLAIN {sql}"})[2])["rows"]
        physical = next(r["plan"] for r in rows if r["plan_type"] == "physical_plan")
        return set(re.findall(r"[^\s\[\],]+\.parquet", physical))

    pruned = files(f"SELECT sum(weight_kg) FROM orders WHERE dt = '{day.split('=')[1]}'")
    # orders is a Delta table: the day's files in its current version (the folder also
    # holds the files merges replaced, which older versions read).
    live = {u.rsplit("/", 1)[1] for u in DeltaTable(str(server["lake"] / "orders")).file_uris() if f"/{day}/" in u}
    assert pruned and all(f"/{day}/" in f for f in pruned), pruned
    assert {f.rsplit("/", 1)[1] for f in pruned} == live
    assert len(files("SELECT sum(weight_kg) FROM orders")) > len(pruned)


def test_schemathesis_finds_no_server_error_and_no_response_off_the_document(server, tmp_path):
    # Every check but "schema-valid data is accepted": a string that is valid by the
    # document is not always valid SQL, and is rightly refused with 400.
    done = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "run", f"{server['url']}/openapi.json",
         "-H", f"Authorization: Bearer {ANALYST_KEY}", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", "40", "--seed", "1"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated and int(generated.group(1)) > 100, done.stdout[-2000:]
    assert server["process"].poll() is None


def test_a_file_added_while_the_server_runs_is_seen_by_the_next_query(server):
    import shutil

    # gps_pings is plain Parquet: what its folder holds is the table.
    sql = "SELECT count(*) AS n FROM gps_pings WHERE dt = '2099-01-01'"
    assert json.loads(call(server, "/v1/query", {"sql": sql})[2])["rows"] == [{"n": 0}]
    source = sorted((server["lake"] / "gps_pings").glob("dt=*/*.parquet"))[0]
    added = server["lake"] / "gps_pings" / "dt=2099-01-01" / "part-added-00000.parquet"
    added.parent.mkdir()
    shutil.copy(source, added)
    rows = pyarrow.parquet.read_metadata(added).num_rows
    assert json.loads(call(server, "/v1/query", {"sql": sql})[2])["rows"] == [{"n": rows}]


def test_ndjson_without_a_limit_streams_the_whole_answer(server):
    # Under the fixture's --max-rows (20,000), over its page size (100).
    expected = [i for (i,) in reference(server, "SELECT id FROM orders WHERE id % 2 = 0 ORDER BY id")]
    status, headers, body = call(server, "/v1/query", {"sql": "SELECT id FROM orders WHERE id % 2 = 0", "format": "ndjson"})
    assert status == 200 and headers["content-type"] == "application/x-ndjson"
    ids = [json.loads(line)["id"] for line in body.decode().splitlines()]
    assert sorted(ids) == expected and 100 < len(ids) < 20000
    assert "sluice-next" not in {k.lower() for k in headers}


def test_a_stream_past_the_row_limit_ends_with_its_error_line(server):
    # 20,000 rows is the fixture's --max-rows: the stream stops there and says why.
    sql = "SELECT a.id FROM orders a CROSS JOIN orders b"
    status, _, body = call(server, "/v1/query", {"sql": sql, "format": "ndjson"})
    assert status == 200
    lines = body.decode().splitlines()
    last = json.loads(lines[-1])
    assert last["error"]["code"] == "row_limit" and "20000" in last["error"]["message"], last
    assert all("id" in json.loads(line) for line in lines[:-1]) and len(lines) - 1 <= 20000
    assert call(server, "/v1/query", {"sql": "SELECT 1 AS one"})[0] == 200


def test_cors_answers_the_configured_origin_only(server):
    def preflight(origin):
        request = urllib.request.Request(server["url"] + "/v1/query", method="OPTIONS")
        request.add_header("Origin", origin)
        request.add_header("Access-Control-Request-Method", "POST")
        request.add_header("Access-Control-Request-Headers", "authorization, content-type")
        with urllib.request.urlopen(request, timeout=10) as reply:
            return {k.lower(): v for k, v in reply.headers.items()}

    allowed = preflight("https://app.example.com")
    assert allowed["access-control-allow-origin"] == "https://app.example.com"
    assert "POST" in allowed["access-control-allow-methods"]
    assert "authorization" in allowed["access-control-allow-headers"].lower()
    assert "access-control-allow-origin" not in preflight("https://evil.example.com")
    _, headers, _ = call(server, "/v1/query", {"sql": "SELECT 1 AS one"}, headers={"Origin": "https://app.example.com"})
    exposed = {k.lower(): v for k, v in headers.items()}
    assert exposed["access-control-allow-origin"] == "https://app.example.com"
    assert "sluice-next" in exposed["access-control-expose-headers"]


def test_a_table_added_while_the_server_runs_is_listed_after_the_listing_ttl(server):
    import shutil

    source = sorted((server["lake"] / "customers").rglob("*.parquet"))[0]
    target = server["lake"] / "customers_copy" / source.name
    target.parent.mkdir()
    shutil.copy(source, target)
    rows = pyarrow.parquet.read_metadata(target).num_rows
    deadline = time.monotonic() + 15  # the fixture's --listing-ttl is 1s
    while True:
        reply = call(server, "/v1/query", {"sql": "SELECT count(*) AS n FROM customers_copy"})
        if reply[0] == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert reply[0] == 200 and json.loads(reply[2])["rows"] == [{"n": rows}], reply
    listed = {t["name"] for t in json.loads(call(server, "/v1/tables")[2])["tables"]}
    assert "customers_copy" in listed


def test_quarantine_tables_are_listed_with_the_table_they_belong_to(server):
    import shutil

    # The layout the quality stage writes rejected rows in: <table>__quarantine/.
    source = sorted((server["lake"] / "trucks").rglob("*.parquet"))[0]
    quarantine = server["lake"] / "trucks__quarantine" / source.name
    quarantine.parent.mkdir(exist_ok=True)
    shutil.copy(source, quarantine)
    time.sleep(1.5)  # the fixture's --listing-ttl
    listed = json.loads(call(server, "/v1/tables")[2])["tables"]
    quarantined = [t for t in listed if t["name"].endswith("__quarantine")]
    assert quarantined, [t["name"] for t in listed]
    for table in quarantined:
        assert table["quarantine_of"] == table["name"].removesuffix("__quarantine")
    assert all("quarantine_of" not in t for t in listed if not t["name"].endswith("__quarantine"))


def flight(server, **options):
    from adbc_driver_flightsql import dbapi

    return dbapi.connect(server["flight"], db_kwargs=options)


def bearer(key):
    from adbc_driver_flightsql import DatabaseOptions

    return {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {key}"}


def test_flight_sql_answers_adbc_with_the_same_rows(server):
    sql = "SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status"
    expected = reference(server, sql)
    with flight(server, **bearer(ANALYST_KEY)) as connection, connection.cursor() as cursor:
        cursor.execute(sql)
        table = cursor.fetch_arrow_table()
    assert table.column_names == ["status", "n"]
    assert list(zip(table["status"].to_pylist(), table["n"].to_pylist())) == expected


def test_flight_sql_binds_parameters_after_a_handshake(server):
    [(total,)] = reference(server, "SELECT count(*) FROM orders WHERE status = 'delivered'")
    # The key as the handshake's password; the server answers with the bearer token.
    with flight(server, username="analyst", password=ANALYST_KEY) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) AS n FROM orders WHERE status = $1", ("delivered",))
        assert cursor.fetchall() == [(total,)]
        cursor.execute("SELECT $1 AS who", ("x'; DROP TABLE orders; --",))
        assert cursor.fetchall() == [("x'; DROP TABLE orders; --",)]


def test_flight_sql_lists_only_the_keys_tables_to_browsing_tools(server):
    with flight(server, **bearer(PARTNER_KEY)) as connection:
        info = connection.adbc_get_info()
        assert info["vendor_name"] == "sluice", info
        objects = connection.adbc_get_objects(depth="all").read_all().to_pylist()
        tables = [t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]]
        assert tables == ["customers"], objects
        schema = connection.adbc_get_table_schema("customers")
        assert "id" in schema.names and "email" in schema.names
        assert connection.adbc_get_table_types() == ["TABLE"]
    with flight(server, **bearer(ANALYST_KEY)) as connection:
        objects = connection.adbc_get_objects(depth="tables").read_all().to_pylist()
        tables = {t["table_name"] for c in objects for s in c["catalog_db_schemas"] for t in s["db_schema_tables"]}
        assert {"orders", "customers"} <= tables


def test_flight_sql_refuses_as_http_does(server):
    import adbc_driver_manager

    def refused(key, sql):
        with pytest.raises(adbc_driver_manager.Error) as caught:
            with flight(server, **bearer(key)) as connection, connection.cursor() as cursor:
                cursor.execute(sql)
                cursor.fetchall()
        return str(caught.value)

    assert "UNAUTHENTICATED" in refused("wrong", "SELECT 1")
    assert "no valid API key" in refused("wrong", "SELECT 1")
    dropped = refused(ANALYST_KEY, "DROP TABLE orders")
    assert "INVALID_ARGUMENT" in dropped and "DROP TABLE is not allowed" in dropped and "read-only" in dropped
    assert "no table `orders`" in refused(PARTNER_KEY, "SELECT count(*) FROM orders")
    past = refused(ANALYST_KEY, "SELECT a.id FROM orders a CROSS JOIN orders b")
    assert "ResourceExhausted" in past and "more than 20000 rows" in past
    with flight(server, **bearer(PARTNER_KEY)) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) AS n FROM customers")
        assert cursor.fetchall()[0][0] > 0


def test_every_query_is_logged_with_its_keys_name_never_the_key(server):
    import time as clock

    call(server, "/v1/query", {"sql": "SELECT 41 + 1 AS logged"}, key=PARTNER_KEY)
    call(server, "/v1/query", {"sql": "DELETE FROM customers"}, key=PARTNER_KEY)
    deadline = clock.monotonic() + 5
    while clock.monotonic() < deadline and not any("DELETE FROM customers" in line for line in server["log"]):
        clock.sleep(0.1)
    lines = [json.loads(line) for line in list(server["log"]) if line.startswith("{")]
    answered = [l["fields"] for l in lines if l["fields"].get("sql") == "SELECT 41 + 1 AS logged"]
    assert answered and answered[0]["key"] == "partner" and answered[0]["rows"] == 1, answered
    refused = [l["fields"] for l in lines if l["fields"].get("sql") == "DELETE FROM customers"]
    assert refused and refused[0]["code"] == "refused" and refused[0]["status"] == 400, refused
    assert not any(PARTNER_KEY in line or ANALYST_KEY in line for line in server["log"])
