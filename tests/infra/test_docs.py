"""The documentation is tested like code: every YAML job row and connection block in
docs/**/*.md and README.md is compiled by `sluice jobs validate`; the shell examples that
can run offline run against a lake the demo made; the reference pages are what the code
generates (scripts/docs-reference --check); the site builds with `mkdocs build --strict`
(broken links and anchors fail it) and its pages' links resolve; and headless Chromium
shows the home page and a guide with their navigation and a working search (screenshots
in $SLUICE_DOCS_SHOTS, default the test's temporary folder).

The MkDocs tools come from their own pinned venv (scripts/requirements-docs.txt, made by
scripts/lib.sh's docs_venv; $DOCS_VENV)."""

import os
import re
import shlex
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import yaml
from conftest import REPO, chromium

DOCS = REPO / "docs"
PAGES = sorted(p for p in DOCS.rglob("*.md")) + [REPO / "README.md"]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
# Fields a job row has at its top level: a YAML block with only these is a fragment of a
# row (such as a `quality:` list), checked inside a row that completes it.
ROW_FIELDS = {"job", "description", "enabled", "freshness", "task_definition", "source", "mode",
              "transform", "target", "quality"}
# Shell examples run offline: `sluice` with these subcommands, against the demo's lake.
OFFLINE = {("query",), ("jobs", "validate"), ("jobs", "schema"), ("state", "show"), ("state", "history"),
           ("ddl",)}


def blocks(page: Path, langs):
    text = page.read_text()
    for m in FENCE.finditer(text):
        if m.group(1) in langs:
            yield text[: m.start()].count("\n") + 1, m.group(2)


def yaml_blocks():
    """(page, line, kind, value) of every YAML block: kind is job, connections or fragment."""
    out = []
    for page in PAGES:
        if "reference" in page.relative_to(REPO).parts:
            continue
        for line, body in blocks(page, ("yaml", "yml")):
            value = yaml.safe_load(body)
            where = f"{page.relative_to(REPO)}:{line}"
            if isinstance(value, dict) and "job" in value:
                out.append((where, "job", value))
            elif isinstance(value, dict) and value and all(isinstance(v, dict) and "kind" in v for v in value.values()):
                out.append((where, "connections", value))
            elif isinstance(value, dict) and set(value) <= ROW_FIELDS:
                out.append((where, "fragment", value))
            else:
                pytest.fail(f"{where}: a YAML block that is neither a job row, connections nor part of a row")
    return out


def merged(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def test_every_yaml_job_row_and_connection_in_the_docs_validates(sluice_bin, tmp_path):
    found = yaml_blocks()
    kinds = [k for _, k, _ in found]
    assert kinds.count("job") >= 10 and kinds.count("connections") >= 5, kinds
    shipped = yaml.safe_load((REPO / "jobs" / "connections.yaml").read_text())
    # A row names a connection of its own page, else of another page, else a shipped one.
    everywhere = dict(shipped)
    for _, kind, value in found:
        if kind == "connections":
            everywhere.update(value)
    failed = []
    for i, (where, kind, value) in enumerate(found):
        page = where.split(":")[0]
        own = {k: v for w, kd, val in found if kd == "connections" and w.startswith(page + ":") for k, v in val.items()}
        folder = tmp_path / f"block{i}"
        folder.mkdir()
        if kind == "connections":
            connections, rows = value, []
        elif kind == "job":
            connections, rows = {**everywhere, **own}, [value]
        else:
            base = {"job": f"doc_fragment_{i}", "source": {"connection": "logistics", "table": "orders",
                                                        "cursor": "updated_at"},
                    "mode": "incremental", "target": {"table": f"doc_fragment_{i}"}}
            connections, rows = shipped, [merged(base, value)]
        (folder / "connections.yaml").write_text(yaml.safe_dump(connections, sort_keys=False))
        for row in rows:
            (folder / f"{row['job']}.yaml").write_text(yaml.safe_dump(row, sort_keys=False))
        done = subprocess.run([sluice_bin, "jobs", "validate", str(folder)], capture_output=True, text=True,
                              env=dict(os.environ, SLUICE_LOG_FORMAT="text"))
        if done.returncode != 0:
            failed.append(f"{where}: the {kind} block does not validate:\n{done.stdout}{done.stderr}")
    assert not failed, "\n".join(failed)


def shell_lines():
    """(where, argv) of each `sluice …` line of a shell example that runs offline."""
    out = []
    for page in PAGES:
        if "reference" in page.relative_to(REPO).parts:
            continue
        for line, body in blocks(page, ("sh", "bash", "shell")):
            for n, text in enumerate(body.replace("\\\n", " ").splitlines()):
                if not text.startswith("sluice "):
                    continue  # `$ sluice …` lines are transcripts (with their output), not examples
                argv = shlex.split(text, comments=True)
                if any(op in argv for op in ("&", "|", ">", "&&")) or "$(" in text:
                    continue  # a server started in the background, or a pipeline: not a plain command
                # the subcommand, past the places options and their values (`--lake DIR`)
                i, rest = 1, []
                while i < len(argv):
                    if argv[i] in ("--jobs", "--lake", "--state", "--catalog", "--lineage", "--log-format"):
                        i += 2
                        continue
                    rest.append(argv[i])
                    i += 1
                words = [a for a in rest if not a.startswith("-")]
                if tuple(words[:1]) in OFFLINE or tuple(words[:2]) in OFFLINE:
                    out.append((f"{page.relative_to(REPO)}:{line + n + 1}", argv))
    return out


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory, sluice_bin):
    """A folder holding `sluice-demo`, made by the demo, as the README's tour expects."""
    base = tmp_path_factory.mktemp("docs")
    done = subprocess.run([sluice_bin, "demo", "--dir", str(base / "sluice-demo")], capture_output=True, text=True,
                          env=dict(os.environ, SLUICE_LOG_FORMAT="json"), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return base


def test_the_offline_shell_examples_run(sluice_bin, demo_dir):
    lines = shell_lines()
    assert len(lines) >= 5, lines
    demo = demo_dir / "sluice-demo"
    # Examples that name no places mean the defaults (jobs/, lake/, .sluice/state): here, the demo's.
    env = dict(os.environ, SLUICE_JOBS=str(demo / "jobs"), SLUICE_LAKE=str(demo / "lake"),
               SLUICE_STATE=str(demo / "state"), SLUICE_LOG_FORMAT="text")
    for where, argv in lines:
        done = subprocess.run([sluice_bin, *argv[1:]], capture_output=True, text=True, cwd=demo_dir, env=env,
                              timeout=300)
        assert done.returncode == 0, f"{where}: {shlex.join(argv)}: exit {done.returncode}\n{done.stdout}{done.stderr}"


def test_the_reference_pages_are_what_the_code_generates(sluice_bin):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "docs-reference"), "--check"],
                          capture_output=True, text=True, env=dict(os.environ, SLUICE_BIN=sluice_bin))
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_readme_s_links_resolve():
    text = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if urlparse(target).scheme:
            continue
        path = REPO / unquote(target.split("#")[0])
        assert path.exists(), f"README.md links to {target}, which does not exist"


