"""Feed records land exactly as sent, read back by pyarrow and DuckDB.

Doubles (random bit patterns, coordinates, subnormals, -0.0, the extremes), each in its
shortest form (Python's repr, JavaScript's JSON.stringify) and with 17 significant
digits; decimals beyond a double's precision; integers to the ends of 64 bits — through
each JSON feed: the queue (moto's SQS, raw and in SNS envelopes), a partner's API (an
HTTP app started here) and files (NDJSON in a folder). And the one typing rule: text
where a number belongs goes to the quarantine table unless the job coerces it.
"""

import json
import os
import random
import struct
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from conftest import JsonPages, Workspace, serving

RECORD = """  record:
    - {name: id, type: bigint, nullable: false}
    - {name: v, type: double}
    - {name: f, type: real}
    - {name: d, type: "decimal(38,10)"}
    - {name: n, type: bigint}
"""


def doubles(rng, count):
    """Finite doubles of every kind."""
    fixed = [0.0, -0.0, 5e-324, -5e-324, 2.2250738585072009e-308, 2.2250738585072014e-308,
             1.7976931348623157e308, -1.7976931348623157e308, 0.1, 0.30000000000000004,
             9007199254740993.0, 52.520008, 13.404954]
    out = list(fixed)
    while len(out) < count:
        kind = rng.random()
        if kind < 0.4:
            v = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
            if v != v or v in (float("inf"), float("-inf")):
                continue
        elif kind < 0.7:
            v = rng.uniform(-180, 180)  # a coordinate
        elif kind < 0.8:
            v = rng.uniform(0, 1) * 5e-324 * rng.randrange(1, 1 << 52)  # a subnormal
        else:
            v = rng.uniform(-1e6, 1e6)
        out.append(v)
    return out


def text_of(v, i):
    """The shortest form for even records, 17 significant digits for odd ones."""
    return repr(v) if i % 2 == 0 else "%.17g" % v


def corpus(seed, count):
    rng = random.Random(seed)
    rows = []
    for i, v in enumerate(doubles(rng, count)):
        digits = "".join(rng.choice("0123456789") for _ in range(28)).lstrip("0") or "0"
        d = f"{'-' if rng.random() < 0.5 else ''}{digits}.{rng.randrange(10**10):010d}"
        n = rng.choice([rng.randrange(-(1 << 63), 1 << 63), (1 << 63) - 1, -(1 << 63), 0])
        f = struct.unpack("<f", struct.pack("<f", rng.uniform(-1e5, 1e5)))[0]
        rows.append({"id": i, "v": v, "vt": text_of(v, i), "f": f, "ft": repr(f), "d": d, "n": n})
    return rows


def record_text(r):
    return f'{{"id": {r["id"]}, "v": {r["vt"]}, "f": {r["ft"]}, "d": {r["d"]}, "n": {r["n"]}}}'


def bits(v):
    return struct.unpack("<Q", struct.pack("<d", v))[0]


def check_landed(table, rows):
    """Every value of `rows` in `table` as sent: pyarrow's reading, then DuckDB's."""
    arrow = ds.dataset(table, format="parquet").to_table().sort_by("id").to_pylist()
    assert len(arrow) == len(rows)
    for got, sent in zip(arrow, rows):
        assert got["id"] == sent["id"]
        assert bits(got["v"]) == bits(sent["v"]), f"record {sent['id']}: {sent['vt']} landed as {got['v']!r}"
        assert struct.pack("<f", got["f"]) == struct.pack("<f", sent["f"]), f"record {sent['id']}: {sent['ft']}"
        assert got["d"] == Decimal(sent["d"]), f"record {sent['id']}: {sent['d']} landed as {got['d']}"
        assert got["n"] == sent["n"]
    con = duckdb.connect()
    got = con.execute(
        f"SELECT id, v, CAST(d AS VARCHAR), n FROM read_parquet('{table}/**/*.parquet') ORDER BY id").fetchall()
    assert [(r[0], bits(r[1]), Decimal(r[2]), r[3]) for r in got] == \
        [(r["id"], bits(r["v"]), Decimal(r["d"]), r["n"]) for r in rows]


