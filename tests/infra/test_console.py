"""`sluice console` in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium over a lake made by `sluice demo` — every page loads
without a console error and shows the jobs, counts and health colours; "run now" makes a
new run appear; a rewind asks for confirmation; axe-core finds no serious accessibility
violation; pages read with JavaScript off. Then: a reader's action is refused (403), a
forged one too (CSRF), a broken job row is an error on its page while the home page
works, the OpenLineage events the runs wrote parse with openlineage-python's models, and
the same pages work against moto (DynamoDB state, S3 lake, Step Functions "run now")."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import chromium

READER_KEY = "reader-key-0123456789abcdef"
OPERATOR_KEY = "operator-key-0123456789abcdef"


def sha(text):
    return hashlib.sha256(text.encode()).hexdigest()


def keys_file(folder: Path) -> Path:
    keys = folder / "console-keys.yaml"
    keys.write_text(
        f"- {{name: rita, sha256: {sha(READER_KEY)}, role: reader}}\n"
        f"- {{name: otto, sha256: {sha(OPERATOR_KEY)}, role: operator}}\n"
    )
    return keys


class Console:
    """A `sluice console` process and its URL."""

    def __init__(self, sluice_bin, env, places, *extra):
        self.process = subprocess.Popen(
            [sluice_bin, *places, "console", "--listen", "127.0.0.1:0", "--jobs-ttl", "1s", *extra],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        line = self.process.stdout.readline()
        assert line.startswith("listening on http://"), line + self.process.stderr.read()
        self.url = line.split()[2].rstrip("/")
        self.log = []
        threading.Thread(target=lambda: self.log.extend(self.process.stderr), daemon=True).start()

    def stop(self):
        self.process.terminate()
        assert self.process.wait(timeout=15) == 0, "".join(self.log)

    def call(self, path, key=None, data=None, headers=None, method=None):
        request = urllib.request.Request(self.url + path, method=method)
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        if data is not None:
            request.data = urllib.parse.urlencode(data).encode()
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=60) as reply:
                return reply.status, reply.headers, reply.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read().decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory, sluice_bin, sluice_env):
    """A lake made by the demo, its runs' OpenLineage events written to a file."""
    base = tmp_path_factory.mktemp("console")
    lineage = base / "lineage.ndjson"
    env = dict(sluice_env, SLUICE_LINEAGE=f"file://{lineage}")
    done = subprocess.run([sluice_bin, "demo", "--dir", str(base / "demo")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "8. The operators' console" in done.stdout and "console --keys" in done.stdout, done.stdout
    dir = base / "demo"
    return {"dir": dir, "lineage": lineage, "keys": keys_file(base), "demo_output": done.stdout,
            "places": ["--jobs", str(dir / "jobs"), "--lake", str(dir / "lake"), "--state", str(dir / "state")]}


@pytest.fixture(scope="module")
def console(demo, sluice_bin, sluice_env):
    c = Console(sluice_bin, sluice_env, demo["places"], "--keys", str(demo["keys"]),
                "--schedule", "cron(0 * * * ? *)")
    yield c
    c.stop()


@pytest.fixture
def browser():
    driver = chromium()
    yield driver
    driver.quit()


def sign_in(driver, console, key):
    from selenium.webdriver.common.by import By

    driver.get(console.url + "/login")
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.ID, "sign-in").click()
    wait_for(lambda: driver.current_url.rstrip("/") == console.url, "the home page after signing in")


def wait_for(check, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def console_errors(driver):
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def axe(driver):
    """axe-core (from npm, $SLUICE_AXE) injected into the page; its serious and critical
    violations."""
    path = os.environ.get("SLUICE_AXE")
    if not path or not os.path.exists(path):
        pytest.fail("SLUICE_AXE names no axe.min.js: run scripts/test, which installs axe-core from npm")
    # The page's CSP allows only its own scripts: axe runs through the driver's own
    # script execution, which CSP does not govern.
    driver.execute_script(Path(path).read_text())
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations)).catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));"
    )
    return [v for v in result if v.get("impact") in ("serious", "critical")]


PAGES = ["/", "/jobs/orders", "/jobs/customers", "/jobs/bank_transactions", "/jobs/gps_positions", "/lake",
         "/lake?sql=" + urllib.parse.quote("SELECT status, count(*) AS n FROM orders GROUP BY status ORDER BY status")]


