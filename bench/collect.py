"""The collector benchmark (bench/collect).

1. Throughput: wrk (bench/collect.lua: POST /batch of BATCH events with unique
   messageIds; for each BATCH of a comma-separated list) at CONCURRENCY connections for SECONDS against `sluice collect` (release,
   its default settings: 60 s flush age, 16 MiB segments) and against the seeds' design
   (bench/collect_flask.py: Flask under gunicorn, 4 sync workers, append + fsync per
   request), one after the other in the same run: events/s, p50/p99 latency, peak RSS of
   the server (all its processes for gunicorn; for sluice, the server process, and apart
   the largest of its loads, each a child process), and the accepted events that reached the
   lake (sluice: rows of the events table once it has stopped and loaded, read by
   DuckDB; Flask: lines of its file).
2. Latency at a fixed rate: an open-loop client sends 5,000 events/s (500 batches of 10 a
   second, over 16 keep-alive connections) to sluice for RATE_SECONDS; each latency is
   taken from the request's scheduled time (no coordinated omission).

Usage: collect.py SLUICE_BIN SECONDS CONCURRENCY BATCHES WORK_DIR [RATE_SECONDS]
"""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import duckdb

BIN, SECONDS, CONCURRENCY, WORK = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5]
BATCHES = [int(b) for b in sys.argv[4].split(",")]
RATE_SECONDS = int(sys.argv[6]) if len(sys.argv) > 6 else SECONDS
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
KEY = "bench-write-key"
AUTH = "Basic " + base64.b64encode(f"{KEY}:".encode()).decode()
RATE = 5000


