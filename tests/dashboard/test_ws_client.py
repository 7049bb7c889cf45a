"""A real WebSocket client against a real `coreg demo` server: a tick for every second
of session time, and each of the fixture's events at its time."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import websockets

from devices.recording import read_records
from monitor.pipeline import analyze_records

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "sim_divergence.jsonl.gz"
SPEED = 40.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ticks_every_second_and_events_at_their_times(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.cli", "demo", "--no-browser", "--port", str(port),
         "--db", str(tmp_path / "c.db"), "--speed", str(SPEED)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{base}/api/sessions", timeout=1) as r:
                    if any(s["running"] for s in json.load(r)):
                        break
            except OSError:
                time.sleep(0.2)
        messages = asyncio.run(_collect(f"ws://127.0.0.1:{port}/ws", base, seconds=12.0))
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    header, records = read_records(FIXTURE)
    want = [e.to_json() for e in analyze_records(header, records).events]
    snapshot = messages[0][1]
    assert snapshot["type"] == "snapshot"
    live = [(at, m) for at, m in messages[1:] if m["type"] in ("tick", "event")]
    ticks = [m["t"] for _, m in live if m["type"] == "tick"]
    # One tick per second of session time, none missing, none twice.
    first = snapshot["ticks"][-1]["t"] + 1 if snapshot["ticks"] else ticks[0]
    assert ticks == [float(t) for t in range(int(first), int(first) + len(ticks))]
    assert len(ticks) > 300  # 12 s at 40x
    # ... arriving at the replay's pace (about 1/40 s apart on the wall clock).
    tick_wall = [at for at, m in live if m["type"] == "tick"]
    pace = (tick_wall[-1] - tick_wall[0]) / (len(tick_wall) - 1)
    assert 0.5 / SPEED < pace < 2.0 / SPEED
    # Every event of the fixture in that stretch, in order, each between the ticks
    # around its time.
    got = [m["event"] for _, m in live if m["type"] == "event"]
    span = [e for e in want if first - 1 < e["t"] <= ticks[-1]]
    assert got[: len(span)] == span and any(e["kind"] == "prompt" for e in span)
    order = [(m["type"], m.get("t", m.get("event", {}).get("t"))) for _, m in live]
    for e in span:
        i = order.index(("event", e["t"]))
        before = [t for kind, t in order[:i] if kind == "tick"]
        assert not before or before[-1] <= e["t"] < before[-1] + 1.0 + 1e-9


async def _collect(url: str, base: str, seconds: float) -> list[tuple[float, dict]]:
    out: list[tuple[float, dict]] = []
    async with websockets.connect(url, origin=base) as ws:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                raw = await asyncio.wait_for(ws.recv(), timeout=end - time.monotonic())
            except asyncio.TimeoutError:
                break
            out.append((time.monotonic(), json.loads(raw)))
    return out
