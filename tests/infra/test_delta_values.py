"""Hostile partition values in a Delta table, as engines sluice did not write read them
(deltalake, DuckDB's delta extension, pyarrow over the log's files with Hive
partitioning), and through `sluice serve`, whose `as_of` reads the tables a query names
at an earlier version (issue 37)."""

import hashlib
import json
import subprocess
import urllib.error
import urllib.request

import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
from deltalake import DeltaTable

from conftest import Workspace, duckdb_with_delta

# Other scripts, spaces, `/`, `%` (and text that looks escaped already), `=`, quotes,
# Hive's own escapes, the empty string and NULL (both read as NULL, as Hive and the Delta
# protocol have it).
HOSTILE = ["São Paulo", "東京", "N/A", "a b", "100%", "%2F", "k=v", "it's", '"q"', "x:y?#[]^{}\\", "", None]

JOB = """job: places
source:
  connection: pg
  table: public.places
  cursor: updated_at
  primary_key: [id]
mode: merge
target:
  table: places
  format: delta
  partition_by: [region]
"""

KEY = "serve-values-key"


def source_rows(url):
    """(id, region, n) as every reader must see them: '' is NULL."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, region, n FROM places ORDER BY id").fetchall()
    return [(i, r if r != "" else None, n) for i, r, n in rows]


def readers(path):
    """The table by three readers, which must agree; rows (id, region, n) by id."""
    table = DeltaTable(path)
    by_deltalake = table.to_pyarrow_table(columns=["id", "region", "n"]).sort_by("id")
    by_deltalake = list(zip(*[by_deltalake.column(c).to_pylist() for c in ["id", "region", "n"]]))
    by_duckdb = duckdb_with_delta().sql(f"SELECT id, region, n FROM delta_scan('{path}') ORDER BY id").fetchall()
    # pyarrow: the log's files, their partition values from their Hive folders.
    partitioning = ds.partitioning(pa.schema([("region", pa.string())]), flavor="hive")
    files = [uri.removeprefix("file://") for uri in table.file_uris()]
    dataset = ds.dataset(files, format="parquet", partitioning=partitioning, partition_base_dir=path)
    by_pyarrow = dataset.to_table(columns=["id", "region", "n"]).sort_by("id")
    by_pyarrow = list(zip(*[by_pyarrow.column(c).to_pylist() for c in ["id", "region", "n"]]))
    assert by_duckdb == by_deltalake, "DuckDB and deltalake read different rows"
    assert by_pyarrow == by_deltalake, "pyarrow (Hive folders) and deltalake read different rows"
    return by_deltalake


def serve(ws, sluice_bin, tmp_path):
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"- {{name: all, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, tables: ['*']}}\n")
    process = subprocess.Popen(
        [sluice_bin, "--lake", ws.lake, "serve", "--listen", "127.0.0.1:0", "--keys", str(keys), "--listing-ttl", "1s"],
        env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    assert line.startswith("listening on http://"), line + process.stderr.read()
    return process, line.split()[2]


def ask(url, body):
    request = urllib.request.Request(url + "/v1/query", data=json.dumps(body).encode())
    request.add_header("Authorization", f"Bearer {KEY}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_hostile_partition_values_round_trip(tmp_path, postgres_database, sluice_bin):
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE places (id bigint PRIMARY KEY, region text, n int NOT NULL, updated_at bigint NOT NULL)")
        for i, value in enumerate(HOSTILE):
            conn.execute("INSERT INTO places VALUES (%s, %s, 1, 1), (%s, %s, 1, 1)", (i * 10 + 1, value, i * 10 + 2, value))
    ws = Workspace(tmp_path, sluice_bin)
    (ws.jobs / "connections.yaml").write_text(f'pg:\n  kind: postgres\n  url: "{postgres_database}"\n')
    (ws.jobs / "places.yaml").write_text(JOB)
    ws.sluice("run", "--job", "places")
    path = ws.table("places")
    first = readers(path)
    assert first == source_rows(postgres_database)

    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("UPDATE places SET n = n + 1, updated_at = 2 WHERE id % 10 = 1")
        conn.execute("UPDATE places SET region = 'N/A', updated_at = 2 WHERE id = 2")
    ws.sluice("run", "--job", "places")
    assert readers(path) == source_rows(postgres_database)
    ws.sluice("optimize", "--job", "places")
    assert readers(path) == source_rows(postgres_database)
    assert DeltaTable(path).version() == 2, "load (version 0), merge, optimize"
    ws.sluice("vacuum", "--job", "places", "--retain", "0s")
    assert readers(path) == source_rows(postgres_database)
    # A vacuum logs its start and its end as versions of their own (delta-rs's VACUUM
    # START / VACUUM END), changing no data.
    assert DeltaTable(path).version() == 4

    process, url = serve(ws, sluice_bin, tmp_path)
    try:
        status, page = ask(url, {"sql": "SELECT id, region, n FROM places ORDER BY id", "limit": 1000})
        assert status == 200, page
        assert [(r["id"], r["region"], r["n"]) for r in page["rows"]] == source_rows(postgres_database)
        # A hostile value bound as a parameter finds its partition.
        for value in [v for v in HOSTILE if v]:
            status, page = ask(url, {"sql": "SELECT count(*) AS n FROM places WHERE region = $1", "params": [value]})
            assert status == 200, page
            expected = sum(1 for _, r, _ in source_rows(postgres_database) if r == value)
            assert page["rows"][0]["n"] == expected, value
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_serve_as_of_reads_the_named_tables_at_that_version(tmp_path, postgres_database, sluice_bin):
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("CREATE TABLE places (id bigint PRIMARY KEY, region text, n int NOT NULL, updated_at bigint NOT NULL)")
        conn.execute("INSERT INTO places VALUES (1, 'a', 1, 1)")
    ws = Workspace(tmp_path, sluice_bin)
    (ws.jobs / "connections.yaml").write_text(f'pg:\n  kind: postgres\n  url: "{postgres_database}"\n')
    for name in ["ta", "tb"]:
        (ws.jobs / f"{name}.yaml").write_text(
            f"job: {name}\nsource:\n  connection: pg\n  table: public.places\nmode: full\ntarget:\n  table: {name}\n  format: delta\n")
    ws.sluice("run", "--job", "tb")
    for id in (2, 3):
        ws.sluice("run", "--job", "ta")
        with psycopg.connect(postgres_database, autocommit=True) as conn:
            conn.execute("INSERT INTO places VALUES (%s, 'a', 1, 1)", (id,))
    ws.sluice("run", "--job", "ta")
    process, url = serve(ws, sluice_bin, tmp_path)
    try:
        count = "SELECT count(*) AS n FROM ta"
        assert ask(url, {"sql": count})[1]["rows"] == [{"n": 3}]
        for as_of, rows in [(0, 1), ("1", 2), (2, 3)]:
            status, page = ask(url, {"sql": count, "as_of": as_of})
            assert status == 200 and page["rows"] == [{"n": rows}], (as_of, page)
        # Every page reads the same version.
        status, page = ask(url, {"sql": "SELECT id FROM ta ORDER BY id", "as_of": 1, "limit": 1})
        assert status == 200 and page["next"], page
        status, rest = ask(url, {"next": page["next"]})
        assert status == 200 and [r["id"] for r in rest["rows"]] == [2] and rest["next"] is None, rest
        # tb has no version 2: the client's error, naming it and its versions.
        status, refused = ask(url, {"sql": "SELECT count(*) FROM tb", "as_of": 2})
        assert status == 400 and "`tb`" in refused["error"]["message"] and "0 to 0" in refused["error"]["message"], refused
        # A query that does not name tb is not asked for it.
        status, page = ask(url, {"sql": count, "as_of": 2})
        assert status == 200, page
        for bad in [-1, "soon", 1.5, True, {"v": 1}]:
            status, refused = ask(url, {"sql": count, "as_of": bad})
            assert status == 400 and "as_of" in refused["error"]["message"], (bad, refused)
    finally:
        process.terminate()
        process.wait(timeout=10)
