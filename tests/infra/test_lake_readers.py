"""The Athena stand-in: engines sluice did not write read the lake it wrote.

The demo's tables (SQLite) and the PostgreSQL torture table (every type, NULLs,
extremes) — also as a Delta table — are run into an S3 lake on moto with the Glue catalog
on. Then DuckDB and pyarrow each read every Parquet table through its Hive partitions,
and DuckDB's delta extension and the deltalake package every Delta table (the demo's
orders, merged by key, and the torture table's copy) through its log; for every column
the values they return must equal the source's (a checksum per column over the rows in
key order), with the types the Glue table declares. Glue must hold the tables, exactly
the partitions in the lake, and the Delta tables as `table_type = DELTA`.
"""

import datetime as dt
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
from decimal import Context, Decimal

import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import yaml
from deltalake import DeltaTable

from conftest import REPO, duckdb_with_delta

TORTURE_SQL = (REPO / "tests" / "fixtures" / "torture.postgres.sql").read_text()


def glue_type_to_duckdb(t: str, utc: bool) -> str:
    if t.startswith("decimal"):
        return t.upper().replace(" ", "")
    if t == "timestamp":
        return "TIMESTAMP WITH TIME ZONE" if utc else "TIMESTAMP"
    return {
        "boolean": "BOOLEAN", "tinyint": "TINYINT", "smallint": "SMALLINT", "int": "INTEGER",
        "bigint": "BIGINT", "float": "FLOAT", "double": "DOUBLE", "string": "VARCHAR",
        "binary": "BLOB", "date": "DATE",
    }[t]


def glue_type_to_arrow(t: str, utc: bool) -> pa.DataType:
    if t.startswith("decimal"):
        p, s = t[len("decimal("):-1].split(",")
        return pa.decimal128(int(p), int(s))
    if t == "timestamp":
        return pa.timestamp("us", tz="UTC" if utc else None)
    return {
        "boolean": pa.bool_(), "tinyint": pa.int8(), "smallint": pa.int16(), "int": pa.int32(),
        "bigint": pa.int64(), "float": pa.float32(), "double": pa.float64(),
        "string": pa.string(), "binary": pa.binary(), "date": pa.date32(),
    }[t]


def canonical(value, glue_type: str) -> str:
    """One text per value, in the catalog type's domain, whichever side it came from."""
    if value is None:
        return "NULL"
    if glue_type in ("tinyint", "smallint", "int", "bigint"):
        return str(int(value))
    if glue_type == "boolean":
        return str(bool(value))
    if glue_type == "double":
        return repr(float(value))
    if glue_type == "float":
        return repr(struct.unpack("f", struct.pack("f", float(value)))[0])
    if glue_type.startswith("decimal"):
        scale = int(glue_type[:-1].split(",")[1])
        return str(Decimal(str(value)).quantize(Decimal(1).scaleb(-scale), context=Context(prec=80)))
    if glue_type == "date":
        return (value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))).isoformat()
    if glue_type == "timestamp":
        if isinstance(value, int):  # microseconds since the epoch (DuckDB's epoch_us)
            value = dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=value)
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return value.isoformat(timespec="microseconds")
    if glue_type == "binary":
        return bytes(value).hex()
    return value.decode() if isinstance(value, bytes) else str(value)


def checksums(rows, columns, types):
    """Per column: the SHA-256 of its canonical values in row order, and the values."""
    out = {}
    for i, name in enumerate(columns):
        values = [canonical(r[i], types[name]) for r in rows]
        out[name] = (hashlib.sha256("\n".join(values).encode()).hexdigest(), values)
    return out


def assert_same(table, reader, expected, got, keys):
    for name, (digest, values) in expected.items():
        other_digest, other = got[name]
        if digest != other_digest:
            diff = next(i for i, (a, b) in enumerate(zip(values, other)) if a != b) if len(values) == len(other) else None
            where = f"first at key {keys[diff]}: source {values[diff]!r}, {reader} {other[diff]!r}" if diff is not None else f"{len(values)} vs {len(other)} values"
            pytest.fail(f"{table}.{name}: {reader} differs from the source ({where})")


@pytest.fixture
def postgres_url(postgres_database):
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(TORTURE_SQL)
    return postgres_database


def row_key(job):
    """The column the rows are compared in the order of: the key, or a file job's first field."""
    src = job["source"]
    return (src.get("primary_key") or [src["record"][0]["name"]])[0]


