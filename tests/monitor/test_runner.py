"""Session runners: replays paced to viewers, live sessions from fake straps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from devices.fakeble import fake_client_factory, load_notifications, run_virtual
from devices.hrs import parse_hrm
from devices.records import Notification, SessionClock
from devices.recording import read_records
from monitor.pipeline import analyze_records
from monitor.sessions import SessionManager
from monitor.store import Store

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
DIVERGENCE = FIXTURES / "sim_divergence.jsonl.gz"


def test_replay_sends_every_tick_and_event_in_order_then_seeks(tmp_path: Path) -> None:
    async def main():
        store = Store(tmp_path / "s.db")
        manager = SessionManager(store)
        runner = await manager.start_replay(str(DIVERGENCE), speed=1000.0)
        got: list[dict] = []
        runner.subscribe(got.append)
        while runner.state()["status"] != "finished":
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.1)
        ticks = [m["t"] for m in got if m["type"] == "tick"]
        events = [m["event"] for m in got if m["type"] == "event"]
        # A late subscriber (after a few ticks went out) then saw every later tick once.
        assert ticks == sorted(set(ticks)) and ticks[-1] == 1199.0
        assert len(ticks) > 1100
        want = [e.to_json() for e in runner.analysis.events]
        assert events == [e for e in want if e["t"] >= events[0]["t"]]
        assert any(e["kind"] == "prompt" for e in events)
        # One beat message per notification, in time order, as the strap sent it.
        beats = [m for m in got if m["type"] == "beat"]
        first = beats[0]["t"]
        want_beats = [
            r for r in read_records(DIVERGENCE)[1] if isinstance(r, Notification) and r.t_s >= first
        ]
        assert [(b["t"], b["partner"]) for b in beats] == [(r.t_s, r.partner) for r in want_beats]
        hrm = parse_hrm(want_beats[100].payload)
        assert beats[100]["hr_bpm"] == hrm.hr_bpm and beats[100]["rr_ms"] == [round(x, 3) for x in hrm.rr_ms]
        runner.pause()
        runner.seek(400.0)
        resync = [m for m in got if m["type"] == "resync"][-1]
        assert resync["ticks"][-1]["t"] == 400.0
        assert [e["t"] for e in resync["events"]] == [e["t"] for e in want if e["t"] <= 400.0]
        pos = runner.state()["position_s"]
        await asyncio.sleep(0.05)
        assert runner.state()["position_s"] == pos == 400.0
        note = runner.annotate("pursuit starts", "practitioner")
        assert note["t"] == 400.0
        await manager.close()
        kinds = [e["kind"] for e in store.events(runner.id)]
        assert kinds == ["annotation"]
        # The same file replayed again reuses its stored session, annotation included.
        again = await SessionManager(store).start_replay(str(DIVERGENCE))
        assert again.id == runner.id
        # (stored as a record, the annotation is part of the recording now)
        notes = [e for e in again.analysis.events if e.kind == "annotation"]
        assert [(e.t_s, e.data["text"]) for e in notes] == [(400.0, "pursuit starts")]
        await again.stop()
        store.close()

    asyncio.run(main())


def test_replay_refuses_what_is_not_a_recording(tmp_path: Path) -> None:
    async def main():
        store = Store(tmp_path / "s.db")
        manager = SessionManager(store)
        with pytest.raises(Exception, match="not a coreg recording"):
            await manager.start_replay("/etc/passwd")
        with pytest.raises(Exception, match="no such recording"):
            await manager.start_replay(str(tmp_path / "missing.jsonl"))
        store.close()

    asyncio.run(main())


def test_live_session_from_fake_straps_equals_batch_analysis_of_its_recording(tmp_path: Path) -> None:
    """Two fake straps replay the divergence fixture in virtual time through the live
    runner; the stored session, analysed in batch, gives the events the viewers got."""
    notes = {addr: load_notifications(DIVERGENCE, p) for p, addr in (("a", "AA:01"), ("b", "BB:02"))}
    store = Store(tmp_path / "live.db")

    async def main():
        loop = asyncio.get_running_loop()
        manager = SessionManager(store)
        radio = fake_client_factory(notes, connect_delay_s=0.2)
        runner = await manager.start_live(
            "AA:01", "BB:02", label="test", client_factory=radio, clock=SessionClock(monotonic=loop.time)
        )
        got: list[dict] = []
        runner.subscribe(got.append)
        await asyncio.sleep(1210.0)  # virtual seconds: the whole fixture plays
        await manager.stop(runner.id)
        return runner, got

    runner, got = run_virtual(main())
    info = store.get_session(runner.id)
    assert info.status == "finished" and info.n_notifications == sum(len(v) for v in notes.values())
    header = store.header(runner.id)
    records = list(store.records(runner.id))
    batch = analyze_records(header, records)
    # The live session went on ticking after the straps fell silent (that is live);
    # up to the last record, everything equals the batch analysis of the recording.
    end = batch.duration_s
    live_events = [m["event"] for m in got if m["type"] == "event" and m["event"]["t"] <= end]
    assert live_events == [e.to_json() for e in batch.events]
    assert any(m["event"]["kind"] == "quality_low" for m in got if m["type"] == "event" and m["event"]["t"] > end)
    assert any(e["kind"] == "prompt" for e in live_events)
    ticks = [m for m in got if m["type"] == "tick" and m["t"] <= end]
    assert [m["t"] for m in ticks] == list(batch.tick_t_s)
    beats = [m for m in got if m["type"] == "beat"]
    assert len(beats) == info.n_notifications
    assert [b["t"] for b in beats] == sorted(b["t"] for b in beats)
    hr = [m["partners"]["a"]["hr_bpm"] for m in ticks]
    assert hr[500] == round(float(batch.partners["a"].ticks.metrics.hr10_bpm[500]), 3)
    store.close()