def docs_venv() -> Path:
    venv = os.environ.get("DOCS_VENV")
    if not venv:
        pytest.fail("DOCS_VENV is not set: run scripts/test, which makes the docs venv (scripts/lib.sh docs_venv)")
    return Path(venv)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([str(docs_venv() / "bin" / "mkdocs"), "build", "--strict", "--site-dir", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}{done.stderr}"
    return out


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        for name in ("href", "src"):
            if attrs.get(name) and tag in ("a", "img", "link", "script"):
                self.links.append(attrs[name])


def test_the_site_builds_strictly_and_its_links_resolve(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 25, pages
    ids = {}
    parsed = {}
    for page in pages:
        p = Links()
        p.feed(page.read_text())
        parsed[page], ids[page] = p.links, p.ids
    broken = []
    for page, links in parsed.items():
        for link in links:
            url = urlparse(link)
            if url.scheme or link.startswith("//"):
                continue  # outside the site: not fetched (the tests run offline)
            if url.path.startswith("/"):
                target = site / unquote(url.path).lstrip("/")  # the 404 page's links are from the root
            else:
                target = (page.parent / unquote(url.path)).resolve() if url.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(site)} → {link}")
            elif url.fragment and target.suffix == ".html" and url.fragment not in ids.get(target, set()):
                broken.append(f"{page.relative_to(site)} → {link} (no such anchor)")
    assert not broken, "\n".join(broken)


def test_the_site_in_a_browser_shows_navigation_and_search(site, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    shots = Path(os.environ.get("SLUICE_DOCS_SHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    # Served over HTTP as a reader would read it (the search index is fetched by the page).
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
                               "--directory", str(site)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        line = server.stdout.readline()
        port = int(re.search(r"port (\d+)", line).group(1))
        driver = chromium()
        try:
            driver.get(f"http://127.0.0.1:{port}/index.html")
            tabs = [t.text for t in driver.find_elements(By.CSS_SELECTOR, ".md-tabs__link")]
            for tab in ("Getting started", "Inlets", "Outlets", "Operating", "Reference"):
                assert tab in tabs, tabs
            driver.save_screenshot(str(shots / "docs-home.png"))

            driver.get(f"http://127.0.0.1:{port}/inlets/files.html")
            assert "files" in driver.find_element(By.CSS_SELECTOR, "h1").text.lower()
            nav = driver.find_elements(By.CSS_SELECTOR, ".md-nav__link--active")
            assert nav, "the guide's page is not marked in the navigation"
            driver.save_screenshot(str(shots / "docs-guide-files.png"))

            # Search: Material's built-in, offline (its index is part of the site).
            box = driver.find_element(By.CSS_SELECTOR, "input.md-search__input")
            box.click()
            box.send_keys("quarantine")
            WebDriverWait(driver, 30).until(
                lambda d: d.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
            )
            results = driver.find_elements(By.CSS_SELECTOR, ".md-search-result__item")
            assert len(results) >= 2, [r.text for r in results]
            driver.save_screenshot(str(shots / "docs-search.png"))
            box.send_keys(Keys.ESCAPE)
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert not errors, errors
        finally:
            driver.quit()
    finally:
        server.terminate()
        server.wait()
    for name in ("docs-home.png", "docs-guide-files.png", "docs-search.png"):
        assert (shots / name).stat().st_size > 10_000, name
