"""The session manager: starts and stops runners, and keeps them findable by id."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from devices.records import PartnerInfo, SessionClock, SessionHeader
from monitor.config import Config
from monitor.pipeline import analyze_records
from monitor.prompts import PromptCatalogue
from monitor.runner import LiveRunner, ReplayRunner
from monitor.store import Store, StoreError

log = logging.getLogger("coreg.sessions")

REPO_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DEMO_RECORDING = REPO_FIXTURES / "sim_divergence.jsonl.gz"
RECORDING_SUFFIXES = (".jsonl", ".jsonl.gz")

Runner = LiveRunner | ReplayRunner


class SessionManager:
    """Runs sessions for the dashboard and the CLI; one store, any number of viewers."""

    def __init__(
        self,
        store: Store,
        config: Config | None = None,
        *,
        demo_path: Path = DEMO_RECORDING,
        catalogue: PromptCatalogue | None = None,
    ) -> None:
        self.store = store
        self.config = config or Config()
        self.demo_path = Path(demo_path)
        self.catalogue = catalogue or PromptCatalogue.load()
        self.runners: dict[str, Runner] = {}
        self._current: str | None = None
        self._lsl = False
        self._bridges: dict[str, Any] = {}

    def enable_lsl(self) -> None:
        """Publish every session started from now on as LSL streams on this machine
        (monitor/lsl.py); raises LslUnavailable without the coreg[lsl] extra."""
        from monitor.lsl import load_pylsl

        load_pylsl()
        self._lsl = True

    def current(self) -> Runner | None:
        """The most recently started session that is still held."""
        return self.runners.get(self._current) if self._current else None

    def get(self, session_id: str) -> Runner | None:
        return self.runners.get(session_id)

    def _register(self, runner: Runner) -> Runner:
        # Runners publish nothing before the event loop runs them, so a bridge attached
        # here sees every message.
        if self._lsl and runner.id not in self._bridges:
            from monitor.lsl import LslBridge

            self._bridges[runner.id] = LslBridge(runner)
        self.runners[runner.id] = runner
        self._current = runner.id
        return runner

    # -- replays ------------------------------------------------------------------

    async def start_demo(self, *, speed: float = 1.0) -> ReplayRunner:
        """The bundled recording, replayed as if two straps were on."""
        if not self.demo_path.exists():
            raise StoreError(f"the demo recording {self.demo_path} is missing")
        return await self.start_replay(str(self.demo_path), speed=speed, kind="demo", label="Demo session")

    def _stored_session_for(self, path: Path, kind: str) -> str | None:
        for info in self.store.list_sessions():
            if info.kind == kind and info.source == str(path) and info.status == "finished":
                return info.id
        return None

    async def start_replay(
        self, source: str, *, speed: float = 1.0, kind: str = "replay", label: str = ""
    ) -> ReplayRunner:
        """Replay a stored session (by id) or a recording file (imported once)."""
        running = self.runners.get(source)
        if isinstance(running, ReplayRunner):
            running.seek(0.0)
            running.set_speed(speed)
            self._current = running.id
            return running
        session_id = self._known_session(source)
        if session_id is None:
            path = self._recording_path(source)
            session_id = self._stored_session_for(path, kind)
            if session_id is None:
                session_id = self.store.import_recording(path, label=label or path.name, kind=kind)
        header = self.store.header(session_id)
        records = list(self.store.records(session_id))
        analysis = await asyncio.to_thread(analyze_records, header, records, self.config, catalogue=self.catalogue)
        # The analysis's events are not stored for a recording: they follow from its
        # records and the config at any time. Only what people add (annotations) is.
        info = self.store.get_session(session_id)
        runner = ReplayRunner(session_id, header, records, analysis, self.store, label=info.label, speed=speed)
        runner.start()
        return self._register(runner)

    def _known_session(self, source: str) -> str | None:
        try:
            return self.store.get_session(source).id
        except StoreError:
            return None

    @staticmethod
    def _recording_path(source: str) -> Path:
        path = Path(source).expanduser().resolve()
        if not path.name.endswith(RECORDING_SUFFIXES):
            raise StoreError(f"{source}: not a coreg recording (expected .jsonl or .jsonl.gz)")
        if not path.is_file():
            raise StoreError(f"{source}: no such recording and no stored session with that id")
        return path

    # -- live -------------------------------------------------------------------------

    async def start_live(
        self,
        addr_a: str,
        addr_b: str,
        *,
        label: str = "",
        names: tuple[str, str] = ("", ""),
        client_factory: Any = None,
        clock: SessionClock | None = None,
    ) -> LiveRunner:
        """Two real straps (or fakes of the bleak client): connect, record, analyse."""
        from devices.ble import Strap

        clock = clock or SessionClock()
        lock = asyncio.Lock()
        kwargs: dict[str, Any] = {"clock": clock, "connect_lock": lock}
        if client_factory is not None:
            kwargs["client_factory"] = client_factory
        straps = [Strap(addr_a, "a", **kwargs), Strap(addr_b, "b", **kwargs)]
        header = SessionHeader(
            started_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            partners={"a": PartnerInfo(names[0], addr_a), "b": PartnerInfo(names[1], addr_b)},
        )
        return self.start_sources(header, straps, label=label or "Live session", clock=clock)

    def start_sources(
        self, header: SessionHeader, sources: Iterable, *, label: str = "", clock: SessionClock | None = None
    ) -> LiveRunner:
        """A live session from any beat sources stamped on ``clock``."""
        session_id = self.store.create_session(header, label=label, kind="live", config=self.config.to_json())
        runner = LiveRunner(session_id, header, sources, self.store, label=label, config=self.config, clock=clock)
        runner.start()
        return self._register(runner)

    # -- ending -----------------------------------------------------------------------

    async def stop(self, session_id: str) -> None:
        runner = self.runners.get(session_id)
        if runner is None:
            raise StoreError(f"session {session_id} is not running")
        await runner.stop()
        self._close_bridge(session_id)

    def _close_bridge(self, session_id: str) -> None:
        bridge = self._bridges.pop(session_id, None)
        if bridge is not None:
            bridge.close()

    def forget(self, session_id: str) -> None:
        """Drop a stopped runner (before its session is deleted)."""
        runner = self.runners.pop(session_id, None)
        self._close_bridge(session_id)
        if runner is not None and self._current == session_id:
            self._current = None

    async def close(self) -> None:
        """Stop every session (live ones are finished and committed)."""
        for runner in list(self.runners.values()):
            try:
                await runner.stop()
            except Exception:
                log.exception("stopping session %s failed", runner.id)
            self._close_bridge(runner.id)
        self.runners.clear()
