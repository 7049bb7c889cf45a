"""The viewer side of bench/load.py: real WebSocket clients in their own process.

Two roles:

- ``--plan FILE``: many viewers (``[[viewer_id, session_id], ...]``), each a
  ``websockets`` client on ``/ws?session=ID`` that reads every frame, stamps it with
  ``time.monotonic()`` the moment it comes out of the socket, and keeps each ``beat``
  as (viewer, partner, t, received). Prints ``{"connected": n}`` once all are
  connected, runs until a line ``stop`` arrives on stdin, then writes what it received
  to ``--results``. A probe measures how late this process's own loop wakes up, which
  is part of what the viewers measure.
- ``--stall SESSION``: one viewer that connects and then stops reading: the smallest
  socket receive buffer, no compression and a one-frame queue, so the library stops
  reading the socket at once and the server's sends to it back up as soon as the
  socket buffers between them are full. On the line ``drain`` it reads what is
  waiting (for 1.5 s, or until the server closes it) and writes the frames' types
  to ``--results``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import websockets
from websockets.asyncio.client import connect

PROBE_S = 0.005
CONNECT_AT_ONCE = 50
OPEN_TIMEOUT_S = 120.0  # an overloaded server answers late; the figures will show it
DRAIN_S = 1.5  # how long the stalled viewer reads once it resumes


class Viewers:
    """Every frame of every planned viewer, stamped on arrival."""

    def __init__(self, port: int, plan: list[list[str]]) -> None:
        self.port = port
        self.plan = plan
        self.beats: list[tuple[str, str, float, float]] = []
        self.frames: dict[str, Counter] = defaultdict(Counter)
        self.errors: list[str] = []
        self.lags: list[tuple[float, float]] = []
        self.unconnected: list[str] = []

    async def _open(self, viewer_id: str, session_id: str, gate: asyncio.Semaphore):
        """The viewer's connection, or None (noted) if an overloaded server never answers."""
        async with gate:
            try:
                return await connect(
                    f"ws://127.0.0.1:{self.port}/ws?session={session_id}", open_timeout=OPEN_TIMEOUT_S, max_size=2**24
                )
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                self.errors.append(f"viewer {viewer_id}: could not connect: {exc!r}")
                self.unconnected.append(viewer_id)
                return None

    async def _read(self, viewer_id: str, ws) -> None:
        frames, beats = self.frames[viewer_id], self.beats
        try:
            async for raw in ws:
                received = time.monotonic()
                message = json.loads(raw)
                kind = message.get("type")
                frames[kind] += 1
                if kind == "beat":
                    beats.append((viewer_id, message["partner"], message["t"], received))
        except websockets.ConnectionClosed as exc:
            self.errors.append(f"viewer {viewer_id}: closed ({exc})")

    async def _probe(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(PROBE_S)
            now = time.monotonic()
            self.lags.append((now, now - t0 - PROBE_S))

    async def run(self) -> dict:
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)
        opened = await asyncio.gather(*(self._open(v, s, gate) for v, s in self.plan))
        sockets = [ws for ws in opened if ws is not None]
        readers = [asyncio.create_task(self._read(v, ws)) for (v, _), ws in zip(self.plan, opened) if ws is not None]
        probe = asyncio.create_task(self._probe())
        print(json.dumps({"connected": len(sockets)}), flush=True)
        while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("stop", ""):
            pass
        probe.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        await asyncio.gather(*readers, return_exceptions=True)
        return {
            "beats": self.beats, "frames": self.frames, "errors": self.errors, "lags": self.lags,
            "unconnected": self.unconnected,
        }


async def stall(port: int, session_id: str) -> dict:
    """Connect, stop reading until told to drain, then count what had been waiting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # Before connect, so the window it offers is small: the kernel's least receive buffer.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    # No compression: whole-size frames fill the buffers between it and the server sooner.
    ws = await connect(
        f"ws://127.0.0.1:{port}/ws?session={session_id}",
        sock=sock, max_queue=1, ping_interval=None, max_size=2**24, compression=None, open_timeout=OPEN_TIMEOUT_S,
    )
    connected_at = time.monotonic()
    print(json.dumps({"connected": 1}), flush=True)
    while (await asyncio.to_thread(sys.stdin.readline)).strip() not in ("drain", ""):
        pass
    stalled_s = time.monotonic() - connected_at
    kinds: Counter = Counter()
    closed = None
    deadline = time.monotonic() + DRAIN_S
    while True:
        try:
            raw = await asyncio.wait_for(ws.recv(), timeout=max(deadline - time.monotonic(), 0.0))
        except asyncio.TimeoutError:
            break
        except websockets.ConnectionClosed as exc:
            closed = f"code {exc.rcvd.code if exc.rcvd else None} after the frames above"
            break
        kinds[json.loads(raw).get("type")] += 1
    await ws.close()
    return {"frames": kinds, "closed_by_server": closed, "stalled_s": stalled_s}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--plan", help="JSON file: [[viewer_id, session_id], ...]")
    p.add_argument("--stall", help="a session id: be the viewer that stops reading")
    args = p.parse_args(argv)
    if args.stall:
        results = asyncio.run(stall(args.port, args.stall))
    else:
        plan = json.loads(Path(args.plan).read_text())
        try:
            import uvloop  # the clients' own overhead is part of what they measure: keep it low

            loop_factory = uvloop.new_event_loop
        except ImportError:
            loop_factory = None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(Viewers(args.port, plan).run())
    Path(args.results).write_text(json.dumps(results))


if __name__ == "__main__":
    main()
