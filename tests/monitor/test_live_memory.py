"""A live session's memory stays bounded: what the runner, the live pipeline and the beat
timers keep does not grow with the session beyond a compact tick history (the soak in
bench/soak.py measures the process over 8 hours; these checks are the cheap part)."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from devices.fakeble import run_virtual
from devices.records import SessionClock
from devices.scenarios import get_scenario
from devices.simulate import SimulatorSource, simulate
from monitor.beats import BeatTimer
from monitor.runner import TICK_FIELDS, LiveRunner, tick_message
from monitor.store import Store
from monitor.tick_history import CHUNK_ROWS, QUALITY_WORDS, TickHistory


def test_a_beat_timer_without_history_places_the_same_beats_and_keeps_none():
    records = simulate(get_scenario("artifacts").shortened(3600.0), 2).records  # an hour, noisy
    keeping, forgetting = BeatTimer("a"), BeatTimer("a", keep_beats=False)
    for record in records:
        a, b = keeping.feed(record), forgetting.feed(record)
        assert a.t_s.tobytes() == b.t_s.tobytes() and a.rr_units.tobytes() == b.rr_units.tobytes()
        assert a.contiguous.tolist() == b.contiguous.tolist()
        assert a.arrival_t_s.tobytes() == b.arrival_t_s.tobytes()
    assert len(forgetting) == len(keeping) > 3600
    assert forgetting._t_s == forgetting._rr_units == forgetting._arrival_t_s == []
    with pytest.raises(ValueError, match="does not keep its beats"):
        forgetting.series()


def random_tick(rng: random.Random, t: float, patterns: list[dict]) -> dict:
    def number():
        return rng.choice([math.nan, rng.uniform(-200, 200), rng.uniform(0, 8191.9), 1e5 * rng.random()])

    values = {
        p: {"hr10_bpm": number(), "delta_bpm": number(), "activation_sd": number(), "vagal_index": number(),
            "rmssd30_ms": number(), "connected": float(rng.random() > 0.1), "gap_s": rng.choice([math.inf, 1.0]),
            "quality_ok": float(rng.random() > 0.3)}
        for p in ("a", "b")
    }
    return tick_message(t, values, number(), number(), patterns)


def test_the_tick_history_gives_back_every_message_sent_and_holds_an_hour_compactly():
    rng = random.Random(4)
    history, sent = TickHistory(("a", "b"), tuple(TICK_FIELDS.values())), []
    patterns: list[dict] = []
    for t in range(1, 3601):
        if rng.random() < 0.01:
            patterns = [{"pattern": "divergence", "partner": rng.choice("ab"), "start_t": float(t)}][: rng.randint(0, 1)]
        msg = random_tick(rng, float(t), patterns)
        history.append(msg)
        sent.append(msg)
    assert history.messages(max_ticks=4000) == sent
    assert {m["partners"]["a"]["quality"] for m in sent} == set(QUALITY_WORDS)
    assert len(history._exact) < 3600  # only ticks with numbers of 8192 and more are kept whole
    arrays = history._t + history._values + history._codes
    assert len(history._t) == math.ceil(3600 / CHUNK_ROWS)
    assert sum(a.nbytes for a in arrays) <= 3600 * (8 + 4 * 12 + 2)
    # A snapshot of a long session thins the older ticks and keeps the latest whole.
    thin = history.messages(max_ticks=1000)
    assert 900 <= len(thin) <= 1000
    assert thin[-500:] == sent[-500:] and thin[0] == sent[0]
    assert all(m in sent for m in thin[:-500])
    assert [m["t"] for m in thin] == sorted({m["t"] for m in thin})


@pytest.fixture
def live_run(tmp_path):
    """A 400-s live session in virtual time, with the runner's holdings at 200 s and 400 s."""
    store = Store(tmp_path / "s.db")

    def holdings(runner: LiveRunner) -> dict:
        parts = runner.pipeline._p.values()
        return {
            "pipeline_ticks": len(runner.pipeline.ticks),
            "timer_beats": max(len(part.timer._t_s) for part in parts),
            "sum_rows": max(max(len(part.nn.t_s), len(part.gaps.t_s)) for part in parts),
            "held_rows": store.buffered_rows,
            "queue": runner._queue.qsize(),
        }

    async def main():
        loop = asyncio.get_running_loop()
        source = SimulatorSource("divergence", seed=7, duration_s=400.0)
        session_id = store.create_session(source.header, label="memory", kind="live", config={})
        runner = LiveRunner(session_id, source.header, [source], store, clock=SessionClock(monotonic=loop.time))
        sent: list[dict] = []
        runner.subscribe(sent.append)
        runner.start()
        seen = []
        for _ in range(2):
            await asyncio.sleep(200.0)
            seen.append(holdings(runner))
        snapshot = runner.snapshot()
        await runner.stop()
        return runner, sent, seen, snapshot

    yield run_virtual(main())
    store.close()


def test_a_live_runner_keeps_no_more_at_400_s_than_at_200_s(live_run):
    runner, sent, (at5, at10), snapshot = live_run  # holdings at 200 s and 400 s
    # Nothing but the compact tick history grows: the pipeline hands its ticks out, the
    # beat timers keep none, the trailing beats stay within their bounds.
    assert at5["pipeline_ticks"] == at10["pipeline_ticks"] == 0
    assert at5["timer_beats"] == at10["timer_beats"] == 0
    assert 0 < at10["sum_rows"] <= 256 + 2 * 65  # the tick's running sums: a lookback and a trim step
    assert at5["held_rows"] < 10 and at10["held_rows"] < 10 and at10["queue"] < 5
    assert len(runner._ticks) == len([m for m in sent if m["type"] == "tick"]) >= 399
    # A late viewer's snapshot holds the very tick messages the viewers were sent.
    ticks = [m for m in sent if m["type"] == "tick"]
    assert snapshot["ticks"] == ticks[: len(snapshot["ticks"])] and len(snapshot["ticks"]) >= 399
    assert snapshot["storage"] == {"state": "ok"}
