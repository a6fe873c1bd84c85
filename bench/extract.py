"""The extract benchmark (bench/run): full, day-partitioned ZSTD extracts of PostgreSQL
tables of several shapes, each measured against the floor (`COPY … (FORMAT binary)` to
/dev/null: PostgreSQL's own cost of producing the rows) and DuckDB's postgres scanner on
the same table, in interleaved rounds in one run. Per tool: wall (median), rows/s, the
ratios to COPY and to DuckDB, tool CPU seconds (user + system, median) and its ratio to
DuckDB's, peak RSS (the largest of the rounds, GNU time), output size and files.

Shapes (SHAPES below):
- narrow: 12 small columns (the freight orders bench/run has always measured);
- orders: 12 columns as a shop's orders table really is — numeric(12,2), char(3),
  smallint, float8 (25 % NULL), a text note (20 % NULL, 20–80 characters), two
  timestamptz, a jsonb of 4 keys;
- wide: 40 columns, text-heavy (26 text of 8–120 characters, a third nullable, plus
  integers, numerics, booleans, timestamps and a jsonb).

sluice runs as configured by default (a table of 1M rows or more is read in parts on one
snapshot), on one connection (`split: {parts: 1}`), and under each further memory limit
asked for (`--limits`); each sluice row says whether its peak RSS stayed within the limit.

Usage: extract.py --bin SLUICE --url POSTGRES_URL --work DIR --duckdb-ext FILE
                  [--rows N ...] [--shapes narrow,orders,wide] [--limits 128MiB]
                  [--rounds 3] [--quality] [--pg2parquet BIN] [--connectorx]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

from measure import median, timed_cpu

# Rows per shape when none are given: the wide table's rows are about eight times the
# narrow one's bytes.
DEFAULT_ROWS = {"narrow": 5_000_000, "orders": 5_000_000, "wide": 1_000_000}
DEFAULT_LIMIT = "256MiB"

NARROW = """
CREATE TABLE narrow (
  id bigint PRIMARY KEY, customer_id integer NOT NULL, truck_id integer, status text NOT NULL,
  weight_kg real, price numeric(10,2), pickup_city text, delivery_city text,
  distance_km double precision, express boolean, created_at timestamptz NOT NULL, updated_at timestamp);
INSERT INTO narrow
SELECT g, (g * 7919) % 200000, (g * 31) % 1500,
       (ARRAY['booked','picked_up','in_transit','delivered'])[1 + g % 4],
       (g % 24000) / 1.5, ((g * 13) % 400000) / 100.0,
       'city_' || (g % 120), 'city_' || ((g * 7) % 120), (g % 3000) * 1.5, g % 10 = 0,
       timestamptz '2023-01-01 00:00:00+00' + (g::double precision / {rows} * 500) * interval '1 day',
       timestamp '2023-01-01' + (g::double precision / {rows} * 500) * interval '1 day' + interval '3 hours'
FROM generate_series(1::bigint, {rows}) g;
"""

ORDERS = """
CREATE TABLE orders (
  id bigint PRIMARY KEY, customer_id integer NOT NULL, status text NOT NULL,
  amount numeric(12,2) NOT NULL, currency char(3) NOT NULL, quantity smallint NOT NULL,
  discount float8, is_gift boolean NOT NULL, note text,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, payload jsonb NOT NULL);
INSERT INTO orders
SELECT g, (g * 7919) % 500000,
       (ARRAY['new','paid','packed','shipped','delivered','returned'])[1 + g % 6],
       ((g * 7907) % 10000000) / 100.0,
       (ARRAY['EUR','USD','GBP'])[1 + g % 3],
       (1 + g % 20)::smallint,
       CASE WHEN g % 4 = 0 THEN NULL ELSE (g % 50) / 100.0 END,
       g % 17 = 0,
       CASE WHEN g % 5 = 0 THEN NULL
            ELSE substr('please leave the parcel at the back door and ring twice; gift wrap if possible, thanks!',
                        (1 + g % 7)::int, (20 + g % 61)::int) END,
       c, c + ((g % 720) * interval '1 hour'),
       jsonb_build_object('channel', (ARRAY['web','app','phone'])[1 + g % 3],
                          'coupon', CASE WHEN g % 7 = 0 THEN 'SPRING' || (g % 100) END,
                          'items', 1 + g % 9,
                          'ip', '10.' || (g % 256) || '.' || ((g / 256) % 256) || '.7')
