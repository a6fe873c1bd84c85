"""`sluice serve --engine athena` against moto's Athena and Glue (real SDK clients on both
sides), keys from a Secrets Manager secret: a query goes as a parameterised query in the
configured workgroup and database, its rows come back paged through GetQueryResults
without running it again, and a key's allow-list holds before anything reaches Athena.
moto runs no SQL: each execution takes the next of the results the test queues through
moto's API, as Athena would have answered."""

import hashlib
import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid

import pytest

ANALYST_KEY = "athena-analyst-key"
PARTNER_KEY = "athena-partner-key"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def athena(aws, endpoint, sluice_bin, sluice_env):
    suffix = uuid.uuid4().hex[:8]
    database, workgroup, bucket = f"lake_{suffix}", f"analysts-{suffix}", f"results-{suffix}"
    aws("s3").create_bucket(Bucket=bucket)
    glue = aws("glue")
    glue.create_database(DatabaseInput={"Name": database})
    for name, columns in (
        ("orders", [("id", "bigint"), ("status", "string"), ("amount", "decimal(12,2)")]),
        ("customers", [("id", "bigint"), ("name", "string")]),
    ):
        glue.create_table(
            DatabaseName=database,
            TableInput={
                "Name": name,
                "StorageDescriptor": {
                    "Columns": [{"Name": n, "Type": t} for n, t in columns],
                    "Location": f"s3://lake/{name}/",
                },
                "PartitionKeys": [{"Name": "dt", "Type": "string"}] if name == "orders" else [],
            },
        )
    aws("athena").create_work_group(
        Name=workgroup, Configuration={"ResultConfiguration": {"OutputLocation": f"s3://{bucket}/"}}
    )
    secret = f"sluice-serve-keys-{suffix}"
    aws("secretsmanager").create_secret(
        Name=secret,
        SecretString=(
            f"- {{name: partner, sha256: {sha(PARTNER_KEY)}, tables: [customers]}}\n"
            f"- {{name: analysts, sha256: {sha(ANALYST_KEY)}, tables: ['*']}}\n"
        ),
    )
    process = subprocess.Popen(
        [sluice_bin, "serve", "--engine", "athena", "--athena-workgroup", workgroup,
         "--athena-database", database, "--keys-secret", secret, "--listen", "127.0.0.1:0",
         "--flight-listen", "127.0.0.1:0", "--page-rows", "1000", "--query-timeout", "3s"],
        env=sluice_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    line = process.stdout.readline()
    assert line.startswith("listening on http://"), line + process.stderr.read()
    assert "athena engine" in line, line
    url = line.split()[2]
    flight = process.stdout.readline().split()[3]
    threading.Thread(target=process.stderr.read, daemon=True).start()
    yield {"url": url, "flight": flight, "workgroup": workgroup, "database": database,
           "endpoint": endpoint, "aws": aws, "process": process}
    process.terminate()
    assert process.wait(timeout=10) == 0


def queue_result(athena, columns, rows):
    """The next Athena execution's result (a SELECT's first row is its header)."""
    body = {
        "results": [{
            "column_info": [{"Name": n, "Type": t, "Label": n} for n, t in columns],
            "rows": [{"Data": [{"VarCharValue": n} for n, _ in columns]}]
                    + [{"Data": [{"VarCharValue": str(v)} if v is not None else {} for v in row]} for row in rows],
        }]
    }
    request = urllib.request.Request(
        athena["endpoint"] + "/moto-api/static/athena/query-results",
        data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST",
    )
    urllib.request.urlopen(request, timeout=10).read()


def executions(athena):
    client = athena["aws"]("athena")
    ids = client.list_query_executions(WorkGroup=athena["workgroup"])["QueryExecutionIds"]
    return [client.get_query_execution(QueryExecutionId=i)["QueryExecution"] for i in ids]


def call(athena, path, body=None, key=ANALYST_KEY):
    request = urllib.request.Request(athena["url"] + path)
    request.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        request.data = json.dumps(body).encode()
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_a_query_is_a_parameterised_athena_query_read_in_pages(athena):
    rows = [(i, "delivered", f"{i}.50", None if i % 7 == 0 else f"note {i}") for i in range(2500)]
    queue_result(athena, [("id", "bigint"), ("status", "varchar"), ("amount", "decimal(12,2)"), ("note", "varchar")], rows)
    before = len(executions(athena))
    sql = "SELECT id, status, amount, note FROM orders WHERE status = $1 AND dt = $2 ORDER BY id"
    body = {"sql": sql, "params": ["delivered", "2024-05-01"], "limit": 1000}
    seen, pages = [], 0
    while True:
        status, page = call(athena, "/v1/query", body)
        assert status == 200, page
        pages += 1
        seen += page["rows"]
        if page["next"] is None:
            break
        body = {"next": page["next"]}
    assert pages == 3 and [r["id"] for r in seen] == list(range(2500))
    assert seen[1] == {"id": 1, "status": "delivered", "amount": "1.50", "note": "note 1"}
    assert seen[7]["note"] is None
    [execution] = executions(athena)[before:]  # paging did not run the query again
    assert execution["Query"] == "SELECT id, status, amount, note FROM orders WHERE status = ? AND dt = ? ORDER BY id"
    assert execution["ExecutionParameters"] == ["'delivered'", "'2024-05-01'"]
    assert execution["WorkGroup"] == athena["workgroup"]
    assert execution["QueryExecutionContext"]["Database"] == athena["database"]


def test_a_value_is_bound_as_one_literal_never_spliced(athena):
    queue_result(athena, [("who", "varchar")], [("x'; DROP TABLE orders; --",)])
    before = len(executions(athena))
    status, page = call(athena, "/v1/query", {"sql": "SELECT $who AS who FROM customers", "params": {"who": "x'; DROP TABLE orders; --"}})
    assert status == 200 and page["rows"] == [{"who": "x'; DROP TABLE orders; --"}], page
    [execution] = executions(athena)[before:]
    assert execution["Query"] == "SELECT ? AS who FROM customers"
    assert execution["ExecutionParameters"] == ["'x''; DROP TABLE orders; --'"]


def test_the_allow_list_holds_before_athena_is_asked(athena):
    before = len(executions(athena))
    for sql, key, said in [
        ("SELECT count(*) FROM orders", PARTNER_KEY, "no table `orders`"),
        ("SELECT * FROM otherdb.customers", ANALYST_KEY, "no table `otherdb.customers`"),
        ('SELECT * FROM "awsdatacatalog".otherdb.customers', ANALYST_KEY, "no table"),
        ("SELECT * FROM information_schema.tables", PARTNER_KEY, "no table"),
        ("SHOW TABLES", ANALYST_KEY, "GET /v1/tables"),
        ("DROP TABLE orders", ANALYST_KEY, "DROP TABLE is not allowed"),
    ]:
        status, problem = call(athena, "/v1/query", {"sql": sql}, key=key)
        assert status == 400 and said in problem["error"]["message"], (sql, problem)
    assert len(executions(athena)) == before
    status, _ = call(athena, "/v1/query", {"sql": "SELECT 1"}, key="wrong")
    assert status == 401


def test_a_token_reads_only_the_execution_of_its_own_query(athena):
    queue_result(athena, [("id", "bigint")], [(i,) for i in range(30)])
    status, page = call(athena, "/v1/query", {"sql": "SELECT id FROM customers", "limit": 10})
    assert status == 200 and page["next"]
    import base64

    token = json.loads(base64.urlsafe_b64decode(page["next"] + "=" * (-len(page["next"]) % 4)))
    token["sql"] = "SELECT id FROM orders"  # another query, the same execution
    forged = base64.urlsafe_b64encode(json.dumps(token).encode()).decode().rstrip("=")
    status, problem = call(athena, "/v1/query", {"next": forged})
    assert status == 400 and "continuation token" in problem["error"]["message"], problem


def test_tables_come_from_the_glue_catalog_within_the_allow_list(athena):
    status, listed = call(athena, "/v1/tables")
    assert status == 200
    orders = next(t for t in listed["tables"] if t["name"] == "orders")
    assert orders["partition_columns"] == ["dt"]
    assert [c["name"] for c in orders["columns"]] == ["id", "status", "amount", "dt"]
    assert [t["name"] for t in call(athena, "/v1/tables", key=PARTNER_KEY)[1]["tables"]] == ["customers"]


def test_flight_sql_over_athena_runs_the_query_once(athena):
    from adbc_driver_flightsql import DatabaseOptions, dbapi

    queue_result(athena, [("id", "bigint"), ("name", "varchar")], [(1, "a"), (2, "b")])
    before = len(executions(athena))
    options = {DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {ANALYST_KEY}"}
    with dbapi.connect(athena["flight"], db_kwargs=options) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT id, name FROM customers")
        assert cursor.fetchall() == [(1, "a"), (2, "b")]
    assert len(executions(athena)) == before + 1


def test_a_query_past_its_time_is_refused_and_stopped_in_athena(athena):
    def transition(action, body):
        request = urllib.request.Request(
            athena["endpoint"] + f"/moto-api/state-manager/{action}",
            data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST",
        )
        urllib.request.urlopen(request, timeout=10).read()

    # Athena keeps this query queued: moto advances it only after 1,000 looks.
    transition("set-transition", {"model_name": "athena::execution", "transition": {"progression": "manual", "times": 1000}})
    try:
        before = len(executions(athena))
        status, problem = call(athena, "/v1/query", {"sql": "SELECT count(*) FROM orders"})
        assert status == 408 and problem["error"]["code"] == "time_limit", problem
        client = athena["aws"]("athena")
        ids = client.list_query_executions(WorkGroup=athena["workgroup"])["QueryExecutionIds"][before:]
        assert len(ids) == 1
        deadline = time.monotonic() + 10
        while True:
            state = client.get_query_execution(QueryExecutionId=ids[0])["QueryExecution"]["Status"]["State"]
            if state == "CANCELLED" or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert state == "CANCELLED", state
    finally:
        transition("unset-transition", {"model_name": "athena::execution"})
