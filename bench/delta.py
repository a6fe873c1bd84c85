"""Delta Lake benchmark (bench/run --delta), on the orders shape (5M rows by default):

1. a full day-partitioned load as a Delta table against the same load as plain Parquet;
2. 1% of the rows updated in PostgreSQL, then a `merge` run against a full reload
   (Delta) of the same table — twice: the newest 1% of the orders (what changes in an
   orders table: their partitions are the last days'), and 1% scattered over every day
   (every file of the table holds a changed row, so any copy-on-write merge rewrites
   all of them);
3. the same merge by the deltalake package (`DeltaTable.merge`, delta-rs's Python
   binding) from the same changed rows, read from PostgreSQL the same way, on a copy of
   the same table;
4. `sluice optimize` of 30 days × 288 small files per day, against deltalake's
   `optimize.compact()` on a copy.

Each in interleaved rounds; prints walls (median), CPU, peak RSS and the ratios.

Usage: delta.py --bin SLUICE --url POSTGRES_URL --work DIR [--rows N] [--rounds 3]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

from extract import ORDERS
from measure import median, timed_cpu

LIMIT = "256MiB"

PY_MERGE = """
import sys, time, psycopg, pyarrow as pa
from deltalake import DeltaTable
url, table, lo = sys.argv[1:4]
with psycopg.connect(url) as conn:
    cur = conn.execute(
        "SELECT id, customer_id, status, amount, currency, quantity, discount, is_gift, note, created_at, "
        "updated_at, payload::text AS payload, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS dt "
        "FROM public.orders WHERE updated_at > %s", [lo])
    names = [d.name for d in cur.description]
    rows = cur.fetchall()
target = DeltaTable(table)
schema = target.schema().to_arrow()
columns = list(zip(*rows)) if rows else [[] for _ in names]
source = pa.table({n: pa.array(list(c), type=pa.schema(schema).field(n).type) for n, c in zip(names, columns)})
metrics = (target.merge(source, predicate="t.id = s.id", source_alias="s", target_alias="t")
           .when_matched_update_all().when_not_matched_insert_all().execute())
print(metrics["num_target_rows_updated"], metrics["num_target_files_added"])
"""

PY_SMALL_FILES = """
import sys, datetime as dt, pyarrow as pa
from deltalake import write_deltalake
table, days, per_day = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
day0 = dt.date(2024, 5, 1)
for slot in range(per_day):
    n = days * 20
    ids = [slot * n + i for i in range(n)]
    write_deltalake(table, pa.table({
        "id": pa.array(ids, pa.int64()),
        "amount": pa.array([i * 0.5 for i in ids], pa.float64()),
        "note": pa.array([f"five minute slot {slot}" for _ in ids]),
        "dt": pa.array([(day0 + dt.timedelta(days=i % days)).isoformat() for i in range(n)]),
    }), mode="append", partition_by=["dt"])