FROM generate_series(1::bigint, {rows}) g,
     LATERAL (SELECT timestamptz '2023-01-01 00:00:00+00' + (g::double precision / {rows} * 500) * interval '1 day' AS c) t;
"""

TEXT = "'Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua'"


# The wide table's other columns: kind → (column i) → (type, value).
OTHER_KINDS = {
    "integer": lambda i: ("integer", f"((g * {i * 131}) % 1000000)::integer"),
    "numeric": lambda i: ("numeric(14,4)", f"((g * {i * 17}) % 100000000) / 10000.0"),
    "boolean": lambda i: ("boolean", f"(g + {i}) % 3 = 0"),
    "timestamptz": lambda i: ("timestamptz", f"c + ((g % {i * 10}) * interval '1 minute')"),
    "jsonb": lambda i: ("jsonb", f"jsonb_build_object('k', g % {i}, 'tag', 'tag_' || (g % 50), 'ok', g % 2 = 0)"),
}


def wide_sql():
    """40 columns: id, created_at, then 38 cycling through text (26, lengths 8–120, every
    third nullable), integer, numeric, boolean, timestamptz and one jsonb."""
    columns, values = ["id bigint PRIMARY KEY", "created_at timestamptz NOT NULL"], ["g", "c"]
    kinds = ["text"] * 26 + ["integer"] * 4 + ["numeric"] * 3 + ["boolean"] * 2 + ["timestamptz"] * 2 + ["jsonb"]
    order = [kinds[(i * 7) % len(kinds)] for i in range(len(kinds))]
    # (i * 7) mod 38 visits every index once: the kinds interleave.
    assert sorted(order) == sorted(kinds)
    texts = 0
    for i, kind in enumerate(order, start=1):
        name = f"c{i:02d}"
        if kind == "text":
            texts += 1
            length = 8 + (texts * 37) % 113
            value = f"substr({TEXT}, (1 + (g * {i}) % 7)::int, ({length} - g % 8)::int) || (g % {1000 * i})"
            if texts % 3 == 0:
                value = f"CASE WHEN (g + {i}) % 4 = 0 THEN NULL ELSE {value} END"
            columns.append(f"{name} text")
        else:
            sql_type, value = OTHER_KINDS[kind](i)
            columns.append(f"{name} {sql_type}")
        values.append(value)
    return (
        f"CREATE TABLE wide ({', '.join(columns)});\n"
        f"INSERT INTO wide SELECT {', '.join(values)}\n"
        "FROM generate_series(1::bigint, {rows}) g,\n"
        "     LATERAL (SELECT timestamptz '2023-01-01 00:00:00+00' + (g::double precision / {rows} * 500) * interval '1 day' AS c) t;\n"
    )


SHAPES = {
    "narrow": ("12 small columns", NARROW),
    "orders": ("12 columns: numeric, char, jsonb, nullable text", ORDERS),
    "wide": ("40 columns, text-heavy", wide_sql()),
}

QUALITY_RULES = """quality:
  - not_null: [customer_id, status, created_at]
  - accepted_values: {column: status, values: [booked, picked_up, in_transit, delivered]}
  - range: {column: price, min: 0, max: 100000}
  - sql: distance_km >= 0 OR distance_km IS NULL
  - row_count: {min: 1}