def test_every_page_loads_without_console_errors_and_shows_the_jobs(console, browser):
    from selenium.webdriver.common.by import By

    sign_in(browser, console, READER_KEY)
    for page in PAGES:
        browser.get(console.url + page)
        assert browser.find_element(By.TAG_NAME, "h1").text
        assert console_errors(browser) == [], (page, console_errors(browser))
    browser.get(console.url + "/")
    rows = browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")
    jobs = {r.find_element(By.TAG_NAME, "a").text for r in rows}
    assert {"orders", "customers", "trucks", "toll_events", "bank_transactions", "gps_positions"} <= jobs
    summary = browser.find_element(By.CSS_SELECTOR, "#jobs .summary").text
    assert f"{len(rows)} jobs" in summary
    # The demo's jobs all committed: healthy, but the disabled GPS feed, which never ran.
    orders = browser.find_element(By.ID, "job-orders")
    assert orders.find_element(By.CSS_SELECTOR, ".badge.green").text == "healthy"
    assert "committed" in orders.text and "→ orders" in orders.text
    gps = browser.find_element(By.ID, "job-gps_positions")
    assert gps.find_element(By.CSS_SELECTOR, ".badge.grey").text == "idle" and "disabled" in gps.text
    # The freshness target of orders (2h) is shown beside its data's age.
    assert "/ 2h 0m" in orders.text
    # Next start from --schedule.
    assert re.search(r"\d\d-\d\d \d\d:00", orders.text), orders.text
    # The job page: runs, checkpoint, contract, lineage, the row as validated.
    browser.get(console.url + "/jobs/toll_events")
    text = browser.find_element(By.TAG_NAME, "main").text
    for part in ("Runs (newest first", "Checkpoint", "Watermark", "Contract columns", "Lineage", "The job row as validated"):
        assert part in text, part
    assert len(browser.find_elements(By.CSS_SELECTOR, "#live tbody tr")) >= 2
    assert "sqlite://" in text and "Run now" not in text, "a reader sees no actions"
    # The lake: tables, a Delta version, and a query's answer.
    browser.get(console.url + "/lake?sql=" + urllib.parse.quote("SELECT count(*) AS n FROM customers"))
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "orders" in text and "1 rows" in text
    browser.get(console.url + "/lake?sql=" + urllib.parse.quote("DROP TABLE orders"))
    assert "read-only" in browser.find_element(By.TAG_NAME, "main").text.lower() or "refused" in browser.page_source.lower()


def test_run_now_shows_the_new_run_and_rewind_asks_first(console, browser, demo, sluice_bin):
    from selenium.webdriver.common.by import By

    sign_in(browser, console, OPERATOR_KEY)
    browser.get(console.url + "/jobs/customers")
    before = len(browser.find_elements(By.CSS_SELECTOR, "#live tbody tr"))
    browser.find_element(By.ID, "run-now").click()
    wait_for(lambda: "started=1" in browser.current_url, "the page after run now")
    # The live region polls (htmx) until the run ends; the new run appears with its rows.
    def appeared():
        rows = browser.find_elements(By.CSS_SELECTOR, "#live tbody tr")
        return len(rows) > before and "committed" in rows[0].text and "console:otto" in rows[0].text
    wait_for(appeared, "the new run in the runs table")
    newest = browser.find_elements(By.CSS_SELECTOR, "#live tbody tr")[0].text
    assert re.search(r"committed console:otto \d+", newest), newest
    assert console_errors(browser) == []

    state = subprocess.run([sluice_bin, *demo["places"], "state", "show", "toll_events"],
                           capture_output=True, text=True)
    browser.get(console.url + "/jobs/toll_events")
    browser.find_element(By.ID, "rewind-to").send_keys("start")
    browser.find_element(By.ID, "rewind").click()
    wait_for(lambda: "/rewind" in browser.current_url, "the rewind's confirmation")
    text = browser.find_element(By.TAG_NAME, "main").text
    assert "Rewind toll_events?" in browser.title and "nothing has changed yet" in text
    assert browser.find_element(By.ID, "confirm-rewind").text.startswith("Yes, rewind")
    # Asking changed nothing.
    again = subprocess.run([sluice_bin, *demo["places"], "state", "show", "toll_events"],
                           capture_output=True, text=True)
    assert json.loads(again.stdout)["state"] == json.loads(state.stdout)["state"]
    assert axe(browser) == []