def file_store(tmp_path, store):
    """A folder, or the ephemeral OpenSSH server scripts/test starts: the connection, the
    environment it needs and the folder whose `in/` its files are put in."""
    if store == "folder":
        root = tmp_path / "drop"
        return f"drop:\n  kind: folder\n  path: {root}\n", {}, root
    if not os.environ.get("SLUICE_TEST_SFTP_PORT"):
        pytest.fail("SLUICE_TEST_SFTP_* is not set: run scripts/test, which starts an ephemeral sshd")
    root = Path(os.environ["SLUICE_TEST_SFTP_ROOT"]) / tmp_path.name
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    connection = (f"drop:\n  kind: sftp\n  host: 127.0.0.1\n  port: {os.environ['SLUICE_TEST_SFTP_PORT']}\n"
                  f"  user: {os.environ['SLUICE_TEST_SFTP_USER']}\n  private_key: \"${{DROP_KEY}}\"\n"
                  f"  host_key: \"{os.environ['SLUICE_TEST_SFTP_HOST_KEY']}\"\n  path: {tmp_path.name}\n")
    return connection, {"DROP_KEY": Path(os.environ["SLUICE_TEST_SFTP_KEY"]).read_text()}, root


@pytest.mark.parametrize("store", ["folder", "sftp"])
def test_files_land_every_number_exactly(tmp_path, sluice_bin, store):
    rows = corpus(35, 4000)
    connection, env, root = file_store(tmp_path, store)
    ws = Workspace(tmp_path, sluice_bin, env=dict(os.environ, **env))
    drop = root / "in"
    drop.mkdir(parents=True, mode=0o777)
    (drop / "pings.ndjson").write_text("".join(record_text(r) + "\n" for r in rows))
    (drop / "pings.ndjson").chmod(0o666)
    (ws.jobs / "connections.yaml").write_text(connection)
    (ws.jobs / "exact.yaml").write_text(
        "job: exact\nsource:\n  connection: drop\n  files: {pattern: in/*.ndjson, stable_for: 0s}\n"
        + RECORD + "target:\n  table: exact\n")
    ws.sluice("run", "--job", "exact")
    check_landed(ws.table("exact"), rows)


class Partner(JsonPages):
    """A partner's API: `GET /records?page=N`, 500 records a page, its numbers written as
    the records' texts say."""

    rows = []

    def page(self, path):
        page = int(path.split("page=")[1].split("&")[0])
        chunk = self.rows[(page - 1) * 500:page * 500]
        return ('{"data": [' + ", ".join(record_text(r) for r in chunk) + "]}").encode()


def test_an_api_lands_every_number_exactly(tmp_path, sluice_bin):
    rows = corpus(36, 3000)
    Partner.rows = rows
    with serving(Partner) as port:
        ws = Workspace(tmp_path, sluice_bin)
        (ws.jobs / "connections.yaml").write_text(f"partner:\n  kind: http\n  base_url: http://127.0.0.1:{port}\n")
        (ws.jobs / "exact.yaml").write_text(
            "job: exact\nsource:\n  connection: partner\n  request:\n    path: records\n"
            "    records: $.data\n    paginate: {kind: page, param: page}\n"
            + RECORD + "target:\n  table: exact\n")
        ws.sluice("run", "--job", "exact")
    check_landed(ws.table("exact"), rows)


