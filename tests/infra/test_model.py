"""A model-based test of runs from a real PostgreSQL into the lake's tables (issue 37).

Random steps change two source tables; after each step every job runs once (some runs
are killed with -9 first, at a failpoint or at a random moment, and run again), and
every job's table is read by two readers that sluice did not write — deltalake and
DuckDB's delta extension for a Delta table, pyarrow and DuckDB over the Hive folders for
a Parquet one — and compared with what an in-test model says the table holds. The model
knows only what the test wrote to PostgreSQL and the documented semantics of the modes:

- a table job's run reads the rows whose cursor is in `(watermark, greatest cursor]`,
  as they are at that moment (a row updated twice between runs is read once, as last
  written);
- `incremental` appends every row a run reads;
- `merge` makes a run's newest row of a key (greatest cursor, then `tie_break`) the
  table's row of that key, or deletes the key when that row is a delete; a key the
  source no longer has (its primary key changed) keeps the last row read of it (a
  cursor cannot see it go).

The sources: `items` (a composite text primary key; soft deletes and un-deletes,
partition moves, primary-key changes, rows updated twice between runs, cursor ties) and
`changes` (a change log keyed by a bigint at the ±2^63 edges, several rows of a key per
run with tied cursors, decided by `seq`). Values: numeric(20,4) at its limits,
timestamptz from 1900 on, bigint at both ends, unicode text, partition values in any
script and with the characters that mean something in a path (the empty string and NULL
read as NULL). The database runs in a +05:45 time zone.

Seeded and repeatable: SLUICE_MODEL_SEED (default 37) and SLUICE_MODEL_STEPS (default
8; `bench/run --model STEPS --seed N` runs a larger one). The operations depend only on
the seed; a kill at a random moment lands where the process happens to be, which the
invariants do not depend on. A failure names the seed, the step and the job.
"""

import os
import random
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from deltalake import DeltaTable

from conftest import Workspace, duckdb_with_delta

UTC = timezone.utc
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FOUR = Decimal("0.0001")
# The cursor of step s, slot j: in the past, strictly above every earlier step's.
T0 = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
SLOTS = 4

# Partition values: other scripts, spaces, `/`, `%` (and text that looks escaped), `=`,
# quotes, Hive's own escapes, the empty string and NULL. Not `+` (a form-decoding reader
# may read it as a space) nor the text NULL (DuckDB reads a folder `=NULL` as NULL).
REGIONS = ["São Paulo", "東京", "N/A", "a b", "100%", "%2F", "k=v", "it's", '"q"', "x:y?#[]^{}\\", "Ünïcödé 🚚", "", None]
K1 = ["α", "a b", "O'Brien", "東京", "", "x/y", "%", "🚚"]
WORDS = ["naïve", "עברית", "e\u0301", "tab\there", "line\nbreak", "quote ' \" \\", "", "plain"]
BIG = [-(2 ** 63), -(2 ** 63) + 1, -1, 0, 1, 2 ** 63 - 2, 2 ** 63 - 1]
AMOUNTS = [Decimal("9999999999999999.9999"), Decimal("-9999999999999999.9999"), Decimal("0.0001"),
           Decimal("-0.0001"), Decimal("0")]
TIMES = [datetime(1900, 1, 1, tzinfo=UTC), datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), EPOCH,
         datetime(2038, 1, 19, 3, 14, 8, tzinfo=UTC), datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)]

ITEMS = ["k1", "k2", "region", "big", "amount", "ts", "note", "updated_at", "deleted_at"]
CHANGES = ["seq", "kid", "changed_at", "op", "region", "amount", "note"]
TIMESTAMPS = {"ts", "updated_at", "deleted_at", "changed_at"}

SCHEMA = """
CREATE TABLE items (
  k1 text NOT NULL, k2 text NOT NULL, region text, big bigint, amount numeric(20,4), ts timestamptz,
  note text, updated_at timestamptz NOT NULL, deleted_at timestamptz, PRIMARY KEY (k1, k2));
CREATE TABLE changes (
  seq bigint PRIMARY KEY, kid bigint NOT NULL, changed_at timestamptz NOT NULL, op text NOT NULL, region text,
  amount numeric(20,4), note text);
"""

