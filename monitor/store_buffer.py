"""The session store's connection and write buffer: rows wait in memory, then go in one short transaction.

A live session's records and events are buffered in memory and written in one short
transaction at least every ``commit_interval_s`` (checked on each add) and on flush,
finish and close, so a process killed outright loses at most that last interval: SQLite
never loses a committed transaction when only the process dies, even with
``synchronous=NORMAL`` (SQLite docs, "Write-Ahead Logging" and "PRAGMA synchronous").
Rows are buffered in Python rather than in an open SQLite transaction because an open
write transaction holds the database's single write lock, which would stall any other
process (a CLI, a second dashboard) for as long as records trickle in.

Each commit also stamps the session's heartbeat (wall-clock seconds) beside the writer's
pid; a "live" session whose writer is gone (``orphaned``) may be marked "interrupted" by
any process.

When SQLite cannot write (the disk is full, another process holds the write lock past
the busy timeout, an I/O error), a commit raises ``StoreUnavailable`` and the buffered
rows stay buffered, in order, with their sequence numbers. Until a ``flush()`` succeeds
the store stops trying to commit on each add and on reads (reads show what is committed),
so a session can go on buffering without stalling on every record; the caller (the live
runner) decides when to retry and how much to hold.

Threads: the connection is opened with ``check_same_thread=False`` and every call takes
one lock, because the store, though meant for the event-loop thread, is also reached from
other threads (Starlette's TestClient runs the app on its own thread; FastAPI runs plain
``def`` endpoints in a thread pool). Calls are short; reading records goes in chunks and
holds the lock only while fetching one.
"""

from __future__ import annotations

import math
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from monitor.store_errors import StoreError, StoreUnavailable
from monitor.store_rows import utc_iso
from monitor.store_schema import connect

HEARTBEAT_STALE_S = 5.0  # a live session whose last commit is older than this is orphaned
BUSY_TIMEOUT_S = 5.0  # how long to wait for another process's write transaction
_RETRY_BUSY_TIMEOUT_S = 0.05  # the same while writing is failing: a retry must not stall the session
# SQLite primary result codes of a write that may work later, and the word for each
# (any other SQLite error is "error": the rows are kept all the same).
_TRANSIENT_CODES = {5: "busy", 6: "busy", 13: "full", 10: "io", 8: "io", 14: "io"}  # BUSY LOCKED FULL IOERR READONLY CANTOPEN


