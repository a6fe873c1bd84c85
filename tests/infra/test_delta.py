"""Delta tables (`target.format: delta`) as engines sluice did not write read them.

The readers are DuckDB's delta extension (delta-kernel-rs; the extension file comes
from its PyPI wheel and is loaded by path) and the deltalake package (delta-rs's Python
binding). The source is a real PostgreSQL database changed at random between runs.
"""

import random
import threading
import time
from pathlib import Path

import psycopg
import pytest
from deltalake import DeltaTable

from conftest import Workspace, duckdb_with_delta

BUSY = 3


ORDERS = """
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer text NOT NULL, amount numeric(12,2) NOT NULL, day date NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT clock_timestamp(), deleted_at timestamptz);
INSERT INTO orders (id, customer, amount, day)
  SELECT g, 'customer ' || (g % 37), (g * 7 % 1000) + 0.25, date '2024-05-01' + (g % 9) FROM generate_series(1, 2000) g;
"""

MERGE_JOB = """job: orders
source:
  connection: pg
  table: public.orders
  cursor: updated_at
  primary_key: [id]
  delete_when: deleted_at IS NOT NULL
mode: merge
transform: SELECT id, customer, amount, day, updated_at, deleted_at FROM source
target:
  table: orders
  format: delta
  partition_by: [day]
"""


def expected_rows(url):
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT id, customer, amount, day FROM orders WHERE deleted_at IS NULL ORDER BY id").fetchall()


def lake_rows(ws, version=None):
    """The table by both readers, which must agree; rows (id, customer, amount, day)."""
    path = ws.table("orders")
    table = (DeltaTable(path, version=version) if version is not None else DeltaTable(path)).to_pyarrow_table(
        columns=["id", "customer", "amount", "day"]).sort_by("id")
    by_deltalake = list(zip(*[table.column(c).to_pylist() for c in ["id", "customer", "amount", "day"]]))
    if version is None:
        by_duckdb = duckdb_with_delta().sql(f"SELECT id, customer, amount, day FROM delta_scan('{path}') ORDER BY id").fetchall()
        assert by_duckdb == by_deltalake, "DuckDB and deltalake read different rows"
    return by_deltalake


def change_at_random(url, rng, next_id):
    """Inserts, updates (one in ten moves to another day), deletes and un-deletes."""
    with psycopg.connect(url, autocommit=True) as conn:
        live = [r[0] for r in conn.execute("SELECT id FROM orders WHERE deleted_at IS NULL")]
        gone = [r[0] for r in conn.execute("SELECT id FROM orders WHERE deleted_at IS NOT NULL")]
        for i in rng.sample(live, min(len(live), rng.randint(1, 120))):
            if rng.random() < 0.1:
                conn.execute("UPDATE orders SET day = day + 30, updated_at = clock_timestamp() WHERE id = %s", [i])
            else:
                conn.execute("UPDATE orders SET amount = amount + 1, customer = customer || '+', "
                             "updated_at = clock_timestamp() WHERE id = %s", [i])
        for i in rng.sample(live, min(len(live), rng.randint(0, 40))):
            conn.execute("UPDATE orders SET deleted_at = clock_timestamp(), updated_at = clock_timestamp() WHERE id = %s", [i])
        for i in rng.sample(gone, min(len(gone), rng.randint(0, 5))):
            conn.execute("UPDATE orders SET deleted_at = NULL, updated_at = clock_timestamp() WHERE id = %s", [i])
        n = rng.randint(0, 80)
        conn.execute("INSERT INTO orders (id, customer, amount, day) SELECT g, 'new', g %% 100, "
                     "date '2024-05-01' + (g %% 11)::int FROM generate_series(%s::bigint, %s::bigint) g", [next_id, next_id + n - 1])
        return next_id + n


def orders_workspace(tmp_path, postgres_database, sluice_bin, **where):
    """The orders table in PostgreSQL and its merge job into a Delta table."""
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(ORDERS)
    ws = Workspace(tmp_path, sluice_bin, **where)
    (ws.jobs / "connections.yaml").write_text(f'pg:\n  kind: postgres\n  url: "{postgres_database}"\n')
    (ws.jobs / "orders.yaml").write_text(MERGE_JOB)
    return ws


