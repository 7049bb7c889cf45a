"""Session runners: the one place that wires sources, pipeline, store and viewers.

- ``LiveRunner``: beat sources (two straps, or any BeatSource) → live pipeline, one tick
  per second of session time → store and viewers.
- ``ReplayRunner``: a recording (a file or a stored session) analysed once in batch
  mode, then released to viewers at the replay clock's pace: play, pause, seek and
  speed are exact and instant, and because live equals batch to the bit, a replay
  shows what the live session showed.

Viewers subscribe a callback and receive plain JSON-able messages (``tick``,
``event``, ``state``, and ``beat``: one per heart-rate notification, sent the moment
it is handled, so a live number can follow the strap without waiting for the next
tick); ``snapshot()`` gives a late viewer the session so far (beats are not in it:
the ticks carry their story). A live runner also sends ``storage`` messages when saving
pauses (the disk is full or the database busy) and when it works again
(monitor/saving.py); every snapshot carries the current one as ``storage``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
from typing import Any, Callable, Iterable

import numpy as np

from devices.hrs import MalformedPayload, parse_hrm
from devices.records import Annotation, Notification, Record, SessionClock, SessionHeader
from monitor.config import Config
from monitor.events import Event
from monitor.live import LivePipeline, TickState
from monitor.pipeline import Analysis
from monitor.saving import SessionSaver
from monitor.store import Store
from monitor.summary import episodes, rounded
from monitor.tick_history import TickHistory

log = logging.getLogger("coreg.runner")
Message = dict[str, Any]

# Per-tick columns a viewer needs, and the names it knows them by.
TICK_FIELDS = {
    "hr10_bpm": "hr_bpm",
    "delta_bpm": "delta_bpm",
    "activation_sd": "activation_sd",
    "vagal_index": "vagal_index",
    "rmssd30_ms": "rmssd_ms",
}


def quality_word(values: dict[str, float]) -> str:
    """"away" (strap disconnected), "none" (no signal yet), "low" or "ok"."""
    if not values.get("connected", 1.0):
        return "away"
    if not math.isfinite(values.get("gap_s", math.inf)):
        return "none"
    return "ok" if values.get("quality_ok", 0.0) else "low"


def tick_message(
    t_s: float,
    values: dict[str, dict[str, float]],
    linkage_r: float,
    linkage_lag_s: float,
    patterns: list[dict],
) -> Message:
    """The ``tick`` message of one second, from per-partner column values."""
    partners = {}
    for p, v in values.items():
        row: dict[str, Any] = {out: rounded(v.get(col, math.nan), 3) for col, out in TICK_FIELDS.items()}
        row["quality"] = quality_word(v)
        row["settled"] = math.isfinite(v.get("delta_bpm", math.nan))
        partners[p] = row
    return {
        "type": "tick",
        "t": float(t_s),
        "partners": partners,
        "linkage": {"r": rounded(linkage_r, 3), "lag_s": rounded(linkage_lag_s, 3)},
        "patterns": patterns,
    }


def beat_message(record: Notification) -> Message | None:
    """The ``beat`` message of one notification: heart rate and RR as the strap sent
    them (before artifact correction); None for a payload that does not parse."""
    try:
        hrm = parse_hrm(record.payload)
    except MalformedPayload:
        return None
    return {
        "type": "beat",
        "t": float(record.t_s),
        "partner": record.partner,
        "hr_bpm": hrm.hr_bpm,
        "rr_ms": [round(rr, 3) for rr in hrm.rr_ms],
    }


def event_message(event: Event) -> Message:
    return {"type": "event", "event": event.to_json()}


class _Runner:
    """What both runners share: identity, subscribers, the messages so far."""

    kind = ""

    def __init__(self, session_id: str, header: SessionHeader, label: str, store: Store) -> None:
        self.id = session_id
        self.header = header
        self.label = label
        self.store = store
        self._subscribers: list[Callable[[Message], None]] = []
        self._task: asyncio.Task | None = None

    def subscribe(self, callback: Callable[[Message], None]) -> Callable[[], None]:
        """Receive every message from now on; returns the function that unsubscribes."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, message: Message) -> None:
        for callback in list(self._subscribers):
            try:
                callback(message)
            except Exception:  # a broken viewer must never stop the session
                log.exception("a viewer callback failed; unsubscribing it")
                self._subscribers.remove(callback)

    def info(self) -> dict:
        info = self.store.get_session(self.id).to_json()
        info["running"] = self.state()["status"] in ("running", "paused")
        return info

    def snapshot(self) -> Message:
        ticks, events = self._so_far()
        return {
            "type": "snapshot",
            "session": self.info(),
            "ticks": ticks,
            "events": events,
            "replay": self.state(),
            "storage": self.storage(),
        }

    def storage(self) -> dict:
        """Whether the session is being saved: {"state": "ok"} or {"state": "paused", ...}."""
        return {"state": "ok"}

    def state(self) -> dict:  # pragma: no cover - overridden
        raise NotImplementedError

    def _so_far(self) -> tuple[list[Message], list[dict]]:  # pragma: no cover - overridden
        raise NotImplementedError


