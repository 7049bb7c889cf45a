"""The dashboard's HTTP API against a scripted manager: happy paths and every error."""

from __future__ import annotations

import pytest

from devices.recording import read_records
from devices.records import Annotation, Notification
from monitor.store import StoreError

XSS = "<img src=x onerror=alert(1)>"


def test_pages_and_static_files_are_served(client):
    couple = client.get("/")
    assert couple.status_code == 200
    assert couple.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/couple.js"></script>' in couple.text
    practitioner = client.get("/practitioner")
    assert practitioner.status_code == 200
    assert "/static/vendor/uPlot.iife.min.js" in practitioner.text
    js = client.get("/static/feed.js")
    assert js.status_code == 200
    assert "javascript" in js.headers["content-type"]
    assert client.get("/static/vendor/uPlot.min.css").status_code == 200
    assert client.get("/static/nothing.js").status_code == 404
    assert client.get("/static/../app.py").status_code == 404


def test_security_headers_on_pages(client):
    headers = client.get("/").headers
    csp = headers["content-security-policy"]
    assert "script-src 'self';" in csp
    assert "connect-src 'self' ws://127.0.0.1:8000 wss://127.0.0.1:8000;" in csp
    assert "frame-ancestors 'none'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_list_sessions_marks_the_running_ones(client, manager, store):
    store.add("old1", label="Tuesday")
    manager.add_runner("live1", kind="live")
    paused = manager.add_runner("rep1")
    paused.status = "paused"
    stopped = manager.add_runner("rep2")
    stopped.status = "stopped"
    response = client.get("/api/sessions")
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    by_id = {s["id"]: s for s in response.json()}
    assert {k: v["running"] for k, v in by_id.items()} == {"old1": False, "live1": True, "rep1": True, "rep2": False}
    assert by_id["old1"]["label"] == "Tuesday"
    assert by_id["old1"]["partners"]["a"] == {"name": "Ana", "device": "AA:01"}
    assert by_id["old1"]["duration_s"] == 1800.0


def test_get_session_gives_info_events_and_state(client, manager, store):
    store.add("old1")
    store.stored_events["old1"] = [{"t": 180.0, "kind": "settled", "partner": "a", "baseline": {"hr_mean_bpm": 70.0}}]
    body = client.get("/api/sessions/old1").json()
    assert body["session"]["id"] == "old1"
    assert body["session"]["running"] is False
    assert body["events"] == store.stored_events["old1"]
    assert body["state"] is None
    runner = manager.add_runner("rep1")
    runner.position_s = 42.0
    body = client.get("/api/sessions/rep1").json()
    assert body["state"] == {"status": "running", "position_s": 42.0, "duration_s": 600.0, "speed": 1.0, "can_seek": True}
    assert body["session"]["running"] is True


def test_unknown_and_malformed_session_ids(client):
    response = client.get("/api/sessions/nope")
    assert response.status_code == 404
    assert response.json() == {"detail": "no session nope"}
    for method, path in [
        ("POST", "/api/sessions/nope/stop"),
        ("DELETE", "/api/sessions/nope"),
        ("GET", "/api/sessions/nope/export"),
        ("POST", "/api/sessions/nope/control"),
        ("POST", "/api/sessions/nope/annotations"),
    ]:
        body = {"action": "play"} if path.endswith("control") else {"text": "x"}
        response = client.request(method, path, json=body if method == "POST" else None)
        assert response.status_code == 404, path
    bad = client.get("/api/sessions/..%2Fetc")
    assert bad.status_code in (404, 422)
    assert client.get("/api/sessions/a%20b").status_code == 422


def test_start_demo_replay_and_live(client, manager, store):
    recordings = store.path.parent / "recordings"
    recordings.mkdir()
    (recordings / "tuesday.jsonl.gz").write_bytes(b"")
    demo = client.post("/api/sessions", json={"kind": "demo", "speed": 4})
    assert demo.status_code == 201
    assert demo.json()["id"] == "s1"
    assert demo.json()["kind"] == "demo"
    assert demo.json()["running"] is True
    replay = client.post("/api/sessions", json={"kind": "replay", "source": "tuesday.jsonl.gz", "speed": 0.5})
    assert replay.status_code == 201
    live = client.post(
        "/api/sessions",
        json={"kind": "live", "addr_a": "AA:01", "addr_b": "BB:02", "label": "Thursday", "name_a": "Ana"},
    )
    assert live.status_code == 201
    assert live.json()["kind"] == "live"
    assert manager.started == [
        ("demo", 4.0),
        ("replay", str((recordings / "tuesday.jsonl.gz").resolve()), 0.5),
        ("live", "AA:01", "BB:02", "Thursday", ("Ana", "")),
    ]