def test_accessibility_and_javascript_off(console):
    from selenium.webdriver.common.by import By

    driver = chromium()
    try:
        sign_in(driver, console, OPERATOR_KEY)
        for page in PAGES:
            driver.get(console.url + page)
            assert axe(driver) == [], page
    finally:
        driver.quit()
    # With JavaScript off, signing in and every reading page still work.
    driver = chromium(javascript=False)
    try:
        sign_in(driver, console, READER_KEY)
        for page in PAGES:
            driver.get(console.url + page)
            assert driver.find_element(By.TAG_NAME, "h1").text and "Internal" not in driver.title
        driver.get(console.url + "/")
        assert driver.find_element(By.ID, "job-orders")
    finally:
        driver.quit()


def session(console, key):
    """A browser-like session: its cookie and the CSRF token of a job page's form."""
    status, headers, _ = console.call("/login", data={"key": key})
    assert status == 303, status
    cookie = headers["Set-Cookie"].split(";")[0]
    assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
    status, _, page = console.call("/jobs/customers", headers={"Cookie": cookie})
    token = re.search(r'name="csrf" value="([^"]+)"', page)
    return cookie, token.group(1) if token else None


def test_actions_need_the_operator_role_and_the_page_s_token(console):
    # A reader's key is refused, as a header or as a session.
    status, _, page = console.call("/jobs/customers/run", key=READER_KEY, data={})
    assert status == 403 and "operator" in page
    cookie, token = session(console, READER_KEY)
    assert token is None, "a reader's page has no action form"
    status, _, _ = console.call("/jobs/customers/run", data={"csrf": "x"}, headers={"Cookie": cookie})
    assert status == 403
    # An operator's session without the page's token, or from another site, is refused.
    cookie, token = session(console, OPERATOR_KEY)
    assert token
    status, _, page = console.call("/jobs/customers/rewind", data={"to": "start", "confirm": "yes"}, headers={"Cookie": cookie})
    assert status == 403 and "CSRF" in page
    status, _, _ = console.call("/jobs/customers/run", data={"csrf": token},
                                headers={"Cookie": cookie, "Origin": "https://evil.example"})
    assert status == 403
    # No key at all: pages ask to sign in; fragments and wrong keys are 401.
    assert console.call("/")[0] == 303
    assert console.call("/fragment/jobs")[0] == 401
    assert console.call("/", key="wrong")[0] == 401
    # Every answer carries the policy; assets are cached for good.
    status, headers, page = console.call("/", key=READER_KEY)
    assert status == 200 and "script-src 'self'" in headers["Content-Security-Policy"]
    script = re.search(r'src="(/assets/htmx-[^"]+)" integrity="(sha384-[^"]+)"', page)
    assert script
    status, headers, body = console.call(script.group(1))
    assert status == 200 and "immutable" in headers["Cache-Control"]
    digest = "sha384-" + __import__("base64").b64encode(hashlib.sha384(body.encode()).digest()).decode()
    assert digest == script.group(2)
    # No secret is rendered: the demo's keys, connection URLs' passwords.
    for path in ("/", "/jobs/orders", "/jobs/bank_transactions", "/lake"):
        text = console.call(path, key=READER_KEY)[2]
        assert OPERATOR_KEY not in text and READER_KEY not in text and sha(OPERATOR_KEY) not in text


def test_a_broken_row_is_an_error_on_its_page_and_home_still_works(demo, sluice_bin, sluice_env, tmp_path):
    jobs = tmp_path / "jobs"
    shutil.copytree(demo["dir"] / "jobs", jobs)
    (jobs / "broken.yaml").write_text(
        "job: broken\nfreshness: 10s\nsource:\n  connection: logistics\n  table: orders\ntarget:\n  table: broken\n")
    places = ["--jobs", str(jobs), "--lake", str(demo["dir"] / "lake"), "--state", str(demo["dir"] / "state")]
    c = Console(sluice_bin, sluice_env, places, "--keys", str(demo["keys"]))
    try:
        status, _, page = c.call("/", key=READER_KEY)
        assert status == 200 and 'id="job-orders"' in page
        row = re.search(r'<tr id="job-broken">.*?</tr>', page)
        assert row and "badge red" in row.group(0) and "broken" in row.group(0)
        status, _, page = c.call("/jobs/broken", key=READER_KEY)
        assert status == 200 and 'class="problem"' in page and "freshness" in page and "out of range" in page
    finally:
        c.stop()