def source_rows(job, jobs_dir, postgres_url, glue_types, watermark):
    """The source's rows of a job, key order, each column as the catalog types it (text
    the source database renders for the columns the lake keeps as strings)."""
    src = job["source"]
    key = row_key(job)
    if src.get("files"):
        # The bank's statements as the bank wrote them: each transaction's keys matched to
        # the record's fields as sluice matches them (`txnId` is `txn_id`).
        fields = [f["name"] for f in src["record"]]
        fold = lambda k: "".join(c for c in k.lower() if c.isalnum())
        rows = []
        for path in sorted((jobs_dir / "bank" / "processed").glob("*.json")):
            for i, record in enumerate(json.loads(path.read_text())["transactions"]):
                by = {fold(k): v for k, v in record.items()}
                rows.append([by.get(fold(f)) for f in fields] + [f"incoming/{path.name}", i])
        names = fields + ["_file", "_record"]
        return names, sorted(rows, key=lambda r: r[names.index(key)])
    if src["connection"] == "torture":
        with psycopg.connect(postgres_url) as conn:
            kinds = dict(conn.execute(
                "SELECT column_name, udt_name FROM information_schema.columns "
                "WHERE table_name = %s ORDER BY ordinal_position", [src["table"]]).fetchall())
            names = list(kinds)
            # char(n) too goes through PostgreSQL's text rendering, which drops the padding
            # (insignificant in SQL comparisons), as sluice's extract does.
            native = {"int2", "int4", "int8", "float4", "float8", "bool", "text", "varchar",
                      "date", "timestamp", "timestamptz", "bytea"}
            exprs = [f'"{n}"' if kinds[n] in native or kinds[n] == "numeric" and glue_types[n] != "string"
                     else f'"{n}"::text' for n in names]
            rows = conn.execute(f"SELECT {', '.join(exprs)} FROM {src['table']} ORDER BY {key}").fetchall()
        return names, rows
    conn = sqlite3.connect(jobs_dir / "logistics.db")
    body = src.get("query") or f"SELECT * FROM {src['table']}"
    where = ""
    if watermark is not None:
        where = f" WHERE {src['cursor']} <= ?"
    cur = conn.execute(f"SELECT * FROM ({body}){where} ORDER BY {key}", [] if watermark is None else [watermark])
    names = [d[0].lower() for d in cur.description]
    return names, cur.fetchall()


