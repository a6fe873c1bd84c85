"""The files benchmark (bench/files): one JSON array of bank transactions, GIB GiB, made
once (deterministic) into the cache — a statement in booking order, about 15,000
transactions a day over a year —, then in interleaved rounds in the same run:
- `sluice run` of a folder job (format json, after_load keep) with a transform adding
  the day and `partition_by: [dt]`, ZSTD Parquet, committed;
- DuckDB: COPY (SELECT …, strftime(booked_at, '%Y-%m-%d') AS dt FROM read_json(file,
  format 'array', columns {…})) TO dir (FORMAT parquet, PARTITION_BY (dt), COMPRESSION
  zstd), with DuckDB's default threads (every core);
then a second run over the unchanged file, `identity: listing` (the default: listed,
nothing read) against `identity: content` (every loaded file read and hashed again): the
content identity's cost per run; and, with the SFTP server bench/files starts (root),
the transfer alone: OpenSSH's
`sftp` client getting the file to this disk (its whole run: connecting and logging in
included), and sluice's fetch of it (the run's `source_files.fetch_seconds`: the
transfer alone; sluice too lands the file on this disk before decoding).
Prints wall, MiB/s, peak RSS (GNU time) and the ratios.

Usage: files_load.py SLUICE_BIN GIB ROUNDS CACHE_DIR
"""

import datetime
import json
import os
import shutil
import sys
import tempfile

from measure import median, rounds, timed

BIN, GIB, ROUNDS, CACHE = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
SFTP = os.environ.get("SFTP") == "1"
os.makedirs(CACHE, exist_ok=True)
NAME = f"statement_{GIB}g.json"
FILE = os.path.join(CACHE, NAME)
# A statement is in booking order: about 15,000 transactions a day, a year of days.
DAYS = [(datetime.date(2024, 1, 1) + datetime.timedelta(days=d)).isoformat() for d in range(366)]
KINDS = ["fuel card", "motorway toll", "customer payment", "parking", "repair", "insurance"]


