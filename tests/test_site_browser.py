"""Drive headless Chromium over the DevTools protocol to check a generated report site in a real browser.

No WebDriver: Chromium is started with `--remote-debugging-port=0` and a fresh profile, and a small
websocket client (the `websocket-client` package) speaks the DevTools protocol to one tab. That avoids
matching a chromedriver build to the browser. The site is served by `http.server` on 127.0.0.1 so every
request the page makes can be checked to stay on this machine (the site must open offline).
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
# The flags the issue asks for, plus a fixed window and no crash reporter prompts.
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--hide-scrollbars",
                "--window-size=1280,900", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1")
WIDTH = 1280
MAX_SCREENSHOT_HEIGHT = 8000

# Runs in the page once it has loaded: how many charts and tables there are and which are empty.
PAGE_PROBE = """(() => {
  const charts = [...document.querySelectorAll('.plotly-graph-div')];
  const tables = [...document.querySelectorAll('table.leaderboard, table.sortable')];
  return {
    title: document.title,
    charts: charts.length,
    unrendered: charts.filter(d => !d.querySelector('.main-svg')).map(d => d.id),
    tables: tables.length,
    empty_tables: tables.filter(t => t.tBodies.length === 0 || t.tBodies[0].rows.length === 0)
                        .map(t => t.id || t.closest('[id]')?.id || t.className),
    height: Math.ceil(document.documentElement.scrollHeight),
    text_has_script: document.body.innerText.includes('<script>'),
    injected: window.__membench_injected === true,
  };
})()"""


# Clicks the implementation header of the page's first leaderboard twice (run after the screenshot).
SORT_PROBE = """(() => {
  const table = document.querySelector('table.leaderboard');
  if (!table) { return null; }
  const th = table.tHead.rows[0].querySelector('th[data-key="impl"]');
  const col = [...th.parentNode.children].indexOf(th);
  const read = () => [...table.tBodies[0].rows].map(r => r.cells[col].getAttribute('data-value'));
  th.click(); const up = read(); th.click(); const down = read();
  return {up: up, down: down, aria: th.getAttribute('aria-sort')};
})()"""


def find_chromium() -> str | None:
    """The first Chromium binary present, or None (the browser tests then skip)."""
    for path in CHROMIUM_CANDIDATES:
        if Path(path).exists():
            return path
    return shutil.which("chromium")


@dataclass
class PageReport:
    """What one page load showed: console errors, requests that left 127.0.0.1, and the page probe."""

    url: str
    errors: list[str] = field(default_factory=list)
    external_requests: list[str] = field(default_factory=list)
    probe: dict[str, Any] = field(default_factory=dict)
    screenshot: Path | None = None
    sort: dict[str, Any] | None = None


class DevTools:
    """One websocket to one tab: send commands, collect the events that arrive meanwhile."""

    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True, enable_multithread=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, timeout: float = 30.0, **params: Any) -> dict:
        self.next_id += 1
        mine = self.next_id
        self.ws.send(json.dumps({"id": mine, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if message.get("id") == mine:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)
        raise TimeoutError(f"DevTools {method} gave no answer in {timeout:.0f} s")

    def wait_for(self, event: str, timeout: float = 30.0) -> dict:
        """Block until `event` arrives (it may already be among the collected events)."""
        deadline = time.monotonic() + timeout
        seen = len(self.events)
        for message in self.events:
            if message["method"] == event:
                return message
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv())
            if "method" in message:
                self.events.append(message)
                if message["method"] == event:
                    return message
        raise TimeoutError(f"no {event} in {timeout:.0f} s (after {len(self.events) - seen} other events)")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def close(self) -> None:
        self.ws.close()


@contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` on 127.0.0.1 (a free port) in a thread; yield the base URL."""

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def chromium(binary: str) -> Iterator[DevTools]:
    """Start headless Chromium with a fresh profile; yield a DevTools connection to its one tab."""
    profile = Path(tempfile.mkdtemp(prefix="membench-chromium-"))
    proc = subprocess.Popen([binary, *CHROME_FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tab = None
    try:
        port = _debugging_port(profile, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page = next(t for t in targets if t.get("type") == "page")
        tab = DevTools(page["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log", "Network"):
            tab.call(f"{domain}.enable")
        yield tab
    finally:
        if tab is not None:
            tab.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


def _debugging_port(profile: Path, proc: subprocess.Popen, timeout: float = 30.0) -> int:
    """Chromium writes its chosen port into DevToolsActivePort in the profile once it listens."""
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited with code {proc.returncode} before listening")
        if marker.exists():
            lines = marker.read_text().split()
            if lines:
                return int(lines[0])
        time.sleep(0.05)
    raise TimeoutError(f"chromium did not open its debugging port in {timeout:.0f} s")


def _errors(events: list[dict]) -> list[str]:
    """Console errors, uncaught exceptions and failed loads among the collected events."""
    out = []
    for e in events:
        method, params = e["method"], e.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            out.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed":
            out.append(f"network: {params.get('errorText')} ({params.get('requestId')})")
    return out


def load_page(tab: DevTools, url: str, shots: Path | None, settle_s: float = 15.0) -> PageReport:
    """Navigate, wait for load and for plotly to draw, then probe the page and take a full-page screenshot."""
    tab.events.clear()
    tab.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=900, deviceScaleFactor=1, mobile=False)
    tab.call("Page.navigate", url=url)
    tab.wait_for("Page.loadEventFired", timeout=60)
    deadline = time.monotonic() + settle_s
    probe = tab.evaluate(PAGE_PROBE)
    while probe["unrendered"] and time.monotonic() < deadline:
        time.sleep(0.2)
        probe = tab.evaluate(PAGE_PROBE)
    report = PageReport(url, probe=probe)
    report.external_requests = sorted({
        e["params"]["request"]["url"] for e in tab.events if e["method"] == "Network.requestWillBeSent"
        and not e["params"]["request"]["url"].startswith(("http://127.0.0.1:", "data:", "about:", "file://"))})
    report.errors = _errors(tab.events)
    if shots is not None:
        height = max(900, min(int(probe["height"]), MAX_SCREENSHOT_HEIGHT))
        tab.call("Emulation.setDeviceMetricsOverride", width=WIDTH, height=height, deviceScaleFactor=1,
                 mobile=False)
        time.sleep(0.3)  # let plotly's responsive charts re-layout to the new viewport
        shot = tab.call("Page.captureScreenshot", timeout=60, format="png")
        name = url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".html") or "index"
        report.screenshot = shots / f"{name}.png"
        report.screenshot.write_bytes(base64.b64decode(shot["data"]))
    report.sort = tab.evaluate(SORT_PROBE)
    report.errors += _errors(tab.events)[len(report.errors):]
    return report


def check_file_page(site: Path, page: str) -> PageReport:
    """One page opened straight from disk (file://), as a reader with no server and no network would."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary")
    with chromium(binary) as tab:
        return load_page(tab, (site / page).resolve().as_uri(), None)


def check_site(site: Path, shots: Path | None) -> list[PageReport]:
    """Load every HTML page of `site` in one headless browser session; one report per page."""
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("no chromium binary")
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html"))
    with serve(site) as base, chromium(binary) as tab:
        return [load_page(tab, base + page, shots) for page in pages]


# --- the tests -------------------------------------------------------------------------------------------

INJECTED = '<script>window.__membench_injected = true</script>'


def _skip_without_browser() -> str:
    pytest.importorskip("websocket", reason="websocket-client is not installed (pip install websocket-client)")
    binary = find_chromium()
    if binary is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    return binary


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Screenshots go to $MEMBENCH_ARTIFACTS/screenshots when set (CI keeps them), else a temp dir."""
    root = os.environ.get("MEMBENCH_ARTIFACTS")
    return Path(root) / "screenshots" if root else tmp_path_factory.mktemp("screenshots")


def _assert_page_ok(report: PageReport) -> None:
    page = report.url.rsplit("/", 1)[-1]
    assert report.errors == [], f"{page}: console errors {report.errors}"
    assert report.external_requests == [], f"{page}: requests off this machine {report.external_requests}"
    assert report.probe["unrendered"] == [], f"{page}: chart divs without a plot {report.probe['unrendered']}"
    assert report.probe["empty_tables"] == [], f"{page}: tables without rows {report.probe['empty_tables']}"
    assert not report.probe["injected"], f"{page}: a record's <script> ran"
    assert report.screenshot is not None and report.screenshot.stat().st_size > 5_000
    if report.sort is not None:  # a click on a header sorts the table, a second click reverses it
        assert report.sort["up"] == sorted(report.sort["up"]), page
        assert report.sort["down"] == sorted(report.sort["up"], reverse=True), page
        assert report.sort["aria"] == "descending", page


def test_synthetic_site_in_browser(tmp_path: Path, artifacts: Path) -> None:
    """Every page of the synthetic site (with a <script> impl name and claims) renders cleanly."""
    _skip_without_browser()
    from report_site import BUILD_TIME, DEVICES, METRIC_SPECS, WORKLOAD_INFO, make_manifests, make_records

    from reports import build_site

    records = make_records()
    hostile = records.iloc[[0]].copy()
    hostile["impl"], hostile["case"] = INJECTED, f"long_context/attention_prefill/{INJECTED}"
    claims = [{"id": "C1", "paper": "Paper <b>A</b>", "statement": "attention_prefill uses less memory",
               "expected": 2.0, "comparison": ">=", "tolerance": 0.0, "unit": "x", "how": "ratio",
               "verdict": "reproduced", "measured": 3.1, "spread": 0.04, "device": "cpu", "detail": INJECTED}]
    site = tmp_path / "site"
    build_site(pd.concat([records, hostile], ignore_index=True), make_manifests(), site, METRIC_SPECS,
               WORKLOAD_INFO, BUILD_TIME, devices=DEVICES, claims=claims)
    reports = check_site(site, artifacts / "synthetic")
    assert {Path(r.url).name for r in reports} >= {"index.html", "runs.html", "claims.html",
                                                   "workload-attention_prefill.html"}
    for report in reports:
        _assert_page_ok(report)
    by_name = {Path(r.url).name: r for r in reports}
    assert by_name["workload-attention_prefill.html"].probe["charts"] >= 1
    assert by_name["workload-attention_prefill.html"].probe["text_has_script"]  # shown as text, never run
    assert by_name["claims.html"].probe["tables"] == 1


def test_published_site_in_browser(tmp_path: Path, artifacts: Path) -> None:
    """The committed CPU smoke run plus the committed H100 run, with the claims registry, open offline."""
    _skip_without_browser()
    from harness.cli import device_ceilings
    from harness.metrics import all_specs
    from harness.registry import REGISTRY
    from harness.store import load, load_manifests
    from reports import build_site

    root = Path(__file__).resolve().parents[1] / "results" / "published"
    folders = [root / "cpu-long-context-2026-11-22" / "smoke", root / "h100-gpu-2026-11-22"]
    if not all((f / "records.jsonl").is_file() for f in folders):
        pytest.skip("committed runs not present")
    REGISTRY.load()
    records, manifests = load(folders), load_manifests(folders)
    claims = [claim.evaluate(records) for _, claim in sorted(REGISTRY.claims.items())]
    info = {name: w.info() for name, w in REGISTRY.workloads.items()}
    site = tmp_path / "published"
    build_site(records, manifests, site, all_specs(), info, "2026-11-22T00:00:00+00:00",
               devices=device_ceilings(manifests), claims=claims)
    reports = check_site(site, artifacts / "published")
    for report in reports:
        _assert_page_ok(report)
    assert sum(r.probe["charts"] for r in reports) >= 5
    attention = next(r for r in reports if r.url.endswith("workload-attention_prefill.html"))
    assert attention.probe["charts"] >= 2
    offline = check_file_page(site, "workload-attention_prefill.html")  # no server: straight from disk
    assert offline.errors == [] and offline.external_requests == [] and offline.probe["unrendered"] == []
    assert offline.probe["charts"] == attention.probe["charts"]
