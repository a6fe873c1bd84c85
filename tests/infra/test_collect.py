"""`sluice collect` with real clients: urllib for every route and status, many threads
sending at once while the collector is killed, schemathesis against its own OpenAPI
document, and the lake read back by pyarrow and DuckDB (not by sluice)."""

import base64
import hashlib
import json
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import duckdb
import pyarrow.dataset
import pytest

from conftest import REPO

WEB_KEY = "wk-web-1"
SLOW_KEY = "wk-slow-2"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


class Collector:
    """A `sluice collect` on a free port over a workspace of the repository's collector
    jobs; restartable on the same spool and lake."""

    def __init__(self, base, sluice_bin, env, *extra):
        self.base, self.bin, self.env, self.extra = base, sluice_bin, env, list(extra)
        jobs = base / "jobs"
        jobs.mkdir(parents=True, exist_ok=True)
        for name in ("collect_events.yaml", "collect_aliases.yaml", "collect_profiles.yaml"):
            shutil.copy(REPO / "jobs" / name, jobs / name)
        (jobs / "connections.yaml").write_text("".join(
            f"collector_{t}:\n  kind: folder\n  path: spool\n" for t in ("events", "aliases", "profiles")))
        self.keys = base / "keys.yaml"
        self.keys.write_text(
            f"- {{name: web, sha256: {sha(WEB_KEY)}}}\n"
            f"- {{name: slow, sha256: {sha(SLOW_KEY)}, rate_per_second: 5}}\n"
        )
        self.lake = base / "lake"
        self.process = None

    def start(self, *more):
        self.log = []
        self.process = subprocess.Popen(
            [self.bin, "--jobs", str(self.base / "jobs"), "--lake", str(self.lake),
             "--state", str(self.base / "state"), "collect", "--listen", "127.0.0.1:0",
             "--keys", str(self.keys), "--lease-ttl", "5s", *self.extra, *more],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("listening on http://"), line + self.process.stderr.read()
        self.url = line.split()[2]
        threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True).start()
        return self

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=120)
        out = self.process.stdout.read()
        assert code == 0, out + "".join(self.log)[-4000:]
        return out

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=30)

    def call(self, path, body=None, key=WEB_KEY, headers=None, method=None, raw=None):
        request = urllib.request.Request(self.url + path, method=method)
        if key:
            request.add_header("Authorization", "Basic " + base64.b64encode(f"{key}:".encode()).decode())
        if body is not None or raw is not None:
            request.data = raw if raw is not None else json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                return reply.status, dict(reply.headers), json.loads(reply.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), json.loads(e.read() or b"null")

    def table(self, name):
        """The rows of a lake table, by pyarrow over the Hive-partitioned Parquet files."""
        path = self.lake / name
        if not path.exists():
            return []
        return pyarrow.dataset.dataset(path, format="parquet", partitioning="hive").to_table().to_pylist()


@pytest.fixture
def collector(tmp_path, sluice_bin, sluice_env):
    c = Collector(tmp_path, sluice_bin, sluice_env, "--flush-interval", "1s")
    yield c
    if c.process and c.process.poll() is None:
        c.kill()


def track(message_id, **more):
    return {"type": "track", "messageId": message_id, "anonymousId": "anon-1", "event": "Page Viewed", **more}


def test_event_numbers_land_as_sent(collector):
    """Doubles in their shortest and 17-digit forms, subnormals, -0.0, integers past 64
    bits and decimals past a double's digits, in properties and in a batch's context."""
    import random
    import struct
    from decimal import Decimal

    rng = random.Random(35)
    doubles = [0.1, -0.0, 5e-324, 2.2250738585072009e-308, 1.7976931348623157e308, 52.520008]
    while len(doubles) < 200:
        v = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if v == v and abs(v) != float("inf"):
            doubles.append(v)
    texts = [repr(v) if i % 2 else "%.17g" % v for i, v in enumerate(doubles)]
    longs = ["123456789012345678901234567890", "-1234567890123456789.0123456789", "0.12345678901234567890123"]
    props = ", ".join(f'"d{i}": {t}' for i, t in enumerate(texts + longs))
    body = ('{"batch": [{"type": "track", "messageId": "exact-1", "anonymousId": "a", "event": "E", '
            f'"properties": {{{props}}}}}], "context": {{"n": {longs[0]}}}}}')
    collector.start()
    assert collector.call("/batch", raw=body.encode())[0] == 200
    collector.stop()
    [event] = collector.table("events")
    got = json.loads(event["properties"], parse_float=Decimal, parse_int=int)
    for i, t in enumerate(texts):
        assert struct.pack("<d", float(got[f"d{i}"])) == struct.pack("<d", float(t)), f"{t} became {got[f'd{i}']}"
    for j, t in enumerate(longs):
        assert Decimal(str(got[f"d{len(texts) + j}"])) == Decimal(t), f"{t} became {got[f'd{len(texts) + j}']}"
    assert json.loads(event["context"], parse_int=int)["n"] == int(longs[0])