# job → (source table, cursor, mode, format, merge settings)
JOBS = {
    "items_parquet": ("items", "updated_at", "incremental", "parquet", ""),
    "items_delta": ("items", "updated_at", "incremental", "delta", ""),
    "items_merge": ("items", "updated_at", "merge", "delta",
                    "  primary_key: [k1, k2]\n  delete_when: deleted_at IS NOT NULL\n"),
    "changes_merge": ("changes", "changed_at", "merge", "delta",
                      "  primary_key: [kid]\n  tie_break: seq\n  delete_when: op = 'D'\n"),
}
FAILPOINTS = {"parquet": ["written", "committed"],
              "delta": ["written", "prepared", "delta-committed", "committed"]}


def job_yaml(name, table, cursor, mode, fmt, merge):
    return (f"job: {name}\nsource:\n  connection: pg\n  table: public.{table}\n  cursor: {cursor}\n{merge}"
            f"mode: {mode}\ntarget:\n  table: {name}\n  format: {fmt}\n  partition_by: [region]\n")


def slot(step, j):
    return T0 + timedelta(seconds=step * 10 + j, microseconds=j * 7)


class Model:
    """The sources as the test wrote them, and each job's table as the modes make it."""

    def __init__(self):
        self.items = {}  # (k1, k2) → row dict
        self.changes = []  # row dicts
        self.watermark = {job: None for job in JOBS}
        self.lake = {job: ([] if JOBS[job][2] == "incremental" else {}) for job in JOBS}

    def window(self, job):
        """The rows the next run of `job` reads, and the watermark it commits."""
        table, cursor = JOBS[job][:2]
        rows = list(self.items.values()) if table == "items" else self.changes
        if not rows:
            return [], self.watermark[job]
        hi = max(r[cursor] for r in rows)
        lo = self.watermark[job]
        return [r for r in rows if (lo is None or r[cursor] > lo) and r[cursor] <= hi], hi

    def run(self, job):
        """What a completed run of `job` does to its table."""
        table, cursor, mode, _, _ = JOBS[job]
        read, self.watermark[job] = self.window(job)
        if mode == "incremental":
            self.lake[job].extend(dict(r) for r in read)
            return
        key = (lambda r: (r["k1"], r["k2"])) if table == "items" else (lambda r: r["kid"])
        newest = {}
        for r in read:
            rank = (r[cursor], r.get("seq", 0))
            if key(r) not in newest or rank > newest[key(r)][0]:
                newest[key(r)] = (rank, r)
        deleted = (lambda r: r["deleted_at"] is not None) if table == "items" else (lambda r: r["op"] == "D")
        for k, (_, r) in newest.items():
            if deleted(r):
                self.lake[job].pop(k, None)
            else:
                self.lake[job][k] = dict(r)

    def expected(self, job):
        rows = self.lake[job] if isinstance(self.lake[job], list) else list(self.lake[job].values())
        return sorted((canon(columns(job), [r[c] for c in columns(job)]) for r in rows), key=repr)


def columns(job):
    return ITEMS if JOBS[job][0] == "items" else CHANGES


def canon(names, values):
    """One row in a form every reader's values compare in: timestamps as microseconds,
    numerics at scale 4, a partition's empty string as NULL."""
    out = []
    for name, v in zip(names, values):
        if name == "region" and v == "":
            v = None
        if name in TIMESTAMPS and isinstance(v, datetime):
            v = (v if v.tzinfo else v.replace(tzinfo=UTC)) - EPOCH
            v = v // timedelta(microseconds=1)
        elif isinstance(v, Decimal):
            v = format(v.quantize(FOUR), "f")
        out.append(v)
    return tuple(out)


