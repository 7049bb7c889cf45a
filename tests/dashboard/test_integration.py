"""The dashboard on the real store and session manager: the demo end to end."""

from __future__ import annotations

import warnings

import pytest

from dashboard.app import create_app
from devices.recording import read_records
from devices.records import Annotation
from dashboard_fakes import BASE, WS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

sessions = pytest.importorskip("monitor.sessions")
store_module = pytest.importorskip("monitor.store")

XSS = "<img src=x onerror=alert(1)>"


def next_of(ws, kind: str) -> dict:
    """The next message of a type, skipping the ticks and events that keep flowing."""
    while True:
        message = ws.receive_json()
        if message["type"] == kind:
            return message


def test_demo_through_the_dashboard(tmp_path):
    store = store_module.Store(tmp_path / "coreg.db")
    manager = sessions.SessionManager(store)
    with TestClient(create_app(manager), base_url=BASE) as client:
        started = client.post("/api/sessions", json={"kind": "demo", "speed": 100})
        assert started.status_code == 201
        info = started.json()
        assert (info["kind"], info["running"]) == ("demo", True)
        session_id = info["id"]
        with client.websocket_connect(WS) as ws:
            snapshot = ws.receive_json()
            assert snapshot["type"] == "snapshot"
            assert snapshot["session"]["id"] == session_id
            assert snapshot["replay"]["can_seek"] is True
            times = [m["t"] for m in snapshot["ticks"]]
            for _ in range(20):
                times.append(next_of(ws, "tick")["t"])
            # One tick per second of session time, none missing, none twice.
            assert times == [float(t) for t in range(int(times[0]), int(times[0]) + len(times))]
            assert set(snapshot["ticks"][-1]["partners"]) == {"a", "b"}

            note = client.post(f"/api/sessions/{session_id}/annotations", json={"text": XSS, "author": "pat"})
            assert note.status_code == 201
            assert note.json()["text"] == XSS
            assert next_of(ws, "event")["event"]["text"] == XSS

            sought = client.post(f"/api/sessions/{session_id}/control", json={"action": "seek", "value": 5})
            assert sought.status_code == 200
            resync = next_of(ws, "resync")
            assert resync["ticks"] and resync["ticks"][-1]["t"] <= sought.json()["position_s"]
            paused = client.post(f"/api/sessions/{session_id}/control", json={"action": "pause"})
            assert paused.json()["status"] == "paused"

        listed = {s["id"]: s for s in client.get("/api/sessions").json()}
        assert listed[session_id]["running"] is True  # paused still holds the session
        assert listed[session_id]["runner_status"] == "paused"

        export = client.get(f"/api/sessions/{session_id}/export")
        assert export.status_code == 200
        download = tmp_path / "download.jsonl"
        download.write_bytes(export.content)
        header, records = read_records(download)
        assert header.partners["a"].name == info["partners"]["a"]["name"]
        assert Annotation(note.json()["t"], XSS, "pat") in records
        assert sum(not isinstance(r, Annotation) for r in records) >= info["n_notifications"]

        assert client.delete(f"/api/sessions/{session_id}").status_code == 409
        assert client.post(f"/api/sessions/{session_id}/stop").json()["running"] is False
        assert client.delete(f"/api/sessions/{session_id}").status_code == 204
        assert client.get(f"/api/sessions/{session_id}").status_code == 404
        # Nothing but the database is left beside it.
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("coreg.db")) == ["download.jsonl"]
        client.portal.call(manager.close)
    store.close()
