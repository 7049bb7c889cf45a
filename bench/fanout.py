"""Microbenchmark: the dashboard server's cost of sending one live message to N viewers.

One server process (the real ``dashboard.app.create_app`` around a scripted session
manager, served by uvicorn with ``dashboard.serve.UVICORN_OPTIONS`` on 127.0.0.1) and
viewer processes (``websockets`` clients on loopback). The server publishes ``--messages``
beat messages ``--interval-ms`` apart to every viewer of one session, as a runner does,
and keeps for each message:

- ``send``: publish -> the last viewer's send returning on the server (an ASGI wrapper
  around the app stamps every beat frame's send, the same for every variant);
- ``recv``: publish -> the last viewer receiving the frame (``time.monotonic`` is one
  clock for every process on Linux);
- ``cpu``: the server's CPU time over the publishing phase, per viewer and message.

Variants are the product of ``--trees`` (source trees of coreg, e.g. a ``git archive``
of main beside this one), ``--ws`` (uvicorn's WebSocket implementations) and ``--loops``
(``asyncio`` or ``uvloop``); ``--rounds`` runs them interleaved so a busy machine slows
all alike. Figures are printed, never asserted; ratios are against the first variant.

Run from the repository root:
    .venv/bin/python bench/fanout.py --viewers 200 --messages 150 --rounds 2
    .venv/bin/python bench/fanout.py --trees /tmp/main-tree,. --ws websockets-sansio,websockets
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
BEAT_PREFIX = '{"type":"beat"'
SESSION = "s1"


# -- the server side ---------------------------------------------------------------


class ScriptedRunner:
    """A runner with one empty snapshot that publishes what it is told to."""

    def __init__(self) -> None:
        self.subscribers: list[Any] = []

    def subscribe(self, callback: Any) -> Any:
        self.subscribers.append(callback)
        return lambda: callback in self.subscribers and self.subscribers.remove(callback)

    def snapshot(self) -> dict:
        session = {"id": SESSION, "label": "fanout", "kind": "live", "status": "live", "running": True}
        return {"type": "snapshot", "session": session, "ticks": [], "events": [], "replay": None}

    def state(self) -> dict:
        return {"status": "running"}

    def publish(self, message: dict) -> None:
        for callback in list(self.subscribers):
            callback(message)


class ScriptedManager:
    """One running session, ``SESSION``, which is also the current one."""

    def __init__(self, runner: ScriptedRunner) -> None:
        self.runner = runner
        self.store = None

    def get(self, session_id: str) -> ScriptedRunner | None:
        return self.runner if session_id == SESSION else None

    def current(self) -> ScriptedRunner:
        return self.runner


def stamping(app: Any, stamps: dict[float, list[float]]) -> Any:
    """``app`` with the monotonic time kept after every beat frame sent, by beat t."""
    keys: dict[str, float] = {}

    async def stamped_app(scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return await app(scope, receive, send)

        async def stamped_send(message: dict) -> None:
            await send(message)
            text = message.get("text")
            if text is not None and text.startswith(BEAT_PREFIX):
                t = keys.get(text)
                if t is None:
                    t = keys[text] = json.loads(text)["t"]
                stamps.setdefault(t, []).append(time.monotonic())

        await app(scope, receive, stamped_send)

    return stamped_app


async def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from dashboard.app import create_app
    from dashboard.serve import UVICORN_OPTIONS

    runner = ScriptedRunner()
    stamps: dict[float, list[float]] = {}
    app = create_app(ScriptedManager(runner))
    if not args.no_stamp:
        app = stamping(app, stamps)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, **{**UVICORN_OPTIONS, "ws": args.ws}))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    print(json.dumps({"ready": sock.getsockname()[1]}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go": every viewer is connected
    published: list[tuple[float, float]] = []
    cpu0 = time.process_time()
    for k in range(args.messages):
        t = round(0.5 * k, 1)
        message = {"type": "beat", "t": t, "partner": "ab"[k % 2], "hr_bpm": 72, "rr_ms": [823.242, 810.547]}
        published.append((t, time.monotonic()))
        runner.publish(message)
        await asyncio.sleep(args.interval_ms / 1000)
    cpu_s = time.process_time() - cpu0
    print(json.dumps({"published": published, "stamps": {str(t): s for t, s in stamps.items()}, "cpu_s": cpu_s}),
          flush=True)
    server.should_exit = True
    await serving


def run_server(args: argparse.Namespace) -> None:
    if args.loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(serve(args))
    else:
        asyncio.run(serve(args))


# -- the viewers -------------------------------------------------------------------


async def view(args: argparse.Namespace) -> dict:
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{args.port}/ws" + ("" if args.follow else f"?session={SESSION}")
    sockets = await asyncio.gather(*(connect(url, max_size=2**24) for _ in range(args.viewers)))
    received: dict[float, list[float]] = {}

    async def read(ws: Any) -> None:
        async for raw in ws:
            at = time.monotonic()
            if raw.startswith(BEAT_PREFIX):
                received.setdefault(json.loads(raw)["t"], []).append(at)

    readers = [asyncio.create_task(read(ws)) for ws in sockets]
    print(json.dumps({"connected": len(sockets)}), flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await asyncio.gather(*readers, return_exceptions=True)
    return {str(t): at for t, at in received.items()}


def run_viewers(args: argparse.Namespace) -> None:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        print(json.dumps({"received": runner.run(view(args))}), flush=True)


# -- the orchestration -----------------------------------------------------------


def spawn(tree: str, *args: str, profile: str = "") -> subprocess.Popen:
    """This script in another role, on ``tree``'s code; under py-spy if ``profile`` names
    an output file (raw collapsed stacks)."""
    paths = [str(Path(tree).resolve()), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    spy = [str(Path(sys.executable).parent / "py-spy"), "record", "--rate", "1000", "--format", "raw", "-o", profile, "--"] if profile else []
    return subprocess.Popen([*spy, sys.executable, str(HERE), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env, cwd=str(Path(tree).resolve()))


def expect(proc: subprocess.Popen, key: str) -> dict:
    """The first JSON line of ``proc`` holding ``key``."""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"a {key!r} line never came (exit code {proc.wait()})")
        if line.startswith("{") and key in (message := json.loads(line)):
            return message


def run_variant(tree: str, ws: str, loop: str, args: argparse.Namespace) -> dict[str, Any]:
    """One server and its viewers: per message, publish -> last send and -> last
    receive (ms), and the server's CPU per viewer and message (us)."""
    server = spawn(tree, "--role", "server", "--ws", ws, "--loop", loop, "--messages", str(args.messages),
                   "--interval-ms", str(args.interval_ms), *(["--no-stamp"] if args.no_stamp else []),
                   profile=args.profile)
    procs = [server]
    try:
        port = str(expect(server, "ready")["ready"])
        shares = [args.viewers // args.client_procs + (i < args.viewers % args.client_procs)
                  for i in range(args.client_procs)]
        clients = [spawn(tree, "--role", "viewers", "--port", port, "--viewers", str(n),
                         *(["--follow"] if args.follow else [])) for n in shares if n]
        procs += clients
        for client in clients:
            expect(client, "connected")
        time.sleep(0.5)
        server.stdin.write("go\n")
        server.stdin.flush()
        sent = expect(server, "published")
        time.sleep(0.3)  # frames still on their way
        received: dict[str, list[float]] = {}
        for client in clients:
            client.stdin.write("stop\n")
            client.stdin.flush()
            for t, at in expect(client, "received")["received"].items():
                received.setdefault(t, []).extend(at)
    finally:
        for proc in procs:
            try:
                proc.wait(timeout=10)  # the server exits after its figures (py-spy then writes)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    send_ms, recv_ms, incomplete = [], [], 0
    for t, at in sent["published"]:
        stamps, got = sent["stamps"].get(str(t), []), received.get(str(t), [])
        if len(got) != args.viewers or (len(stamps) != args.viewers and not args.no_stamp):
            incomplete += 1
            continue
        send_ms.append(1000 * (max(stamps) - at) if stamps else math.nan)
        recv_ms.append(1000 * (max(got) - at))
    return {"send_ms": send_ms, "recv_ms": recv_ms, "incomplete": incomplete,
            "cpu_us": 1e6 * sent["cpu_s"] / (args.messages * args.viewers)}