def test_events_land_once_with_their_columns_and_corrected_clocks(collector):
    collector.start()
    # The device's clock is an hour ahead: its event of 13:00:00, sent at 13:00:05 by the
    # same clock, happened five seconds before the server received it.
    skewed = {"messageId": "m-skew", "userId": "u1", "event": "Order Completed",
              "properties": {"total": 12.5, "items": [1, 2]},
              "timestamp": "2030-05-01T13:00:00Z", "sentAt": "2030-05-01T13:00:05Z"}
    assert collector.call("/track", skewed)[0::2] == (200, {"accepted": 1, "duplicates": 0})
    assert collector.call("/track", skewed)[0::2] == (200, {"accepted": 0, "duplicates": 1})
    status, _, answer = collector.call("/alias", {"previousId": "anon-1", "userId": "u1"})
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
    profile = {"userId": "u1", "traits": {"plan": "pro", "seats": 3}, "context": {"app": "ios"}}
    assert collector.call("/profile", profile)[0] == 200
    batch = {"batch": [track(f"b-{i}") for i in range(100)] + [track("b-0")], "sentAt": None}
    assert collector.call("/batch", batch)[0::2] == (200, {"accepted": 100, "duplicates": 1})
    out = collector.stop()
    assert "every accepted event is in the lake" in out

    events = collector.table("events")
    ids = [e["message_id"] for e in events]
    assert sorted(ids) == sorted(["m-skew"] + [f"b-{i}" for i in range(100)])
    skew = next(e for e in events if e["message_id"] == "m-skew")
    received = skew["received_at"]
    assert (received - skew["timestamp"]).total_seconds() == pytest.approx(5, abs=0.001)
    assert skew["original_timestamp"].isoformat().startswith("2030-05-01T13:00:00")
    assert json.loads(skew["properties"]) == {"total": 12.5, "items": [1, 2]}
    assert skew["event"] == "Order Completed" and skew["user_id"] == "u1" and skew["source"] == "web"
    assert skew["ip"] == "127.0.0.1" and skew["user_agent"].startswith("Python-urllib")
    # Partitioned by received date and event name.
    folders = {p.parent.relative_to(collector.lake / "events").as_posix()
               for p in (collector.lake / "events").rglob("*.parquet")}
    day = received.strftime("%Y-%m-%d")
    assert folders == {f"dt={day}/event=Order Completed", f"dt={day}/event=Page Viewed"}, folders

    (alias,) = collector.table("aliases")
    assert (alias["previous_id"], alias["user_id"]) == ("anon-1", "u1")
    (profile,) = collector.table("profiles")
    assert profile["plan"] == "pro" and profile["company"] is None
    assert json.loads(profile["traits"]) == {"plan": "pro", "seats": 3}
    assert json.loads(profile["context"]) == {"app": "ios"}

    # DuckDB reads the same lake, partitions included.
    con = duckdb.connect()
    count = con.execute(
        f"SELECT count(*), count(DISTINCT message_id) FROM read_parquet('{collector.lake}/events/**/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert count == (101, 101)

    # Restarted, the collector still knows what it took: a resend within the window
    # lands nowhere.
    collector.start()
    assert collector.call("/batch", batch)[0::2] == (200, {"accepted": 0, "duplicates": 101})
    collector.stop()
    assert len(collector.table("events")) == 101


def test_each_bad_request_gets_its_documented_status(collector):
    collector.start("--cors-origin", "https://shop.example.com")
    ok = track("s-1")
    status, headers, answer = collector.call("/track", ok, key=None)
    assert status == 401 and answer["error"]["code"] == "unauthorized"
    assert collector.call("/track", ok, key="wrong")[0] == 401
    assert collector.call("/track", ok, key=None, headers={"X-Write-Key": WEB_KEY})[0] == 200
    status, _, answer = collector.call("/track", None, raw=b"{", headers={})
    assert status == 400 and "not JSON" in answer["error"]["message"]
    status, _, answer = collector.call("/track", {"userId": "u"})
    assert status == 400 and answer["error"]["message"].startswith("$.event:")
    status, _, answer = collector.call("/batch", {"batch": [ok, {"type": "page", "userId": "u"}]})
    assert status == 400 and answer["error"]["message"].startswith("$.batch[1].type:")
    status, _, answer = collector.call("/track", {**ok, "timestamp": "yesterday"})
    assert status == 400 and "2024-05-01T12:30:00.000Z" in answer["error"]["message"]
    status, _, answer = collector.call("/track", ok, headers={"Content-Type": "text/html"})
    assert status == 415 and answer["error"]["code"] == "unsupported_media_type"
    # sendBeacon's text/plain is taken.
    assert collector.call("/track", track("s-2"), headers={"Content-Type": "text/plain"})[0] == 200
    big_event = track("s-3", properties={"blob": "x" * (33 << 10)})
    status, _, answer = collector.call("/track", big_event)
    assert status == 413 and "32 KiB" in answer["error"]["message"]
    big_request = {"batch": [track(f"s-big-{i}", properties={"blob": "x" * (30 << 10)}) for i in range(20)]}
    status, _, answer = collector.call("/batch", big_request)
    assert status == 413 and "512 KiB" in answer["error"]["message"]
    # A key with a rate of 5 events per second: the sixth in a burst waits.
    statuses = [collector.call("/track", track(f"r-{i}"), key=SLOW_KEY) for i in range(8)]
    assert [s for s, _, _ in statuses].count(200) in (5, 6), [s for s, _, _ in statuses]
    limited = next(s for s in statuses if s[0] == 429)
    assert int(limited[1]["retry-after"]) >= 1 and limited[2]["error"]["code"] == "rate_limited"
    # CORS: the configured origin may call, another may not.
    preflight = {"Origin": "https://shop.example.com", "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type,authorization"}
    status, headers, _ = collector.call("/track", key=None, headers=preflight, method="OPTIONS")
    assert status == 200 and headers["access-control-allow-origin"] == "https://shop.example.com"
    other = {**preflight, "Origin": "https://evil.example.com"}
    _, headers, _ = collector.call("/track", key=None, headers=other, method="OPTIONS")
    assert "access-control-allow-origin" not in {k.lower() for k in headers}
    assert collector.call("/health", key=None)[0::2] == (200, {"status": "ok"})
    assert collector.call("/ready", key=None)[0::2] == (200, {"status": "ready"})
    collector.stop()
    ids = sorted(e["message_id"] for e in collector.table("events"))
    assert ids[:3] == ["r-0", "r-1", "r-2"] and "s-1" in ids and "s-2" in ids and "s-3" not in ids


def send_until_stopped(collector, acked, failed, stop, worker):
    """One client: batches of 10 events with fresh ids; keeps the ids of every batch
    answered 200, and of every one answered otherwise (or not at all)."""
    n = 0
    while not stop.is_set():
        ids = [f"w{worker}-{n}-{i}" for i in range(10)]
        n += 1
        try:
            status = collector.call("/batch", {"batch": [track(i) for i in ids]})[0]
        except OSError:
            status = None
        (acked if status == 200 else failed).extend(ids)
        if status != 200:
            time.sleep(0.05)


def test_a_killed_collector_loses_no_acknowledged_event_and_doubles_none(collector):
    collector.start()
    acked, failed, stop = [], [], threading.Event()
    clients = [threading.Thread(target=send_until_stopped, args=(collector, acked, failed, stop, w))
               for w in range(8)]
    for c in clients:
        c.start()
    deadline = time.time() + 60
    while len(acked) < 3000 and time.time() < deadline:
        time.sleep(0.05)
    collector.kill()  # SIGKILL, while the clients send
    time.sleep(0.3)
    stop.set()
    for c in clients:
        c.join()
    assert len(acked) >= 3000, len(acked)
    collector.start()
    # A client resends what it is unsure of: the acknowledged ones again are duplicates.
    resent = acked[:200]
    answer = collector.call("/batch", {"batch": [track(i) for i in resent]})
    assert answer[0::2] == (200, {"accepted": 0, "duplicates": 200})
    collector.stop()
    landed = [e["message_id"] for e in collector.table("events")]
    assert len(landed) == len(set(landed)), "an event landed twice"
    missing = set(acked) - set(landed)
    assert not missing, f"{len(missing)} acknowledged events are not in the lake, e.g. {sorted(missing)[:5]}"
    assert set(landed) <= set(acked) | set(failed)


def test_with_the_lake_unwritable_it_answers_503_and_recovers_without_loss(collector):
    # The lake's events folder is a file: every load of events fails until it is gone.
    collector.lake.mkdir()
    blocker = collector.lake / "events"
    blocker.write_text("not a folder")
    collector.start("--max-buffer", "64KiB", "--flush-size", "4KiB")
    accepted, refused = [], 0
    for n in range(400):
        status, headers, _ = collector.call("/batch", {"batch": [track(f"p-{n}-{i}") for i in range(5)]})
        if status == 200:
            accepted.extend(f"p-{n}-{i}" for i in range(5))
        else:
            assert status == 503 and int(headers["retry-after"]) >= 1
            refused += 1
    assert refused > 0 and accepted, (refused, len(accepted))
    assert collector.call("/ready", key=None)[0] == 503
    blocker.unlink()
    deadline = time.time() + 90
    while collector.call("/ready", key=None)[0] != 200:
        assert time.time() < deadline, "the collector did not recover"
        time.sleep(0.5)
    assert collector.call("/track", track("after"))[0] == 200
    collector.stop()
    landed = {e["message_id"] for e in collector.table("events")}
    assert landed == set(accepted) | {"after"}


def test_schemathesis_finds_no_server_error_and_no_response_off_the_document(collector, tmp_path):
    collector.start()
    auth = "Basic " + base64.b64encode(f"{WEB_KEY}:".encode()).decode()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "st"), "run", f"{collector.url}/openapi.json",
         "-H", f"Authorization: {auth}", "--checks", "all",
         "--max-examples", "100", "--seed", "1"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]
    generated = re.search(r"(\d+) generated", done.stdout)
    assert generated and int(generated.group(1)) > 100, done.stdout[-2000:]
    assert collector.process.poll() is None
    collector.stop()


