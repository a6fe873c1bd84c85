"""The console benchmark (bench/console). A workspace made once into the cache: 500 job
rows (tables of an SQLite connection, a fifth incremental with a freshness target, a few
disabled) and, in the local state store, 200 run records per job (100,000 in all: a mix
of committed, up-to-date and failed runs over the last 50 days, with windows, quality
results and quarantined rows as real runs record them). `sluice console` serves it; the
home page (every job's last run, health, data age, next start) and a baseline — the same
server's built-in htmx file, a static answer with no work behind it — are asked ROUNDS
times each, interleaved, over one keep-alive connection with a reader's key. Prints
p50/p99 of each, the page's bytes, and whether the targets hold.

Usage: console_home.py SLUICE_BIN ROUNDS CACHE_DIR
"""

import datetime
import hashlib
import http.client
import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path

JOBS = 500
RUNS_PER_JOB = 200
KEY = "bench-console-key"
TARGET_P99_MS = 200
TARGET_BYTES = 200 * 1024


def make_workspace(root: Path):
    stamp = root / ".made"
    if stamp.exists():
        return
    rng = random.Random(42)
    jobs, state = root / "jobs", root / "state"
    jobs.mkdir(parents=True, exist_ok=True)
    state.mkdir(parents=True, exist_ok=True)
    (jobs / "connections.yaml").write_text("src:\n  kind: sqlite\n  url: sqlite:src.db\n")
    now = datetime.datetime.now(datetime.timezone.utc)
    for j in range(JOBS):
        name = f"table_{j:03d}"
        incremental = j % 5 == 0
        row = [f"job: {name}", f"description: benchmark table {j}"]
        if incremental:
            row.append("freshness: 6h")
        if j % 97 == 0:
            row.append("enabled: false")
        row += ["source:", "  connection: src", f"  table: {name}", "  primary_key: [id]"]
        if incremental:
            row += ["  cursor: updated_at", "mode: incremental"]
        row += ["target:", f"  table: {name}", "  partition_by: [dt]"]
        (jobs / f"{name}.yaml").write_text("\n".join(row) + "\n")
        lines = []
        for r in range(RUNS_PER_JOB):
            started = now - datetime.timedelta(hours=6 * (RUNS_PER_JOB - r)) + datetime.timedelta(seconds=rng.randint(0, 600))
            status = rng.choices(["committed", "up_to_date", "failed"], [80, 15, 5])[0]
            run_id = started.strftime("%Y%m%dT%H%M%SZ") + f"-{rng.getrandbits(32):08x}"
            record = {
                "job": name, "run_id": run_id, "run_key": run_id[-8:], "started_at": started.isoformat(),
                "trigger": "bench-schedule", "mode": "incremental" if incremental else "full", "table": name,
                "status": status,
                "window": {"cursor": "updated_at" if incremental else None,
                           "lo": None, "hi": None},
                "rows_read": rng.randint(0, 100000), "rows": rng.randint(0, 100000),
                "files": rng.randint(0, 8), "bytes": rng.randint(0, 1 << 30), "partitions": rng.randint(0, 4),
                "replaced_files": 0,
                "seconds": {"extract_transform": 1.0, "write": 0.5, "commit": 0.1, "total": rng.uniform(1, 90)},
                "peak_rss": rng.randint(50 << 20, 250 << 20),
                "quality": [{"rule": "not_null(id)", "on_fail": "warn", "passed": rng.random() > 0.05, "failed_rows": 0}],
                "quarantined": rng.choice([0, 0, 0, 3]),
            }
            if status == "failed":
                record["error"] = "the source database could not be reached: connection refused"
                record["error_class"] = "external"
            lines.append(json.dumps(record))
        (state / f"{name}.runs.jsonl").write_text("\n".join(lines) + "\n")
    (root / "keys.yaml").write_text(
        f"- {{name: bench, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}, role: reader}}\n")
    stamp.write_text("ok")


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    binary, rounds, cache = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    make_workspace(cache)
    server = subprocess.Popen(
        [binary, "--jobs", str(cache / "jobs"), "--lake", str(cache / "lake"), "--state", str(cache / "state"),
         "console", "--listen", "127.0.0.1:0", "--keys", str(cache / "keys.yaml"), "--jobs-ttl", "1h",
         "--schedule", "cron(0 * * * ? *)"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = server.stdout.readline()
        host, port = re.search(r"http://([\d.]+):(\d+)", line).groups()
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        headers = {"Authorization": f"Bearer {KEY}"}

        def ask(path):
            start = time.perf_counter()
            conn.request("GET", path, headers=headers)
            reply = conn.getresponse()
            body = reply.read()
            assert reply.status == 200, (path, reply.status, body[:200])
            return (time.perf_counter() - start) * 1000, body

        _, page = ask("/")
        asset = re.search(rb'src="(/assets/htmx-[^"]+)"', page).group(1).decode()
        rows = page.count(b'<tr id="job-')
        assert rows == JOBS, f"the page lists {rows} jobs, not {JOBS}"
        for _ in range(5):  # warm: job rows loaded, files in the page cache
            ask("/")
        home, baseline = [], []
        for _ in range(rounds):
            home.append(ask("/")[0])
            baseline.append(ask(asset)[0])
        result = {
            "jobs": JOBS, "run_records": JOBS * RUNS_PER_JOB, "rounds": rounds,
            "home_p50_ms": round(percentile(home, 50), 2), "home_p99_ms": round(percentile(home, 99), 2),
            "home_bytes": len(page),
            "baseline_p50_ms": round(percentile(baseline, 50), 2), "baseline_p99_ms": round(percentile(baseline, 99), 2),
            "baseline_bytes": len(ask(asset)[1]),
        }
        result["p99_target_met"] = result["home_p99_ms"] < TARGET_P99_MS
        result["bytes_target_met"] = result["home_bytes"] < TARGET_BYTES
        print(json.dumps(result))
        print(f"home page: p50 {result['home_p50_ms']} ms, p99 {result['home_p99_ms']} ms (target < {TARGET_P99_MS}), "
              f"{result['home_bytes']} bytes (target < {TARGET_BYTES}); static baseline p99 {result['baseline_p99_ms']} ms")
        return 0 if result["p99_target_met"] and result["bytes_target_met"] else 1
    finally:
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    sys.exit(main())