def test_runs_send_openlineage_events_the_client_s_models_read(demo):
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.serde import Serde

    events = [json.loads(line) for line in demo["lineage"].read_text().splitlines()]
    assert events, "the demo's runs wrote no lineage"
    by_run = {}
    for e in events:
        parsed = RunEvent(
            eventType=RunState[e["eventType"]],
            eventTime=e["eventTime"],
            run=Run(runId=e["run"]["runId"]),
            job=Job(namespace=e["job"]["namespace"], name=e["job"]["name"]),
            inputs=[InputDataset(namespace=d["namespace"], name=d["name"]) for d in e["inputs"]],
            outputs=[OutputDataset(namespace=d["namespace"], name=d["name"]) for d in e["outputs"]],
            producer=e["producer"],
        )
        assert parsed.schemaURL == e["schemaURL"]
        again = json.loads(Serde.to_json(parsed))
        assert again["run"]["runId"] == e["run"]["runId"] and again["job"]["name"] == e["job"]["name"]
        for facet in [*e["run"]["facets"].values(), *e["job"]["facets"].values()]:
            assert facet["_producer"] and facet["_schemaURL"].startswith("https://openlineage.io/spec/facets/")
        by_run.setdefault(e["run"]["runId"], []).append(e)
    for run_id, pair in by_run.items():
        assert [e["eventType"] for e in pair] == ["START", "COMPLETE"], (run_id, pair)
        stats = pair[1]["outputs"][0]["outputFacets"]["outputStatistics"]
        assert stats["rowCount"] >= 0 and "size" in stats
    orders = next(e for e in events if e["job"]["name"] == "orders" and e["eventType"] == "COMPLETE")
    assert orders["job"]["namespace"] == "sluice"
    assert orders["inputs"][0]["namespace"].startswith("sqlite://") and orders["inputs"][0]["name"] == "orders"
    assert orders["outputs"][0]["namespace"] == "file" and orders["outputs"][0]["name"].endswith("/lake/orders")
    bank = next(e for e in events if e["job"]["name"] == "bank_transactions")
    assert bank["inputs"][0]["namespace"] == "file" and "statement_" in bank["inputs"][0]["name"]
    # Runs as data: every run also a row of the lake table _sluice_runs.
    import pyarrow.dataset as ds

    runs = ds.dataset(str(demo["dir"] / "lake" / "_sluice_runs"), format="parquet", partitioning="hive").to_table()
    assert runs.num_rows >= len(by_run)
    assert set(runs.column("status").to_pylist()) <= {"committed", "up_to_date", "failed"}


def test_the_console_against_aws(aws, sluice, sluice_bin, sluice_env, tmp_path, unique):
    """DynamoDB state, an S3 lake, and "run now" as a Step Functions execution (moto)."""
    from selenium.webdriver.common.by import By

    bucket, state = f"console-{unique}", f"state_{unique}"
    aws("s3").create_bucket(Bucket=bucket)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    db = tmp_path / "src.db"
    import sqlite3

    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
        con.executemany("INSERT INTO items VALUES (?, ?)", [(i, f"item {i}") for i in range(50)])
    (jobs / "connections.yaml").write_text(f"src:\n  kind: sqlite\n  url: sqlite:{db}\n")
    (jobs / "items.yaml").write_text(
        "job: items\nfreshness: 1h\nsource:\n  connection: src\n  table: items\n  primary_key: [id]\ntarget:\n  table: items\n")
    places = ["--jobs", str(jobs), "--lake", f"s3://{bucket}/lake", "--state", f"dynamodb://{state}"]
    sluice("init", *places)
    sluice("run", "--job", "items", *places)
    sfn = aws("stepfunctions")
    role = f"arn:aws:iam::123456789012:role/sluice-{unique}"
    machine = sfn.create_state_machine(
        name=f"sluice-{unique}", roleArn=role,
        definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}))["stateMachineArn"]
    c = Console(sluice_bin, sluice_env, places, "--keys", str(keys_file(tmp_path)), "--state-machine", machine)
    driver = chromium()
    try:
        sign_in(driver, c, OPERATOR_KEY)
        for page in ("/", "/jobs/items", "/lake"):
            driver.get(c.url + page)
            assert console_errors(driver) == [], page
        driver.get(c.url + "/")
        row = driver.find_element(By.ID, "job-items")
        assert "healthy" in row.text and "50" in row.text
        driver.get(c.url + "/jobs/items")
        driver.find_element(By.ID, "run-now").click()
        wait_for(lambda: "started=1" in driver.current_url, "the page after run now")
        assert "Step Functions execution" in driver.find_element(By.TAG_NAME, "main").text
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        assert len(executions) == 1
        described = sfn.describe_execution(executionArn=executions[0]["executionArn"])
        assert json.loads(described["input"]) == {"jobs": ["items"]}
        driver.get(c.url + "/lake")
        assert "items" in driver.find_element(By.TAG_NAME, "main").text
    finally:
        driver.quit()
        c.stop()