class Source:
    """Random changes, written to PostgreSQL and to the model alike."""

    def __init__(self, url, rng, model):
        self.url, self.rng, self.model = url, rng, model
        self.next_key, self.seqs = 0, set()

    def value_row(self, step):
        rng = self.rng
        return {
            "region": rng.choice(REGIONS),
            "big": rng.choice(BIG + [rng.randint(-(2 ** 63), 2 ** 63 - 1)]),
            "amount": rng.choice(AMOUNTS + [Decimal(rng.randint(-10 ** 12, 10 ** 12)) / 10000, None]),
            "ts": rng.choice(TIMES + [T0 + timedelta(microseconds=rng.randint(-10 ** 15, 10 ** 15)), None]),
            "note": rng.choice(WORDS + [None]),
            "updated_at": slot(step, rng.randrange(SLOTS)),
        }

    def upsert(self, conn, key, row, old_key=None):
        values = [key[0], key[1], row["region"], row["big"], row["amount"], row["ts"], row["note"],
                  row["updated_at"], row["deleted_at"]]
        if old_key is None:
            conn.execute("INSERT INTO items VALUES (%s, %s, %s, %s::bigint, %s, %s, %s, %s, %s) "
                         "ON CONFLICT (k1, k2) DO UPDATE SET region = excluded.region, big = excluded.big, "
                         "amount = excluded.amount, ts = excluded.ts, note = excluded.note, "
                         "updated_at = excluded.updated_at, deleted_at = excluded.deleted_at", values)
        else:
            conn.execute("UPDATE items SET k1 = %s, k2 = %s, region = %s, big = %s::bigint, amount = %s, ts = %s, "
                         "note = %s, updated_at = %s, deleted_at = %s WHERE k1 = %s AND k2 = %s",
                         values + [old_key[0], old_key[1]])
            del self.model.items[old_key]
        self.model.items[key] = {"k1": key[0], "k2": key[1], **row}

    def new_key(self):
        self.next_key += 1
        return (self.rng.choice(K1), f"{self.rng.choice(WORDS)}#{self.next_key}")

    def step(self, step):
        rng, items = self.rng, self.model.items
        with psycopg.connect(self.url, autocommit=True) as conn:
            for _ in range(rng.randint(3 if step == 0 else 0, 12)):
                self.upsert(conn, self.new_key(), {**self.value_row(step), "deleted_at": None})
            keys = sorted(items, key=repr)
            for key in rng.sample(keys, min(len(keys), rng.randint(0, 10))):
                row = dict(items[key])
                roll = rng.random()
                changed = self.value_row(step)
                if roll < 0.15:  # soft delete (or again)
                    row.update(deleted_at=rng.choice(TIMES[1:]), updated_at=changed["updated_at"])
                elif roll < 0.3 and row["deleted_at"] is not None:  # un-delete
                    row.update(deleted_at=None, updated_at=changed["updated_at"])
                elif roll < 0.4:  # partition move
                    row.update(region=changed["region"], updated_at=changed["updated_at"])
                elif roll < 0.5:  # primary-key change: the old key goes unseen
                    self.upsert(conn, self.new_key(), {**changed, "deleted_at": row["deleted_at"]}, old_key=key)
                    continue
                else:
                    row.update({c: changed[c] for c in ("big", "amount", "ts", "note", "updated_at")})
                    if rng.random() < 0.3:  # updated twice before the next run
                        self.upsert(conn, key, {k: v for k, v in row.items() if k not in ("k1", "k2")})
                        second = self.value_row(step)
                        row.update(amount=second["amount"], updated_at=max(row["updated_at"], second["updated_at"]))
                self.upsert(conn, key, {k: v for k, v in row.items() if k not in ("k1", "k2")})
            kids = BIG + [rng.randint(-(2 ** 63), 2 ** 63 - 1) for _ in range(3)]
            for _ in range(rng.randint(2 if step == 0 else 0, 12)):
                seq = rng.randint(-(2 ** 62), 2 ** 62)
                if seq in self.seqs:
                    continue
                self.seqs.add(seq)
                values = self.value_row(step)
                row = {"seq": seq, "kid": rng.choice(kids), "changed_at": values["updated_at"],
                       "op": "D" if rng.random() < 0.2 else "U", "region": values["region"],
                       "amount": values["amount"], "note": values["note"]}
                conn.execute("INSERT INTO changes VALUES (%s::bigint, %s::bigint, %s, %s, %s, %s, %s)",
                             [row[c] for c in CHANGES])
                self.model.changes.append(row)


