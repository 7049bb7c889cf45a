"""The session store: every session's header, records and events in one SQLite file.

One database file (WAL mode) holds all sessions, live or finished. ``Store`` is the
public face; its parts live beside it, one concept each:

- monitor/store_schema.py: where the file lives, how it is opened, tables and migrations;
- monitor/store_rows.py: records, events and sessions checked and turned into rows and back;
- monitor/store_buffer.py: the connection and the write buffer (commit interval,
  heartbeats, what happens when SQLite cannot write, threads);
- monitor/store_reading.py: session summaries, records streamed in chunks, events;
- monitor/store_files.py: export to and import from coreg-session recordings;
- monitor/store_errors.py: StoreError and StoreUnavailable.

Each commit stamps the session's heartbeat beside the writer's pid;
``recover_interrupted()`` marks a "live" session whose writer is gone as "interrupted".
Records stay in coreg-session terms (DESIGN.md, "The recording format"): a session
exports to a recording that ``devices.recording.read_records`` reads back unchanged, and
any recording imports as a finished session.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path

from devices.records import PARTNERS, Annotation, Notification, Record, SessionHeader
from monitor import store_files, store_reading
from monitor.events import Event
from monitor.store_buffer import BUSY_TIMEOUT_S, HEARTBEAT_STALE_S, BufferedConnection, LiveWriting, orphaned
from monitor.store_errors import StoreError, StoreUnavailable
from monitor.store_rows import (CONNECTION_STATUSES, MAX_ANNOTATION_CHARS, MAX_NAME_CHARS, SessionInfo, check_text,
                                check_time, event_row, json_text, record_row, utc_iso)
from monitor.store_schema import (APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION, SESSION_KINDS, SESSION_STATUSES,
                                  default_db_path)

# The names this module has always offered, wherever they are defined now.
__all__ = [
    "APPLICATION_ID", "CONNECTION_STATUSES", "HEARTBEAT_STALE_S", "MAX_ANNOTATION_CHARS", "MAX_NAME_CHARS",
    "MIGRATIONS", "SCHEMA_VERSION", "SESSION_KINDS", "SESSION_STATUSES", "SessionInfo", "Store", "StoreError",
    "StoreUnavailable", "default_db_path",
]
# Old private names, still importable (to change the chunk size, patch monitor.store_reading.CHUNK_ROWS).
_CHUNK_ROWS = store_reading.CHUNK_ROWS
_utc_iso = utc_iso


class Store:
    """Sessions, their records and events, in one SQLite file (see the module docstring).

    ``clock`` (seconds, monotonic) times the commit interval; it is injectable for tests.
    ``busy_timeout_s``: how long a write waits for another connection's write lock.
    Use it as a context manager or call ``close()``.
    """

    def __init__(self, path: str | Path | None = None, *, commit_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, busy_timeout_s: float = BUSY_TIMEOUT_S) -> None:
        if not commit_interval_s >= 0:
            raise ValueError(f"commit_interval_s must be >= 0 seconds, got {commit_interval_s!r}")
        self.path = Path(path) if path is not None else default_db_path()
        self._db = BufferedConnection(self.path, commit_interval_s=commit_interval_s, clock=clock,
                                      busy_timeout_s=busy_timeout_s)

    @property
    def _conn(self) -> sqlite3.Connection:
        # The open connection, for tests that shrink or inspect the file under the store.
        return self._db.conn

    @property
    def unavailable(self) -> str | None:
        """Why the last commit failed ("full", "busy", "io"), or None when writing works."""
        return self._db.unavailable

    @property
    def buffered_rows(self) -> int:
        """Records and events added but not yet committed (all sessions of this store)."""
        return self._db.buffered_rows

    def flush(self) -> None:
        """Commit everything added so far and stamp the live sessions' heartbeats.

        Call it about once a second while a session runs, also when nothing arrives, so
        the heartbeat stays fresh and other processes do not take the session for dead.
        Raises StoreUnavailable, keeping every buffered row, when SQLite cannot write.
        """
        self._db.flush()

    # -- writing ---------------------------------------------------------------------

    def _writer(self, session_id: str) -> LiveWriting:
        self._db.check_open()
        w = self._db.writing.get(session_id)
        if w is None:
            status = store_reading.session_row(self._db, session_id)[3]
            raise StoreError(f"session {session_id!r} is {status} and not being recorded by this store")
        return w

    def create_session(self, header: SessionHeader, *, label: str, kind: str, config: dict, source: str = "") -> str:
        """Start a live session recorded by this store; returns its id (12 random hex digits)."""
        where = f"new session {label!r}"
        if kind not in SESSION_KINDS:
            raise StoreError(f"{where}: kind must be one of {', '.join(SESSION_KINDS)}, got {kind!r}")
        if not isinstance(header, SessionHeader):
            raise StoreError(f"{where}: expected a SessionHeader, got {type(header).__name__}")
        check_text(label, "the label", MAX_NAME_CHARS, where)
        check_text(source, "the source", 4096, where)
        unknown = sorted(set(header.partners) - set(PARTNERS))
        if unknown:
            raise StoreError(f"{where}: unknown partner(s) {', '.join(unknown)} (expected {', '.join(PARTNERS)})")
        try:
            datetime.fromisoformat(header.started_at)
        except (TypeError, ValueError):
            raise StoreError(f"{where}: started_at is not an ISO 8601 time: {header.started_at!r}") from None
        partners_json = json_text(header.to_json()["partners"], f"{where}: the partners")
        config_json = json_text(config, f"{where}: the config")
        session_id = secrets.token_hex(6)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sessions (id, label, kind, status, started_at, partners, config, source, writer_pid,"
                " heartbeat) VALUES (?, ?, ?, 'live', ?, ?, ?, ?, ?, ?)",
                (session_id, label, kind, header.started_at, partners_json, config_json, source, os.getpid(),
                 time.time()),
            )

        with self._db.lock:
            self._db.check_open()
            while self._db.conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                session_id = secrets.token_hex(6)
            self._db.commit(f"creating session {session_id!r}", insert)
            self._db.writing[session_id] = LiveWriting(partners=tuple(header.partners) or PARTNERS)
        return session_id

    def add_record(self, session_id: str, record: Record) -> None:
        """Buffer one record of a live session; committed within ``commit_interval_s``."""
        with self._db.lock:
            w = self._writer(session_id)
            self._db.record_rows.append(record_row(session_id, w.next_record_seq, record, w.partners))
            w.next_record_seq += 1
            w.new_notifications += isinstance(record, Notification)
            w.max_t_s = max(w.max_t_s, record.t_s)
            self._db.maybe_commit()

    def add_event(self, session_id: str, event: Event) -> None:
        """Buffer one event of a live session; committed within ``commit_interval_s``."""
        with self._db.lock:
            w = self._writer(session_id)
            self._db.event_rows.append(event_row(session_id, w.next_event_seq, event))
            w.next_event_seq += 1
            w.new_events += 1
            w.max_t_s = max(w.max_t_s, event.t_s)
            self._db.maybe_commit()

    def add_annotation(self, session_id: str, t_s: float, text: str, author: str = "") -> Annotation:
        """Mark a moment (``t_s`` seconds into the session): stored as a record and an event, committed at once.

        Works on a live session of this store and on finished or interrupted ones
        (marking moments while reviewing). The text is at most MAX_ANNOTATION_CHARS.
        """
        where = f"session {session_id!r}, annotation"
        t_s = check_time(t_s, where)
        check_text(text, "the annotation", MAX_ANNOTATION_CHARS, where)
        check_text(author, "the author", MAX_NAME_CHARS, where)
        if not text.strip():
            raise StoreError(f"{where}: the annotation is empty")
        annotation = Annotation(t_s=t_s, text=text, author=author)
        event = Event(t_s=t_s, kind="annotation", partner=None, data={"text": text, "author": author})
        with self._db.lock:
            self._db.check_open()
            w = self._db.writing.get(session_id)
            if w is not None:
                self._db.record_rows.append(record_row(session_id, w.next_record_seq, annotation, w.partners))
                self._db.event_rows.append(event_row(session_id, w.next_event_seq, event))
                w.next_record_seq += 1
                w.next_event_seq += 1
                w.new_events += 1
                w.max_t_s = max(w.max_t_s, t_s)
                self._db.commit(f"storing an annotation in session {session_id!r}")
                return annotation
            row = store_reading.session_row(self._db, session_id)
            if row[3] == "live":
                raise StoreError(f"session {session_id!r} is being recorded by another process (pid {row[12]})")

            def append(conn: sqlite3.Connection) -> None:
                next_seq = "SELECT coalesce(max(seq) + 1, 0) FROM {} WHERE session_id = ?"
                record_seq = conn.execute(next_seq.format("records"), (session_id,)).fetchone()[0]
                event_seq = conn.execute(next_seq.format("events"), (session_id,)).fetchone()[0]
                conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             record_row(session_id, record_seq, annotation, PARTNERS))
                conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                             event_row(session_id, event_seq, event))
                conn.execute("UPDATE sessions SET n_events = n_events + 1, duration_s = max(duration_s, ?)"
                             " WHERE id = ?", (t_s, session_id))

            self._db.commit(f"storing an annotation in session {session_id!r}", append)
        return annotation

    def finish_session(self, session_id: str, status: str = "finished") -> None:
        """End a live session of this store: commit what is buffered, set its status and end time."""
        if status not in ("finished", "interrupted"):
            raise StoreError(f"session {session_id!r}: a session ends finished or interrupted, not {status!r}")
        with self._db.lock:
            self._writer(session_id)
            ended_at = utc_iso(datetime.now(timezone.utc))
            self._db.commit(
                f"finishing session {session_id!r}",
                lambda conn: conn.execute(
                    "UPDATE sessions SET status = ?, ended_at = ? WHERE id = ?", (status, ended_at, session_id)
                ),
            )
            del self._db.writing[session_id]

    def recover_interrupted(self) -> list[str]:
        """Mark live sessions whose writer is gone (pid dead, or heartbeat older than
        HEARTBEAT_STALE_S) as interrupted, ended at their last heartbeat; returns their ids.

        Their records up to the last commit stay and replay like any other session's.
        """
        with self._db.lock, self._db.transaction("recovering interrupted sessions") as conn:
            now = time.time()
            recovered = []
            for session_id, pid, heartbeat in conn.execute(
                "SELECT id, writer_pid, heartbeat FROM sessions WHERE status = 'live'"
            ).fetchall():
                if session_id in self._db.writing or not orphaned(pid, heartbeat, now):
                    continue
                ended = datetime.fromtimestamp(heartbeat if heartbeat is not None else now, timezone.utc)
                conn.execute("UPDATE sessions SET status = 'interrupted', ended_at = ? WHERE id = ?",
                             (utc_iso(ended), session_id))
                recovered.append(session_id)
        return recovered

    def delete_session(self, session_id: str) -> None:
        """Remove a session with its records and events (the freed space is overwritten)."""
        with self._db.lock:
            row = store_reading.session_row(self._db, session_id)
            if session_id in self._db.writing:
                raise StoreError(f"session {session_id!r} is still being recorded; finish it before deleting it")
            if row[3] == "live" and not orphaned(row[12], row[13], time.time()):
                raise StoreError(f"session {session_id!r} is being recorded by another process (pid {row[12]})")
            with self._db.transaction(f"deleting session {session_id!r}") as conn:
                conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    # -- reading (monitor/store_reading.py) ------------------------------------------

    def list_sessions(self) -> list[SessionInfo]:
        """Every stored session, the most recently started first."""
        return store_reading.list_sessions(self._db)

    def get_session(self, session_id: str) -> SessionInfo:
        """One session's summary; StoreError if there is no such session."""
        return store_reading.get_session(self._db, session_id)

    def header(self, session_id: str) -> SessionHeader:
        """The session's coreg-session header (start time and partners, as created)."""
        return store_reading.read_header(self._db, session_id)

    def records(self, session_id: str) -> Iterator[Record]:
        """The session's records in time order (ties in the order added), read in chunks.

        Raises StoreError at once for an unknown session. Records of a live session
        committed while iterating are yielded too if they come later in time.
        """
        return store_reading.read_records(self._db, session_id)

    def events(self, session_id: str) -> list[dict]:
        """The session's events as Event.to_json() dicts, in time order (ties in the order added)."""
        return store_reading.read_events(self._db, session_id)

    # -- files (monitor/store_files.py) ----------------------------------------------

    def export(self, session_id: str, path: str | os.PathLike) -> Path:
        """Write the session as a coreg-session recording (``.gz`` suffix: gzip); returns the path.

        An existing file is never overwritten (FileExistsError); a file left incomplete
        by an error is removed.
        """
        return store_files.export_session(self._db, session_id, path)

    def import_recording(self, path: str | os.PathLike, *, label: str = "", kind: str = "import") -> str:
        """Store a coreg-session recording as a finished session; returns its id.

        A file with an error raises devices.recording.RecordingError and stores nothing;
        a cut-off last line is dropped with a RecordingWarning, as the reader does.
        The label defaults to the file name without its suffixes.
        """
        return store_files.import_recording(self._db, path, label=label, kind=kind)

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is buffered and close; sessions still live here become interrupted.

        Calling it again does nothing.
        """
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
