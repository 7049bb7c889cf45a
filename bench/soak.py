"""Soak: an 8-hour live session through the live path, in virtual time, watching memory.

What runs (one process, one event loop whose clock jumps ahead, devices.fakeble):

- a simulated 8-hour session of two partners (devices.simulate): the registered
  20-minute scenarios calm, divergence, escalation, flooding, artifacts and disconnect
  played back to back, over and over, with their episodes, dropouts and disconnects
  shifted into place; played by ``SimulatorSource`` at its own pace on the virtual clock;
- ``monitor.runner.LiveRunner``: the live pipeline ticking each second, events, the
  SQLite store in a temporary folder (committing each second as in a real session);
- one viewer: a ``dashboard.hub.ViewerFeed`` (the per-viewer bounded queue the WebSocket
  uses) drained by its own task, and once an hour a late viewer who takes a snapshot.

At the end of each session hour (after a warm-up hour) it prints the process's resident
memory (VmRSS), the number of Python objects the garbage collector tracks, open file
descriptors, asyncio tasks, the rows held by the runner's tick history, the snapshot's
size, and the wall time the hour took. With ``--tracemalloc`` it also prints the traced
Python heap (about twice as slow). The last line is ``mem_growth_mb=<RSS at the last
hour - RSS at hour 1>``; the target is 10 MB or less for 8 hours.

Run from the repository root:  .venv/bin/python bench/soak.py   (``--hours 2`` for a quick look)
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboard.hub import ViewerFeed  # noqa: E402
from devices.fakeble import run_virtual  # noqa: E402
from devices.records import SessionClock  # noqa: E402
from devices.scenarios import SESSION_S, Scenario, back_to_back, get_scenario  # noqa: E402
from devices.simulate import SimulatorSource  # noqa: E402
from monitor.runner import LiveRunner  # noqa: E402
from monitor.store import Store  # noqa: E402

HOUR_S = 3600.0
SEGMENTS = ("calm", "divergence", "escalation", "flooding", "artifacts", "disconnect")
TARGET_GROWTH_MB = 10.0


def long_scenario(hours: float) -> Scenario:
    """``hours`` of the 20-minute SEGMENTS back to back (cycled), shifted into place.

    The artifact rates, which a Scenario holds for the whole session, are the highest of
    the segments' (a noisy session throughout), and the resting-rate wander the widest.
    """
    n = int(round(hours * HOUR_S / SESSION_S))
    parts = [get_scenario(SEGMENTS[k % len(SEGMENTS)]) for k in range(n)]
    return back_to_back(parts, name=f"soak:{hours:g}h", description=f"soak: {n} twenty-minute segments")


def rss_mb() -> float:
    """Resident memory of this process, from /proc (Linux), in MB."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS line in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def viewer(feed: ViewerFeed, counts: dict) -> None:
    """A viewer that reads every message as it comes (the WebSocket's side)."""
    while True:
        message = await feed.next()
        counts[message["type"]] = counts.get(message["type"], 0) + 1


async def soak(hours: float, seed: int, folder: Path, traced: bool) -> list[dict]:
    loop = asyncio.get_running_loop()
    t0 = time.perf_counter()
    source = SimulatorSource(long_scenario(hours), seed)
    print(f"simulated {hours:g} h: {len(source.session.records):,} records in {time.perf_counter() - t0:.1f} s")
    store = Store(folder / "soak.db")
    session_id = store.create_session(source.header, label="soak", kind="live", config={})
    runner = LiveRunner(session_id, source.header, [source], store, clock=SessionClock(monotonic=loop.time))
    feed = ViewerFeed(runner)
    feed.open()
    counts: dict[str, int] = {}
    reader = loop.create_task(viewer(feed, counts))
    runner.start()
    rows = []
    wall = time.perf_counter()
    for hour in range(1, int(hours) + 1):
        await asyncio.sleep(HOUR_S - (loop.time() % HOUR_S) + 0.5)  # just past the hour's last tick
        late = ViewerFeed(runner)
        snapshot = late.open()
        late.close()
        snapshot_kb = len(json.dumps(snapshot)) / 1024
        del snapshot
        gc.collect()
        row = {
            "hour": hour,
            "wall_s": time.perf_counter() - wall,
            "rss_mb": rss_mb(),
            "gc_objects": len(gc.get_objects()),
            "fds": open_fds(),
            "tasks": len(asyncio.all_tasks()),
            "tick_rows": len(runner._ticks),
            "events": len(runner._events),
            "snapshot_kb": snapshot_kb,
            "resyncs": feed.resyncs,
        }
        if traced:
            row["traced_mb"] = tracemalloc.get_traced_memory()[0] / 2**20
        rows.append(row)
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        wall = time.perf_counter()
    await runner.stop()
    reader.cancel()
    feed.close()
    info = store.get_session(session_id)
    print(f"stored: {info.n_notifications:,} notifications, {info.n_events} events; viewer got {counts}")
    store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hours", type=float, default=8.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tracemalloc", action="store_true", help="also trace the Python heap (slower)")
    args = parser.parse_args()
    if args.hours < 2:
        parser.error("--hours must be at least 2 (hour 1 is the warm-up)")
    if args.tracemalloc:
        tracemalloc.start()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="coreg-soak-") as folder:
        rows = run_virtual(soak(args.hours, args.seed, Path(folder), args.tracemalloc))
    total = time.perf_counter() - start
    first, last = rows[0], rows[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    print(f"wall time {total:.0f} s for {args.hours:g} session hours ({total / args.hours:.0f} s per hour)")
    print(f"from hour 1 to hour {last['hour']}: RSS {growth:+.1f} MB, gc objects {last['gc_objects'] - first['gc_objects']:+,},"
          f" fds {last['fds'] - first['fds']:+d}, tasks {last['tasks'] - first['tasks']:+d}"
          + (f", traced heap {last['traced_mb'] - first['traced_mb']:+.1f} MB" if args.tracemalloc else ""))
    print(f"target: growth <= {TARGET_GROWTH_MB:g} MB: {'met' if growth <= TARGET_GROWTH_MB else 'NOT met'}")
    print(f"mem_growth_mb={growth:.1f}")


if __name__ == "__main__":
    main()
