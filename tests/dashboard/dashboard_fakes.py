"""A scripted session manager, runner and store for the dashboard tests.

They follow the interfaces of monitor.sessions / monitor.runner / monitor.store
(issue 4) closely enough for the app, and record what the app asked of them.
The runner publishes synchronously (as the real one does, from the event loop);
``push`` lets a test thread publish into the app's loop under TestClient.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any, Callable

from devices.recording import RecordingWriter
from devices.records import Annotation, Notification, PartnerInfo, SessionHeader
from monitor.store import SessionInfo, StoreError

BASE = "http://127.0.0.1:8000"  # a loopback address: the app answers no other host without a token
WS = "ws://127.0.0.1:8000/ws"
TOKEN = "s3cret-Token_123"
HEADER = SessionHeader("2024-05-01T18:00:00Z", {"a": PartnerInfo("Ana", "AA:01"), "b": PartnerInfo("Ben", "BB:02")})


def tick(t: float, hr_a: float = 70.0, hr_b: float = 65.0) -> dict:
    """A tick message as monitor.runner.tick_message shapes it."""
    row = lambda hr: {  # noqa: E731
        "hr_bpm": hr, "delta_bpm": hr - 70.0, "activation_sd": (hr - 70.0) / 4.0, "vagal_index": 0.1,
        "rmssd_ms": 35.0, "quality": "ok", "settled": True,
    }
    return {"type": "tick", "t": t, "partners": {"a": row(hr_a), "b": row(hr_b)},
            "linkage": {"r": 0.4, "lag_s": 1.5}, "patterns": []}


def event(t: float, kind: str = "settled", partner: str | None = "a", **data: Any) -> dict:
    return {"type": "event", "event": {"t": t, "kind": kind, "partner": partner, **data}}


class FakeStore:
    """Sessions in a dict; export writes a real coreg-session file."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "coreg.db"
        self.sessions: dict[str, SessionInfo] = {}
        self.stored_events: dict[str, list[dict]] = {}
        self.exported: list[Path] = []

    def add(self, session_id: str, *, kind: str = "replay", status: str = "finished", label: str = "") -> SessionInfo:
        info = SessionInfo(
            id=session_id, label=label or f"session {session_id}", kind=kind, status=status,
            started_at="2024-05-01T18:00:00Z", ended_at=None if status == "live" else "2024-05-01T18:30:00Z",
            partners={"a": {"name": "Ana", "device": "AA:01"}, "b": {"name": "Ben", "device": "BB:02"}},
            config={}, source="", duration_s=1800.0, n_notifications=3600, n_events=2,
        )
        self.sessions[session_id] = info
        self.stored_events.setdefault(session_id, [])
        return info

    def _known(self, session_id: str) -> None:
        if session_id not in self.sessions:
            raise StoreError(f"no session {session_id!r} in {self.path}")

    def list_sessions(self) -> list[SessionInfo]:
        return list(self.sessions.values())

    def get_session(self, session_id: str) -> SessionInfo:
        self._known(session_id)
        return self.sessions[session_id]

    def events(self, session_id: str) -> list[dict]:
        self._known(session_id)
        return list(self.stored_events[session_id])

    def header(self, session_id: str) -> SessionHeader:
        self._known(session_id)
        return HEADER

    def records(self, session_id: str) -> list:
        self._known(session_id)
        return []

    def add_annotation(self, session_id: str, t_s: float, text: str, author: str = "") -> Annotation:
        self._known(session_id)
        self.stored_events[session_id].append({"t": t_s, "kind": "annotation", "partner": None, "text": text, "author": author})
        return Annotation(t_s, text, author)

    def delete_session(self, session_id: str) -> None:
        self._known(session_id)
        del self.sessions[session_id], self.stored_events[session_id]

    def export(self, session_id: str, path: str | Path) -> Path:
        self._known(session_id)
        path = Path(path)
        with RecordingWriter(path, HEADER) as writer:
            writer.write(Notification(0.5, "a", bytes.fromhex("104800")))
            writer.write(Annotation(1.0, "<b>marked</b>", "pat"))
        self.exported.append(path)
        return path