@pytest.mark.parametrize(
    "body, word",
    [
        ({"kind": "replay"}, "source"),
        ({"kind": "live", "addr_a": "AA:01"}, "addr_b"),
        ({"kind": "film"}, "kind"),
        ({"kind": "demo", "speed": 0}, "speed"),
        ({"kind": "demo", "speed": 5000}, "speed"),
        ({"kind": "demo", "unexpected": 1}, "unexpected"),
        ({"kind": "demo", "label": "x" * 121}, "label"),
        ({"kind": "demo", "label": "tab\u0000nul"}, "control characters"),
        ({"kind": "replay", "source": "/tmp/a\u001b[2J.jsonl"}, "control characters"),
    ],
)
def test_start_refuses_bad_bodies(client, manager, body, word):
    response = client.post("/api/sessions", json=body)
    assert response.status_code == 422
    assert word in str(response.json()["detail"])
    assert manager.started == []


def test_start_reports_what_the_manager_refused(client, manager, store):
    store.add("s7")
    manager.fail_with = StoreError("s7: the recording ends before its header")
    response = client.post("/api/sessions", json={"kind": "replay", "source": "s7"})
    assert response.status_code == 422
    assert response.json() == {"detail": "could not start the replay session: s7: the recording ends before its header"}


def test_replays_only_stored_sessions_and_recordings_in_the_data_folder(client, manager, store, tmp_path):
    """No request names a path: a file outside recordings/ is never opened."""
    recordings = store.path.parent / "recordings"
    recordings.mkdir()
    (recordings / "monday.jsonl").write_text("{}\n")
    (recordings / "notes.txt").write_text("x")
    (recordings / "inner").mkdir()
    (recordings / "inner" / "deep.jsonl").write_text("{}\n")
    outside = tmp_path / "elsewhere.jsonl"
    outside.write_text("{}\n")
    (recordings / "link.jsonl").symlink_to(outside)
    listed = client.get("/api/recordings").json()
    assert [r["name"] for r in listed] == ["monday.jsonl"]
    assert listed[0]["bytes"] == 3
    for source in (str(outside), "../elsewhere.jsonl", "inner/deep.jsonl", "link.jsonl", "notes.txt",
                   "/etc/passwd", "missing.jsonl", ".hidden.jsonl", "..\\elsewhere.jsonl"):
        response = client.post("/api/sessions", json={"kind": "replay", "source": source})
        assert response.status_code == 422, source
        assert "could not start the replay session" in response.json()["detail"]
    assert manager.started == []
    assert client.post("/api/sessions", json={"kind": "replay", "source": "monday.jsonl"}).status_code == 201
    assert manager.started == [("replay", str((recordings / "monday.jsonl").resolve()), 1.0)]


