"""A model-based test of change capture (`source.changes`, issue 38) from a real
PostgreSQL and a real MariaDB into Delta tables.

Random steps change a captured table (`items`) and an uncaptured one (`other`): inserts,
updates that move nothing a cursor could see, deletes, key moves, multi-row transactions
over both tables (some rolled back), now and then a truncate or an ADD COLUMN (NULL, no
default). The test keeps a model of `items` (what it committed to the database). After
each step the job runs until it says it has caught up; some runs are first killed with
-9 at a failpoint of the Delta commit (before the files are committed, between the Delta
commit and the state, after the state) and run again. Then the lake table is read by two
readers sluice did not write — deltalake and DuckDB's delta extension — and each must
equal the model, which must equal the source read back: no change lost, none doubled.

Seeded and repeatable: SLUICE_CDC_MODEL_SEED (default 38) and SLUICE_CDC_MODEL_STEPS
(default 6; `bench/cdc --model STEPS --seed N` runs a larger one). A failure names the
database, the seed and the step.
"""

import json
import os
import random
import urllib.parse
from decimal import Decimal
from pathlib import Path

import psycopg
import pymysql
import pytest
from deltalake import DeltaTable

from conftest import Workspace, duckdb_with_delta

JOB = "items_changes"
FAILPOINTS = ["written", "prepared", "delta-committed", "committed"]
WORDS = ["naïve", "東京", "quote ' \" \\", "tab\there", "", "plain", "🚚 truck", "e\u0301"]
CENT = Decimal("0.01")


class Db:
    """One database, through its Python driver: statements in one transaction."""

    def __init__(self, kind, url):
        self.kind, self.url = kind, url

    def connect(self):
        if self.kind == "postgres":
            return psycopg.connect(self.url)
        u = urllib.parse.urlparse(self.url)
        return pymysql.connect(host=u.hostname, port=u.port or 3306, user=urllib.parse.unquote(u.username or ""),
                               password=urllib.parse.unquote(u.password or ""), database=u.path.lstrip("/"),
                               charset="utf8mb4")

    def run(self, statements, commit=True):
        conn = self.connect()
        try:
            cur = conn.cursor()
            for sql, args in statements:
                cur.execute(sql, args)
            if commit:
                conn.commit()
            else:
                conn.rollback()
        finally:
            conn.close()

    def rows(self, columns):
        conn = self.connect()
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT {', '.join(columns)} FROM items ORDER BY id")
            return [canon(columns, r) for r in cur.fetchall()]
        finally:
            conn.close()


def canon(columns, values):
    """A row in a form every reader's values compare in."""
    out = []
    for name, v in zip(columns, values):
        if isinstance(v, Decimal):
            v = format(v.quantize(CENT), "f")
        out.append(v)
    return tuple(out)


SCHEMA = {
    "postgres": ["CREATE TABLE items (id bigint PRIMARY KEY, grp int, note text, amount numeric(12,2))",
                 "ALTER TABLE items REPLICA IDENTITY FULL",
                 "CREATE TABLE other (id bigint PRIMARY KEY, note text)"],
    "mariadb": ["CREATE TABLE items (id BIGINT PRIMARY KEY, grp INT, note VARCHAR(200), amount DECIMAL(12,2)) "
                "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
                "CREATE TABLE other (id BIGINT PRIMARY KEY, note VARCHAR(200)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"],
}


class Source:
    """Random changes, written to the database and to the model alike."""

    def __init__(self, db, rng):
        self.db, self.rng = db, rng
        self.items = {}  # id → row dict
        self.columns = ["id", "grp", "note", "amount"]
        self.next_id, self.added = 0, 0

    def value(self, column):
        rng = self.rng
        if column == "note":
            return rng.choice(WORDS + [None])
        if column == "amount":
            return rng.choice([None, Decimal(rng.randint(-10 ** 11, 10 ** 11)) / 100])
        return rng.choice([None, rng.randint(-2 ** 31, 2 ** 31 - 1)])

    def new_id(self):
        self.next_id += 1
        return self.next_id * 7 + self.rng.randrange(7)

    def step(self, step):
        """One step: a few transactions. Returns whether `items` changed."""
        rng, changed = self.rng, False
        if step > 0 and rng.random() < 0.08:
            self.db.run([("TRUNCATE TABLE items" if self.db.kind == "mariadb" else "TRUNCATE items", None)])
            self.items.clear()
            changed = True
        if step > 0 and rng.random() < 0.12 and self.added < 3:
            self.added += 1
            column = f"c{self.added}"
            kind = "INT NULL" if self.db.kind == "mariadb" else "int"
            self.db.run([(f"ALTER TABLE items ADD COLUMN {column} {kind}", None)])
            self.columns.append(column)
            for row in self.items.values():
                row[column] = None
        for _ in range(rng.randint(1, 4)):
            changed |= self.transaction(step)
        return changed

    def transaction(self, step):
        rng = self.rng
        items = {k: dict(v) for k, v in self.items.items()}
        statements = []
        for _ in range(rng.randint(3 if step == 0 else 0, 15)):
            row = {c: self.value(c) for c in self.columns if c != "id"}
            row["id"] = self.new_id()
            statements.append(self.insert(row))
            items[row["id"]] = row
        for key in rng.sample(sorted(items), min(len(items), rng.randint(0, 10))):
            if key not in items:
                continue
            roll = rng.random()
            if roll < 0.25:
                statements.append(("DELETE FROM items WHERE id = %s", [key]))
                del items[key]
            elif roll < 0.4:
                new = self.new_id()
                statements.append(("UPDATE items SET id = %s WHERE id = %s", [new, key]))
                items[new] = dict(items.pop(key), id=new)
            else:
                column = rng.choice([c for c in self.columns if c != "id"])
                value = self.value(column)
                statements.append((f"UPDATE items SET {column} = %s WHERE id = %s", [value, key]))
                items[key][column] = value
        if rng.random() < 0.5:
            statements.append(("INSERT INTO other VALUES (%s, %s)", [self.new_id(), rng.choice(WORDS)]))
        if not statements:
            return False
        rolled_back = rng.random() < 0.15
        self.db.run(statements, commit=not rolled_back)
        if rolled_back:
            return False
        touched = items != self.items
        self.items = items
        return touched

    def insert(self, row):
        columns = list(row)
        return (f"INSERT INTO items ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})",
                [row[c] for c in columns])

    def expected(self):
        return sorted(canon(self.columns, [r.get(c) for c in self.columns]) for r in self.items.values())


