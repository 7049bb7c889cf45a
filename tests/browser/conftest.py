"""Fixtures of the browser tests: the real `coreg demo` server and Debian's Chromium.

The server is the command a person runs (``python -m monitor.cli demo``) in a
subprocess with its own database; Chromium is driven by Playwright's Python package
with the system browser (``/usr/bin/chromium``), never a downloaded one. Without the
browser or Playwright the tests are skipped, except under CI (``$CI`` set), where a
missing browser is a failure so the tests cannot quietly stop running.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO_RECORDING = REPO / "fixtures" / "sim_divergence.jsonl.gz"
CHROMIUM = Path("/usr/bin/chromium")
# Without the background-networking flags Chromium reaches for update and field-trial
# servers at start; the test machines have no internet, so it would only wait.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
SERVER_SPEED = 20.0  # replay speed of the demo server (session seconds per wall second)
START_TIMEOUT_S = 30.0
SCREENSHOTS_ENV = "COREG_SCREENSHOTS"


class ServerError(Exception):
    """The demo server did not come up; carries its output."""


def _unavailable(reason: str) -> None:
    """Skip locally, fail under CI (where the browser must be there)."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"browser tests cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class DemoServer:
    """A running `coreg demo` and the little REST client the tests steer it with."""

    base_url: str
    process: subprocess.Popen
    log_path: Path
    session_id: str = ""
    names: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: dict | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        if data is not None:
            req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def control(self, action: str, value: float | None = None) -> dict:
        """Play, pause, seek (session seconds) or set the speed of the demo replay."""
        return self.request("POST", f"/api/sessions/{self.session_id}/control", {"action": action, "value": value})

    def hold(self, t_s: float) -> dict:
        """Pause the replay at exactly ``t_s`` (a fixed picture for the viewers)."""
        self.control("pause")
        return self.control("seek", t_s)

    def play_from(self, t_s: float, speed: float) -> dict:
        """Seek to ``t_s`` and play on at ``speed``."""
        self.control("pause")
        self.control("speed", speed)
        self.control("seek", t_s)
        return self.control("play")

    def session(self) -> dict:
        """GET /api/sessions/{id}: the stored summary, events and replay state."""
        return self.request("GET", f"/api/sessions/{self.session_id}")

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _wait_for_demo(server: DemoServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last_error = ""
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerError(f"coreg demo exited with {server.process.returncode}:\n{server.output()}")
        try:
            sessions = server.request("GET", "/api/sessions")
        except (urllib.error.URLError, OSError) as exc:
            last_error = str(exc)
        else:
            running = [s for s in sessions if s.get("running") and s.get("kind") == "demo"]
            if running:
                server.session_id = running[0]["id"]
                server.names = {p: running[0]["partners"][p]["name"] for p in ("a", "b")}
                return
        time.sleep(0.2)
    raise ServerError(f"coreg demo did not answer within {START_TIMEOUT_S} s ({last_error}):\n{server.output()}")


@pytest.fixture(scope="session")
def demo_server(tmp_path_factory) -> Iterator[DemoServer]:
    """`python -m monitor.cli demo` on a free loopback port with a fresh database."""
    folder = tmp_path_factory.mktemp("coreg-demo")
    log_path = folder / "server.log"
    port = _free_port()
    env = {**os.environ, "COREG_DATA_DIR": str(folder), "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    cmd = [
        sys.executable, "-m", "monitor.cli", "demo", "--no-browser",
        "--port", str(port), "--db", str(folder / "c.db"), "--speed", str(SERVER_SPEED),
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = DemoServer(f"http://127.0.0.1:{port}", process, log_path)
    try:
        _wait_for_demo(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, through Playwright (skipped without either).

    Module scope, not session: Playwright's sync API runs an event loop in this
    thread while it is open, and other tests need to start their own.
    """
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing (pip install playwright)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class Tab:
    """One page plus what it said along the way (dialogs, script errors)."""

    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def open_tab(chromium, demo_server) -> Iterator[Any]:
    """open_tab(path) -> Tab: a fresh browser context (own sessionStorage) at 1280×800."""
    contexts = []

    def open_(path: str) -> Tab:
        context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        tab = Tab(page)

        def on_dialog(dialog) -> None:
            tab.dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: tab.errors.append(str(exc)))
        page.goto(demo_server.base_url + path)
        return tab

    yield open_
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def demo_analysis() -> Any:
    """The batch pipeline's analysis of the bundled demo recording."""
    from devices.recording import read_records
    from monitor.pipeline import analyze_records

    header, records = read_records(DEMO_RECORDING)
    return analyze_records(header, records)


@pytest.fixture
def screenshot_dir() -> Path | None:
    """docs/screenshots when $COREG_SCREENSHOTS=1 (README pictures), else None."""
    if os.environ.get(SCREENSHOTS_ENV) != "1":
        return None
    folder = REPO / "docs" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