def test_twenty_merges_converge_to_the_source(tmp_path, postgres_database, sluice_bin):
    ws = orders_workspace(tmp_path, postgres_database, sluice_bin)
    rng, next_id, previous = random.Random(17), 5000, None
    for run in range(20):
        if run:
            next_id = change_at_random(postgres_database, rng, next_id)
        if run == 7:
            # Killed after its Delta commit, before the state's: the log has it.
            ws.stopped_at("delta-committed", "run", "--job", "orders")
            assert lake_rows(ws) == expected_rows(postgres_database)
        if run == 13:
            # Killed after recording what it would commit, before the commit.
            before = lake_rows(ws)
            ws.stopped_at("prepared", "run", "--job", "orders")
            assert lake_rows(ws) == before, "nothing of the killed merge is visible"
        ws.sluice("run", "--job", "orders")
        got, want = lake_rows(ws), expected_rows(postgres_database)
        assert len(got) == len({r[0] for r in got}), f"run {run}: a key twice"
        assert got == want, f"run {run}: the lake differs from the source ({len(got)} vs {len(want)} rows)"
        previous, last = (last if run else None), got
    # Time travel: the version before the last run's reads the rows it held then.
    version = DeltaTable(ws.table("orders")).version()
    assert version == 19, "one version a run from version 0 (the killed run's commit counts once)"
    assert lake_rows(ws, version=version - 1) == previous


def test_a_reader_never_sees_half_a_full_reload(tmp_path, postgres_database, sluice_bin):
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE big AS SELECT g AS id, md5(g::text) AS s, g % 97 AS k FROM generate_series(1, 1000000) g")
    ws = Workspace(tmp_path, sluice_bin)
    (ws.jobs / "connections.yaml").write_text(f'pg:\n  kind: postgres\n  url: "{postgres_database}"\n')
    (ws.jobs / "big.yaml").write_text(
        "job: big\nsource:\n  connection: pg\n  table: public.big\nmode: full\n"
        "target:\n  table: big\n  format: delta\n  file_size: 1MiB\n")
    ws.sluice("run", "--job", "big")
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("DELETE FROM big WHERE id > 600000")
    seen, done = [], threading.Event()

    def poll():
        while not done.is_set():
            seen.append(DeltaTable(ws.table("big")).to_pyarrow_dataset().count_rows())

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        ws.sluice("run", "--job", "big")
    finally:
        time.sleep(0.2)
        done.set()
        reader.join()
    assert len(seen) > 5, f"the reader polled only {len(seen)} times"
    assert set(seen) <= {1_000_000, 600_000}, f"a reader saw a mix: {sorted(set(seen))}"
    assert seen[-1] == 600_000
    files = [p for p in Path(ws.table("big")).rglob("*.parquet")]
    assert len(files) > len(DeltaTable(ws.table("big")).file_uris()), "the old files stay for older versions"


def test_optimize_and_vacuum_keep_every_row(tmp_path, postgres_database, sluice_bin):
    ws = orders_workspace(tmp_path, postgres_database, sluice_bin)
    rng, next_id = random.Random(3), 5000
    for run in range(6):
        if run:
            next_id = change_at_random(postgres_database, rng, next_id)
        ws.sluice("run", "--job", "orders")
    table = DeltaTable(ws.table("orders"))
    before_files, before_version, rows = len(table.file_uris()), table.version(), lake_rows(ws)
    out = ws.sluice("optimize", "--job", "orders")
    assert "packs" in out, out
    table = DeltaTable(ws.table("orders"))
    assert table.version() == before_version + 1
    assert len(table.file_uris()) < before_files
    assert lake_rows(ws) == rows == expected_rows(postgres_database)
    assert lake_rows(ws, version=before_version) == rows, "time travel to before the optimize"
    on_disk = len(list(Path(ws.table("orders")).rglob("*.parquet")))
    ws.sluice("vacuum", "--job", "orders", "--retain", "0s")
    live = {Path(u.removeprefix("file://")).resolve() for u in DeltaTable(ws.table("orders")).file_uris()}
    remaining = {p.resolve() for p in Path(ws.table("orders")).rglob("*.parquet")}
    assert remaining == live, "vacuum removes exactly the files no version needs"
    assert len(remaining) < on_disk
    assert lake_rows(ws) == rows