@dataclass
class LiveWriting:
    """A live session this store writes: next sequence numbers and uncommitted totals."""

    partners: tuple[str, ...]
    next_record_seq: int = 0
    next_event_seq: int = 0
    new_notifications: int = 0
    new_events: int = 0
    max_t_s: float = 0.0
    stamped_at: float = -math.inf  # the store's clock at the last heartbeat stamp


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id exists (on Windows any positive id counts: the heartbeat decides there)."""
    if not pid or pid <= 0:
        return False
    if sys.platform == "win32":
        return True  # os.kill would terminate the process there; the heartbeat decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists but belongs to someone else
    return True


def orphaned(pid: int | None, heartbeat: float | None, now: float) -> bool:
    """Whether a live session's writer is gone: no heartbeat, one older than HEARTBEAT_STALE_S, or a dead pid.

    ``heartbeat`` and ``now`` are wall-clock seconds (time.time()).
    """
    return heartbeat is None or now - heartbeat > HEARTBEAT_STALE_S or not pid_alive(pid)


class BufferedConnection:
    """One store's SQLite connection, the lock around it, and the rows waiting for the next commit.

    ``writing`` holds the live sessions this connection records; ``record_rows`` and
    ``event_rows`` the rows added to them and not yet committed, in order. The owner
    takes ``lock`` around every use (see the module docstring).
    """

    def __init__(self, path: Path, *, commit_interval_s: float, clock: Callable[[], float],
                 busy_timeout_s: float) -> None:
        self.path = path
        self.commit_interval_s = commit_interval_s
        self.clock = clock
        self.lock = threading.RLock()
        self.writing: dict[str, LiveWriting] = {}
        self.record_rows: list[tuple] = []
        self.event_rows: list[tuple] = []
        self.closed = False
        self.busy_timeout_s = busy_timeout_s
        self.unavailable: str | None = None  # the reason of the last failed commit, until one works
        self.conn = connect(path, busy_timeout_s)
        self.last_commit_s = clock()

    def check_open(self) -> None:
        """StoreError if the connection has been closed."""
        if self.closed:
            raise StoreError(f"{self.path}: the session store is closed")

    @contextmanager
    def transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction; an SQLite error becomes StoreUnavailable saying ``what`` failed."""
        self.check_open()
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException as exc:
            if self.conn.in_transaction:
                try:
                    self.conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite may have rolled back already (a full disk, an I/O error)
            if isinstance(exc, sqlite3.Error):
                reason = _TRANSIENT_CODES.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF, "error")
                raise StoreUnavailable(f"{self.path}: {what} failed: {exc}", reason) from None
            raise

    def commit(self, what: str, also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Write the buffered rows, stamp the heartbeats, run ``also``: one transaction.

        On StoreUnavailable the rows stay buffered and the store notes that writing
        fails (see the module docstring) until a commit works again.
        """
        try:
            self._write_buffered(what, also)
        except StoreUnavailable as exc:
            if self.unavailable is None:
                self._set_busy_timeout(_RETRY_BUSY_TIMEOUT_S)
            self.unavailable = exc.reason
            raise
        if self.unavailable is not None:
            self.unavailable = None
            self._set_busy_timeout(self.busy_timeout_s)

    def _set_busy_timeout(self, seconds: float) -> None:
        self.conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    @property
    def buffered_rows(self) -> int:
        """Records and events added but not yet committed (all sessions of this connection)."""
        return len(self.record_rows) + len(self.event_rows)

    def _write_buffered(self, what: str, also: Callable[[sqlite3.Connection], None] | None) -> None:
        with self.transaction(what) as conn:
            conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.record_rows)
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", self.event_rows)
            heartbeat, now = time.time(), self.clock()
            for session_id, w in self.writing.items():
                # Only sessions with news, or a heartbeat about to go stale: a server with
                # many sessions, each committing on its own tick, would otherwise update
                # every session's row in every commit (quadratic in the sessions).
                if not (w.new_notifications or w.new_events) and now - w.stamped_at < HEARTBEAT_STALE_S / 5:
                    continue
                w.stamped_at = now
                # Setting status back to live undoes a recovery made by another process
                # while this writer was slow to commit: the writer is evidently alive.
                conn.execute(
                    "UPDATE sessions SET n_notifications = n_notifications + ?, n_events = n_events + ?,"
                    " duration_s = max(duration_s, ?), heartbeat = ?, writer_pid = ?, status = 'live',"
                    " ended_at = NULL WHERE id = ?",
                    (w.new_notifications, w.new_events, w.max_t_s, heartbeat, os.getpid(), session_id),
                )
            if also is not None:
                also(conn)
        self.record_rows.clear()
        self.event_rows.clear()
        for w in self.writing.values():
            w.new_notifications = w.new_events = 0
        self.last_commit_s = self.clock()

    def flush_pending(self) -> None:
        """Commit buffered rows before a read, unless writing is failing: then the read
        shows what is committed and the rows wait for ``flush()``."""
        if (self.record_rows or self.event_rows) and self.unavailable is None:
            self.commit("writing buffered records")

    def maybe_commit(self) -> None:
        """Commit if ``commit_interval_s`` has passed since the last commit and writing is not failing."""
        if self.unavailable is None and self.clock() - self.last_commit_s >= self.commit_interval_s:
            self.commit("committing records")

    def flush(self) -> None:
        """Commit everything added so far and stamp the live sessions' heartbeats (see Store.flush)."""
        with self.lock:
            self.check_open()
            if self.writing or self.record_rows or self.event_rows:
                self.commit("flushing")

    def close(self) -> None:
        """Commit what is buffered and close; sessions still live here become interrupted.

        Calling it again does nothing.
        """
        with self.lock:
            if self.closed:
                return
            try:
                if self.writing:
                    ended_at = utc_iso(datetime.now(timezone.utc))
                    owned = list(self.writing)
                    self.commit("closing the store", lambda conn: conn.executemany(
                        "UPDATE sessions SET status = 'interrupted', ended_at = ? WHERE id = ?",
                        [(ended_at, session_id) for session_id in owned],
                    ))
                elif self.record_rows or self.event_rows:
                    self.commit("writing buffered records")
            finally:
                self.writing.clear()
                self.closed = True
                self.conn.close()
