"""The WebSocket: snapshot first, then the runner's messages; following, pinning, acks."""

from __future__ import annotations

import logging
import math

import pytest
from starlette.websockets import WebSocketDisconnect

from dashboard.viewer import dumps
from dashboard_fakes import WS, event, tick


def test_snapshot_then_live_messages_in_order(client, manager):
    runner = manager.add_runner("rep1")
    runner.publish(tick(1.0))
    runner.publish(event(1.0, "connected", "a"))
    with client.websocket_connect(WS) as ws:
        first = ws.receive_json()
        assert first["type"] == "snapshot"
        assert first["ticks"] == [tick(1.0)]
        assert first["events"] == [event(1.0, "connected", "a")["event"]]
        assert first["session"]["partners"]["b"]["name"] == "Ben"
        assert first["replay"]["can_seek"] is True
        prompt = event(
            380.0, "prompt", "a", pattern="divergence", title="A moment to notice", text_a="Breathe out.", text_b="One breath."
        )
        for message in (tick(2.0), prompt, tick(3.0, hr_a=101.5)):
            runner.push(message)
        assert ws.receive_json() == tick(2.0)
        assert ws.receive_json() == prompt
        assert ws.receive_json()["partners"]["a"]["hr_bpm"] == 101.5
        runner.push({"type": "state", **runner.state(), "status": "paused"})
        assert ws.receive_json()["status"] == "paused"
    assert runner.subscribers == []  # the viewer left: unsubscribed


def test_each_viewer_gets_every_message(client, manager):
    runner = manager.add_runner("rep1")
    with client.websocket_connect(WS) as one, client.websocket_connect(WS) as two:
        assert one.receive_json()["type"] == two.receive_json()["type"] == "snapshot"
        runner.push(tick(1.0))
        runner.push(tick(2.0))
        assert [one.receive_json()["t"], one.receive_json()["t"]] == [1.0, 2.0]
        assert [two.receive_json()["t"], two.receive_json()["t"]] == [1.0, 2.0]


def test_acks_are_taken_and_logged(client, manager, caplog):
    runner = manager.add_runner("rep1")
    caplog.set_level(logging.INFO, logger="coreg.dashboard.viewer")
    with client.websocket_connect(WS) as ws:
        ws.receive_json()
        ws.send_json({"type": "ack", "prompt_t": 380.0})
        ws.send_text("not json")
        ws.send_json({"type": "ack", "prompt_t": "<script>"})
        ws.send_text("x" * 10000)
        ws.send_bytes(b"\x00\x01")
        runner.push(tick(5.0))
        assert ws.receive_json() == tick(5.0)  # still served after odd input
        ws.send_json({"type": "ack", "prompt_t": 400})
        runner.push(tick(6.0))
        assert ws.receive_json() == tick(6.0)
    acks = [r.getMessage() for r in caplog.records if "acknowledged" in r.getMessage()]
    assert acks == ["a viewer acknowledged the prompt at t=380.0 s", "a viewer acknowledged the prompt at t=400.0 s"]


def test_idle_then_follows_each_newly_started_session(client, manager):
    with client.websocket_connect(WS) as ws:
        assert ws.receive_json() == {"type": "idle"}
        manager.add_runner("rep1")
        first = ws.receive_json()
        assert (first["type"], first["session"]["id"]) == ("snapshot", "rep1")
        second = manager.add_runner("rep2")
        second.publish(tick(7.0))
        switched = ws.receive_json()
        assert (switched["type"], switched["session"]["id"]) == ("snapshot", "rep2")
        assert switched["ticks"] == [tick(7.0)]


def test_a_pinned_viewer_stays_with_its_session(client, manager):
    pinned = manager.add_runner("rep1")
    other = manager.add_runner("rep2")  # now the current one
    with client.websocket_connect(WS + "?session=rep1") as ws:
        assert ws.receive_json()["session"]["id"] == "rep1"
        other.publish(tick(50.0))
        pinned.push(tick(1.0))
        assert ws.receive_json() == tick(1.0)


def test_a_stored_session_is_sent_as_its_events(client, store):
    store.add("old1")
    store.stored_events["old1"] = [{"t": 95.2, "kind": "annotation", "partner": None, "text": "repair", "author": ""}]
    with client.websocket_connect(WS + "?session=old1") as ws:
        snapshot = ws.receive_json()
    assert snapshot["type"] == "snapshot"
    assert snapshot["ticks"] == []
    assert snapshot["replay"] is None
    assert snapshot["events"] == store.stored_events["old1"]
    assert snapshot["session"]["running"] is False


def test_unknown_or_malformed_session(client):
    with client.websocket_connect(WS + "?session=nope") as ws:
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
    assert closed.value.code == 4404
    # Refused before the handshake, as FastAPI refuses a query parameter off its pattern;
    # a trailing newline (which a "$" alone would let through) is refused too.
    for malformed in ("../../etc", "rep1%0A", "", "x" * 65):
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(WS + "?session=" + malformed) as ws:
                ws.receive_json()
        assert refused.value.code == 1008, malformed


def test_non_finite_numbers_reach_the_browser_as_null(client, manager):
    runner = manager.add_runner("rep1")
    with client.websocket_connect(WS) as ws:
        ws.receive_json()
        bad = tick(1.0)
        bad["linkage"]["r"] = math.nan
        bad["partners"]["b"]["hr_bpm"] = math.inf
        runner.push(bad)
        got = ws.receive_json()
    assert got["linkage"] == {"r": None, "lag_s": 1.5}
    assert got["partners"]["b"]["hr_bpm"] is None
    assert got["partners"]["a"]["hr_bpm"] == 70.0
    assert dumps({"x": [1.5, float("-inf")]}) == '{"x":[1.5,null]}'


def test_the_same_message_is_encoded_once_and_each_new_one_afresh():
    from dashboard.viewer import SharedText

    shared = SharedText(size=2)
    first, second = tick(1.0), tick(2.0)
    text = shared.text(first)
    assert shared.text(first) is text  # the next viewer of the same message
    assert shared.text(second) == dumps(second)
    assert shared.text(first) is text  # still held
    # An equal but distinct object is its own message (ids are only reused once freed).
    again = tick(1.0)
    assert shared.text(again) == text
    snapshot = {"type": "snapshot", "ticks": [first]}
    assert shared.text(snapshot) == dumps(snapshot)