def orchestrate(args: argparse.Namespace) -> None:
    variants = list(itertools.product(args.trees.split(","), args.ws.split(","), args.loops.split(",")))
    runs: dict[tuple, list[dict]] = {v: [] for v in variants}
    for _ in range(args.rounds):
        for variant in variants:
            runs[variant].append(run_variant(*variant, args))
    print(f"{args.viewers} viewers{' (following)' if args.follow else ''}, {args.messages} messages "
          f"{args.interval_ms:g} ms apart, {args.rounds} interleaved round(s); load average {os.getloadavg()[0]:.1f}")
    print(f"{'tree':<22} {'ws':<18} {'loop':<8} {'send p50':>9} {'p99':>7} {'recv p50':>9} {'p99':>7} "
          f"{'cpu us/viewer/msg':>18} {'ratio':>6} {'incomplete':>10}")
    base = None
    for (tree, ws, loop), results in runs.items():
        send = np.concatenate([r["send_ms"] for r in results])
        recv = np.concatenate([r["recv_ms"] for r in results])
        cpu = float(np.median([r["cpu_us"] for r in results]))
        base = base or cpu
        print(f"{Path(tree).resolve().name:<22} {ws:<18} {loop:<8} {np.percentile(send, 50):9.2f} "
              f"{np.percentile(send, 99):7.2f} {np.percentile(recv, 50):9.2f} {np.percentile(recv, 99):7.2f} "
              f"{cpu:18.1f} {cpu / base:6.2f} {sum(r['incomplete'] for r in results):10d}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--role", choices=("orchestrate", "server", "viewers"), default="orchestrate")
    p.add_argument("--viewers", type=int, default=200)
    p.add_argument("--messages", type=int, default=150)
    p.add_argument("--interval-ms", type=float, default=50.0)
    p.add_argument("--client-procs", type=int, default=2)
    p.add_argument("--follow", action="store_true", help="viewers follow the current session (no ?session=)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--trees", default=".", help="comma-separated coreg source trees to compare")
    p.add_argument("--ws", default="websockets-sansio", help="comma-separated uvicorn ws implementations")
    p.add_argument("--loops", default="asyncio", help="comma-separated: asyncio, uvloop")
    p.add_argument("--no-stamp", action="store_true", help="no send stamps (their cost: compare; send figures nan)")
    p.add_argument("--profile", default="", help="py-spy the server into this file (raw stacks)")
    p.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "server":
        run_server(args)
    elif args.role == "viewers":
        run_viewers(args)
    else:
        orchestrate(args)


if __name__ == "__main__":
    main()