def test_on_aws_the_events_go_to_each_tables_queue_and_the_jobs_load_them_once(tmp_path, sluice_bin, sluice_env, aws, unique):
    """The deployed form: the jobs' connections are SQS queues (moto). A 2xx follows
    SendMessageBatch; the collect_* jobs (queue feeds) load the queues into the lake."""
    sqs = aws("sqs")
    urls = {t: sqs.create_queue(QueueName=f"collect-{t}-{unique}")["QueueUrl"] for t in ("events", "aliases", "profiles")}
    c = Collector(tmp_path, sluice_bin, sluice_env)
    (tmp_path / "jobs" / "connections.yaml").write_text("".join(
        f"collector_{t}:\n  kind: sqs\n  queue_url: {url}\n" for t, url in urls.items()))
    c.start()
    batch = {"batch": [track(f"q-{i}") for i in range(250)]
             + [{"type": "alias", "messageId": "q-alias", "previousId": "anon-1", "userId": "u1"},
                {"type": "profile", "messageId": "q-profile", "userId": "u1", "traits": {"plan": "team", "company": "ACME"}}]}
    assert c.call("/batch", batch)[0::2] == (200, {"accepted": 252, "duplicates": 0})
    # A resend after a lost answer: the task remembers what it sent.
    assert c.call("/batch", batch)[0::2] == (200, {"accepted": 0, "duplicates": 252})
    assert "every accepted event is in its queue" in c.stop()
    depth = int(sqs.get_queue_attributes(QueueUrl=urls["events"], AttributeNames=["ApproximateNumberOfMessages"])
                ["Attributes"]["ApproximateNumberOfMessages"])
    assert depth >= 1
    for table in ("events", "aliases", "profiles"):
        done = subprocess.run(
            [sluice_bin, "--jobs", str(tmp_path / "jobs"), "--lake", str(c.lake), "--state", str(tmp_path / "state"),
             "run", "--job", f"collect_{table}"],
            env=sluice_env, capture_output=True, text=True, timeout=300,
        )
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    ids = [e["message_id"] for e in c.table("events")]
    assert sorted(ids) == sorted(f"q-{i}" for i in range(250))
    (profile,) = c.table("profiles")
    assert (profile["plan"], profile["company"]) == ("team", "ACME")
    assert len(c.table("aliases")) == 1


