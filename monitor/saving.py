"""Saving a live session: the store writes it, and the session goes on when it cannot.

When SQLite refuses to write (the disk is full, another process holds the database's
write lock, an I/O error), ``Store`` keeps every row it was given, in order and with its
sequence number, and stops committing on each add (monitor/store_buffer.py). This saver is the
live runner's side of that: it tells viewers once that saving is paused (a ``storage``
message, also in every snapshot), asks the store to commit again on the runner's
one-second ticker with a growing pause between tries (1 s doubling up to 16 s, so a
retry against a full disk does not keep the session busy), and tells viewers when
saving works again. The first commit that works writes everything held, so the stored
session is the one an undisturbed run would have stored.

The hold is bounded: an 8-hour session of two straps is about 60,000 records (one
notification per strap per second, plus about 2,000 events), about 140 bytes each in
memory, so ``MAX_HELD_ROWS`` (150,000 rows, about 20 hours, some 21 MB) covers any
session; past it, further records are not kept (counted in ``dropped_rows``), and the
session goes on in memory for its viewers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from devices.records import Record
from monitor.events import Event
from monitor.store import Store, StoreError, StoreUnavailable

log = logging.getLogger("coreg.saving")

MAX_HELD_ROWS = 150_000
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 16.0


class SessionSaver:
    """Writes one live session's records and events to ``store``, pausing and resuming.

    ``publish`` receives the ``storage`` messages for viewers; ``clock`` gives session
    seconds (the runner's clock) to time the retries.
    """

    def __init__(
        self,
        store: Store,
        session_id: str,
        publish: Callable[[dict[str, Any]], None],
        clock: Callable[[], float],
        *,
        max_held_rows: int = MAX_HELD_ROWS,
    ) -> None:
        self.store = store
        self.id = session_id
        self._publish = publish
        self._clock = clock
        self.max_held_rows = max_held_rows
        self.paused_reason: str | None = None  # "full", "busy", "io" or "error" while paused
        self.dropped_rows = 0
        self._retry_wait_s = RETRY_FIRST_S
        self._retry_at = 0.0

    def state(self) -> dict[str, Any]:
        """{"state": "ok"} or {"state": "paused", "reason", "held_rows"}; "dropped_rows" when any were lost."""
        out: dict[str, Any] = {"state": "ok" if self.paused_reason is None else "paused"}
        if self.paused_reason is not None:
            out["reason"] = self.paused_reason
            out["held_rows"] = self.store.buffered_rows
        if self.dropped_rows:
            out["dropped_rows"] = self.dropped_rows
        return out

    # -- writing ---------------------------------------------------------------------

    def add_record(self, record: Record) -> None:
        self._add(self.store.add_record, record)

    def add_event(self, event: Event) -> None:
        self._add(self.store.add_event, event)

    def _add(self, write: Callable[[str, Any], None], item: Record | Event) -> None:
        if self.paused_reason is not None and self.store.buffered_rows >= self.max_held_rows:
            if not self.dropped_rows:
                log.error("session %s: %d rows wait to be saved; later ones are not kept", self.id, self.max_held_rows)
            self.dropped_rows += 1
            if self.dropped_rows == 1:
                self._publish_state()
            return
        try:
            write(self.id, item)
        except StoreUnavailable as exc:
            self._pause(exc)  # the store kept the row; it is written with the others
        except StoreError:
            log.exception("session %s: the store refused a %s", self.id, type(item).__name__)

    def tick(self) -> None:
        """Once a second: commit (it stamps the heartbeat); while paused, retry when due."""
        if self.paused_reason is not None and self._clock() < self._retry_at:
            return
        self._try(self.store.flush)

    def flush(self) -> None:
        """Commit now unless saving is paused (then the rows wait for the next retry)."""
        if self.paused_reason is None:
            self._try(self.store.flush)

    def finish(self) -> bool:
        """Write what is held and mark the session finished; False when that must wait."""
        try:
            self.store.finish_session(self.id, "finished")
        except StoreUnavailable as exc:
            self._pause(exc)
            return False
        if self.paused_reason is not None:
            self._resume()
        return True

    async def finish_later(self) -> None:
        """Retry ``finish`` with the growing pause until it works (a stopped session whose
        data could not be written yet)."""
        try:
            while not self.finish():
                await asyncio.sleep(self._retry_wait_s)
        except StoreError:  # the store was closed or refused the session meanwhile
            log.exception("session %s: %d rows could not be saved", self.id, self.store.buffered_rows)

    # -- the paused state ------------------------------------------------------------

    def _try(self, write: Callable[[], None]) -> None:
        try:
            write()
        except StoreError as exc:
            self._pause(exc)
            return
        if self.paused_reason is not None:
            self._resume()

    def _pause(self, exc: StoreError) -> None:
        reason = exc.reason if isinstance(exc, StoreUnavailable) else "error"
        if self.paused_reason is None:
            log.warning("session %s: saving is paused (%s); the session goes on in memory", self.id, exc)
            self._retry_wait_s = RETRY_FIRST_S
        else:
            self._retry_wait_s = min(self._retry_wait_s * 2, RETRY_MAX_S)
        changed = reason != self.paused_reason
        self.paused_reason = reason
        self._retry_at = self._clock() + self._retry_wait_s
        if changed:
            self._publish_state()

    def _resume(self) -> None:
        log.warning("session %s: saving works again; everything held is written", self.id)
        self.paused_reason = None
        self._retry_wait_s = RETRY_FIRST_S
        self._publish_state()

    def _publish_state(self) -> None:
        self._publish({"type": "storage", **self.state()})
