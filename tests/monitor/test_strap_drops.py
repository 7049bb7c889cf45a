"""A strap that drops out mid-session: 10 s, 60 s and 10 minutes out of range.

Two fake straps (devices.fakeble) replay the divergence fixture into a live session in
virtual time, as in test_runner.py; partner a's strap loses its link at a given strap
time and stays out of range for a while. Compared with the same session undisturbed:

- the strap reconnects by itself (capped backoff: within 30 s of coming back);
- the gap is marked: disconnected / connected status records in the store and
  events from the pipeline, and partner a's ticks say "away" exactly in between;
- no prompt is shown while a strap is away;
- partner b's beats, per-tick values and own events are exactly those of the
  undisturbed session.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from devices.fakeble import FakeCue, fake_client_factory, load_notifications, run_virtual
from devices.records import Notification, SessionClock, StatusChange
from monitor.sessions import SessionManager
from monitor.store import Store

DIVERGENCE = Path(__file__).resolve().parents[2] / "fixtures" / "sim_divergence.jsonl.gz"
ADDR = {"a": "AA:01", "b": "BB:02"}
BACKOFF_MAX_S = 30.0  # ble.Strap's default cap
CONNECT_DELAY_S = 0.2
# Partner-own events: these follow from one partner's records alone.
OWN_KINDS = {"settled", "quality_low", "quality_ok", "connected", "disconnected"}


@dataclass
class Session:
    messages: list[dict]
    records: list
    connects: int


def run_session(tmp: Path, length_s: float, drop_at_s: float | None = None, drop_for_s: float = 0.0) -> Session:
    """A live session of ``length_s`` virtual seconds, stored in folder ``tmp``; partner
    a's strap drops at strap time ``drop_at_s`` for ``drop_for_s`` seconds."""
    notes = {ADDR[p]: load_notifications(DIVERGENCE, p) for p in "ab"}
    cues = {ADDR["a"]: FakeCue(drop_at_s=(drop_at_s,), drop_for_s=drop_for_s)} if drop_at_s is not None else None
    store = Store(tmp / "drops.db")

    async def main() -> Session:
        loop = asyncio.get_running_loop()
        manager = SessionManager(store)
        radio = fake_client_factory(notes, connect_delay_s=CONNECT_DELAY_S, per_address=cues)
        runner = await manager.start_live(
            ADDR["a"], ADDR["b"], client_factory=radio, clock=SessionClock(monotonic=loop.time)
        )
        messages: list[dict] = []
        runner.subscribe(messages.append)
        await asyncio.sleep(length_s)
        await manager.stop(runner.id)
        return Session(messages, list(store.records(runner.id)), radio.connect_attempts[ADDR["a"]])

    try:
        return run_virtual(main())
    finally:
        store.close()


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory) -> Session:
    return run_session(tmp_path_factory.mktemp("undisturbed"), 900.0)


# (drop at strap second, out of range for, session length): the 60-s and 10-min gaps
# cover the undisturbed session's prompts (372 s, and 840 s too).
DROPS = {"10 s": (360.0, 10.0, 440.0), "60 s": (340.0, 60.0, 440.0), "10 min": (250.0, 600.0, 900.0)}


@pytest.mark.parametrize("case", DROPS)
def test_a_dropped_strap_reconnects_and_leaves_the_other_partner_untouched(case, undisturbed, tmp_path) -> None:
    drop_at_s, drop_for_s, length_s = DROPS[case]
    got = run_session(tmp_path, length_s, drop_at_s, drop_for_s)

    # It reconnects by itself, and the gap is in the recording.
    status = [(r.t_s, r.status) for r in got.records if isinstance(r, StatusChange) and r.partner == "a"]
    assert [s for _, s in status] == ["connected", "disconnected", "connected"]
    (_, _), (gone_s, _), (back_s, _) = status
    assert drop_for_s <= back_s - gone_s <= drop_for_s + BACKOFF_MAX_S + 2 * CONNECT_DELAY_S
    assert got.connects >= 2

    # The pipeline says so: events, and "away" in exactly the ticks in between.
    events = [m["event"] for m in got.messages if m["type"] == "event"]
    assert [(e["t"], e["kind"]) for e in events if e.get("partner") == "a" and e["kind"] in ("connected", "disconnected")] == [
        (t, s) for t, s in status
    ]
    ticks = [m for m in got.messages if m["type"] == "tick"]
    away = [m["t"] for m in ticks if m["partners"]["a"]["quality"] == "away"]
    assert away == [m["t"] for m in ticks if gone_s <= m["t"] < back_s]
    assert all(m["partners"]["b"]["quality"] != "away" for m in ticks)

    # No prompt while a strap is away (the undisturbed session had one in the gap
    # for the longer drops).
    assert not [e for e in events if e["kind"] == "prompt" and gone_s <= e["t"] <= back_s]
    if drop_for_s >= 60:
        assert [e for e in undisturbed_events(undisturbed) if e["kind"] == "prompt" and gone_s <= e["t"] <= back_s]

    # Partner b: the same beats, per-tick values and own events as undisturbed.
    end = length_s - 2.0
    assert beats_of(got, "b", end) == beats_of(undisturbed, "b", end) != []
    b_notes = [r for r in got.records if isinstance(r, Notification) and r.partner == "b" and r.t_s <= end]
    assert b_notes == [r for r in undisturbed.records if isinstance(r, Notification) and r.partner == "b" and r.t_s <= end]
    mine, theirs = ticks_of(got, "b", end), ticks_of(undisturbed, "b", end)
    assert len(mine) == int(end) and mine == theirs
    assert sum(tick["settled"] for _, tick in mine) > 100  # b settled and ran on
    assert own_events(events, "b", end) == own_events(undisturbed_events(undisturbed), "b", end)


def undisturbed_events(session: Session) -> list[dict]:
    return [m["event"] for m in session.messages if m["type"] == "event"]


def own_events(events: list[dict], partner: str, end_s: float) -> list[dict]:
    return [e for e in events if e.get("partner") == partner and e["kind"] in OWN_KINDS and e["t"] <= end_s]


def ticks_of(session: Session, partner: str, end_s: float) -> list[tuple[float, dict]]:
    """(t, the partner's values in the tick message: heart rate, activation, RMSSD,
    vagal index, quality, settled), for every tick up to ``end_s``."""
    return [(m["t"], m["partners"][partner]) for m in session.messages if m["type"] == "tick" and m["t"] <= end_s]


def beats_of(session: Session, partner: str, end_s: float) -> list[dict]:
    return [m for m in session.messages if m["type"] == "beat" and m["partner"] == partner and m["t"] <= end_s]