class ReplayRunner(_Runner):
    """Plays an analysed recording to viewers at ``speed`` times real time."""

    kind = "replay"

    def __init__(
        self,
        session_id: str,
        header: SessionHeader,
        records: list[Record],
        analysis: Analysis,
        store: Store,
        *,
        label: str = "",
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(session_id, header, label, store)
        self.analysis = analysis
        self._clock = clock
        self._speed = float(speed)
        self._playing = True
        self._stopped = False
        self._base_pos = 0.0
        self._base_clock = clock()
        self._ticks = replay_ticks(analysis)
        self._events = [e.to_json() for e in analysis.events]
        self._event_t = [e["t"] for e in self._events]
        self._beats = [m for r in records if isinstance(r, Notification) and (m := beat_message(r))]
        self._beat_t = [m["t"] for m in self._beats]
        self._sent_beats = 0
        self._sent_ticks = 0
        self._sent_events = 0
        self._wake = asyncio.Event()
        self.duration_s = analysis.duration_s
        self._extra_events: list[dict] = []

    # -- replay clock ---------------------------------------------------------------

    def position(self) -> float:
        if not self._playing:
            return self._base_pos
        pos = self._base_pos + (self._clock() - self._base_clock) * self._speed
        return min(pos, self.duration_s)

    def _rebase(self) -> None:
        self._base_pos = self.position()
        self._base_clock = self._clock()

    def state(self) -> dict:
        pos = self.position()
        if self._stopped:
            status = "stopped"
        elif pos >= self.duration_s:
            status = "finished"
        else:
            status = "running" if self._playing else "paused"
        return {
            "status": status,
            "position_s": round(pos, 3),
            "duration_s": self.duration_s,
            "speed": self._speed,
            "can_seek": True,
        }

    def pause(self) -> None:
        self._rebase()
        self._playing = False
        self._changed()

    def resume(self) -> None:
        if self.position() >= self.duration_s:
            self.seek(0.0)
        self._rebase()
        self._playing = True
        self._changed()

    def set_speed(self, speed: float) -> None:
        if not (0 < speed <= 1000):
            raise ValueError(f"speed must be above 0 and at most 1000, got {speed}")
        self._rebase()
        self._speed = float(speed)
        self._changed()

    def seek(self, t_s: float) -> None:
        if not math.isfinite(t_s):
            raise ValueError("seek needs a finite time")
        self._base_pos = min(max(float(t_s), 0.0), self.duration_s)
        self._base_clock = self._clock()
        self._sent_ticks = int(np.searchsorted([m["t"] for m in self._ticks], self._base_pos, side="right"))
        self._sent_events = int(np.searchsorted(self._event_t, self._base_pos, side="right"))
        self._sent_beats = int(np.searchsorted(self._beat_t, self._base_pos, side="right"))
        snap = self.snapshot()
        snap["type"] = "resync"
        self._publish(snap)
        self._changed()

    def _changed(self) -> None:
        self._publish({"type": "state", **self.state()})
        self._wake.set()

    def _so_far(self) -> tuple[list[Message], list[dict]]:
        pos = self.position()
        n_ticks = int(np.searchsorted([m["t"] for m in self._ticks], pos, side="right"))
        n_events = int(np.searchsorted(self._event_t, pos, side="right"))
        extra = [e for e in self._extra_events if e["t"] <= pos]
        events = sorted(self._events[:n_events] + extra, key=lambda e: e["t"])
        return self._ticks[:n_ticks], events

    # -- the loop -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"replay {self.id}")

    async def _run(self) -> None:
        was_finished = False
        while not self._stopped:
            pos = self.position()
            while self._sent_ticks < len(self._ticks) and self._ticks[self._sent_ticks]["t"] <= pos:
                self._publish(self._ticks[self._sent_ticks])
                self._sent_ticks += 1
            while self._sent_events < len(self._events) and self._event_t[self._sent_events] <= pos:
                self._publish({"type": "event", "event": self._events[self._sent_events]})
                self._sent_events += 1
            while self._sent_beats < len(self._beats) and self._beat_t[self._sent_beats] <= pos:
                self._publish(self._beats[self._sent_beats])
                self._sent_beats += 1
            finished = pos >= self.duration_s
            if finished and not was_finished:
                self._publish({"type": "state", **self.state()})
            was_finished = finished
            self._wake.clear()
            if self._playing and not finished:
                next_t = min(
                    self._ticks[self._sent_ticks]["t"] if self._sent_ticks < len(self._ticks) else math.inf,
                    self._event_t[self._sent_events] if self._sent_events < len(self._events) else math.inf,
                    self._beat_t[self._sent_beats] if self._sent_beats < len(self._beats) else math.inf,
                    self.duration_s,
                )
                wait = max((next_t - pos) / self._speed, 0.0)
                wait = min(wait, 0.5)
            else:
                wait = 1.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._task:
            await self._task
        self._publish({"type": "state", **self.state()})

    def annotate(self, text: str, author: str = "") -> dict:
        """Mark the current replay moment; stored with the session."""
        t_s = round(self.position(), 3)
        self.store.add_annotation(self.id, t_s, text, author)
        event = Event(t_s, "annotation", None, {"text": text, "author": author}).to_json()
        self._extra_events.append(event)
        self._publish({"type": "event", "event": event})
        return event


def replay_ticks(analysis: Analysis) -> list[Message]:
    """Every tick message of an analysed session, as the live runner would send them."""
    cols = {p: res.columns() for p, res in analysis.partners.items()}
    spans = [
        (ep["start_s"], math.inf if ep["end_s"] is None else ep["end_s"], ep["pattern"], ep["partner"])
        for ep in episodes(analysis)
    ]
    out = []
    for i, t in enumerate(analysis.tick_t_s):
        values = {p: {k: float(v[i]) for k, v in c.items()} for p, c in cols.items()}
        patterns = [
            {"pattern": pat, "partner": who, "start_t": start} for start, end, pat, who in spans if start <= t < end
        ]
        out.append(tick_message(t, values, analysis.linkage_r[i], analysis.linkage_lag_s[i], patterns))
    return out


class LiveRunner(_Runner):
    """A live session: sources → live pipeline → store and viewers, ticking each second.

    Memory stays bounded whatever the session's length: the pipeline keeps only its
    trailing data and hands each tick out once, the tick messages for late viewers are
    kept as columns (monitor/tick_history.py), and only the events are kept as they are
    (up to a few hundred an hour: about 1,900 in the 8-hour soak, bench/soak.py). While the store cannot write, records wait in
    memory up to a bound (monitor/saving.py).
    """

    kind = "live"

    def __init__(
        self,
        session_id: str,
        header: SessionHeader,
        sources: Iterable,
        store: Store,
        *,
        label: str = "",
        config: Config | None = None,
        clock: SessionClock | None = None,
        tick_margin_s: float = 1.0,
    ) -> None:
        super().__init__(session_id, header, label, store)
        self.sources = list(sources)
        self.clock = clock or SessionClock()
        self.pipeline = LivePipeline(header, config or Config(), keep_ticks=False)
        self.tick_margin_s = tick_margin_s
        self._ticks = TickHistory(self.pipeline.partners, tuple(TICK_FIELDS.values()))
        self._events: list[dict] = []
        self._queue: asyncio.Queue = asyncio.Queue()
        self._stopped = False
        self._tasks: list[asyncio.Task] = []
        self._last_t_s = 0.0
        self.saver = SessionSaver(store, session_id, self._publish, self.clock.now_s)
        self._finishing: asyncio.Task | None = None  # writing a stopped session once the store can

    def state(self) -> dict:
        status = "stopped" if self._stopped else "running"
        return {"status": status, "position_s": self.clock.now_s(), "duration_s": None, "speed": 1.0, "can_seek": False}

    def pause(self) -> None:
        raise ValueError("a live session cannot be paused; stop it instead")

    resume = pause

    def seek(self, t_s: float) -> None:
        raise ValueError("a live session cannot seek")

    def set_speed(self, speed: float) -> None:
        raise ValueError("a live session runs in real time")

    def storage(self) -> dict:
        return self.saver.state()

    def _so_far(self) -> tuple[list[Message], list[dict]]:
        return self._ticks.messages(), list(self._events)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        for source in self.sources:
            self._tasks.append(loop.create_task(self._pump(source)))
        self._tasks.append(loop.create_task(self._consume()))
        self._tasks.append(loop.create_task(self._ticker()))

    async def _pump(self, source) -> None:
        try:
            async for record in source:
                await self._queue.put(record)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("a beat source failed")

    def _emit(self, events: list[Event]) -> None:
        for e in events:
            self.saver.add_event(e)
            self._events.append(e.to_json())
            self._publish(event_message(e))

    def _emit_ticks(self, ticks: list[TickState]) -> None:
        for ts in ticks:
            msg = tick_message(ts.t_s, ts.partners, ts.linkage_r, ts.linkage_lag_s, ts.active_patterns)
            self._ticks.append(msg)
            self._publish(msg)

    def handle(self, record: Record) -> None:
        """Store one record and run it through the pipeline.

        Two straps are read by two tasks, so their records can reach this queue a few
        milliseconds out of order; a record is never placed before the one stored
        before it (a recording is ordered by time).
        """
        self._process(self._receive(record))

    def _receive(self, record: Record) -> Record:
        """Order, store and (a notification) pass on at once as a ``beat`` message."""
        if record.t_s < self._last_t_s:
            record = dataclasses.replace(record, t_s=self._last_t_s)
        self._last_t_s = record.t_s
        self.saver.add_record(record)
        if isinstance(record, Notification) and (beat := beat_message(record)):
            self._publish(beat)
        return record

    def _process(self, record: Record) -> None:
        """Run one received record through the pipeline (it may complete ticks)."""
        events = self.pipeline.feed(record)
        self._emit_ticks(self.pipeline.take_ticks())
        self._emit(events)

    async def _consume(self) -> None:
        while True:
            record = self._receive(await self._queue.get())
            # Let the viewers' tasks send the beat before the pipeline runs: feeding a
            # record may complete a tick, milliseconds of work that would delay it.
            await asyncio.sleep(0)
            self._process(record)

    async def _ticker(self) -> None:
        # Ticks run a margin behind the clock so that a record stamped just before a
        # whole second is always in before that second is evaluated.
        while True:
            now = self.clock.now_s()
            events = self.pipeline.advance(now - self.tick_margin_s)
            self._emit_ticks(self.pipeline.take_ticks())
            self._emit(events)
            self.saver.tick()
            await asyncio.sleep(1.0 - (now % 1.0) + 0.01)

    async def stop(self) -> None:
        if self._finishing is not None and not self._finishing.done():
            # Stopped before and still waiting for the store (the app is closing): one last try.
            self._finishing.cancel()
            if not self.saver.finish():
                log.error("session %s: the store cannot write; %d rows were not saved", self.id, self.store.buffered_rows)
            return
        self._stopped = True
        for source in self.sources:
            await source.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except asyncio.CancelledError:
                pass
        while not self._queue.empty():
            self.handle(self._queue.get_nowait())
        # The last whole seconds, as a later analysis of the recording will see them.
        events = self.pipeline.advance(self._last_t_s)
        self._emit_ticks(self.pipeline.take_ticks())
        self._emit(events)
        if not self.saver.finish():
            # The store cannot write yet: the session is over for its viewers, and what
            # it holds is written (and the session marked finished) once the store can.
            self._finishing = asyncio.get_running_loop().create_task(self.saver.finish_later())
        self._publish({"type": "state", **self.state()})

    def annotate(self, text: str, author: str = "") -> dict:
        """Mark this moment; recorded in order with the notifications."""
        record = Annotation(max(self.clock.now_s(), self._last_t_s), text, author)
        self.handle(record)
        self.saver.flush()
        return Event(record.t_s, "annotation", None, {"text": text, "author": author}).to_json()