def peak_rss_mib(pids):
    """The sum of the processes' peak RSS (VmHWM), in MiB."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                total += int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total / 1024


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def wrk(url, batch):
    out = subprocess.run(
        ["wrk", "-t", "2", "-c", str(CONCURRENCY), "-d", f"{SECONDS}s", "--latency", "--timeout", "10s",
         "-s", os.path.join(HERE, "collect.lua"), url],
        capture_output=True, text=True, env={**os.environ, "BENCH_BATCH": str(batch), "BENCH_AUTH": AUTH},
    )
    if out.returncode != 0:
        sys.exit(f"wrk failed: {out.stdout} {out.stderr}")
    text = out.stdout
    requests = int(re.search(r"(\d+) requests in", text).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    failed = (int(bad.group(1)) if bad else 0) + (sum(map(int, errors.groups())) if errors else 0)

    def ms(label):
        value, unit = re.search(rf"\s{label}\s+([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    ok = requests - failed
    return {"events_s": ok * batch / SECONDS, "accepted": ok * batch, "failed": failed,
            "p50": ms("50%"), "p99": ms("99%")}


def start_sluice(base):
    jobs = os.path.join(base, "jobs")
    os.makedirs(jobs)
    for name in ("collect_events.yaml", "collect_aliases.yaml", "collect_profiles.yaml"):
        shutil.copy(os.path.join(REPO, "jobs", name), jobs)
    with open(os.path.join(jobs, "connections.yaml"), "w") as f:
        f.write("".join(f"collector_{t}:\n  kind: folder\n  path: spool\n" for t in ("events", "aliases", "profiles")))
    keys = os.path.join(base, "keys.yaml")
    with open(keys, "w") as f:
        f.write(f"- {{name: web, sha256: {hashlib.sha256(KEY.encode()).hexdigest()}}}\n")
    log = open(os.path.join(base, "collect.log"), "w")
    process = subprocess.Popen(
        [BIN, "--jobs", jobs, "--lake", os.path.join(base, "lake"), "--state", os.path.join(base, "state"),
         "collect", "--listen", "127.0.0.1:0", "--keys", keys],
        stdout=subprocess.PIPE, stderr=log, text=True, env={**os.environ, "SLUICE_LOG_FORMAT": "json"},
    )
    line = process.stdout.readline()
    if not line.startswith("listening on http://"):
        sys.exit(f"sluice collect did not start: {line}")
    return process, line.split()[2]


def stop_sluice(process):
    rss = peak_rss_mib([process.pid])
    process.send_signal(signal.SIGTERM)
    if process.wait(timeout=600) != 0:
        sys.exit("sluice collect did not stop cleanly")
    return rss


def loads_peak_mib(base):
    """The largest peak RSS of the collector's loads (child processes), from the run
    summaries it logs."""
    peak = 0
    with open(os.path.join(base, "collect.log")) as f:
        for line in f:
            try:
                fields = json.loads(line).get("fields", {})
                summary = json.loads(fields.get("summary") or "{}")
            except ValueError:
                continue
            peak = max(peak, summary.get("peak_rss") or 0)
    return peak / (1 << 20)


def lake_rows(base):
    con = duckdb.connect()
    return con.execute(
        f"SELECT count(*), count(DISTINCT message_id) FROM read_parquet('{base}/lake/events/**/*.parquet', hive_partitioning = true)"
    ).fetchone()


def bench_sluice(batch):
    base = os.path.join(WORK, f"sluice-{batch}")
    process, url = start_sluice(base)
    result = wrk(url, batch)
    result["rss"] = stop_sluice(process)
    result["loads_rss"] = loads_peak_mib(base)
    rows, distinct = lake_rows(base)
    result["in_lake"] = rows
    result["doubled"] = rows - distinct
    return result


def bench_flask(batch):
    base = os.path.join(WORK, f"flask-{batch}")
    os.makedirs(base)
    events = os.path.join(base, "events.ndjson")
    port = free_port()
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-w", "4", "-b", f"127.0.0.1:{port}",
         "--chdir", HERE, "collect_flask:app"],
        env={**os.environ, "EVENTS_FILE": events}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    wait_for(port)
    result = wrk(f"http://127.0.0.1:{port}", batch)
    result["rss"] = peak_rss_mib([process.pid] + children(process.pid))
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    with open(events) as f:
        result["in_lake"] = sum(1 for _ in f)
    result["doubled"] = 0
    result["loads_rss"] = 0
    return result


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port):
    import socket

    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def fixed_rate():
    """Open loop at RATE events/s (batches of 10) for SECONDS: latencies from schedule."""
    base = os.path.join(WORK, "sluice-rate")
    process, url = start_sluice(base)
    host, port = url.removeprefix("http://").split(":")
    per_second = RATE // 10
    connections = 16
    latencies, failures = [], [0]
    start = time.perf_counter() + 0.5
    total = per_second * RATE_SECONDS
    lock = threading.Lock()

    def client(worker):
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        mine = []
        for n in range(worker, total, connections):
            due = start + n / per_second
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            body = json.dumps({"batch": [
                {"type": "track", "messageId": f"r{n}-{i}", "anonymousId": f"a{n % 997}", "event": "Page Viewed",
                 "properties": {"path": "/pricing", "n": i}} for i in range(10)]})
            conn.request("POST", "/batch", body, {"Content-Type": "application/json", "Authorization": AUTH})
            reply = conn.getresponse()
            reply.read()
            mine.append((time.perf_counter() - due) * 1000)
            if reply.status != 200:
                with lock:
                    failures[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    rss = stop_sluice(process)
    latencies.sort()
    rows, distinct = lake_rows(base)
    return {"p50": latencies[len(latencies) // 2], "p99": latencies[int(len(latencies) * 0.99)],
            "sent_events_s": total * 10 / elapsed, "failed": failures[0], "rss": rss,
            "loads_rss": loads_peak_mib(base),
            "in_lake": rows, "doubled": rows - distinct, "accepted": (total - failures[0]) * 10}


def main():
    rows = []
    for batch in BATCHES:
        print(f"wrk: {CONCURRENCY} connections, {SECONDS} s, {batch} event(s) a request", flush=True)
        sluice = bench_sluice(batch)
        print(f"  sluice collect: {sluice}", flush=True)
        flask = bench_flask(batch)
        print(f"  flask + gunicorn: {flask}", flush=True)
        rows.append((batch, sluice, flask))
    rate = fixed_rate()
    print(f"sluice at {RATE} events/s: {rate}", flush=True)
    print()
    print("| events a request | server | events/s | p50 ms | p99 ms | peak RSS MiB (its loads) | accepted | in the lake | doubled |")
    print("|---|---|---|---|---|---|---|---|---|")
    for batch, sluice, flask in rows:
        for name, r in (("sluice collect", sluice), ("Flask + gunicorn (fsync)", flask)):
            loads = f" ({r['loads_rss']:.0f})" if r["loads_rss"] else ""
            print(f"| {batch} | {name} | {r['events_s']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['rss']:.0f}{loads} | "
                  f"{r['accepted']:,} | {r['in_lake']:,} | {r['doubled']} |")
    print()
    for batch, sluice, flask in rows:
        print(f"{batch} event(s) a request: sluice ÷ Flask events/s {sluice['events_s'] / flask['events_s']:.1f}× (target ≥ 20×)")
    print(f"sluice at {rate['sent_events_s']:,.0f} events/s (open loop): p50 {rate['p50']:.1f} ms, "
          f"p99 {rate['p99']:.1f} ms (target < 25), {rate['failed']} failed, peak RSS {rate['rss']:.0f} MiB "
          f"(target < 128; its loads, each a child process: {rate['loads_rss']:.0f} MiB at the most), "
          f"{rate['in_lake']:,} of {rate['accepted']:,} accepted in the lake, {rate['doubled']} doubled")


if __name__ == "__main__":
    main()
