"""Benchmark: N live dyads in one dashboard server, watched by real WebSocket viewers.

For each N (default 1, 10, 100) it starts a fresh server process (bench/load_server.py:
the real app from ``dashboard.app.create_app`` around a ``SessionManager``, served by
uvicorn on 127.0.0.1) running N live sessions of fake straps in real time, then viewer
processes (bench/load_clients.py, the ``websockets`` client): 2 viewers per dyad, 200
more on the last session, and, from the middle of the measured window, one viewer on
the first session that connects and stops reading.

Latency of a notification = the moment a viewer receives its ``beat`` frame minus the
moment the fake strap delivered it to the server, both on ``time.monotonic()``
(CLOCK_MONOTONIC, one clock for every process on Linux). Per N it prints the
notifications delivered in the window, the beat frames expected and received (each
viewer must get each beat exactly once), latency p50/p99/max, the server's CPU (% of
one core, from /proc) and RSS, how late its event loop ran, and the time spent in the
live pipeline and the store. Targets (printed, never asserted): p99 <= 20 ms at one
dyad, <= 50 ms at 100 dyads, and a stalled viewer changes nobody's latency.
The last two lines are ``p99_ms_1dyad=<x>`` and ``p99_ms_100dyads=<y>``.

Run from the repository root:  .venv/bin/python bench/load.py [--dyads 1,10,100 --seconds 40]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from load_report import Level, analyse, print_level, print_summary

HERE = Path(__file__).resolve().parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Options:
    seconds: float = 40.0
    warmup_s: float = 10.0
    viewers_per_dyad: int = 2
    extra_viewers: int = 200
    client_procs: int = 2
    queue_size: int = 256
    send_buffer: int = 0
    write_buffer: int = 0
    stall: bool = True
    stall_at: float = 0.5  # fraction of the window after which the stalled viewer connects
    seed: int = 1
    no_deflate: bool = False  # no effect now: the dashboard serves without permessage-deflate
    strap_speed: float = 1.0  # the fake straps' pace: 1 is real time (the bench); the test goes faster
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="coreg-load-")))


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, peak RSS) of a process, MiB."""
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