def test_two_writers_on_s3_never_both_replace(tmp_path, aws, endpoint, unique, postgres_database, sluice_bin, sluice_env):
    """Two processes (two deployments that share a lake) replace one Delta table on S3
    at the same moment: the commit is a conditional put, so one version wins; the other
    is refused as busy or retried over it, never applied beside it."""
    bucket = f"delta-{unique}"
    aws("s3").create_bucket(Bucket=bucket)
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE a AS SELECT g AS id, 'a' AS who FROM generate_series(1, 100) g;"
                     "CREATE TABLE b AS SELECT g AS id, 'b' AS who FROM generate_series(1, 200) g;")
    lake = f"s3://{bucket}/lake"
    writers = []
    for name in ("a", "b"):
        ws = Workspace(tmp_path / name, sluice_bin, env=sluice_env, lake=lake)
        (ws.jobs / "connections.yaml").write_text(f'pg:\n  kind: postgres\n  url: "{postgres_database}"\n')
        (ws.jobs / "shared.yaml").write_text(
            f"job: shared\nsource:\n  connection: pg\n  table: public.{name}\nmode: full\n"
            "target:\n  table: shared\n  format: delta\n")
        writers.append(ws)
    writers[0].sluice("run", "--job", "shared")
    # Both prepare, then both commit over the same version.
    procs = [ws.start("run", "--job", "shared", failpoint="prepared:3") for ws in writers]
    codes = [p.wait(timeout=300) for p in procs]
    outputs = [p.stderr.read() for p in procs]
    assert all(c in (0, BUSY) for c in codes), f"exit codes {codes}: {outputs}"
    storage = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ALLOW_HTTP": "true"}
    table = DeltaTable(f"{lake}/shared", storage_options=storage)
    who = table.to_pyarrow_table().column("who").to_pylist()
    assert sorted(set(who)) in (["a"], ["b"]), f"both replaced: {len(who)} rows of {sorted(set(who))}"
    assert len(who) == (100 if who[0] == "a" else 200)
    history = table.history()
    assert len({h["version"] for h in history}) == len(history), "one commit per version"
    if BUSY in codes:
        loser = codes.index(BUSY)
        assert "another writer committed" in outputs[loser], outputs[loser]


def test_merge_and_optimize_on_s3(tmp_path, aws, endpoint, unique, postgres_database, sluice_bin, sluice_env):
    """The merge reads the table's files on S3 (moto) and rewrites those with its keys;
    optimize and vacuum work there too; deltalake reads the result."""
    bucket = f"delta-merge-{unique}"
    aws("s3").create_bucket(Bucket=bucket)
    ws = orders_workspace(tmp_path, postgres_database, sluice_bin, env=sluice_env, lake=f"s3://{bucket}/lake")
    storage = {"AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ALLOW_HTTP": "true"}

    def lake():
        t = DeltaTable(f"s3://{bucket}/lake/orders", storage_options=storage)
        rows = t.to_pyarrow_table(columns=["id", "customer", "amount", "day"]).sort_by("id")
        return list(zip(*[rows.column(c).to_pylist() for c in ["id", "customer", "amount", "day"]])), t

    rng, next_id = random.Random(5), 5000
    for run in range(4):
        if run:
            next_id = change_at_random(postgres_database, rng, next_id)
        ws.sluice("run", "--job", "orders")
        assert lake()[0] == expected_rows(postgres_database), f"run {run}"
    files = len(lake()[1].file_uris())
    assert "packs" in ws.sluice("optimize", "--job", "orders")
    rows, table = lake()
    assert rows == expected_rows(postgres_database) and len(table.file_uris()) < files
    ws.sluice("vacuum", "--job", "orders", "--retain", "0s")
    assert lake()[0] == expected_rows(postgres_database)
