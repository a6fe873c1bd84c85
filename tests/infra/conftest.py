"""Shared fixtures of the infrastructure tests: the repository, the moto endpoint that
scripts/test starts, boto3 clients pointed at it, and the sluice binary."""

import os
import re
import signal
import subprocess
import threading
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"


def duckdb_with_delta():
    """A DuckDB connection that reads Delta tables (`delta_scan`): the delta extension
    from its PyPI wheel, loaded by path (nothing is downloaded)."""
    import duckdb
    import duckdb_extension_delta

    con = duckdb.connect()
    ext = Path(duckdb_extension_delta.__file__).parent / "extensions" / f"v{duckdb.__version__}" / "delta.duckdb_extension"
    con.execute(f"LOAD '{ext}'")
    return con


class Workspace:
    """A folder of job rows, a local lake and a local state: sluice with no cloud."""

    def __init__(self, root: Path, sluice_bin: str, env=None, lake=None):
        self.root, self.bin = root, sluice_bin
        self.jobs = root / "jobs"
        self.jobs.mkdir(parents=True, exist_ok=True)
        self.lake = lake or str(root / "lake")
        self.env = dict(env or os.environ, SLUICE_LOG_FORMAT="json")

    def args(self, *args):
        return [self.bin, *args, "--jobs", str(self.jobs), "--lake", self.lake, "--state", str(self.root / "state")]

    def sluice(self, *args, code=0):
        done = subprocess.run(self.args(*args), env=self.env, capture_output=True, text=True, timeout=600)
        assert done.returncode == code, f"sluice {' '.join(args)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def start(self, *args, failpoint=None):
        env = dict(self.env, **({"SLUICE_FAILPOINT": failpoint} if failpoint else {}))
        return subprocess.Popen(self.args(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stopped_at(self, failpoint, *args):
        """Starts `sluice <args>`, waits until it stops at `failpoint`, kills it with -9."""
        proc = self.start(*args, failpoint=failpoint)
        for line in proc.stderr:
            if f"failpoint {failpoint} reached" in line:
                break
        else:
            pytest.fail(f"never reached {failpoint}: {proc.wait()}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def table(self, name):
        return str(Path(self.lake) / name)


class JsonPages(BaseHTTPRequestHandler):
    """A partner's API over HTTP, standing in for one: `page(path)` is the JSON body a GET
    of `path` answers."""

    def page(self, path: str) -> bytes:
        raise NotImplementedError

    def do_GET(self):
        body = self.page(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def serving(handler):
    """Serves `handler` on a free loopback port while the block runs; yields the port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()


def render(template: str, values: dict) -> str:
    """Fills `${name}` placeholders the way Terraform's templatefile() does for plain
    names; every placeholder must have a value."""
    missing = sorted(set(re.findall(r"\$\{(\w+)\}", template)) - set(values))
    assert not missing, f"no value for {missing}"
    return re.sub(r"\$\{(\w+)\}", lambda m: str(values[m.group(1)]), template)


@pytest.fixture(scope="session")
def endpoint():
    url = os.environ.get("SLUICE_TEST_AWS_ENDPOINT")
    if not url:
        pytest.fail("SLUICE_TEST_AWS_ENDPOINT is not set: run scripts/test, which starts moto")
    return url


@pytest.fixture(scope="session")
def aws(endpoint):
    """boto3 clients against moto."""
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    return lambda service: session.client(service, endpoint_url=endpoint)


@pytest.fixture
def unique():
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="session")
def sluice_bin():
    """The sluice binary built by cargo test."""
    return os.environ.get("SLUICE_BIN") or str(
        Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "sluice"
    )


@pytest.fixture(scope="session")
def sluice_env(endpoint):
    """The environment of a sluice process against moto."""
    return dict(
        os.environ,
        AWS_ENDPOINT_URL=endpoint,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        SLUICE_LOG_FORMAT="json",
    )


@pytest.fixture(scope="session")
def sluice_call(sluice_bin, sluice_env):
    """Runs sluice against moto and returns the finished process, whatever its exit code."""

    def call(*args, timeout=300):
        return subprocess.run(
            [sluice_bin, *args], env=sluice_env, capture_output=True, text=True, cwd=REPO, timeout=timeout
        )

    return call


@pytest.fixture(scope="session")
def sluice(sluice_call):
    """Runs sluice against moto, requires exit 0 and returns its standard output."""

    def run(*args):
        done = sluice_call(*args)
        assert done.returncode == 0, f"sluice {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout

    return run


@pytest.fixture
def postgres_database(unique):
    """A new, empty PostgreSQL database on the server scripts/test starts; its URL."""
    import psycopg

    admin = os.environ.get("SLUICE_TEST_POSTGRES_URL")
    if not admin:
        pytest.fail("SLUICE_TEST_POSTGRES_URL is not set: run scripts/test, which starts PostgreSQL")
    name = f"db_{unique}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def chromium(javascript=True):
    """Debian's headless chromium driven by Selenium (the console's and the docs' tests)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            pytest.fail(f"{path} is missing: scripts/test installs Debian's chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1400,1000"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
