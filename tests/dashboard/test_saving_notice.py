"""Viewers are told when a live session cannot be saved, and when it can again.

On the real app, store and session manager: a live session from a simulated source runs
20 times faster than real time; another connection locks the database; the WebSocket
viewer gets a ``storage`` message (paused), a late viewer's snapshot carries it, and
releasing the lock brings the ``ok`` message. The views' banner text comes from
feed.js's ``savingNotice``, checked with node.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
import subprocess
import warnings
from pathlib import Path

import pytest
from dashboard_fakes import BASE, WS

from dashboard.app import create_app
from devices.records import Notification, SessionClock
from devices.simulate import SimulatorSource
from monitor.sessions import SessionManager
from monitor.store import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

STATIC_DIR = Path(__file__).resolve().parents[2] / "dashboard" / "static"
SPEED = 20.0  # session seconds per real second


def next_of(ws, kind: str, limit: int = 20_000) -> dict:
    """The next message of a type, skipping the ticks, beats and events that keep flowing."""
    for _ in range(limit):
        message = ws.receive_json()
        if message["type"] == kind:
            return message
    raise AssertionError(f"no {kind} message in {limit} messages")


def test_the_dashboard_says_when_saving_pauses_and_when_it_works_again(tmp_path):
    store = Store(tmp_path / "coreg.db", busy_timeout_s=0.05)
    manager = SessionManager(store)

    async def start_live():
        loop = asyncio.get_running_loop()
        source = SimulatorSource("calm", seed=3, speed=SPEED)
        clock = SessionClock(monotonic=lambda: loop.time() * SPEED)
        return manager.start_sources(source.header, [source], label="saving", clock=clock).id

    with TestClient(create_app(manager), base_url=BASE) as client:
        session_id = client.portal.call(start_live)
        with client.websocket_connect(f"{WS}?session={session_id}") as ws:
            assert ws.receive_json()["storage"] == {"state": "ok"}
            next_of(ws, "tick")
            other = sqlite3.connect(store.path, isolation_level=None)
            other.execute("BEGIN EXCLUSIVE")
            paused = next_of(ws, "storage")
            assert (paused["state"], paused["reason"]) == ("paused", "busy")
            with client.websocket_connect(f"{WS}?session={session_id}") as late:
                snapshot = late.receive_json()
                assert snapshot["type"] == "snapshot" and snapshot["storage"]["state"] == "paused"
            ticks_while_paused = {next_of(ws, "tick")["t"] for _ in range(3)}
            assert len(ticks_while_paused) == 3  # the session goes on
            other.execute("ROLLBACK")
            other.close()
            assert next_of(ws, "storage") == {"type": "storage", "state": "ok"}
        client.portal.call(manager.close)
    info = store.get_session(session_id)
    assert info.status == "finished" and info.n_notifications > 0
    assert sum(isinstance(r, Notification) for r in store.records(session_id)) == info.n_notifications
    store.close()


NODE_CHECK = """
import { SessionModel, savingNotice } from %s;
const m = new SessionModel();
const out = {};
out.idle = m.storage;
m.apply({ type: "snapshot", session: { id: "s1" }, ticks: [], events: [], replay: null,
          storage: { state: "paused", reason: "full", held_rows: 12 } });
out.fromSnapshot = [m.storage.state, savingNotice(m.storage), savingNotice(m.storage, { detail: true })];
out.change = m.apply({ type: "storage", state: "paused", reason: "busy", held_rows: 40, dropped_rows: 3 });
out.busy = savingNotice(m.storage, { detail: true });
m.apply({ type: "storage", state: "ok", dropped_rows: 3 });
out.ok = [savingNotice(m.storage), savingNotice(m.storage, { detail: true })];
m.apply({ type: "snapshot", session: { id: "s2" }, ticks: [], events: [], replay: null });
out.oldSnapshot = m.storage;
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_views_show_a_calm_notice_only_while_saving_is_paused():
    module = json.dumps((STATIC_DIR / "feed.js").as_uri())
    result = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_CHECK % module], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["idle"] == {"state": "ok"}
    assert out["fromSnapshot"] == [
        "paused",
        "Saving is paused for now. The session goes on and will be saved when it can.",
        "Saving is paused: the disk is full. The session goes on and will be saved when it can.",
    ]
    assert out["change"] == "storage"
    assert out["busy"] == (
        "Saving is paused: the database is busy. The session goes on and will be saved when it can."
        " The memory kept for unsaved data is full, so the newest records are not kept."
    )
    assert out["ok"] == ["", ""]
    assert out["oldSnapshot"] == {"state": "ok"}
    for text in out["fromSnapshot"][1:] + [out["busy"]]:
        for word in ("alarm", "danger", "warning", "wrong", "fault", "error", "fail", "!"):
            assert word not in text.lower(), word
    for page in ("couple", "practitioner"):
        html = (STATIC_DIR / f"{page}.html").read_text(encoding="utf-8")
        script = (STATIC_DIR / f"{page}.js").read_text(encoding="utf-8")
        assert '<p id="saving" class="saving" role="status" hidden></p>' in html
        assert "savingNotice(model.storage" in script and '$("#saving").hidden = !text;' in script
