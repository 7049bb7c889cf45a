"""A live session killed with SIGKILL is found interrupted, with every notification up
to the last second, and still replays and analyses.

The fake straps in live_writer.py log each notification (with the time on the shared
monotonic clock) just before handing it to the strap; after the kill, every
notification delivered more than a second before it (plus LATENCY_SLACK_S for the
event loop) must be in the store.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from devices.fakeble import load_notifications
from devices.records import Notification
from monitor.pipeline import analyze_records
from monitor.store import Store

HERE = Path(__file__).resolve().parent
ADDRESSES = {"a": "AA:01", "b": "BB:02"}
# The store commits at least once a second; the rest allows for the event loop being
# busy with a tick when a notification arrives (a few ms; more on a loaded machine).
LOSS_WINDOW_S = 1.0
LATENCY_SLACK_S = 0.25
FIXTURE = HERE.parents[1] / "fixtures" / "sim_divergence.jsonl.gz"


def committed(db: Path, session_id: str) -> int:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT COUNT(*) FROM records WHERE session_id = ?", (session_id,)).fetchone()[0]


def delivered_before(log: Path, cutoff: float) -> dict[str, int]:
    """Per partner, how many notifications the fake straps delivered by ``cutoff``
    (monotonic seconds); a line cut off by the kill is ignored."""
    counts = {p: 0 for p in ADDRESSES}
    partner_of = {address: p for p, address in ADDRESSES.items()}
    for line in log.read_text().splitlines(keepends=True):
        if not line.endswith("\n"):
            continue
        address, when = line.split()
        if float(when) <= cutoff:
            counts[partner_of[address]] += 1
    return counts


def test_sigkill_mid_session_loses_at_most_the_last_second(tmp_path: Path) -> None:
    db = tmp_path / "coreg.db"
    log = tmp_path / "delivered.log"
    env = dict(os.environ, PYTHONPATH=str(HERE.parents[1]))
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "live_writer.py"), str(db), str(FIXTURE), str(log)],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        session_id = proc.stdout.readline().strip()
        assert session_id
        deadline = time.monotonic() + 30
        while committed(db, session_id) < 150 and time.monotonic() < deadline:
            time.sleep(0.2)
        # Watch commits for a while: they must come at least about once a second,
        # so a kill can only lose the last second.
        samples = []
        t0 = time.monotonic()
        while time.monotonic() - t0 < 3.0:
            samples.append((time.monotonic(), committed(db, session_id)))
            time.sleep(0.05)
        changes = [t for (t, n), (_, m) in zip(samples[1:], samples) if n != m]
        before = committed(db, session_id)
        killed_at = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert before >= 150
    assert len(changes) >= 2 and max(b - a for a, b in zip(changes, changes[1:])) < 1.5

    store = Store(db)
    assert session_id in store.recover_interrupted()
    info = store.get_session(session_id)
    assert info.status == "interrupted"
    records = list(store.records(session_id))
    notes = [r for r in records if isinstance(r, Notification)]
    # Nothing committed was lost ...
    assert len(records) >= before
    # ... what is there is exactly the beginning of each strap's stream ...
    due = delivered_before(log, killed_at - LOSS_WINDOW_S - LATENCY_SLACK_S)
    for partner in "ab":
        sent = [payload for _, payload in load_notifications(FIXTURE, partner)]
        got = [r.payload for r in notes if r.partner == partner]
        assert got == sent[: len(got)] and len(got) > 50
        # ... and holds every notification delivered up to the last second.
        assert len(got) >= due[partner] > 50, (partner, len(got), due)
    last_t = records[-1].t_s
    # It replays: the recording analyses like any other.
    analysis = analyze_records(store.header(session_id), records)
    assert len(analysis.tick_t_s) == int(last_t)
    out = store.export(session_id, tmp_path / "export.jsonl")
    assert out.read_text().count("\n") == len(records) + 1
    store.close()