def test_a_queue_lands_every_number_exactly_raw_and_through_sns(tmp_path, sluice_bin, aws, sluice_env, unique):
    rows = corpus(37, 1200)
    sqs, sns = aws("sqs"), aws("sns")
    url = sqs.create_queue(QueueName=f"exact-{unique}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    topic = sns.create_topic(Name=f"exact-{unique}")["TopicArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    for start in range(0, len(rows), 20):
        body = "[" + ", ".join(record_text(r) for r in rows[start:start + 20]) + "]"
        if start % 40 == 0:
            sqs.send_message(QueueUrl=url, MessageBody=body)
        else:
            sns.publish(TopicArn=topic, Message=body)
    ws = Workspace(tmp_path, sluice_bin, env=sluice_env)
    (ws.jobs / "connections.yaml").write_text(f"gps:\n  kind: sqs\n  queue_url: {url}\n")
    (ws.jobs / "exact.yaml").write_text(
        "job: exact\nsource:\n  connection: gps\n  queue: {wait: 1s}\n" + RECORD + "target:\n  table: exact\n")
    ws.sluice("run", "--job", "exact")
    check_landed(ws.table("exact"), rows)


@pytest.mark.parametrize("coerce", [None, "[heading, fuel, ok]", "true"])
def test_text_where_a_number_belongs_is_quarantined_unless_the_job_coerces(tmp_path, sluice_bin, coerce):
    ws = Workspace(tmp_path, sluice_bin)
    drop = tmp_path / "drop" / "in"
    drop.mkdir(parents=True)
    (drop / "a.ndjson").write_text(
        '{"id": 1, "heading": 90, "fuel": 12.5, "ok": true}\n'
        '{"id": 2, "heading": "090", "fuel": 12.5, "ok": true}\n'
        '{"id": 3, "heading": 45, "fuel": "12.50", "ok": true}\n'
        '{"id": 4, "heading": 45, "fuel": 1, "ok": "true"}\n'
        '{"id": 5, "heading": 90.5, "fuel": 1, "ok": false}\n')
    (ws.jobs / "connections.yaml").write_text(f"drop:\n  kind: folder\n  path: {tmp_path / 'drop'}\n")
    (ws.jobs / "typed.yaml").write_text(
        "job: typed\nsource:\n  connection: drop\n  files: {pattern: in/*.ndjson, stable_for: 0s}\n"
        + (f"  coerce: {coerce}\n" if coerce else "")
        + "  record:\n    - {name: id, type: bigint, nullable: false}\n    - {name: heading, type: int}\n"
        "    - {name: fuel, type: \"decimal(5,2)\"}\n    - {name: ok, type: boolean}\n"
        "target:\n  table: typed\n")
    ws.sluice("run", "--job", "typed")
    landed = ds.dataset(ws.table("typed"), format="parquet").to_table().sort_by("id").to_pylist()
    quarantined = ds.dataset(ws.table("typed__quarantine"), format="parquet").to_table().to_pylist()
    errors = " | ".join(q["_error"] for q in quarantined)
    # 90.5 is a number but not an integer: it never fits an int.
    assert "90.5 is not an integer" in errors
    if coerce:
        assert [(r["id"], r["heading"], str(r["fuel"]), r["ok"]) for r in landed] == [
            (1, 90, "12.50", True), (2, 90, "12.50", True), (3, 45, "12.50", True), (4, 45, "1.00", True)]
        assert len(quarantined) == 1
    else:
        assert [r["id"] for r in landed] == [1]
        assert len(quarantined) == 4
        assert 'field `heading`: a string "090" does not fit' in errors, errors
        assert 'field `fuel`: a string "12.50" does not fit' in errors, errors
        assert 'field `ok`: a string "true" does not fit' in errors, errors
        assert all("source.coerce" in q["_error"] for q in quarantined if "a string" in q["_error"])


def test_json_functions_read_nested_values_in_a_transform_and_in_sluice_query(tmp_path, sluice_bin):
    ws = Workspace(tmp_path, sluice_bin)
    drop = tmp_path / "drop" / "in"
    drop.mkdir(parents=True)
    (drop / "a.ndjson").write_text(
        '{"id": 1, "device": {"id": "ü-1", "fw": {"major": 3}}, "position": {"coordinates": [13.404954, 52.520008]}}\n'
        '{"id": 2, "device": {"id": "é-2", "fw": {"major": 4}}, "position": {"coordinates": [-0.1275, 51.507222]}}\n')
    (ws.jobs / "connections.yaml").write_text(f"drop:\n  kind: folder\n  path: {tmp_path / 'drop'}\n")
    (ws.jobs / "nested.yaml").write_text(
        "job: nested\nsource:\n  connection: drop\n  files: {pattern: in/*.ndjson, stable_for: 0s}\n"
        "  fields: {lat: '$.position.coordinates[1]', lon: '$.position.coordinates[0]'}\n"
        "  record:\n    - {name: id, type: bigint, nullable: false}\n    - {name: device, type: string}\n"
        "    - {name: lat, type: double}\n    - {name: lon, type: double}\n"
        "transform: |\n  SELECT id, json_get_str(device, 'id') AS device_id,\n"
        "    json_get_int(device, 'fw', 'major') AS firmware, device->>'id' AS by_operator, lat, lon FROM source\n"
        "target:\n  table: nested\n")
    ws.sluice("run", "--job", "nested")
    rows = ds.dataset(ws.table("nested"), format="parquet").to_table().sort_by("id").to_pylist()
    assert [(r["device_id"], r["firmware"], r["by_operator"], r["lat"], r["lon"]) for r in rows] == [
        ("ü-1", 3, "ü-1", 52.520008, 13.404954), ("é-2", 4, "é-2", 51.507222, -0.1275)]
    out = ws.sluice("query", "SELECT json_length(json_get_json('{\"a\": [1, 2, 3]}', 'a')) AS n")
    assert "3" in out, out
