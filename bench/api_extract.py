"""The API benchmark (bench/api): N toll transactions (pages of 1,000, cursor-paginated,
bearer auth) served by the partner fixture the tests use (tests/api/partner.py), read
three ways in the same run against the same server, in interleaved rounds:
- the floor: a Python loop that only fetches the pages (requests, one session) and
  parses their JSON: what the fixture server can serve (pages pre-rendered by a warm-up
  pass: the fixture keeps each rendered page in memory);
- dlt's `rest_api` source writing Parquet to a local filesystem destination;
- `sluice run` writing its lake (ZSTD Parquet, committed).
Prints records/s, peak RSS (of the tool's process tree: /usr/bin/time) and the ratios.

Usage: api_extract.py SLUICE_BIN PARTNER_URL N [ROUNDS]
"""

import json
import os
import shutil
import sys
import tempfile

from measure import median, rounds, timed

import requests

BIN, URL, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
ROUNDS = int(sys.argv[4]) if len(sys.argv) > 4 else 2
TENANT = f"bench{os.getpid()}"
BASE = f"{URL}/t/{TENANT}"
TOKEN = "bearer-s3cret-token"
PATH = "bearer/transactions/cursor"

requests.post(f"{BASE}/admin/reset", json={"n": N}).raise_for_status()


FLOOR = f"""
import requests, sys
s = requests.Session()
s.headers["Authorization"] = "Bearer {TOKEN}"
url, params, n = "{BASE}/{PATH}", {{"limit": 1000}}, 0
while True:
    page = s.get(url, params=params).json()
    n += len(page["data"])
    nxt = page["meta"]["next"]
    if not nxt:
        break
    params = {{"limit": 1000, "cursor": nxt}}
assert n == {N}, n
"""

DLT = f"""
import dlt
from dlt.sources.rest_api import rest_api_source
source = rest_api_source({{
    "client": {{"base_url": "{BASE}/", "auth": {{"type": "bearer", "token": "{TOKEN}"}},
               "paginator": {{"type": "cursor", "cursor_path": "meta.next", "cursor_param": "cursor"}}}},
    "resources": [{{"name": "tolls", "endpoint": {{"path": "{PATH}", "params": {{"limit": 1000}}, "data_selector": "data"}}}}],
}})
pipeline = dlt.pipeline(pipeline_name="bench", destination=dlt.destinations.filesystem("file://" + sys.argv[1]),
                        dataset_name="tolls", pipelines_dir=sys.argv[2])
info = pipeline.run(source, loader_file_format="parquet")
rows = pipeline.last_trace.last_normalize_info.row_counts.get("tolls")
assert rows == {N}, rows
"""


def sluice_workspace(extra=""):
    ws = tempfile.mkdtemp(prefix="bench-api-")
    os.makedirs(f"{ws}/jobs")
    with open(f"{ws}/jobs/connections.yaml", "w") as f:
        f.write(f"tags:\n  kind: http\n  base_url: {BASE}\n  auth: {{kind: bearer, token: \"${{TAGS_TOKEN}}\"}}\n")
    with open(f"{ws}/jobs/tolls.yaml", "w") as f:
        f.write("""job: tolls
source:
  connection: tags
  fields: {plate: $.vehicle.plate}
  coerce: [amount]
%s  request:
    path: %s
    params: {limit: "1000"}
    records: $.data
    paginate: {kind: cursor, param: cursor, from: $.meta.next}
target:
  table: tolls
  schema:
    - {name: id, type: bigint, nullable: false}
    - {name: tag_id, type: string}
    - {name: plaza, type: string}
    - {name: amount, type: "decimal(8,2)"}
    - {name: currency, type: string}
    - {name: occurred_at, type: timestamp with time zone, nullable: false}
    - {name: plate, type: string}
    - {name: vehicle, type: string}
""" % (extra, PATH))
    return ws


def run_floor():
    return timed([sys.executable, "-c", FLOOR])


def run_dlt():
    d = tempfile.mkdtemp(prefix="bench-dlt-")
    try:
        return timed([sys.executable, "-c", "import sys\n" + DLT, f"{d}/lake", f"{d}/pipelines"],
                     env={"RUNTIME__LOG_LEVEL": "WARNING"})
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_sluice(extra=""):
    ws = sluice_workspace(extra)
    try:
        seconds, rss, out = timed([BIN, "run", "--job", "tolls", "--output", "json"], env={
            "SLUICE_JOBS": f"{ws}/jobs", "SLUICE_LAKE": f"{ws}/lake", "SLUICE_STATE": f"{ws}/state",
            "TAGS_TOKEN": TOKEN})
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["rows"] == N, summary
        return seconds, rss, out
    finally:
        shutil.rmtree(ws, ignore_errors=True)


# The fixture renders each page once and serves it from memory after that: a warm-up pass
# renders them all, so every tool is measured against the same, fast server.
seconds, _, _ = run_floor()
print(f"warm-up (the fixture renders every page): {seconds:.1f} s", flush=True)


def run_sluice_keyed():
    """The same run with a record key (source.dedup on id): every record looked up."""
    return run_sluice("  dedup: {key: [id]}\n")


results = rounds({"floor (fetch + parse only)": run_floor, "dlt rest_api → parquet": run_dlt, "sluice run": run_sluice,
                  "sluice run, record key (id)": run_sluice_keyed}, ROUNDS)


print(f"\n{N:,} records, pages of 1,000, {ROUNDS} rounds (median):")
print(f"| tool | wall | records/s | peak RSS |\n|---|---|---|---|")
rate = {}
for name, runs in results.items():
    s = median([r[0] for r in runs])
    m = max(r[1] for r in runs)
    rate[name] = N / s
    print(f"| {name} | {s:.1f} s | {N / s:,.0f} | {m:.0f} MiB |")
print(f"\nsluice / dlt: {rate['sluice run'] / rate['dlt rest_api → parquet']:.2f}× the records/s")
print(f"sluice / the server's floor: {rate['sluice run'] / rate['floor (fetch + parse only)']:.2f}×")
print(f"the record key's cost: {rate['sluice run'] / rate['sluice run, record key (id)'] - 1:+.1%} of the run's wall")