def lake(ws, duck, columns):
    """The lake table by both readers, which must agree; a column the lake has not
    got yet (added in the source, no change carried it) reads as NULL."""
    path = ws.table(JOB)
    if not (Path(path) / "_delta_log").exists():
        return []  # no run has had a row to commit yet
    table = DeltaTable(path).to_pyarrow_table()
    have = [c for c in columns if c in table.column_names]
    pick = lambda row: [row.get(c) for c in columns]  # noqa: E731
    by_delta = sorted(canon(columns, pick(dict(zip(have, r))))
                      for r in zip(*[table.column(c).to_pylist() for c in have]))
    cur = duck.sql(f"SELECT {', '.join(chr(34) + c + chr(34) for c in have)} FROM delta_scan('{path}')")
    by_duck = sorted(canon(columns, pick(dict(zip(have, r)))) for r in cur.fetchall())
    assert by_delta == by_duck, f"deltalake and DuckDB read different rows:\n{diff(by_delta, by_duck)}"
    return by_delta


def diff(a, b):
    only_a = [r for r in a if r not in b][:5]
    only_b = [r for r in b if r not in a][:5]
    return f"  only in the first ({len(a)} rows): {only_a}\n  only in the second ({len(b)} rows): {only_b}"


def caught_up(ws):
    """Runs the job until a run read up to the end it fixed (a run may end early: at
    max_changes, or before DDL on the table)."""
    for _ in range(6):
        summary = json.loads(ws.sluice("run", "--job", JOB, "--output", "json"))
        if summary.get("changes", {}).get("caught_up", True) or summary.get("status") == "up_to_date":
            return summary
    pytest.fail(f"the job did not catch up in 6 runs: {summary}")


@pytest.fixture
def mariadb_database(unique):
    """A new, empty MariaDB database on the server scripts/test starts; its URL."""
    admin = os.environ.get("SLUICE_TEST_MYSQL_URL")
    if not admin:
        pytest.fail("SLUICE_TEST_MYSQL_URL is not set: run scripts/test, which starts MariaDB")
    name = f"db_{unique}"
    server = Db("mariadb", admin)
    server.run([(f"CREATE DATABASE {name}", None)])
    yield admin.rsplit("/", 1)[0] + "/" + name
    server.run([(f"DROP DATABASE IF EXISTS {name}", None)])


@pytest.fixture
def postgres_cdc_database(postgres_database):
    """A PostgreSQL database whose replication slots go with it."""
    yield postgres_database
    with psycopg.connect(postgres_database, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE database = current_database()")


@pytest.mark.parametrize("kind", ["postgres", "mariadb"])
def test_random_changes_match_the_model(kind, request, tmp_path, sluice_bin):
    url = request.getfixturevalue("postgres_cdc_database" if kind == "postgres" else "mariadb_database")
    seed = int(os.environ.get("SLUICE_CDC_MODEL_SEED", "38"))
    steps = int(os.environ.get("SLUICE_CDC_MODEL_STEPS", "6"))
    print(f"change capture model test ({kind}): SLUICE_CDC_MODEL_SEED={seed} SLUICE_CDC_MODEL_STEPS={steps}")
    rng = random.Random(f"{seed}:{kind}")
    db = Db(kind, url)
    db.run([(s, None) for s in SCHEMA[kind]])
    ws = Workspace(tmp_path, sluice_bin)
    connection = "pg:\n  kind: postgres\n" if kind == "postgres" else "pg:\n  kind: mysql\n"
    (ws.jobs / "connections.yaml").write_text(f'{connection}  url: "{url}"\n')
    table = "public.items" if kind == "postgres" else "items"
    (ws.jobs / f"{JOB}.yaml").write_text(
        f"job: {JOB}\nsource:\n  connection: pg\n  table: {table}\n  primary_key: [id]\n  changes: {{}}\n"
        f"mode: merge\ntarget:\n  table: {JOB}\n  format: delta\n  on_schema_change: evolve\n")
    source, duck = Source(db, rng), duckdb_with_delta()
    step, kills = 0, []
    try:
        for step in range(steps):
            changed = source.step(step)
            if changed and rng.random() < 0.35:
                point = rng.choice(FAILPOINTS)
                ws.stopped_at(point, "run", "--job", JOB)
                kills.append(f"step {step} at {point}")
            caught_up(ws)
            want = source.expected()
            assert db.rows(source.columns) == want, "the source differs from the test's model (a test bug)"
            got = lake(ws, duck, source.columns)
            assert got == want, f"the lake differs from the source\n{diff(got, want)}"
    except AssertionError as e:
        pytest.fail(f"{kind}: {e}\nseed {seed}, step {step} of {steps}; kills so far: {kills}\n"
                    f"reproduce: SLUICE_CDC_MODEL_SEED={seed} SLUICE_CDC_MODEL_STEPS={steps} "
                    f"(scripts/test, or bench/cdc --model {steps} --seed {seed})")