"""

DUCKDB = """
import sys, duckdb
ext, dsn, table, out = sys.argv[1:5]
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
con.execute(f"LOAD '{ext}'")
con.execute(f"ATTACH '{dsn}' AS pg (TYPE postgres, READ_ONLY)")
con.execute(f\"\"\"COPY (SELECT *, strftime(created_at, '%Y-%m-%d') AS dt FROM pg.public.{table})
               TO '{out}' (FORMAT parquet, PARTITION_BY (dt), COMPRESSION zstd)\"\"\")
"""

CONNECTORX = """
import os, sys
import connectorx as cx
import pyarrow.compute as pc
import pyarrow.dataset as ds
dsn, table, out = sys.argv[1:4]
t = cx.read_sql(dsn, f"SELECT * FROM public.{table}", return_type="arrow",
                partition_on="id", partition_num=os.cpu_count())
t = t.append_column("dt", pc.strftime(t["created_at"], format="%Y-%m-%d"))
ds.write_dataset(t, out, format="parquet", partitioning=["dt"], partitioning_flavor="hive",
                 file_options=ds.ParquetFileFormat().make_write_options(compression="zstd"),
                 max_partitions=4096, existing_data_behavior="overwrite_or_ignore")
"""


def mib(text):
    """`64MiB` / `1GiB` → MiB."""
    units = {"KiB": 1 / 1024, "MiB": 1, "GiB": 1024}
    for unit, factor in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    sys.exit(f"a memory limit is a number with KiB, MiB or GiB: {text}")


def output_of(path):
    """(bytes, parquet files) under path."""
    size = files = 0
    for root, _, names in os.walk(path):
        for name in names:
            size += os.path.getsize(os.path.join(root, name))
            files += name.endswith(".parquet")
    return size, files


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = args.work
        self.jobs = os.path.join(self.work, "jobs")
        os.makedirs(self.jobs, exist_ok=True)
        with open(os.path.join(self.jobs, "connections.yaml"), "w") as f:
            f.write(f'bench:\n  kind: postgres\n  url: "{args.url}"\n')

    def fill(self, shape, rows):
        print(f"==> filling {shape} with {rows} rows", flush=True)
        sql = SHAPES[shape][1].replace("{rows}", str(rows))
        subprocess.run(["psql", "-q", self.args.url, "-v", "ON_ERROR_STOP=1", "-c", "SET client_min_messages = warning",
                        "-c", f"DROP TABLE IF EXISTS {shape}", "-c", sql, "-c", f"VACUUM ANALYZE {shape}"], check=True)

    def job(self, shape, name, extra=""):
        with open(os.path.join(self.jobs, f"{name}.yaml"), "w") as f:
            f.write(f"job: {name}\nsource:\n  connection: bench\n  table: public.{shape}\n  primary_key: [id]\n{extra}"
                    "mode: full\ntransform: SELECT *, date_format(created_at, '%Y-%m-%d') AS dt FROM source\n"
                    f"target:\n  table: {name}\n  partition_by: [dt]\n")

    def sluice(self, name, rows, limit):
        def go():
            lake = os.path.join(self.work, "lake")
            shutil.rmtree(lake, ignore_errors=True)
            shutil.rmtree(os.path.join(self.work, "state"), ignore_errors=True)
            wall, rss, out, cpu = timed_cpu([self.args.bin, "--jobs", self.jobs, "--lake", lake, "--state",
                                       os.path.join(self.work, "state"), "--log-format", "json",
                                       "run", "--output", "json", "--job", name],
                                            env={"SLUICE_MEMORY_LIMIT": limit})
            summary = json.loads(out)
            if summary["status"] != "committed" or summary["rows"] != rows:
                sys.exit(f"sluice {name} did not commit {rows} rows: {out}")
            return wall, cpu, rss, output_of(os.path.join(lake, name))
        return go

    def tools(self, shape, rows):
        a, url, out = self.args, self.args.url, os.path.join(self.work, "out")

        def fresh(cmd):
            def go():
                shutil.rmtree(out, ignore_errors=True)
                wall, rss, _, cpu = timed_cpu(cmd)
                return wall, cpu, rss, output_of(out)
            return go

        tools = {
            "COPY binary → /dev/null (floor)": fresh(
                ["psql", "-qAt", url, "-o", "/dev/null", "-c", f"COPY (SELECT * FROM public.{shape}) TO STDOUT (FORMAT binary)"]),
            "DuckDB postgres scanner": fresh([sys.executable, "-c", DUCKDB, a.duckdb_ext, url, shape, out]),
        }
        if a.pg2parquet:
            tools["pg2parquet (one file)"] = fresh(
                [a.pg2parquet, "export", "--quiet", "-c", url, "-t", shape, "-o", out + ".parquet"])
        if a.connectorx:
            tools["connectorx + pyarrow"] = fresh([sys.executable, "-c", CONNECTORX, url, shape, out])
        self.job(shape, shape)
        tools[f"sluice (default: parts, {DEFAULT_LIMIT})"] = self.sluice(shape, rows, DEFAULT_LIMIT)
        self.job(shape, f"{shape}_one", "  split:\n    parts: 1\n")
        tools[f"sluice (one connection, {DEFAULT_LIMIT})"] = self.sluice(f"{shape}_one", rows, DEFAULT_LIMIT)
        for limit in a.limits:
            tools[f"sluice (default: parts, {limit})"] = self.sluice(shape, rows, limit)
        if a.quality and shape == "narrow":
            self.job(shape, "narrow_rules")
            with open(os.path.join(self.jobs, "narrow_rules.yaml"), "a") as f:
                f.write(QUALITY_RULES)
            tools["sluice + 5 quality rules"] = self.sluice("narrow_rules", rows, DEFAULT_LIMIT)
            self.job(shape, "narrow_unique")
            with open(os.path.join(self.jobs, "narrow_unique.yaml"), "a") as f:
                f.write("quality:\n  - unique: [id]\n")
            tools["sluice + unique(id)"] = self.sluice("narrow_unique", rows, DEFAULT_LIMIT)
        return tools

    def measure(self, shape, rows):
        tools = self.tools(shape, rows)
        results = {name: [] for name in tools}
        for round_ in range(self.args.rounds):
            for name, go in tools.items():
                wall, cpu, rss, output = go()
                results[name].append((wall, cpu, rss, output))
                print(f"round {round_ + 1}: {name}: {wall:.2f} s, CPU {cpu:.2f} s, {rss:.0f} MiB", flush=True)
        return results

    def report(self, shape, rows, results):
        summary = {}
        for name, runs in results.items():
            summary[name] = (median([r[0] for r in runs]), median([r[1] for r in runs]),
                             max(r[2] for r in runs), runs[-1][3])
        copy = summary["COPY binary → /dev/null (floor)"]
        duck = summary["DuckDB postgres scanner"]
        print(f"\n{shape}: {rows} rows, {SHAPES[shape][0]}, full day-partitioned ZSTD extract "
              f"(median of {self.args.rounds} interleaved rounds; peak RSS: the largest)")
        print(f"| tool | wall s | rows/s | ÷ COPY | ÷ DuckDB | CPU s | CPU ÷ DuckDB | peak RSS | output | files |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for name, (wall, cpu, rss, (size, files)) in summary.items():
            is_copy = name.startswith("COPY")
            limit = name.rsplit(", ", 1)[-1].rstrip(")") if name.startswith("sluice (") else None
            held = "" if limit is None else (" ✓" if rss <= mib(limit) else f" ✗ over {limit}")
            print(f"| {name} | {wall:.2f} | {rows / wall:,.0f} | {wall / copy[0]:.2f} | {wall / duck[0]:.2f} | "
                  f"{cpu:.2f} | {cpu / duck[1]:.2f} | {rss:.0f} MiB{held} | "
                  f"{'-' if is_copy else f'{size / 2**20:.0f} MiB'} | {'-' if is_copy else files} |")
        default = summary.get(f"sluice (default: parts, {DEFAULT_LIMIT})")
        one = summary.get(f"sluice (one connection, {DEFAULT_LIMIT})")
        if default and one:
            print(f"one connection ÷ parts: wall {one[0] / default[0]:.2f}, CPU {one[1] / default[1]:.2f}")
        if "sluice + unique(id)" in summary:
            print(f"quality rules: {summary['sluice + 5 quality rules'][0] / default[0]:.2f}× the plain run; "
                  f"unique(id): {summary['sluice + unique(id)'][0] / default[0]:.2f}×")
        sys.stdout.flush()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--duckdb-ext", required=True)
    p.add_argument("--rows", type=int, nargs="*", default=[])
    p.add_argument("--shapes", default="narrow,orders,wide")
    p.add_argument("--limits", default="128MiB")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quality", action="store_true")
    p.add_argument("--pg2parquet")
    p.add_argument("--connectorx", action="store_true")
    args = p.parse_args()
    args.limits = [l for l in args.limits.split(",") if l]
    for limit in args.limits:
        mib(limit)
    shapes = [s for s in args.shapes.split(",") if s]
    for shape in shapes:
        if shape not in SHAPES:
            sys.exit(f"unknown shape {shape}: one of {', '.join(SHAPES)}")
    bench = Bench(args)
    for shape in shapes:
        for rows in args.rows or [DEFAULT_ROWS[shape]]:
            bench.fill(shape, rows)
            bench.report(shape, rows, bench.measure(shape, rows))


if __name__ == "__main__":
    main()