class Readers:
    """Each table by two readers, which must agree."""

    def __init__(self, ws):
        self.ws, self.duck = ws, duckdb_with_delta()

    def read(self, job):
        names, fmt, path = columns(job), JOBS[job][3], self.ws.table(job)
        select = ", ".join(f'epoch_us("{c}")' if c in TIMESTAMPS else f'"{c}"' for c in names)
        if fmt == "delta":
            arrow = DeltaTable(path).to_pyarrow_table(columns=names)
            duck = self.duck.sql(f"SELECT {select} FROM delta_scan('{path}')").fetchall()
            first, second = "deltalake", "DuckDB (delta_scan)"
        else:
            files = sorted(str(p) for p in Path(path).rglob("*.parquet"))
            partitioning = ds.partitioning(pa.schema([("region", pa.string())]), flavor="hive")
            arrow = ds.dataset(files, format="parquet", partitioning=partitioning,
                               partition_base_dir=path).to_table(columns=names)
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            select = select.replace('"region"', "NULLIF(\"region\", '__HIVE_DEFAULT_PARTITION__')")
            duck = self.duck.sql(f"SELECT {select} FROM read_parquet([{listed}], hive_partitioning = true, "
                                 "hive_types_autocast = false)").fetchall()
            first, second = "pyarrow (Hive folders)", "DuckDB (read_parquet)"
        by_arrow = sorted((canon(names, r) for r in zip(*[arrow.column(c).to_pylist() for c in names])), key=repr)
        by_duck = sorted((canon(names, r) for r in duck), key=repr)
        assert by_arrow == by_duck, f"{job}: {first} and {second} read different rows:\n{diff(by_arrow, by_duck)}"
        return by_arrow


def diff(a, b):
    only_a = [r for r in a if r not in b][:5]
    only_b = [r for r in b if r not in a][:5]
    return f"  only in the first ({len(a)} rows): {only_a}\n  only in the second ({len(b)} rows): {only_b}"


def killed(ws, rng, job, has_rows):
    """Starts a run of `job` and kills it with -9: at a failpoint of its format (when it
    has rows to commit, so that it reaches one), or at a random moment. Returns where."""
    fmt = JOBS[job][3]
    if rng.random() < 0.6 and has_rows:
        point = rng.choice(FAILPOINTS[fmt])
        ws.stopped_at(point, "run", "--job", job)
        return point
    delay = rng.uniform(0.0, 1.5)
    proc = subprocess.Popen(ws.args("run", "--job", job), env=ws.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return f"after {delay:.2f}s"


def test_random_steps_match_the_model(tmp_path, postgres_database, sluice_bin):
    seed = int(os.environ.get("SLUICE_MODEL_SEED", "37"))
    steps = int(os.environ.get("SLUICE_MODEL_STEPS", "8"))
    print(f"model test: SLUICE_MODEL_SEED={seed} SLUICE_MODEL_STEPS={steps}")
    rng = random.Random(seed)
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute(f"ALTER DATABASE {postgres_database.rsplit('/', 1)[1]} SET timezone TO 'Asia/Kathmandu'")
        conn.execute(SCHEMA)
    ws = Workspace(tmp_path, sluice_bin)
    (ws.jobs / "connections.yaml").write_text(f'pg:\n  kind: postgres\n  url: "{postgres_database}"\n')
    for name, spec in JOBS.items():
        (ws.jobs / f"{name}.yaml").write_text(job_yaml(name, *spec))
    model = Model()
    source = Source(postgres_database, rng, model)
    readers = Readers(ws)
    step, job, kills = 0, None, []
    try:
        for step in range(steps):
            source.step(step)
            for job in JOBS:
                if rng.random() < 0.2:
                    kills.append(f"step {step} {job} {killed(ws, rng, job, bool(model.window(job)[0]))}")
                ws.sluice("run", "--job", job)
                model.run(job)
                got, want = readers.read(job), model.expected(job)
                assert got == want, f"{job}: the lake differs from the model\n{diff(got, want)}"
    except AssertionError as e:
        pytest.fail(f"{e}\nseed {seed}, step {step} of {steps}, job {job}; kills so far: {kills}\n"
                    f"reproduce: SLUICE_MODEL_SEED={seed} SLUICE_MODEL_STEPS={steps} "
                    f"(scripts/test, or bench/run --model {steps} --seed {seed})")
