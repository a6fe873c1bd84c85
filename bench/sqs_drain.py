"""The queue benchmark (bench/queue): N GPS messages drained from moto's SQS by
`sluice run` (records decoded, written as day-partitioned Parquet, committed, then
deleted), against two boto3 loops measured in the same run on the same server: one that
receives 10 and deletes them at once (the floor of draining, with nothing written and
nothing kept), and one that holds what it receives and deletes it all at the end (the
access pattern of any consumer that deletes only after its commit). Then a scheduled
run: 3,000 messages, its wall time and peak RSS.

Usage: sqs_drain.py SLUICE_BIN ENDPOINT N
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3

BIN, ENDPOINT, N = sys.argv[1], sys.argv[2], int(sys.argv[3])
ENV = {
    "AWS_ENDPOINT_URL": ENDPOINT,
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}
sqs = boto3.client("sqs", endpoint_url=ENDPOINT, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")


def position(i):
    return json.dumps({
        "truck_id": f"T{i % 3000:04}", "recorded_at": f"2024-05-01T{i // 3600 % 24:02}:{i // 60 % 60:02}:{i % 60:02}Z",
        "lat": 52.0 + (i % 1000) / 1000, "lon": 13.0 + (i % 777) / 1000, "speed_kmh": 60.0 + i % 40, "heading": i % 360,
    })


def queue(n):
    url = sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    def send(start):
        entries = [{"Id": str(k), "MessageBody": position(start + k)} for k in range(min(10, n - start))]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(0, n, 10)))
    return url


def depth(url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])


def boto3_loop(url):
    started, drained = time.monotonic(), 0
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not got:
            break
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(k), "ReceiptHandle": m["ReceiptHandle"]} for k, m in enumerate(got)])
        drained += len(got)
    return time.monotonic() - started - 1.0, drained, None  # less the final empty 1 s poll


def boto3_hold(url):
    """What any consumer that deletes only after its commit does: receive everything,
    holding it, then delete it all (no decoding, nothing written)."""
    started, receipts = time.monotonic(), []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=3600).get("Messages", [])
        if not got:
            break
        receipts += [m["ReceiptHandle"] for m in got]
    for k in range(0, len(receipts), 10):
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts[k:k + 10])])
    return time.monotonic() - started - 1.0, len(receipts), None


def sluice_drain(url, key=""):
    """`sluice run` until the queue is empty (a run ends at the first empty receive; a
    standard queue may answer one while a few messages are still on their way)."""
    seconds, rows, rss, runs = 0.0, 0, 0, 0
    while depth(url):
        s, r, m = sluice(url, N, key)
        seconds, rows, rss, runs = seconds + s, rows + r, max(rss, m), runs + 1
    print(f"sluice: {runs} run(s)", file=sys.stderr)
    return seconds, rows, rss


def sluice_keyed(url):
    """The same drain with a record key (source.dedup on truck and time)."""
    return sluice_drain(url, "  dedup: {key: [truck_id, recorded_at]}\n")


def sluice(url, max_messages, key=""):
    work = tempfile.mkdtemp(prefix="sluice-queue-bench.")
    os.makedirs(f"{work}/jobs")
    with open(f"{work}/jobs/connections.yaml", "w") as f:
        f.write(f"gps:\n  kind: sqs\n  queue_url: {url}\n")
    with open(f"{work}/jobs/gps.yaml", "w") as f:
        f.write(f"""job: gps
source:
  connection: gps
  record:
    - {{name: truck_id, type: string, nullable: false}}
    - {{name: recorded_at, type: timestamp with time zone, nullable: false}}
    - {{name: lat, type: double}}
    - {{name: lon, type: double}}
    - {{name: speed_kmh, type: double}}
    - {{name: heading, type: smallint}}
  message_columns: [message_id, received_at]
{key}  queue:
    wait: 1s
    max_messages: {max_messages}
    max_seconds: 3600
    visibility: 1h
transform: SELECT *, date_format(recorded_at, '%Y-%m-%d') AS dt FROM source
target:
  table: gps
  partition_by: [dt]
""")
    cmd = ["/usr/bin/time", "-f", "%M", BIN, "--jobs", f"{work}/jobs", "--lake", f"{work}/lake",
           "--state", f"{work}/state", "run", "--job", "gps", "--output", "json"]
    started = time.monotonic()
    out = subprocess.run(cmd, env={**os.environ, **ENV}, capture_output=True, text=True)
    wall = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"sluice failed:\n{out.stdout}\n{out.stderr}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    rss = int(out.stderr.strip().splitlines()[-1]) * 1024
    print(f"sluice: {summary['rows']} rows, feed {summary['feed']}", file=sys.stderr)
    return wall - 2.0, summary["rows"], rss  # less the two final empty 1 s polls


def main():
    rows = []
    for name, run in [("boto3 receive/delete loop", boto3_loop), ("boto3 hold, then delete", boto3_hold),
                      ("sluice run", sluice_drain), ("sluice run, record key", sluice_keyed)]:
        url = queue(N)
        seconds, drained, rss = run(url)
        left = depth(url)
        if drained != N or left:
            sys.exit(f"{name}: drained {drained} of {N}, {left} left in the queue")
        rows.append((name, N, seconds, rss))
    base = rows[0][1] / rows[0][2]
    print(f"\n{N} GPS messages from moto's SQS ({os.cpu_count()} cores)\n")
    print("ratio: messages/s over the boto3 receive/delete loop's")
    print(f"{'tool':<28} {'messages':>9} {'seconds':>8} {'msgs/s':>8} {'ratio':>6} {'peak RSS':>9}")
    for name, n, seconds, rss in rows:
        mib = f"{rss / 2**20:.0f} MiB" if rss else "-"
        print(f"{name:<28} {n:>9} {seconds:>8.2f} {n / seconds:>8.0f} {n / seconds / base:>5.2f}x {mib:>9}")
    print(f"the record key's cost: {rows[3][2] / rows[2][2] - 1:+.1%} of the drain's wall")
    url = queue(3000)
    seconds, drained, rss = sluice(url, 100_000)
    print(f"\nscheduled run, 3000 messages: {seconds + 2.0:.2f} s wall (with the two final empty polls), peak RSS {rss / 2**20:.0f} MiB, {drained} rows")


main()
