"""Saving under faults: a database locked by another connection, a full database.

A live session (a simulated session played in virtual time through LiveRunner) goes on
while the store cannot write, tells its viewers, and once the store can write again the
stored session equals the one an undisturbed run stores, record for record.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from devices.fakeble import run_virtual
from devices.records import Annotation, SessionClock
from devices.simulate import SimulatorSource
from monitor.runner import LiveRunner
from monitor.store import Store, StoreUnavailable

DURATION_S = 300.0  # both partners settle (about 3-4 min) and events follow
FAULT_AT_S = 100.0
Fault = Callable[[Store, LiveRunner, list], Awaitable[None]]


def run_session(path: Path, fault: Fault | None = None, *, max_held_rows: int | None = None):
    """Play the session; ``fault`` runs beside it from the start. Returns (store, runner, messages)."""
    store = Store(path, busy_timeout_s=0.05)

    async def main():
        loop = asyncio.get_running_loop()
        source = SimulatorSource("divergence", seed=5, duration_s=DURATION_S)
        session_id = store.create_session(source.header, label="faults", kind="live", config={})
        runner = LiveRunner(session_id, source.header, [source], store, clock=SessionClock(monotonic=loop.time))
        if max_held_rows is not None:
            runner.saver.max_held_rows = max_held_rows
        got: list[dict] = []
        runner.subscribe(got.append)
        runner.start()
        task = loop.create_task(fault(store, runner, got)) if fault else None
        await asyncio.sleep(DURATION_S + 5.0)
        runner.annotate("after the fault", "test")
        await runner.stop()
        if task:
            await task
        return runner, got

    runner, got = run_virtual(main())
    return store, runner, got


def stored(store: Store, session_id: str) -> tuple[list, list, tuple]:
    info = store.get_session(session_id)
    return list(store.records(session_id)), store.events(session_id), (
        info.status, info.n_notifications, info.n_events, info.duration_s,
    )


@pytest.fixture(scope="module")
def undisturbed(tmp_path_factory):
    store, runner, got = run_session(tmp_path_factory.mktemp("plain") / "s.db")
    result = stored(store, runner.id)
    store.close()
    assert not [m for m in got if m["type"] == "storage"]
    assert result[2][0] == "finished" and result[2][1] > 500 and result[1]
    return result


def storage_messages(got: list[dict]) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "held_rows"} for m in got if m["type"] == "storage"]


def ticks_between(got: list[dict], start_s: float, end_s: float) -> list[float]:
    return [m["t"] for m in got if m["type"] == "tick" and start_s < m["t"] < end_s]


def test_a_database_locked_by_another_connection_pauses_saving_then_writes_everything(tmp_path, undisturbed):
    seen = {}

    async def lock(store: Store, runner: LiveRunner, got: list) -> None:
        await asyncio.sleep(FAULT_AT_S)
        other = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        await asyncio.sleep(40.0)
        runner.annotate("during the lock", "test")
        await asyncio.sleep(30.0)
        seen["snapshot"] = runner.snapshot()
        seen["held"] = store.buffered_rows
        seen["ticks"] = ticks_between(got, FAULT_AT_S + 2, FAULT_AT_S + 70)
        seen["beats"] = sum(1 for m in got if m["type"] == "beat" and FAULT_AT_S + 2 < m["t"] < FAULT_AT_S + 70)
        other.execute("ROLLBACK")
        other.close()

    store, runner, got = run_session(tmp_path / "s.db", lock)
    # The session went on: a tick each second and the beats kept coming while locked.
    assert seen["ticks"] == [float(t) for t in range(int(FAULT_AT_S) + 3, int(FAULT_AT_S) + 70)]
    assert seen["beats"] > 100
    assert seen["snapshot"]["storage"]["state"] == "paused" and seen["snapshot"]["storage"]["reason"] == "busy"
    assert seen["held"] > 100  # about 70 s of two straps' notifications, and events
    assert storage_messages(got) == [{"type": "storage", "state": "paused", "reason": "busy"},
                                     {"type": "storage", "state": "ok"}]
    assert runner.snapshot()["storage"] == {"state": "ok"}
    records, events, info = stored(store, runner.id)
    plain_records, plain_events, plain_info = undisturbed
    extra = Annotation(FAULT_AT_S + 40.0, "during the lock", "test")
    assert extra in records
    assert [r for r in records if r != extra] == plain_records
    assert [e for e in events if e.get("text") != "during the lock"] == plain_events
    assert info[0] == "finished" and info[1:3] == (plain_info[1], plain_info[2] + 1)
    store.close()


def test_a_full_database_pauses_saving_then_writes_everything(tmp_path, undisturbed):
    seen = {}

    async def fill(store: Store, runner: LiveRunner, got: list) -> None:
        await asyncio.sleep(FAULT_AT_S)
        # The store's own connection may not grow the file past its present size:
        # SQLite's real "database or disk is full" error, as on a full disk.
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages}")
        await asyncio.sleep(80.0)
        seen["storage"] = runner.storage()
        seen["ticks"] = ticks_between(got, FAULT_AT_S + 2, FAULT_AT_S + 80)
        store._conn.execute("PRAGMA max_page_count = 1073741823")

    store, runner, got = run_session(tmp_path / "s.db", fill)
    assert seen["storage"]["state"] == "paused" and seen["storage"]["reason"] == "full"
    assert seen["ticks"] == [float(t) for t in range(int(FAULT_AT_S) + 3, int(FAULT_AT_S) + 80)]
    assert storage_messages(got) == [{"type": "storage", "state": "paused", "reason": "full"},
                                     {"type": "storage", "state": "ok"}]
    assert stored(store, runner.id) == undisturbed
    store.close()


def test_a_session_stopped_while_locked_is_written_and_finished_when_the_lock_goes(tmp_path, undisturbed):
    seen = {}

    async def lock_past_the_end(store: Store, runner: LiveRunner, got: list) -> None:
        await asyncio.sleep(DURATION_S - 30.0)
        other = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        while runner.state()["status"] != "stopped":
            await asyncio.sleep(1.0)
        seen["status"] = store.get_session(runner.id).status
        await asyncio.sleep(20.0)
        other.execute("ROLLBACK")
        other.close()
        await runner._finishing

    store, runner, got = run_session(tmp_path / "s.db", lock_past_the_end)
    assert seen["status"] == "live"  # stopped for its viewers, not yet written
    records, events, info = stored(store, runner.id)
    assert info[0] == "finished"
    assert (records, events) == undisturbed[:2]
    assert storage_messages(got)[-1] == {"type": "storage", "state": "ok"}
    store.close()


def test_the_hold_is_bounded_and_what_it_could_not_keep_is_counted(tmp_path, undisturbed):
    seen = {}

    async def lock(store: Store, runner: LiveRunner, got: list) -> None:
        await asyncio.sleep(FAULT_AT_S)
        other = sqlite3.connect(store.path, isolation_level=None)
        other.execute("BEGIN EXCLUSIVE")
        await asyncio.sleep(60.0)
        seen["held"] = store.buffered_rows
        other.execute("ROLLBACK")
        other.close()

    store, runner, got = run_session(tmp_path / "s.db", lock, max_held_rows=50)
    dropped = runner.storage()["dropped_rows"]
    assert seen["held"] == 50 and dropped > 60
    records, events, _ = stored(store, runner.id)
    plain_records, plain_events, _ = undisturbed
    assert len(records) + len(events) + dropped == len(plain_records) + len(plain_events)
    paused = [m for m in got if m["type"] == "storage" and m["state"] == "paused"]
    assert paused[-1]["dropped_rows"] == 1  # said once, when the hold filled up
    store.close()


def test_the_store_keeps_its_rows_when_sqlite_cannot_write(tmp_path):
    """StoreUnavailable names the reason; nothing buffered is lost; reads go on."""
    store = Store(tmp_path / "s.db", busy_timeout_s=0.05, commit_interval_s=3600)
    source = SimulatorSource("calm", seed=1, duration_s=30)
    session_id = store.create_session(source.header, label="x", kind="live", config={})
    records = [r for r in source.session.records]
    other = sqlite3.connect(store.path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    for r in records[:10]:
        store.add_record(session_id, r)
    with pytest.raises(StoreUnavailable) as caught:
        store.flush()
    assert caught.value.reason == "busy" and "database is locked" in str(caught.value)
    assert store.unavailable == "busy" and store.buffered_rows == 10
    for r in records[10:]:
        store.add_record(session_id, r)  # buffered without trying to commit
    assert store.get_session(session_id).n_notifications == 0  # a read shows what is committed
    other.execute("ROLLBACK")
    other.close()
    store.flush()
    assert store.unavailable is None and store.buffered_rows == 0
    assert list(store.records(session_id)) == records
    store.close()
