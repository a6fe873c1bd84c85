"""A feed's record key (`source.dedup`): a record re-sent under a new message, page or
file lands once — across runs, within a run, and across a kill -9 at every commit
point — read back by pyarrow and DuckDB."""

import json
import random
import subprocess

import duckdb
import pyarrow.dataset as ds
import pytest

from conftest import JsonPages, Workspace, serving

PING = """  dedup: {key: [device, seq], window: 7d}
  record:
    - {name: device, type: string, nullable: false}
    - {name: seq, type: bigint}
    - {name: lat, type: double}
"""


def ping(device, seq, rng):
    return {"device": device, "seq": seq, "lat": rng.uniform(-90, 90)}


def landed(ws, table="pings"):
    rows = ds.dataset(ws.table(table), format="parquet").to_table().to_pylist()
    con = duckdb.connect()
    count = con.execute(f"SELECT count(*) FROM read_parquet('{ws.table(table)}/**/*.parquet')").fetchone()[0]
    assert count == len(rows)
    return sorted((r["device"], r["seq"], r["lat"]) for r in rows)


def expected(records):
    """The first of each key, as sent."""
    seen = {}
    for r in records:
        seen.setdefault((r["device"], r["seq"]), r["lat"])
    return sorted((d, s, lat) for (d, s), lat in seen.items())


def file_job(ws, tmp_path):
    drop = tmp_path / "drop" / "in"
    drop.mkdir(parents=True, exist_ok=True)
    (ws.jobs / "connections.yaml").write_text(f"drop:\n  kind: folder\n  path: {tmp_path / 'drop'}\n")
    (ws.jobs / "pings.yaml").write_text(
        "job: pings\nsource:\n  connection: drop\n  files: {pattern: in/*.ndjson, stable_for: 0s}\n"
        + PING + "target:\n  table: pings\n")
    return drop


def write(drop, name, records):
    (drop / name).write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.mark.parametrize("failpoint", [None, "written", "committed"])
def test_files_repeating_records_land_once_across_runs_and_a_kill(tmp_path, sluice_bin, failpoint):
    rng = random.Random(7)
    ws = Workspace(tmp_path, sluice_bin)
    drop = file_job(ws, tmp_path)
    sent = []
    # A file with a repeat inside it, then files that repeat records of earlier ones, with
    # unicode devices and a NULL sequence (a value like any other).
    first = [ping(f"trück-{d}", s, rng) for d in range(5) for s in range(40)]
    first += first[:7] + [ping("ü", None, rng), ping("ü", None, rng)]
    write(drop, "a.ndjson", first)
    sent += first
    if failpoint:
        ws.stopped_at(failpoint, "run", "--job", "pings")
    ws.sluice("run", "--job", "pings")
    second = [ping(f"trück-{d}", s, rng) for d in range(3, 8) for s in range(30, 60)]
    write(drop, "b.ndjson", second)
    sent += second
    if failpoint:
        ws.stopped_at(failpoint, "run", "--job", "pings")
    ws.sluice("run", "--job", "pings")
    ws.sluice("run", "--job", "pings")
    assert landed(ws) == expected(sent)
    assert len(landed(ws)) == 5 * 40 + 1 + (5 * 30 - 2 * 10)


class Pages(JsonPages):
    """A partner's offset pages over a list that grows at its head while it is read:
    the records pushed down reappear on the next page."""

    records = []

    def page(self, path):
        offset = int(path.split("offset=")[1].split("&")[0])
        shifted = offset - (offset // 20) * 3  # each later page starts 3 records early
        chunk = self.records[max(shifted, 0):max(shifted, 0) + 20] if offset < len(self.records) + 60 else []
        return json.dumps({"data": chunk}).encode()


def test_an_api_repeating_records_across_pages_lands_each_once_in_every_full_run(tmp_path, sluice_bin):
    rng = random.Random(9)
    Pages.records = [ping(f"dev-{i % 7}", i, rng) for i in range(200)]
    with serving(Pages) as port:
        ws = Workspace(tmp_path, sluice_bin)
        (ws.jobs / "connections.yaml").write_text(f"partner:\n  kind: http\n  base_url: http://127.0.0.1:{port}\n")
        (ws.jobs / "pings.yaml").write_text(
            "job: pings\nsource:\n  connection: partner\n  request:\n    path: pings\n    records: $.data\n"
            "    paginate: {kind: offset, param: offset, limit_param: limit, limit: 20}\n"
            + PING + "target:\n  table: pings\n")
        # A full job replaces the table each run: its key deduplicates within the run,
        # and the second run's records are not taken for the first one's.
        for _ in range(2):
            summary = json.loads(ws.sluice("run", "--job", "pings", "--output", "json"))
            assert landed(ws) == expected(Pages.records)
            assert summary["record_duplicates"] > 0, summary


def test_pings_resent_in_new_messages_land_once(tmp_path, sluice_bin, aws, sluice_env, unique):
    rng = random.Random(10)
    sqs = aws("sqs")
    url = sqs.create_queue(QueueName=f"dedup-{unique}")["QueueUrl"]
    pings = [ping(f"trück-{i % 9}", i, rng) for i in range(300)]
    for start in range(0, 300, 10):
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(pings[start:start + 10]))
    ws = Workspace(tmp_path, sluice_bin, env=sluice_env)
    (ws.jobs / "connections.yaml").write_text(f"gps:\n  kind: sqs\n  queue_url: {url}\n")
    (ws.jobs / "pings.yaml").write_text(
        "job: pings\nsource:\n  connection: gps\n  queue: {wait: 1s}\n" + PING + "target:\n  table: pings\n")
    ws.sluice("run", "--job", "pings")
    # Devices re-send 40 pings, each in a new message, with 20 new ones.
    resent = rng.sample(pings, 40)
    fresh = [ping("new", i, rng) for i in range(20)]
    for r in resent + fresh:
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(r))
    summary = json.loads(ws.sluice("run", "--job", "pings", "--output", "json"))
    assert summary["record_duplicates"] == 40, summary
    assert landed(ws) == expected(pings + fresh)


def test_a_broken_record_key_is_the_rows_error(tmp_path, sluice_bin):
    ws = Workspace(tmp_path, sluice_bin)
    file_job(ws, tmp_path)
    text = (ws.jobs / "pings.yaml").read_text()
    (ws.jobs / "pings.yaml").write_text(text.replace("key: [device, seq], window: 7d", "key: [device, sequence], window: 1s"))
    done = subprocess.run(ws.args("jobs", "validate"), env=ws.env, capture_output=True, text=True)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "source.dedup.key[1]" in said and "`sequence` is not a field of the record" in said, said
    assert "source.dedup.window" in said, said