def test_a_missing_or_misshapen_job_is_refused_before_listening(tmp_path, sluice_bin, sluice_env):
    c = Collector(tmp_path, sluice_bin, sluice_env)
    (tmp_path / "jobs" / "collect_aliases.yaml").unlink()

    def start():
        return subprocess.run(
            [sluice_bin, "--jobs", str(tmp_path / "jobs"), "--lake", str(c.lake), "--state", str(tmp_path / "state"),
             "collect", "--listen", "127.0.0.1:0", "--keys", str(c.keys)],
            env=sluice_env, capture_output=True, text=True, timeout=60,
        )

    done = start()
    assert done.returncode == 2 and "there is no job `collect_aliases`" in done.stderr, done.stderr
    shutil.copy(REPO / "jobs" / "collect_aliases.yaml", tmp_path / "jobs")
    (tmp_path / "jobs" / "connections.yaml").write_text(
        "collector_events:\n  kind: folder\n  path: one\n"
        "collector_aliases:\n  kind: folder\n  path: two\n"
        "collector_profiles:\n  kind: folder\n  path: one\n")
    done = start()
    assert done.returncode == 2 and "is not the other jobs'" in done.stderr, done.stderr
    c.keys.write_text("- {name: web, sha256: abc}\n")
    (tmp_path / "jobs" / "connections.yaml").write_text("".join(
        f"collector_{t}:\n  kind: folder\n  path: spool\n" for t in ("events", "aliases", "profiles")))
    done = start()
    assert done.returncode == 2 and "64 hex digits" in done.stderr, done.stderr


