"""The exactness benchmark (bench/exact): N random doubles through each JSON feed path of
sluice, read back by pyarrow and compared bit for bit with what was sent; DuckDB's
read_json of the same NDJSON is the baseline. Prints, per path, the values off by any
ULP (and decimals or integers not as sent), the wall time, and sluice ÷ DuckDB on the
file. The corpus is the tests' (tests/infra/test_feed_exact.py).

Usage: exact_numbers.py SLUICE_BIN MOTO_URL N
"""

import os
import struct
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import boto3
import duckdb
import pyarrow.dataset as ds

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "infra"))
from conftest import serving  # noqa: E402
from test_feed_exact import RECORD, Partner, bits, corpus, record_text  # noqa: E402

BIN, MOTO, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
PER_MESSAGE = 500


def off(table, rows):
    """Values not as sent: (doubles, reals, decimals, integers)."""
    got = ds.dataset(table, format="parquet").to_table().sort_by("id").to_pylist()
    assert len(got) == len(rows), f"{len(got)} of {len(rows)} records landed"
    counts = [0, 0, 0, 0]
    for g, s in zip(got, rows):
        counts[0] += bits(g["v"]) != bits(s["v"])
        counts[1] += struct.pack("<f", g["f"]) != struct.pack("<f", s["f"])
        counts[2] += g["d"] != Decimal(s["d"])
        counts[3] += g["n"] != s["n"]
    return counts


def run(root, connection, source, env=None):
    jobs = root / "jobs"
    jobs.mkdir(parents=True)
    (jobs / "connections.yaml").write_text(connection)
    (jobs / "exact.yaml").write_text(f"job: exact\nsource:\n{source}{RECORD}target:\n  table: exact\n")
    started = time.perf_counter()
    done = subprocess.run([BIN, "run", "--job", "exact", "--jobs", str(jobs), "--lake", str(root / "lake"),
                           "--state", str(root / "state")], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"sluice failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return seconds, str(root / "lake" / "exact")


def report(path, seconds, counts, n):
    print(f"{path:<28} {n:>9,} records  {seconds:7.1f} s   off: doubles {counts[0]}, reals {counts[1]}, "
          f"decimals {counts[2]}, integers {counts[3]}")


def main():
    rows = corpus(1, N)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        drop = tmp / "drop" / "in"
        drop.mkdir(parents=True)
        ndjson = drop / "doubles.ndjson"
        ndjson.write_text("".join(record_text(r) + "\n" for r in rows))
        started = time.perf_counter()
        con = duckdb.connect()
        dv = con.execute(f"SELECT v FROM read_json('{ndjson}', format='newline_delimited', "
                         "columns={id: 'BIGINT', v: 'DOUBLE'}) ORDER BY id").fetchall()
        duck = time.perf_counter() - started
        duck_off = sum(bits(g[0]) != bits(s["v"]) for g, s in zip(dv, rows))
        seconds, table = run(tmp / "files", f"drop:\n  kind: folder\n  path: {tmp / 'drop'}\n",
                             "  connection: drop\n  files: {pattern: in/*.ndjson, stable_for: 0s}\n")
        report("files (NDJSON, folder)", seconds, off(table, rows), N)
        print(f"{'DuckDB read_json (baseline)':<28} {N:>9,} records  {duck:7.1f} s   off: doubles {duck_off}"
              f"   sluice ÷ DuckDB: {seconds / duck:.2f}")

        Partner.rows = rows
        with serving(Partner) as port:
            seconds, table = run(tmp / "api", f"partner:\n  kind: http\n  base_url: http://127.0.0.1:{port}\n",
                                 "  connection: partner\n  request:\n    path: records\n    records: $.data\n"
                                 "    paginate: {kind: page, param: page}\n")
        report("API (REST pages)", seconds, off(table, rows), N)

        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        sqs = session.client("sqs", endpoint_url=MOTO)
        url = sqs.create_queue(QueueName="exact-bench")["QueueUrl"]
        entries = []
        for start in range(0, N, PER_MESSAGE):
            body = "[" + ", ".join(record_text(r) for r in rows[start:start + PER_MESSAGE]) + "]"
            entries.append({"Id": str(len(entries) % 10), "MessageBody": body})
            if len(entries) == 10:
                sqs.send_message_batch(QueueUrl=url, Entries=entries)
                entries = []
        if entries:
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        env = {"AWS_ENDPOINT_URL": MOTO, "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing",
               "AWS_SECRET_ACCESS_KEY": "testing"}
        seconds, table = run(tmp / "queue", f"q:\n  kind: sqs\n  queue_url: {url}\n",
                             "  connection: q\n  queue: {wait: 1s, max_messages: 1000000}\n", env)
        report("queue (moto SQS)", seconds, off(table, rows), N)


main()