def make_file():
    if os.path.exists(FILE) and os.path.getsize(FILE) >= GIB << 30:
        return
    target = GIB << 30
    tmp = FILE + ".part"
    with open(tmp, "w") as f:
        f.write("[\n")
        written, i = 2, 0
        while written < target:
            chunk = []
            for _ in range(10000):
                day = DAYS[min(i // 15000, len(DAYS) - 1)]
                kind = KINDS[i % len(KINDS)]
                cents = (i * 104729) % 5000000
                second = (i % 15000) * 86400 // 15000
                rec = (
                    f'{{"txn_id": {i}, "booked_at": "{day}T{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}", '
                    f'"amount": "{cents // 100}.{cents % 100:02d}", "currency": "EUR", "counterparty": "{kind}", '
                    f'"reference": "statement {i // 1000} line {i % 1000} {kind} NL91ABNA0417164300"}}'
                )
                chunk.append(rec)
                i += 1
            text = (",\n" if written > 2 else "") + ",\n".join(chunk)
            f.write(text)
            written += len(text)
        f.write("\n]\n")
    os.replace(tmp, FILE)
    print(f"made {FILE}: {os.path.getsize(FILE) / 2**30:.2f} GiB, {i:,} records", flush=True)
    with open(FILE + ".count", "w") as f:
        f.write(str(i))


make_file()
SIZE = os.path.getsize(FILE)
RECORDS = int(open(FILE + ".count").read())


RECORD = """  coerce: [amount]
  record:
    - {name: txn_id, type: bigint, nullable: false}
    - {name: booked_at, type: timestamp, nullable: false}
    - {name: amount, type: "decimal(12,2)", nullable: false}
    - {name: currency, type: string}
    - {name: counterparty, type: string}
    - {name: reference, type: string}
transform: SELECT *, date_format(booked_at, '%Y-%m-%d') AS dt FROM source
target:
  table: bank
  partition_by: [dt]
  compression: zstd
"""


def sluice_workspace(connection, extra="", target="", files=""):
    ws = tempfile.mkdtemp(prefix="bench-files-", dir=CACHE)
    os.makedirs(f"{ws}/jobs")
    with open(f"{ws}/jobs/connections.yaml", "w") as f:
        f.write(connection)
    with open(f"{ws}/jobs/bank.yaml", "w") as f:
        f.write(f"job: bank\nsource:\n  connection: bank\n{extra}  files:\n    pattern: {NAME}\n    format: json\n    stable_for: 0s\n{files}" + RECORD + target)
    return ws


def run_sluice(connection=None, env=None, extra="", target=""):
    ws = sluice_workspace(connection or f"bank:\n  kind: folder\n  path: {CACHE}\n", extra, target)
    try:
        seconds, rss, out = timed([BIN, "run", "--job", "bank", "--output", "json"], env={
            "SLUICE_JOBS": f"{ws}/jobs", "SLUICE_LAKE": f"{ws}/lake", "SLUICE_STATE": f"{ws}/state",
            **(env or {})})
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["rows"] == RECORDS, summary
        return seconds, rss, summary
    finally:
        shutil.rmtree(ws, ignore_errors=True)


DUCKDB = f"""
import duckdb, sys
out = sys.argv[1]
con = duckdb.connect()
con.execute("COPY (SELECT *, strftime(booked_at, '%Y-%m-%d') AS dt FROM read_json('{FILE}', format = 'array', "
            "columns = {{txn_id: 'BIGINT', booked_at: 'TIMESTAMP', amount: 'DECIMAL(12,2)', currency: 'VARCHAR', "
            "counterparty: 'VARCHAR', reference: 'VARCHAR'}})) "
            "TO '" + out + "' (FORMAT parquet, PARTITION_BY (dt), COMPRESSION zstd)")
n = con.execute("SELECT count(*) FROM read_parquet('" + out + "/*/*.parquet')").fetchone()[0]
assert n == {RECORDS}, n
"""


def run_duckdb():
    d = tempfile.mkdtemp(prefix="bench-duckdb-", dir=CACHE)
    try:
        return timed([sys.executable, "-c", DUCKDB, f"{d}/out"])
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run_sluice_keyed():
    """The same run with a record key (source.dedup on txn_id): every record looked up."""
    return run_sluice(extra="  dedup: {key: [txn_id]}\n")


def run_sluice_delta():
    """The run into a Delta table."""
    return run_sluice(target="  format: delta\n")


def run_sluice_merged():
    """The run merged into a Delta table by key (txn_id, the newest by booked_at)."""
    return run_sluice(extra="  primary_key: [txn_id]\n  cursor: booked_at\n", target="  format: delta\nmode: merge\n")


results = rounds({"sluice run (folder)": run_sluice, "sluice run, record key (txn_id)": run_sluice_keyed,
                  "sluice run into Delta": run_sluice_delta, "sluice run, merge into Delta (txn_id)": run_sluice_merged,
                  "DuckDB read_json → COPY": run_duckdb}, ROUNDS)


print(f"\n{SIZE / 2**30:.2f} GiB JSON array, {RECORDS:,} records → day-partitioned ZSTD Parquet, {ROUNDS} rounds (median):")
print("| tool | wall | MiB/s | peak RSS |\n|---|---|---|---|")
wall = {}
for name, runs in results.items():
    s = median([r[0] for r in runs])
    wall[name] = s
    print(f"| {name} | {s:.1f} s | {SIZE / 2**20 / s:,.0f} | {max(r[1] for r in runs):.0f} MiB |")
print(f"\nsluice / DuckDB wall: {wall['sluice run (folder)'] / wall['DuckDB read_json → COPY']:.2f}× (below 1 is faster)")
print(f"the record key's cost: {wall['sluice run, record key (txn_id)'] / wall['sluice run (folder)'] - 1:+.1%} of the run's wall")
print(f"the merge by key's cost: {wall['sluice run, merge into Delta (txn_id)'] / wall['sluice run into Delta'] - 1:+.1%} of the Delta run's wall")



def run_again(identity):
    """Loads the file, then runs the job again over it unchanged; the second run is the
    one measured: nothing new either way, but under `identity: content` every loaded
    file still listed is read and hashed once more (the default only lists)."""
    ws = sluice_workspace(f"bank:\n  kind: folder\n  path: {CACHE}\n", files=f"    identity: {identity}\n")
    env = {"SLUICE_JOBS": f"{ws}/jobs", "SLUICE_LAKE": f"{ws}/lake", "SLUICE_STATE": f"{ws}/state"}
    cmd = [BIN, "run", "--job", "bank", "--output", "json"]
    try:
        timed(cmd, env=env)
        seconds, rss, out = timed(cmd, env=env)
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary["status"] == "up_to_date", summary
        return seconds, rss, summary
    finally:
        shutil.rmtree(ws, ignore_errors=True)


again = rounds({"second run, identity listing (default)": lambda: run_again("listing"),
                "second run, identity content": lambda: run_again("content")}, ROUNDS)
listing_s = median([r[0] for r in again["second run, identity listing (default)"]])
content_s = median([r[0] for r in again["second run, identity content"]])
print(f"\na second run over the unchanged {SIZE / 2**30:.2f} GiB file ({ROUNDS} rounds, median):")
print("| identity | wall | peak RSS |\n|---|---|---|")
for name, runs in again.items():
    print(f"| {name} | {median([r[0] for r in runs]):.2f} s | {max(r[1] for r in runs):.0f} MiB |")
print(f"\nidentity content / listing, second run: {content_s / listing_s:.1f}× "
      f"(re-hashing {SIZE / 2**20 / max(content_s - listing_s, 1e-9):,.0f} MiB/s; "
      f"{content_s / wall['sluice run (folder)']:.0%} of the loading run's wall)")

if not SFTP:
    print("\n(the SFTP transfer is measured as root only: bench/files starts sshd with a user of its own)")
    sys.exit(0)
home = os.environ["SLUICE_TEST_SFTP_ROOT"]
shutil.copyfile(FILE, os.path.join(home, NAME))
os.chmod(os.path.join(home, NAME), 0o644)
user, port = os.environ["SLUICE_TEST_SFTP_USER"], os.environ["SLUICE_TEST_SFTP_PORT"]
key = os.environ["SLUICE_TEST_SFTP_KEY"]
connection = (f"bank:\n  kind: sftp\n  host: 127.0.0.1\n  port: {port}\n  user: {user}\n"
              f"  private_key: \"${{BANK_KEY}}\"\n  host_key: \"{os.environ['SLUICE_TEST_SFTP_HOST_KEY']}\"\n")
transfer = {"OpenSSH sftp get": [], "sluice fetch (SFTP)": []}
for round_ in range(ROUNDS):
    with tempfile.TemporaryDirectory(dir=CACHE) as d:
        batch = os.path.join(d, "batch")
        with open(batch, "w") as f:
            f.write(f"get {NAME} {d}/copy\n")
        # The cipher sluice negotiates (AES-GCM on the CPU's AES instructions), so that the
        # two move the same bytes the same way; OpenSSH's own default is ChaCha20.
        seconds, _, _ = timed(["sftp", "-q", "-b", batch, "-i", key, "-P", port, "-o", "StrictHostKeyChecking=no",
                               "-o", "Ciphers=aes256-gcm@openssh.com",
                               "-o", "UserKnownHostsFile=/dev/null", f"{user}@127.0.0.1"])
        assert os.path.getsize(f"{d}/copy") == SIZE
    transfer["OpenSSH sftp get"].append(seconds)
    _, _, summary = run_sluice(connection, {"BANK_KEY": open(key).read()})
    transfer["sluice fetch (SFTP)"].append(summary["source_files"]["fetch_seconds"])
    for name, runs in transfer.items():
        print(f"round {round_ + 1}: {name}: {runs[-1]:.1f} s", flush=True)
print(f"\nthe transfer of {SIZE / 2**30:.2f} GiB over SFTP from the same server ({ROUNDS} rounds, median):")
print("| client | seconds | MiB/s |\n|---|---|---|")
rate = {}
for name, runs in transfer.items():
    s = median(runs)
    rate[name] = SIZE / 2**20 / s
    print(f"| {name} | {s:.1f} s | {rate[name]:,.0f} |")
print(f"\nsluice / OpenSSH throughput: {rate['sluice fetch (SFTP)'] / rate['OpenSSH sftp get']:.2f}×")
