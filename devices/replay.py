"""Replay a recording as a beat source, paced like the session it came from.

A RecordingSource yields a recording's notifications and status changes, each at
wall time (t - start) / speed after playback began, and can be paused, resumed, sped up
and sought while it plays (the review use case in DESIGN.md). Annotations are not
yielded; they are gathered in ``annotations`` as playback reaches them.

Every wait is computed against one base point (the clock reading and recording time of
the last re-basing), never by adding up sleeps, so pacing does not drift however long a
session runs. The file is streamed: seeking backwards re-opens it.
"""

from __future__ import annotations

import asyncio
import math
import os
from typing import Awaitable, Callable

from devices.records import Annotation, Record, SessionHeader, SourceRecord
from devices.recording import RecordingReader, open_recording

# In as-fast-as-possible mode, let other tasks run every so many records so that a
# long file replayed at full speed does not starve the event loop.
YIELD_EVERY_RECORDS = 100


def _checked_speed(speed: float) -> float:
    if math.isnan(speed) or speed < 0:
        raise ValueError(f"speed must be a positive factor (0 or inf for as fast as possible), got {speed!r}")
    return speed


class RecordingSource:
    """A beat source that plays back a coreg-session recording.

    ``speed`` is the playback factor (2.0 plays twice as fast; 0 or ``inf`` plays as
    fast as possible, without sleeping). ``start_at_s`` is the recording time (s) to
    start from. ``sleep`` and ``clock`` (seconds, monotonic; default: the running
    loop's ``time()``) are the waiting and time-keeping used for pacing; tests pass a
    fake pair.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        speed: float = 1.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        start_at_s: float = 0.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not (math.isfinite(start_at_s) and start_at_s >= 0):
            raise ValueError(f"start_at_s must be a finite time >= 0 s, got {start_at_s!r}")
        self.path = path
        self.annotations: list[Annotation] = []
        self._speed = _checked_speed(speed)
        self._sleep = sleep
        self._clock = clock
        self._reader: RecordingReader | None = open_recording(path)
        self.header: SessionHeader = self._reader.header
        self._records = iter(self._reader)
        self._index = 0  # records taken from the current reader
        self._annotations_upto = 0  # how many file records have been scanned for annotations
        self._pending: Record | None = None  # read from the file, not yet played
        self._last_taken_t_s = -math.inf
        self._seek_to: float | None = start_at_s
        # Pacing: recording time _base_t_s plays at clock reading _base_wall.
        self._base_t_s = start_at_s
        self._base_wall: float | None = None  # set when iteration begins
        self._paused = False
        self._closed = False
        self._fast_count = 0
        self._changed = asyncio.Event()

    # -- controls --------------------------------------------------------------

    @property
    def speed(self) -> float:
        """The playback factor now in force."""
        return self._speed

    @property
    def paused(self) -> bool:
        """True between pause() and resume()."""
        return self._paused

    @property
    def position_s(self) -> float:
        """Where playback is, in recording seconds."""
        if self._base_wall is None or self._paused or self._fast:
            return self._base_t_s
        return self._base_t_s + (self._now() - self._base_wall) * self._speed

    @property
    def _fast(self) -> bool:
        return self._speed == 0 or math.isinf(self._speed)

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    def _rebase(self, t_s: float) -> None:
        self._base_t_s = t_s
        if self._base_wall is not None:
            self._base_wall = self._now()
        self._changed.set()

    def pause(self) -> None:
        """Hold playback where it is; nothing is yielded until resume()."""
        if not self._paused:
            self._rebase(self.position_s)
            self._paused = True

    def resume(self) -> None:
        """Continue from where pause() held playback."""
        if self._paused:
            self._paused = False
            self._rebase(self._base_t_s)

    def set_speed(self, speed: float) -> None:
        """Change the playback factor at once, also during a wait."""
        position_s = self.position_s
        self._speed = _checked_speed(speed)
        self._rebase(position_s)

    def seek(self, t_s: float) -> None:
        """Continue from the first record at or after ``t_s`` (recording seconds)."""
        if not (math.isfinite(t_s) and t_s >= 0):
            raise ValueError(f"seek needs a finite time >= 0 s, got {t_s!r}")
        self._seek_to = t_s
        self._rebase(t_s)

    async def close(self) -> None:
        """Stop playback (a pending wait ends the iteration) and release the file."""
        self._closed = True
        self._changed.set()
        self._close_reader()

    # -- reading ---------------------------------------------------------------

    def _close_reader(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _peek(self) -> Record | None:
        if self._pending is None and self._reader is not None:
            self._pending = next(self._records, None)
            if self._pending is None:
                self._close_reader()
            else:
                self._index += 1
        return self._pending

    def _take(self) -> None:
        record = self._pending
        assert record is not None
        self._pending = None
        self._last_taken_t_s = record.t_s
        if isinstance(record, Annotation) and self._index > self._annotations_upto:
            self.annotations.append(record)
            self._annotations_upto = self._index

    def _apply_seek(self, t_s: float) -> None:
        self._seek_to = None
        if t_s <= self._last_taken_t_s:
            # A record at or after t_s has already gone by: start the file again.
            self._close_reader()
            self._reader = open_recording(self.path)
            self._records = iter(self._reader)
            self._index = 0
            self._pending = None
            self._last_taken_t_s = -math.inf
        while (record := self._peek()) is not None and record.t_s < t_s:
            self._take()

    async def _wait(self, delay_s: float) -> bool:
        """Sleep ``delay_s``; return True if a control changed meanwhile."""
        sleeper = asyncio.ensure_future(self._sleep(delay_s))
        waker = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, waker):
                if not task.done():
                    task.cancel()
        if sleeper.done() and not sleeper.cancelled():
            sleeper.result()  # surface an error raised by the sleep function
        return self._changed.is_set()

    def __aiter__(self) -> RecordingSource:
        return self

    async def __anext__(self) -> SourceRecord:
        if self._base_wall is None:
            self._base_wall = self._now()
        while True:
            self._changed.clear()
            if self._closed:
                raise StopAsyncIteration
            if self._seek_to is not None:
                self._apply_seek(self._seek_to)
            if self._paused:
                await self._changed.wait()
                continue
            record = self._peek()
            if record is None:
                raise StopAsyncIteration
            if self._fast:
                self._fast_count += 1
                if self._fast_count % YIELD_EVERY_RECORDS == 0:
                    await asyncio.sleep(0)
                    if self._changed.is_set():
                        continue
                self._base_t_s = record.t_s
                self._base_wall = self._now()
            else:
                target = self._base_wall + (record.t_s - self._base_t_s) / self._speed
                delay_s = target - self._now()
                if delay_s > 0 and await self._wait(delay_s):
                    continue
            self._take()
            if not isinstance(record, Annotation):
                return record