class FakeRunner:
    """A runner that publishes what the test scripts, and obeys controls like a replay."""

    def __init__(self, store: FakeStore, session_id: str, *, kind: str = "replay", duration_s: float | None = 600.0) -> None:
        self.store = store
        self.id = session_id
        self.kind = kind
        self.label = f"session {session_id}"
        self.header = HEADER
        self.ticks: list[dict] = []
        self.events: list[dict] = []
        self.status = "running"
        self.position_s = 0.0
        self.duration_s = duration_s
        self.speed = 1.0
        self.can_seek = kind != "live"
        self.calls: list[tuple] = []
        self.subscribers: list[Callable[[dict], None]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.on_snapshot: Callable[[], None] | None = None  # to publish "during" a snapshot
        store.add(session_id, kind=kind, status="live" if kind == "live" else "finished")

    def subscribe(self, callback: Callable[[dict], None]) -> Callable[[], None]:
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            pass
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback) if callback in self.subscribers else None

    def publish(self, message: dict) -> None:
        if message["type"] == "tick":
            self.ticks.append(message)
            self.position_s = message["t"]
        elif message["type"] == "event":
            self.events.append(message["event"])
        for callback in list(self.subscribers):
            callback(message)

    def push(self, message: dict) -> None:
        """Publish from another thread (a test driving TestClient) into the app's loop."""
        assert self.loop is not None, "no viewer has subscribed yet"
        self.loop.call_soon_threadsafe(self.publish, message)

    def state(self) -> dict:
        return {"status": self.status, "position_s": self.position_s, "duration_s": self.duration_s,
                "speed": self.speed, "can_seek": self.can_seek}

    def snapshot(self) -> dict:
        if self.on_snapshot is not None:
            self.on_snapshot()
        info = {**self.store.get_session(self.id).to_json(), "running": self.status in ("running", "paused")}
        return {"type": "snapshot", "session": info, "ticks": list(self.ticks), "events": list(self.events),
                "replay": self.state()}

    def _replay_only(self, name: str, *args: Any) -> None:
        if not self.can_seek:
            raise ValueError(f"a live session cannot {name}")
        self.calls.append((name, *args))

    def pause(self) -> None:
        self._replay_only("pause")
        self.status = "paused"
        self.publish({"type": "state", **self.state()})

    def resume(self) -> None:
        self._replay_only("resume")
        self.status = "running"
        self.publish({"type": "state", **self.state()})

    def seek(self, t_s: float) -> None:
        self._replay_only("seek", t_s)
        if self.duration_s is not None and t_s > self.duration_s:
            raise ValueError(f"seek past the end ({self.duration_s} s)")
        self.position_s = t_s

    def set_speed(self, speed: float) -> None:
        self._replay_only("speed", speed)
        self.speed = speed

    async def stop(self) -> None:
        self.calls.append(("stop",))
        self.status = "stopped"
        self.store.sessions[self.id] = dataclasses.replace(self.store.sessions[self.id], status="finished")

    def annotate(self, text: str, author: str = "") -> dict:
        self.store.add_annotation(self.id, self.position_s, text, author)
        ev = {"t": self.position_s, "kind": "annotation", "partner": None, "text": text, "author": author}
        self.publish({"type": "event", "event": ev})
        return ev


class FakeManager:
    """Holds fake runners; start_* create them and record their arguments."""

    def __init__(self, store: FakeStore) -> None:
        self.store = store
        self.runners: dict[str, FakeRunner] = {}
        self._current: str | None = None
        self.started: list[tuple] = []
        self.fail_with: Exception | None = None

    def add_runner(self, session_id: str, **kwargs: Any) -> FakeRunner:
        runner = FakeRunner(self.store, session_id, **kwargs)
        self.runners[session_id] = runner
        self._current = session_id
        return runner

    def current(self) -> FakeRunner | None:
        return self.runners.get(self._current) if self._current else None

    def forget(self, session_id: str) -> None:
        self.runners.pop(session_id, None)

    def get(self, session_id: str) -> FakeRunner | None:
        return self.runners.get(session_id)

    def _start(self, what: tuple, kind: str) -> FakeRunner:
        self.started.append(what)
        if self.fail_with is not None:
            raise self.fail_with
        return self.add_runner(f"s{len(self.started)}", kind=kind)

    async def start_demo(self, *, speed: float = 1.0) -> FakeRunner:
        return self._start(("demo", speed), "demo")

    async def start_replay(self, source: str, *, speed: float = 1.0) -> FakeRunner:
        return self._start(("replay", source, speed), "replay")

    async def start_live(self, addr_a: str, addr_b: str, *, label: str = "", names: tuple[str, str] = ("", "")) -> FakeRunner:
        return self._start(("live", addr_a, addr_b, label, names), "live")

    async def stop(self, session_id: str) -> None:
        await self.runners[session_id].stop()