def test_an_unexpected_failure_is_json_500(client, manager):
    manager.fail_with = RuntimeError("boom")
    response = client.post("/api/sessions", json={"kind": "demo"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error: RuntimeError"}


def test_stop(client, manager, store):
    runner = manager.add_runner("rep1")
    response = client.post("/api/sessions/rep1/stop")
    assert response.status_code == 200
    assert response.json()["running"] is False
    assert response.json()["status"] == "finished"
    assert runner.calls == [("stop",)]
    again = client.post("/api/sessions/rep1/stop")
    assert again.status_code == 409
    assert "already stopped" in again.json()["detail"]
    store.add("old1")
    assert client.post("/api/sessions/old1/stop").status_code == 409


def test_annotations_are_stored_verbatim(client, manager, store):
    runner = manager.add_runner("rep1")
    runner.position_s = 95.2
    response = client.post("/api/sessions/rep1/annotations", json={"text": XSS, "author": "practitioner"})
    assert response.status_code == 201
    assert response.json() == {"t": 95.2, "kind": "annotation", "partner": None, "text": XSS, "author": "practitioner"}
    assert store.stored_events["rep1"][-1]["text"] == XSS
    assert runner.events[-1]["text"] == XSS
    # Returned as JSON text, exactly as typed, in the session's events too.
    assert client.get("/api/sessions/rep1").json()["events"][-1]["text"] == XSS
    assert client.post("/api/sessions/rep1/annotations", json={"text": "repair"}).json()["author"] == ""


@pytest.mark.parametrize(
    "body",
    [
        {"text": ""},
        {"text": "   \n"},
        {"text": "x" * 501},
        {"text": "ok", "author": "y" * 61},
        {"author": "pat"},
        {"text": "ok", "t": 3.0},
        {"text": 5},
        {"text": "bell \u0007"},
        {"text": "ok", "author": "nul \u0000"},
    ],
)
def test_annotation_bounds(client, manager, body):
    manager.add_runner("rep1")
    assert client.post("/api/sessions/rep1/annotations", json=body).status_code == 422


def test_annotation_with_half_a_surrogate_pair_is_refused(client, manager):
    runner = manager.add_runner("rep1")
    raw = b'{"text": "half a pair \\ud800"}'  # valid JSON, but no UTF-8 text
    response = client.post("/api/sessions/rep1/annotations", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "unicode" in str(response.json()["detail"]).lower()
    assert runner.events == []


def test_annotation_keeps_newlines_tabs_and_any_script(client, manager):
    manager.add_runner("rep1")
    text = "line one\n\tline two — 喜び 🙂 \u202e"
    response = client.post("/api/sessions/rep1/annotations", json={"text": text, "author": "Zoë"})
    assert response.status_code == 201
    assert response.json()["text"] == text


def test_annotation_the_store_refuses_is_422(client, manager, store, monkeypatch):
    manager.add_runner("rep1")

    def refuse(*args, **kwargs):
        raise StoreError("session 'rep1', annotation: the annotation is too long")

    monkeypatch.setattr(store, "add_annotation", refuse)
    response = client.post("/api/sessions/rep1/annotations", json={"text": "x"})
    assert response.status_code == 422
    assert response.json() == {"detail": "session 'rep1', annotation: the annotation is too long"}


def test_annotation_limits_are_inclusive(client, manager):
    manager.add_runner("rep1")
    response = client.post("/api/sessions/rep1/annotations", json={"text": "x" * 500, "author": "y" * 60})
    assert response.status_code == 201
    assert len(response.json()["text"]) == 500


def test_annotation_needs_a_held_session(client, manager, store):
    store.add("old1")
    assert client.post("/api/sessions/old1/annotations", json={"text": "x"}).status_code == 409
    manager.add_runner("rep1").status = "stopped"
    assert client.post("/api/sessions/rep1/annotations", json={"text": "x"}).status_code == 409


def test_replay_controls(client, manager):
    runner = manager.add_runner("rep1")
    paused = client.post("/api/sessions/rep1/control", json={"action": "pause"})
    assert paused.status_code == 200
    assert paused.json()["status"] == "paused"
    assert client.post("/api/sessions/rep1/control", json={"action": "seek", "value": 120.5}).json()["position_s"] == 120.5
    assert client.post("/api/sessions/rep1/control", json={"action": "speed", "value": 16}).json()["speed"] == 16.0
    played = client.post("/api/sessions/rep1/control", json={"action": "play"})
    assert played.json()["status"] == "running"
    assert runner.calls == [("pause",), ("seek", 120.5), ("speed", 16.0), ("resume",)]


@pytest.mark.parametrize(
    "body",
    [
        {"action": "seek"},
        {"action": "speed"},
        {"action": "speed", "value": 0},
        {"action": "speed", "value": -2},
        {"action": "seek", "value": -1},
        {"action": "rewind"},
        {"action": "seek", "value": "NaN"},
    ],
)
def test_control_refuses_bad_bodies(client, manager, body):
    runner = manager.add_runner("rep1")
    assert client.post("/api/sessions/rep1/control", json=body).status_code == 422
    assert runner.calls == []


def test_control_errors_from_the_runner_and_live_sessions(client, manager, store):
    manager.add_runner("rep1")
    past_end = client.post("/api/sessions/rep1/control", json={"action": "seek", "value": 9999})
    assert past_end.status_code == 422
    assert past_end.json() == {"detail": "seek past the end (600.0 s)"}
    live = manager.add_runner("live1", kind="live", duration_s=None)
    response = client.post("/api/sessions/live1/control", json={"action": "pause"})
    assert response.status_code == 409
    assert "live" in response.json()["detail"]
    assert live.calls == []
    store.add("old1")
    assert client.post("/api/sessions/old1/control", json={"action": "play"}).status_code == 409


def test_delete(client, manager, store):
    store.add("old1")
    assert client.delete("/api/sessions/old1").status_code == 204
    assert "old1" not in store.sessions
    assert client.get("/api/sessions/old1").status_code == 404
    manager.add_runner("rep1")
    refused = client.delete("/api/sessions/rep1")
    assert refused.status_code == 409
    assert "stop it first" in refused.json()["detail"]
    assert "rep1" in store.sessions
    manager.runners["rep1"].status = "finished"
    assert client.delete("/api/sessions/rep1").status_code == 204


def test_export_downloads_a_recording_and_leaves_no_file(client, store, tmp_path):
    store.add("old1")
    response = client.get("/api/sessions/old1/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"] == 'attachment; filename="coreg-2024-05-01-old1.jsonl"'
    download = tmp_path / "download.jsonl"
    download.write_bytes(response.content)
    header, records = read_records(download)
    assert header.partners["a"].name == "Ana"
    assert records == [Notification(0.5, "a", bytes.fromhex("104800")), Annotation(1.0, "<b>marked</b>", "pat")]
    # Written beside the store, in a private folder that is gone after the response.
    [written] = store.exported
    assert written.parent.parent == tmp_path
    assert not written.exists() and not written.parent.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["download.jsonl"]


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) == {
        "/api/sessions",
        "/api/sessions/{session_id}",
        "/api/sessions/{session_id}/stop",
        "/api/sessions/{session_id}/report",
        "/api/sessions/{session_id}/annotations",
        "/api/sessions/{session_id}/control",
        "/api/sessions/{session_id}/export",
        "/api/recordings",
    }
    schemas = spec["components"]["schemas"]
    assert schemas["AnnotationIn"]["properties"]["text"]["maxLength"] == 500
    assert schemas["AnnotationIn"]["properties"]["author"]["maxLength"] == 60
    assert schemas["Control"]["properties"]["action"]["enum"] == ["play", "pause", "seek", "speed"]
    assert schemas["StartSession"]["properties"]["kind"]["enum"] == ["demo", "replay", "live"]
    assert set(spec["paths"]["/api/sessions/{session_id}"]) == {"get", "delete"}