class Child:
    """A helper process spoken to by JSON lines on its stdin and stdout."""

    def __init__(self, script: str, *args: str) -> None:
        self.name = script
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / script), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def expect(self, key: str) -> dict:
        """The first JSON line holding ``key`` (an overloaded server may take minutes)."""
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"{self.name} exited ({self.proc.wait()}) before saying {key!r}")
            message = json.loads(line) if line.startswith("{") else {}
            if key in message:
                return message

    def say(self, text: str) -> None:
        self.proc.stdin.write(text + "\n")
        self.proc.stdin.flush()

    def finish(self, timeout_s: float = 600.0) -> None:
        code = self.proc.wait(timeout=timeout_s)
        if code != 0:
            raise RuntimeError(f"{self.name} failed with exit code {code}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.monotonic()))


def viewer_plan(sessions: list[str], opts: Options) -> list[list[str]]:
    """[viewer_id, session_id]: the dyads' own viewers, then the extra ones on the last."""
    plan = [[f"{i}.{k}", s] for i, s in enumerate(sessions) for k in range(opts.viewers_per_dyad)]
    plan += [[f"x{k}", sessions[-1]] for k in range(opts.extra_viewers)]
    return plan


def run_level(dyads: int, opts: Options) -> Level:
    """One server with ``dyads`` live sessions and its viewers; the figures of its window."""
    work = opts.workdir / f"n{dyads}"
    work.mkdir(parents=True, exist_ok=True)
    children: list[Child] = []
    try:
        server = Child(
            "load_server.py", "--dyads", str(dyads), "--db", str(work / "load.db"),
            "--results", str(work / "server.json"), "--queue-size", str(opts.queue_size),
            "--send-buffer", str(opts.send_buffer), "--write-buffer", str(opts.write_buffer), "--seed", str(opts.seed),
            "--strap-speed", str(opts.strap_speed), *(["--no-deflate"] if opts.no_deflate else []),
        )
        children.append(server)
        ready = server.expect("ready")
        ready_at = time.monotonic()
        port, sessions = str(ready["port"]), ready["sessions"]
        plan = viewer_plan(sessions, opts)
        viewers = []
        for k in range(opts.client_procs):
            part = plan[k :: opts.client_procs]
            if part:
                (work / f"plan{k}.json").write_text(json.dumps(part))
                child = Child("load_clients.py", "--port", port, "--plan", str(work / f"plan{k}.json"),
                              "--results", str(work / f"viewers{k}.json"))
                children.append(child)
                viewers.append(child)
        for child in viewers:
            child.expect("connected")
        start = max(ready_at + opts.warmup_s, time.monotonic() + 1.0)
        end = start + opts.seconds
        mid = start + opts.seconds * opts.stall_at
        sleep_until(start)
        cpu0 = {c.proc.pid: cpu_s(c.proc.pid) for c in children}
        stall = None
        if opts.stall:
            sleep_until(mid)
            stall = Child("load_clients.py", "--port", port, "--stall", sessions[0], "--results", str(work / "stall.json"))
            children.append(stall)
            stall.expect("connected")
        sleep_until(end)
        cpu_server = cpu_s(server.proc.pid) - cpu0[server.proc.pid]
        cpu_clients = sum(cpu_s(c.proc.pid) - cpu0[c.proc.pid] for c in viewers)
        rss_mib, peak_mib = memory_mib(server.proc.pid)
        load_average = os.getloadavg()[0]
        time.sleep(1.5)  # frames still on their way
        if stall is not None:
            stall.say("drain")
            stall.finish()
        for child in viewers:
            child.say("stop")
        for child in viewers:
            child.finish()
        server.say(json.dumps({"stop": {"start": start, "mid": mid, "end": end}}))
        server.finish()
    finally:
        for child in children:
            child.kill()
    viewer_results = [json.loads((work / f"viewers{k}.json").read_text()) for k in range(len(viewers))]
    return analyse(
        dyads=dyads,
        plan=plan,
        server=json.loads((work / "server.json").read_text()),
        viewers=viewer_results,
        stall=json.loads((work / "stall.json").read_text()) if stall is not None else None,
        window=(start, mid, end),
        cpu_server_pct=100 * cpu_server / (end - start),
        cpu_clients_pct=100 * cpu_clients / (end - start),
        rss_mib=rss_mib,
        peak_rss_mib=peak_mib,
        stalled_session=sessions[0],
        load_average=load_average,
    )


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dyads", default="1,10,100", help="comma-separated numbers of dyads, one server each")
    p.add_argument("--seconds", type=float, default=40.0, help="measured window per level (s)")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds from the sessions' start to the window")
    p.add_argument("--extra-viewers", type=int, default=200, help="viewers on the last session besides its own")
    p.add_argument("--client-procs", type=int, default=2, help="viewer processes")
    p.add_argument("--queue-size", type=int, default=256, help="per-viewer queue of the server (create_app)")
    p.add_argument("--no-stall", action="store_true", help="leave out the viewer that stops reading")
    p.add_argument("--no-deflate", action="store_true", help="no effect: the dashboard no longer compresses its frames (kept for old command lines)")
    args = p.parse_args(argv)
    opts = Options(
        seconds=args.seconds, warmup_s=args.warmup, extra_viewers=args.extra_viewers,
        client_procs=args.client_procs, queue_size=args.queue_size, stall=not args.no_stall, no_deflate=args.no_deflate,
    )
    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; window {opts.seconds:g} s after {opts.warmup_s:g} s "
          f"of warm-up; {opts.viewers_per_dyad} viewers per dyad + {opts.extra_viewers} on the last session; "
          f"{opts.client_procs} viewer processes", flush=True)
    levels = []
    for dyads in (int(x) for x in args.dyads.split(",")):
        level = run_level(dyads, opts)
        print_level(level)
        levels.append(level)
    print_summary(levels)
    shutil.rmtree(opts.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