def test_duckdb_and_pyarrow_read_what_the_sources_hold(tmp_path, aws, endpoint, unique, postgres_url, sluice_bin):
    binary = sluice_bin
    bucket, database = f"readers-{unique}", f"readers_{unique}"
    env = dict(os.environ, AWS_ENDPOINT_URL=endpoint, AWS_REGION="us-east-1",
               AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", SLUICE_LOG_FORMAT="json")

    def sluice(*args):
        done = subprocess.run([binary, *args], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 0, f"sluice {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout

    # The demo's database and jobs, then the same jobs (plus the torture table) into S3.
    sluice("demo", "--dir", str(tmp_path / "demo"))
    jobs_dir = tmp_path / "jobs"
    shutil.copytree(tmp_path / "demo" / "jobs", jobs_dir)
    with open(jobs_dir / "connections.yaml", "a") as f:
        f.write(f"torture:\n  kind: postgres\n  url: \"{postgres_url}\"\n")
    (jobs_dir / "torture.yaml").write_text(
        "job: torture\nsource:\n  connection: torture\n  table: torture\n  primary_key: [id]\n"
        "target:\n  table: torture\n")
    # The same table as a Delta table.
    (jobs_dir / "torture_delta.yaml").write_text(
        "job: torture_delta\nsource:\n  connection: torture\n  table: torture\n  primary_key: [id]\n"
        "target:\n  table: torture_delta\n  format: delta\n")
    aws("s3").create_bucket(Bucket=bucket)
    places = ["--jobs", str(jobs_dir), "--lake", f"s3://{bucket}/lake", "--state", str(tmp_path / "state"),
              "--catalog", f"glue://{database}"]
    # The bank drops its statements again (the demo's run moved them to processed/): new to
    # this lake's state.
    bank = jobs_dir / "bank"
    for statement in (bank / "processed").glob("*.json"):
        shutil.copy(statement, bank / "incoming" / statement.name)
    sluice("init", *places)
    sluice("run", "--all", *places)

    glue, s3 = aws("glue"), aws("s3")
    jobs = {}
    for path in sorted(jobs_dir.glob("*.yaml")):
        if path.name != "connections.yaml":
            job = yaml.safe_load(path.read_text())
            # `run --all` leaves out disabled rows (the GPS queue job, which needs SQS).
            if job.get("enabled", True):
                jobs[job["target"]["table"]] = job
    assert len(jobs) == 8
    tables = {t["Name"] for t in glue.get_tables(DatabaseName=database)["TableList"]}
    assert tables == set(jobs) | {"_sluice_runs"}, "Glue holds exactly the jobs' tables and the runs table"
    # Runs as data: one row per run record, under its day, in the table Glue describes.
    runs = glue.get_table(DatabaseName=database, Name="_sluice_runs")["Table"]
    assert [k["Name"] for k in runs["PartitionKeys"]] == ["day"]
    assert runs["Parameters"]["projection.day.range"].endswith(",NOW")
    run_files = s3.list_objects_v2(Bucket=bucket, Prefix="lake/_sluice_runs/day=").get("Contents", [])
    assert len(run_files) >= len(jobs)

    for table, job in jobs.items():
        meta = glue.get_table(DatabaseName=database, Name=table)["Table"]
        delta = job["target"].get("format") == "delta"
        assert (meta.get("Parameters", {}).get("table_type") == "DELTA") == delta, f"{table}: {meta.get('Parameters')}"
        glue_types = {c["Name"]: c["Type"] for c in meta["StorageDescriptor"]["Columns"]}
        keys = [k["Name"] for k in meta.get("PartitionKeys", [])]
        for k in keys:
            glue_types[k] = "string"

        # Download the table's files as they are laid out (Hive partitions).
        local = tmp_path / "download" / table
        objects = s3.list_objects_v2(Bucket=bucket, Prefix=f"lake/{table}/").get("Contents", [])
        folders = set()
        for o in objects:
            rel = o["Key"][len(f"lake/{table}/"):]
            target = local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, o["Key"], str(target))
            folders.add(rel.rsplit("/", 1)[0] if "/" in rel else "")
        registered = glue.get_partitions(DatabaseName=database, TableName=table)["Partitions"]
        if delta:
            # Athena reads a Delta table's partitions from its log: none are registered.
            assert keys == [] and registered == []
        elif keys:
            assert {"/".join(f"{k}={v}" for k, v in zip(keys, p["Values"])) for p in registered} == folders
        else:
            assert registered == [] and folders == {""}

        # The timestamp columns stored as UTC, from the files' own schema.
        file_schema = ds.dataset(local, format="parquet").schema
        utc = {f.name for f in file_schema if pa.types.is_timestamp(f.type) and f.type.tz}

        # DuckDB: types as the catalog declares, then the values. A Delta table through
        # the delta extension (its log says which files hold the table).
        con = duckdb_with_delta()
        files = (f"delta_scan('{local}')" if delta else
                 f"read_parquet('{local}/**/*.parquet', hive_partitioning = true, hive_types_autocast = false)")
        rel = con.sql(f"SELECT * FROM {files}")
        duck_types = dict(zip(rel.columns, [str(t) for t in rel.types]))
        for name, t in glue_types.items():
            assert duck_types[name] == glue_type_to_duckdb(t, name in utc), f"{table}.{name}: DuckDB {duck_types[name]}, Glue {t}"
        key = row_key(job)
        select = ", ".join(f'epoch_us("{c}")' if c in utc else f'"{c}"' for c in rel.columns)
        duck = con.sql(f"SELECT {select} FROM {files} ORDER BY \"{key}\"").fetchall()

        # pyarrow: the same through its dataset reader; a Delta table through deltalake.
        if delta:
            arrow = DeltaTable(str(local)).to_pyarrow_table().sort_by(key)
        else:
            partitioning = ds.partitioning(pa.schema([(k, pa.string()) for k in keys]), flavor="hive") if keys else None
            arrow = ds.dataset(local, format="parquet", partitioning=partitioning).to_table().sort_by(key)
        for name, t in glue_types.items():
            field = arrow.schema.field(name).type
            assert field == glue_type_to_arrow(t, name in utc) or (t == "string" and field == pa.large_string()), \
                f"{table}.{name}: pyarrow {field}, Glue {t}"
        arrow_rows = list(zip(*[arrow.column(c).to_pylist() for c in rel.columns]))

        # The source: the rows the job committed (up to its watermark).
        watermark = None
        if job.get("mode") in ("incremental", "merge"):
            state = yaml.safe_load(sluice("state", "show", job["job"], *places))
            hi = state["state"]["watermark"]
            watermark = next(iter(hi.values())) if isinstance(hi, dict) else hi
            if isinstance(watermark, str):  # as SQLite keeps DATETIME text
                watermark = watermark.replace("T", " ").removesuffix("Z")
        names, rows = source_rows(job, jobs_dir, postgres_url, glue_types, watermark)
        compared = [n for n in names if n in glue_types]
        assert len(compared) >= 4, f"{table}: compares {compared}"
        src = checksums([[r[names.index(n)] for n in compared] for r in rows], compared, glue_types)
        source_keys = [r[names.index(key)] for r in rows]
        assert len(duck) == len(rows) == len(arrow_rows), f"{table}: {len(rows)} source rows, DuckDB {len(duck)}, pyarrow {len(arrow_rows)}"
        lake_cols = list(rel.columns)
        for reader, got_rows in (("DuckDB", duck), ("pyarrow", arrow_rows)):
            got = checksums(got_rows, lake_cols, glue_types)
            assert_same(table, reader, src, got, source_keys)
            # Columns the transform made: the two readers still agree.
            if reader == "pyarrow":
                duck_sums = checksums(duck, lake_cols, glue_types)
                for n in lake_cols:
                    assert duck_sums[n][0] == got[n][0], f"{table}.{n}: DuckDB and pyarrow differ"
