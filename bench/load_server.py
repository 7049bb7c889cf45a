"""The server side of bench/load.py: the real dashboard, N live dyads of fake straps.

One process: a Store, a SessionManager and ``dashboard.app.create_app`` served by
uvicorn on 127.0.0.1 with ``dashboard.serve``'s settings (as ``serve`` assembles them), and N live sessions
started through ``SessionManager.start_live`` with a ``devices.fakeble`` radio per
dyad, replaying slices of the simulated fixtures in real time (each strap about one
notification per second; dyads start staggered and at different points of the
fixtures, so their beats fall at unrelated moments).

The fake clients are wrapped so that every notification's delivery is stamped with
``time.monotonic()`` (system-wide on Linux, so the viewer processes can compare it with
their own receive times), and so is every beat frame the server writes to a viewer.
``LivePipeline.feed``/``advance`` and the store's writes are wrapped in timers, and a
probe task measures how late the event loop wakes up.

Protocol with the parent (bench/load.py): prints one JSON line ``{"ready": ...}`` with
the port, pid and session ids; then waits for a JSON line on stdin
``{"stop": {"start": s, "mid": m, "end": e}}``, stops every session, writes its
figures to ``--results`` and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import socket
import sys
import time
from collections import defaultdict
from functools import lru_cache, wraps
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from dashboard.app import create_app
from dashboard.serve import UVICORN_OPTIONS
from devices.fakeble import fake_client_factory, load_notifications
from devices.hrs import MalformedPayload, parse_hrm
from devices.records import Notification
from monitor.live import LivePipeline
from monitor.sessions import SessionManager
from monitor.store import Store

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FIXTURE_NAMES = ("calm", "divergence", "escalation", "flooding", "artifacts", "disconnect")
PROBE_S = 0.005  # the loop-lag probe's sleep
BEAT_PREFIX = '{"type":"beat"'  # how dashboard.viewer.dumps starts a beat's text


class Timings:
    """(monotonic end time, wall seconds, CPU seconds) per wrapped call, by name."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
        self._depth: dict[str, int] = defaultdict(int)

    def wrap(self, owner: type, name: str, label: str) -> bool:
        """Time ``owner.name`` under ``label`` ("group.name"). Only the outermost call of
        a group counts: ``feed`` evaluates ticks through ``advance`` itself, and those
        belong to the feed, not counted twice."""
        original = getattr(owner, name, None)
        if original is None:
            return False
        calls, group, depth = self.calls[label], label.split(".")[0], self._depth

        @wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            depth[group] += 1
            t0, cpu0 = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                depth[group] -= 1
                if not depth[group]:
                    calls.append((time.monotonic(), time.perf_counter() - t0, time.thread_time() - cpu0))

        setattr(owner, name, timed)
        return True

    def summary(self, start: float, end: float) -> dict:
        span = end - start
        out = {}
        for label, calls in self.calls.items():
            durations = sorted(d for at, d, _ in calls if start <= at <= end)
            cpu = sum(c for at, _, c in calls if start <= at <= end)
            out[label] = {
                "ms_per_s": 1000 * sum(durations) / span,  # wall clock: the loop is blocked this long
                "cpu_ms_per_s": 1000 * cpu / span,  # of which on the CPU (the rest: other processes ran)
                "calls": len(durations),
                "max_ms": 1000 * durations[-1] if durations else 0.0,
            }
        return out


@lru_cache(maxsize=None)
def fixture_notes(name: str, partner: str) -> list[tuple[float, bytes]]:
    return load_notifications(FIXTURES / f"sim_{name}.jsonl.gz", partner)


def dyad_notes(i: int, seed: int) -> tuple[list, list]:
    """Dyad i's two straps: a fixture's partners, from a random point in it, t from 0."""
    name = FIXTURE_NAMES[i % len(FIXTURE_NAMES)]
    offset_s = random.Random(seed * 1000 + i).uniform(30.0, 600.0)
    a, b = ([(t - offset_s, p) for t, p in fixture_notes(name, partner) if t >= offset_s] for partner in "ab")
    return a, b