def test_a_non_ascii_user_agent_is_kept_and_the_last_minutes_counts_are_printed_at_stop(collector):
    import http.client

    collector.start("--emf-namespace", "Sluice/Test")
    host, port = collector.url.removeprefix("http://").split(":")
    sent = {"m-ua": "Mozilla/5.0 (Ünïcødé; 日本語)".encode(), "m-latin": b"agent \xe9\xff"}
    for message_id, agent in sent.items():
        connection = http.client.HTTPConnection(host, int(port), timeout=30)
        connection.putrequest("POST", "/track", skip_accept_encoding=True)
        connection.putheader("Authorization", "Basic " + base64.b64encode(f"{WEB_KEY}:".encode()).decode())
        connection.putheader("Content-Type", "application/json")
        connection.putheader("User-Agent", agent)
        payload = json.dumps(track(message_id)).encode()
        connection.putheader("Content-Length", str(len(payload)))
        connection.endheaders(payload)
        assert connection.getresponse().status == 200
        connection.close()
    # Stopped within its first minute: the counts of that partial minute are printed.
    out = collector.stop()
    emf = [json.loads(line) for line in out.splitlines() if line.startswith("{") and "_aws" in line]
    assert emf and sum(line.get("EventsAccepted", 0) for line in emf) == 2, out
    agents = {e["message_id"]: e["user_agent"] for e in collector.table("events")}
    assert agents == {"m-ua": "Mozilla/5.0 (Ünïcødé; 日本語)", "m-latin": "agent \u00e9\u00ff"}, agents