"""

PY_COMPACT = """
import sys
from deltalake import DeltaTable
print(DeltaTable(sys.argv[1]).optimize.compact()["numFilesRemoved"])
"""


class Bench:
    def __init__(self, args):
        self.args, self.work = args, args.work
        self.jobs = os.path.join(self.work, "jobs")
        os.makedirs(self.jobs, exist_ok=True)
        self.write("connections.yaml", f'bench:\n  kind: postgres\n  url: "{args.url}"\n')
        self.lake = os.path.join(self.work, "lake")

    def write(self, name, text):
        with open(os.path.join(self.jobs, name), "w") as f:
            f.write(text)

    def job(self, name, mode, fmt, extra=""):
        self.write(f"{name}.yaml",
                   f"job: {name}\nsource:\n  connection: bench\n  table: public.orders\n  primary_key: [id]\n{extra}"
                   f"mode: {mode}\ntransform: SELECT *, date_format(created_at, '%Y-%m-%d') AS dt FROM source\n"
                   f"target:\n  table: {name}\n  partition_by: [dt]\n  format: {fmt}\n")

    def sluice(self, *args):
        wall, rss, out, cpu = timed_cpu(
            [self.args.bin, "--jobs", self.jobs, "--lake", self.lake, "--state", os.path.join(self.work, "state"),
             "--log-format", "json", *args], env={"SLUICE_MEMORY_LIMIT": LIMIT})
        return wall, cpu, rss, out

    def run(self, job):
        wall, cpu, rss, out = self.sluice("run", "--output", "json", "--job", job)
        summary = json.loads(out)
        if summary["status"] != "committed":
            sys.exit(f"sluice {job} did not commit: {out}")
        return wall, cpu, rss, summary

    def fresh(self, *tables):
        """No trace of earlier runs: the tables, their manifests, the state."""
        for t in tables:
            shutil.rmtree(os.path.join(self.lake, t), ignore_errors=True)
            shutil.rmtree(os.path.join(self.lake, "_sluice", "manifests", t), ignore_errors=True)
        shutil.rmtree(os.path.join(self.work, "state"), ignore_errors=True)

    def rounds(self, tools):
        results = {name: [] for name in tools}
        for round_ in range(self.args.rounds):
            for name, go in tools.items():
                wall, cpu, rss = go()[:3]
                results[name].append((wall, cpu, rss))
                print(f"round {round_ + 1}: {name}: {wall:.2f} s, CPU {cpu:.2f} s, {rss:.0f} MiB", flush=True)
        return {n: (median([r[0] for r in rs]), median([r[1] for r in rs]), max(r[2] for r in rs))
                for n, rs in results.items()}

    def table(self, title, summary, base):
        print(f"\n{title} (median of {self.args.rounds} interleaved rounds; peak RSS: the largest)")
        print(f"| tool | wall s | ÷ {base} | CPU s | peak RSS |")
        print("|---|---|---|---|---|")
        for name, (wall, cpu, rss) in summary.items():
            held = " ✓" if rss <= 256 else " ✗ over 256 MiB"
            print(f"| {name} | {wall:.2f} | {wall / summary[base][0]:.2f} | {cpu:.2f} | {rss:.0f} MiB{held} |")
        sys.stdout.flush()

    def load(self):
        self.job("load_parquet", "full", "parquet")
        self.job("load_delta", "full", "delta")

        def go(job):
            def f():
                self.fresh(job)
                return self.run(job)
            return f

        summary = self.rounds({"Parquet (full load)": go("load_parquet"), "Delta (full load)": go("load_delta")})
        self.table(f"1. full day-partitioned load of {self.args.rows:,} orders", summary, "Parquet (full load)")

    def merge(self, label, where):
        rows, url = self.args.rows, self.args.url
        # The merge job's table, loaded once (a merge run with an empty table), kept as a
        # template every round starts from.
        self.job("orders_merge", "merge", "delta", extra="  cursor: updated_at\n")
        self.job("orders_full", "full", "delta")
        self.fresh("orders_merge")
        self.run("orders_merge")
        template, state = os.path.join(self.work, "template"), os.path.join(self.work, "template-state")
        shutil.rmtree(template, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)
        shutil.copytree(os.path.join(self.lake, "orders_merge"), template)
        shutil.copytree(os.path.join(self.work, "state"), state)
        lo = subprocess.run(["psql", "-qAt", url, "-c", "SELECT max(updated_at) FROM orders"],
                            capture_output=True, text=True, check=True).stdout.strip()
        changed = rows // 100
        print(f"==> updating {changed:,} rows (1%, {label}) in PostgreSQL", flush=True)
        subprocess.run(["psql", "-q", url, "-c",
                        f"UPDATE orders SET amount = amount + 1, updated_at = now() WHERE {where}"], check=True)

        def restore(table="orders_merge"):
            """The loaded table as the template holds it (a full reload overwrites a copy
            of it: the same table, its own job)."""
            self.fresh(table)
            shutil.copytree(template, os.path.join(self.lake, table))
            shutil.copytree(state, os.path.join(self.work, "state"))

        def sluice_merge():
            restore()
            wall, cpu, rss, summary = self.run("orders_merge")
            if summary["rows"] != changed or summary["delta"]["matched"] != changed:
                sys.exit(f"the merge did not update {changed} rows: {summary}")
            return wall, cpu, rss

        def sluice_full():
            restore("orders_full")
            return self.run("orders_full")[:3]

        def python_merge():
            restore()
            wall, rss, out, cpu = timed_cpu([sys.executable, "-c", PY_MERGE, url,
                                             os.path.join(self.lake, "orders_merge"), lo])
            if int(out.split()[0]) != changed:
                sys.exit(f"deltalake's merge updated {out.split()[0]} rows, not {changed}")
            return wall, cpu, rss

        summary = self.rounds({"sluice full reload (Delta)": sluice_full, "sluice merge": sluice_merge,
                               "deltalake DeltaTable.merge": python_merge})
        self.table(f"2–3. 1% of {rows:,} orders updated ({label}): merge against a full reload and deltalake's merge",
                   summary, "sluice full reload (Delta)")
        print(f"merge ÷ deltalake's merge: {summary['sluice merge'][0] / summary['deltalake DeltaTable.merge'][0]:.2f}")

    def optimize(self):
        days, per_day = 30, 288
        template = os.path.join(self.work, "small-template")
        shutil.rmtree(template, ignore_errors=True)
        print(f"==> writing {days} days × {per_day} small files (deltalake appends)", flush=True)
        subprocess.run([sys.executable, "-c", PY_SMALL_FILES, template, str(days), str(per_day)], check=True)
        self.write("small.yaml", "job: small\nsource:\n  connection: bench\n  table: public.orders\n  cursor: updated_at\n"
                                 "mode: incremental\ntarget:\n  table: small\n  partition_by: [dt]\n  format: delta\n")
        table = os.path.join(self.lake, "small")

        def restore():
            shutil.rmtree(table, ignore_errors=True)
            shutil.copytree(template, table)

        def sluice_optimize():
            restore()
            wall, cpu, rss, out = self.sluice("optimize", "--job", "small")
            if f"packs {days * per_day} files into {days}" not in out:
                sys.exit(f"optimize did not pack every file: {out}")
            return wall, cpu, rss

        def python_compact():
            restore()
            wall, rss, out, cpu = timed_cpu([sys.executable, "-c", PY_COMPACT, table])
            return wall, cpu, rss

        summary = self.rounds({"deltalake optimize.compact()": python_compact, "sluice optimize": sluice_optimize})
        self.table(f"4. optimize of {days} days × {per_day} small files", summary, "deltalake optimize.compact()")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    bench = Bench(args)
    print(f"==> filling orders with {args.rows} rows", flush=True)
    subprocess.run(["psql", "-q", args.url, "-v", "ON_ERROR_STOP=1", "-c", "SET client_min_messages = warning",
                    "-c", "DROP TABLE IF EXISTS orders", "-c", ORDERS.replace("{rows}", str(args.rows)),
                    "-c", "VACUUM ANALYZE orders"], check=True)
    bench.load()
    rows = args.rows
    bench.merge("the newest", f"id > {rows - rows // 100}")
    bench.merge("scattered over every day", "id % 100 = 7")
    bench.optimize()


if __name__ == "__main__":
    main()
