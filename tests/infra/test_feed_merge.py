"""A feed merged into a Delta table (`mode: merge`): the newest record of each key wins,
by `source.cursor`; on a tie within a run the greatest record (by its other fields), and
a late, older version never replaces a newer one — read back by deltalake and DuckDB,
also after a kill -9 at the commit points."""

import json
import random
import subprocess

import pytest
from deltalake import DeltaTable

from conftest import Workspace, duckdb_with_delta

JOB = """job: tags
source:
  connection: drop
  files: {pattern: in/*.ndjson, stable_for: 0s}
  primary_key: [tag_id]
  cursor: updated_at
  record:
    - {name: tag_id, type: string, nullable: false}
    - {name: plate, type: string}
    - {name: balance, type: "decimal(10,2)"}
    - {name: updated_at, type: timestamp with time zone, nullable: false}
mode: merge
target:
  table: tags
  format: delta
"""


def at(second):
    return f"2024-05-01T10:{second // 60:02d}:{second % 60:02d}Z"


def model_merge(table, records):
    """The rule, independently: within a run, per key the greatest (updated_at, plate,
    balance); then it replaces the table's record unless that one is newer."""
    run = {}
    for r in records:
        rank = (r["updated_at"], r["plate"], r["balance"])
        if r["tag_id"] not in run or rank > run[r["tag_id"]][0]:
            run[r["tag_id"]] = (rank, r)
    for key, (_, r) in run.items():
        if key not in table or r["updated_at"] >= table[key]["updated_at"]:
            table[key] = r
    return table


def read(ws):
    rows = DeltaTable(ws.table("tags")).to_pyarrow_table().to_pylist()
    by_delta = sorted((r["tag_id"], r["plate"], str(r["balance"]), r["updated_at"].strftime("%Y-%m-%dT%H:%M:%SZ"))
                      for r in rows)
    con = duckdb_with_delta()
    by_duckdb = sorted(
        (t, p, str(b), u.strftime("%Y-%m-%dT%H:%M:%SZ")) for t, p, b, u in con.execute(
            f"SELECT tag_id, plate, balance, updated_at AT TIME ZONE 'UTC' FROM delta_scan('{ws.table('tags')}')").fetchall())
    assert by_delta == by_duckdb
    return by_delta


def expected(model):
    return sorted((r["tag_id"], r["plate"], f"{r['balance']:.2f}", r["updated_at"]) for r in model.values())


@pytest.mark.parametrize("failpoint", [None, "written", "committed"])
def test_a_feed_merge_keeps_the_newest_record_of_each_key(tmp_path, sluice_bin, failpoint):
    rng = random.Random(11)
    ws = Workspace(tmp_path, sluice_bin)
    drop = tmp_path / "drop" / "in"
    drop.mkdir(parents=True)
    (ws.jobs / "connections.yaml").write_text(f"drop:\n  kind: folder\n  path: {tmp_path / 'drop'}\n")
    (ws.jobs / "tags.yaml").write_text(JOB)
    model = {}

    def send(name, records):
        (drop / name).write_text("".join(json.dumps(r) + "\n" for r in records))
        model_merge(model, records)
        if failpoint:
            ws.stopped_at(failpoint, "run", "--job", "tags")
        ws.sluice("run", "--job", "tags")
        assert read(ws) == expected(model)

    tag = lambda i, second, plate=None: {  # noqa: E731
        "tag_id": f"tág-{i}", "plate": plate or f"B-{rng.randrange(1000)}",
        "balance": rng.randrange(-10000, 100000) / 100, "updated_at": at(second)}
    send("a.ndjson", [tag(i, 100) for i in range(50)])
    # Updates (newer), late old versions (older: they must not win), ties within the run
    # (same key and time: the greatest plate wins), new keys.
    send("b.ndjson", [tag(i, 200) for i in range(20)] + [tag(i, 50) for i in range(20, 30)]
         + [tag(i, 150, "A-1") for i in range(30, 35)] + [tag(i, 150, "Z-9") for i in range(30, 35)]
         + [tag(i, 150, "M-5") for i in range(30, 35)] + [tag(i, 100) for i in range(50, 60)])
    # A tie with the table (same time as committed): the later run's record wins.
    send("c.ndjson", [tag(i, 200, "Ü-0") for i in range(0, 5)] + [tag(i, 10) for i in range(40, 45)])
    assert len(read(ws)) == 60


def test_a_feed_merge_needs_its_order_and_a_delta_table(tmp_path, sluice_bin):
    ws = Workspace(tmp_path, sluice_bin)
    (ws.jobs / "connections.yaml").write_text(f"drop:\n  kind: folder\n  path: {tmp_path}\n")
    (ws.jobs / "tags.yaml").write_text(JOB.replace("  cursor: updated_at\n", "").replace("  format: delta\n", ""))
    done = subprocess.run(ws.args("jobs", "validate"), env=ws.env, capture_output=True, text=True)
    said = done.stdout + done.stderr
    assert done.returncode == 2, said
    assert "source.cursor" in said and "the newest record of a key wins" in said, said
    assert "target.format: delta" in said, said