def stamping_factory(radio: Any, deliveries: dict[str, list[float]]) -> Callable[..., Any]:
    """``radio`` (a FakeRadio) with every delivered notification's monotonic time kept
    per strap address, taken just before the Strap's callback stamps it."""

    def factory(address: Any, *args: Any, **kwargs: Any) -> Any:
        client = radio(address, *args, **kwargs)
        start_notify = client.start_notify
        kept = deliveries[getattr(address, "address", address)]

        async def stamped_start_notify(char: Any, callback: Callable, **kw: Any) -> None:
            def stamped(c: Any, data: bytearray) -> Any:
                kept.append(time.monotonic())
                return callback(c, data)

            await start_notify(char, stamped, **kw)

        client.start_notify = stamped_start_notify
        return client

    return factory


def listening_socket(send_buffer_bytes: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if send_buffer_bytes:
        # Accepted connections inherit it (Linux): a stalled viewer pushes back sooner.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer_bytes)
    sock.bind(("127.0.0.1", 0))
    return sock


def ws_protocol(write_buffer_bytes: int) -> Any:
    """uvicorn's own WebSocket protocol, with a lower write-buffer limit if asked."""
    if not write_buffer_bytes:
        return "auto"

    class SmallBufferWebSockets(WebSocketsSansIOProtocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.set_write_buffer_limits(high=write_buffer_bytes)

    return SmallBufferWebSockets


def time_feeds(feeds: dict[tuple[int, str, float], float]) -> None:
    """Keep how long ``LivePipeline.feed`` took per record, by (pipeline id, partner, t_s):
    the runner publishes a beat and then feeds its record in the same step of the loop,
    so the frame cannot leave before the feed (and any tick it evaluates) is done."""
    original = LivePipeline.feed

    @wraps(original)
    def feed(self: LivePipeline, record: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return original(self, record)
        finally:
            if isinstance(record, Notification):
                feeds[(id(self), record.partner, record.t_s)] = time.perf_counter() - t0

    LivePipeline.feed = feed


def stamp_beat_sends(app: Any, sent: list[tuple[str, str, float, float]]) -> Any:
    """``app`` with (session, partner, t, monotonic) kept each time the server has written
    a beat frame to a viewer's socket: the server's share of the latency, apart from the
    viewer processes' own (their loops, and the CPU they share with the server).

    An ASGI wrapper around the whole app, on each WebSocket's ``send``: it sees every
    frame whichever way the app sends it. The beat's (partner, t) is parsed once per
    text, which every viewer of the session shares.
    """
    keys: dict[str, tuple[str, float]] = {}

    async def stamped_app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return await app(scope, receive, send)
        session = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session", [""])[-1]

        async def stamped_send(message: dict) -> None:
            await send(message)
            text = message.get("text")
            if text is not None and text.startswith(BEAT_PREFIX):
                key = keys.get(text)
                if key is None:
                    beat = json.loads(text)
                    key = keys[text] = (beat["partner"], beat["t"])
                sent.append((session, *key, time.monotonic()))

        await app(scope, receive, stamped_send)

    return stamped_app


async def lag_probe(lags: list[tuple[float, float]]) -> None:
    """How late the loop wakes from a short sleep: what any ready callback waits."""
    while True:
        t0 = time.monotonic()
        await asyncio.sleep(PROBE_S)
        now = time.monotonic()
        lags.append((now, now - t0 - PROBE_S))


def gc_probe(pauses: list[tuple[float, int, float]]) -> Callable[[str, dict], None]:
    """A gc callback that logs (end time, generation, seconds) of every collection:
    a collection stops the loop like any other long callback."""
    started = [0.0]

    def probe(phase: str, info: dict) -> None:
        now = time.monotonic()
        if phase == "start":
            started[0] = now
        else:
            pauses.append((now, info["generation"], now - started[0]))

    return probe


def delivery_table(store: Store, session_id: str, addresses: dict[str, str], deliveries: dict) -> list:
    """[partner, t_s, delivered_monotonic, parses] per notification of the session: the
    stored notifications of each partner in order, paired with the fake's deliveries.
    A delivery the session never got to handle (an overloaded server) has t_s None."""
    stored: dict[str, list[Notification]] = defaultdict(list)
    for record in store.records(session_id):
        if isinstance(record, Notification):
            stored[record.partner].append(record)
    rows = []
    for partner, address in addresses.items():
        for record, at in zip(stored[partner], deliveries[address]):
            try:
                parse_hrm(record.payload)
                ok = True
            except MalformedPayload:
                ok = False
            rows.append([partner, record.t_s, at, ok])
        rows += [[partner, None, at, True] for at in deliveries[address][len(stored[partner]) :]]
    return rows


async def main(args: argparse.Namespace) -> None:
    timings = Timings()
    wrapped = [timings.wrap(LivePipeline, "feed", "pipeline.feed"), timings.wrap(LivePipeline, "advance", "pipeline.advance")]
    for name in ("add_record", "add_event", "flush"):
        timings.wrap(Store, name, f"store.{name}")
    sent: list[tuple[str, str, float, float]] = []
    feeds: dict[tuple[int, str, float], float] = {}
    time_feeds(feeds)
    store = Store(args.db)
    manager = SessionManager(store)
    app = stamp_beat_sends(create_app(manager, queue_size=args.queue_size), sent)
    sock = listening_socket(args.send_buffer)
    port = sock.getsockname()[1]
    options = {**UVICORN_OPTIONS, **({"ws_per_message_deflate": False} if args.no_deflate else {})}
    config = uvicorn.Config(app, **options, ws=ws_protocol(args.write_buffer))
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    lags: list[tuple[float, float]] = []
    probe = asyncio.create_task(lag_probe(lags))
    pauses: list[tuple[float, int, float]] = []
    gc.callbacks.append(gc_probe(pauses))

    deliveries: dict[str, list[float]] = defaultdict(list)
    sessions = []
    pipelines: dict[int, str] = {}
    for i in range(args.dyads):
        addr_a, addr_b = f"AA:00:00:00:{i // 256:02X}:{i % 256:02X}", f"BB:00:00:00:{i // 256:02X}:{i % 256:02X}"
        notes_a, notes_b = dyad_notes(i, args.seed)
        radio = fake_client_factory({addr_a: notes_a, addr_b: notes_b}, connect_delay_s=0.2, speed=args.strap_speed)
        runner = await manager.start_live(
            addr_a, addr_b, label=f"load {i}", client_factory=stamping_factory(radio, deliveries)
        )
        sessions.append((runner.id, {"a": addr_a, "b": addr_b}))
        pipelines[id(getattr(runner, "pipeline", None))] = runner.id
        await asyncio.sleep(args.stagger_s / args.dyads)
    print(json.dumps({"ready": True, "port": port, "pid": os.getpid(), "sessions": [s for s, _ in sessions]}), flush=True)

    line = await asyncio.to_thread(sys.stdin.readline)
    window = json.loads(line)["stop"]
    probe.cancel()
    # All at once: one by one, an overloaded loop takes minutes to stop a hundred.
    await asyncio.gather(*(manager.stop(session_id) for session_id, _ in sessions))
    start, end = window["start"], window["end"]
    in_window = sorted(lag for at, lag in lags if start <= at <= end)
    collections = [(gen, dur) for at, gen, dur in pauses if start <= at <= end]
    results = {
        "sessions": {sid: delivery_table(store, sid, addrs, deliveries) for sid, addrs in sessions},
        "timings": timings.summary(start, end),
        "sent": sent,
        "feed_ms": [[pipelines.get(p, ""), partner, t, 1000 * d] for (p, partner, t), d in feeds.items()],
        "pipeline_wrapped": all(wrapped),
        "gc": {
            "collections": [sum(1 for g, _ in collections if g == gen) for gen in range(3)],
            "longest_ms": [1000 * max((d for g, d in collections if g == gen), default=0.0) for gen in range(3)],
            "total_ms": 1000 * sum(d for _, d in collections),
        },
        "loop_lag_ms": {
            "p50": 1000 * in_window[len(in_window) // 2] if in_window else None,
            "p99": 1000 * in_window[int(len(in_window) * 0.99)] if in_window else None,
            "max": 1000 * in_window[-1] if in_window else None,
        },
    }
    Path(args.results).write_text(json.dumps(results))
    server.should_exit = True
    await serving
    store.close()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dyads", type=int, required=True)
    p.add_argument("--db", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--queue-size", type=int, default=256)
    p.add_argument("--send-buffer", type=int, default=0, help="SO_SNDBUF of viewer sockets (0: the system's)")
    p.add_argument("--write-buffer", type=int, default=0, help="transport write-buffer limit (0: uvicorn's)")
    p.add_argument("--stagger-s", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-deflate", action="store_true", help="permessage-deflate off (uvicorn offers it by default)")
    p.add_argument("--strap-speed", type=float, default=1.0, help="fake straps' pace (1: real time; tests go faster)")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
