"""The session store: every session's header, records and events in one SQLite file.

One database file (WAL mode) holds all sessions, live or finished. A live session's
records and events are buffered in memory and written in one short transaction at least
every ``commit_interval_s`` (checked on each add) and on flush, finish and close, so a
process killed outright loses at most that last interval: SQLite never loses a committed
transaction when only the process dies, even with ``synchronous=NORMAL`` (SQLite docs,
"Write-Ahead Logging" and "PRAGMA synchronous"). Rows are buffered in Python rather than
in an open SQLite transaction because an open write transaction holds the database's
single write lock, which would stall any other process (a CLI, a second dashboard) for
as long as records trickle in.

Each commit also stamps the session's heartbeat (wall-clock seconds) beside the writer's
pid; ``recover_interrupted()`` marks a "live" session whose writer is gone as
"interrupted". Records stay in coreg-session terms (DESIGN.md, "The recording format"):
a session exports to a recording that ``devices.recording.read_records`` reads back
unchanged, and any recording imports as a finished session.

When SQLite cannot write (the disk is full, another process holds the write lock past
the busy timeout, an I/O error), a commit raises ``StoreUnavailable`` and the buffered
rows stay buffered, in order, with their sequence numbers. Until a ``flush()`` succeeds
the store stops trying to commit on each add and on reads (reads show what is committed),
so a session can go on buffering without stalling on every record; the caller (the live
runner) decides when to retry and how much to hold.

Threads: the connection is opened with ``check_same_thread=False`` and every call takes
one lock, because the store, though meant for the event-loop thread, is also reached from
other threads (Starlette's TestClient runs the app on its own thread; FastAPI runs plain
``def`` endpoints in a thread pool). Calls are short; ``records()`` reads in chunks and
holds the lock only while fetching one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import os
import secrets
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

from devices.records import PARTNERS, Annotation, Notification, PartnerInfo, Record, SessionHeader, StatusChange
from devices.recording import RecordingWriter, open_recording
from monitor.events import Event

SCHEMA_VERSION = 1
APPLICATION_ID = 0x636F7267  # "corg": marks the file as a coreg store (PRAGMA application_id)
SESSION_KINDS = ("live", "replay", "demo", "import")
SESSION_STATUSES = ("live", "finished", "interrupted")
CONNECTION_STATUSES = ("connected", "disconnected")
HEARTBEAT_STALE_S = 5.0  # a live session whose last commit is older than this is orphaned
MAX_ANNOTATION_CHARS = 2000
MAX_NAME_CHARS = 200  # labels and annotation authors
_CHUNK_ROWS = 1000  # rows fetched per query while streaming records
_BUSY_TIMEOUT_S = 5.0  # how long to wait for another process's write transaction
_RETRY_BUSY_TIMEOUT_S = 0.05  # the same while writing is failing: a retry must not stall the session
# SQLite primary result codes of a write that may work later, and the word for each
# (any other SQLite error is "error": the rows are kept all the same).
_TRANSIENT_CODES = {5: "busy", 6: "busy", 13: "full", 10: "io", 8: "io", 14: "io"}  # BUSY LOCKED FULL IOERR READONLY CANTOPEN

_SCHEMA_V1 = (
    """CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('live', 'replay', 'demo', 'import')),
        status TEXT NOT NULL CHECK (status IN ('live', 'finished', 'interrupted')),
        started_at TEXT NOT NULL,
        ended_at TEXT,
        partners TEXT NOT NULL,
        config TEXT NOT NULL,
        source TEXT NOT NULL,
        writer_pid INTEGER,
        heartbeat REAL,
        duration_s REAL NOT NULL DEFAULT 0,
        n_notifications INTEGER NOT NULL DEFAULT 0,
        n_events INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE records (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        t_s REAL NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('hrm', 'status', 'annotation')),
        partner TEXT,
        payload BLOB,
        text TEXT,
        author TEXT,
        PRIMARY KEY (session_id, seq)) WITHOUT ROWID""",
    # Records are read in time order; seq breaks ties and keeps insertion order.
    "CREATE INDEX records_by_time ON records (session_id, t_s, seq)",
    """CREATE TABLE events (
        session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        t_s REAL NOT NULL,
        kind TEXT NOT NULL,
        partner TEXT,
        data TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)) WITHOUT ROWID""",
)


def _create_v1(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA_V1:
        conn.execute(statement)


# MIGRATIONS[v] takes a database at user_version v to v + 1, inside one transaction.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _create_v1}
_SESSION_COLUMNS = (
    "id, label, kind, status, started_at, ended_at, partners, config, source, "
    "duration_s, n_notifications, n_events, writer_pid, heartbeat"
)


class StoreError(Exception):
    """The session store cannot do what was asked; the message names the session or file."""


class StoreUnavailable(StoreError):
    """SQLite refused a write; what was buffered is kept and a later flush may work.

    ``reason``: "full" (disk or database full), "busy" (another connection holds the
    write lock), "io" (an I/O error, a read-only or vanished file) or "error" (any other
    SQLite error, such as a damaged file, which waiting will not mend).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class SessionInfo:
    """One stored session as listed: who, when, how long, how much was recorded."""

    id: str
    label: str
    kind: str
    status: str
    started_at: str
    ended_at: str | None
    partners: dict[str, dict]
    config: dict
    source: str
    duration_s: float
    n_notifications: int
    n_events: int

    def to_json(self) -> dict:
        """The fields as plain JSON data (dicts copied)."""
        return dataclasses.asdict(self)


@dataclass
class _Writing:
    """A live session this store writes: next sequence numbers and uncommitted totals."""

    partners: tuple[str, ...]
    next_record_seq: int = 0
    next_event_seq: int = 0
    new_notifications: int = 0
    new_events: int = 0
    max_t_s: float = 0.0
    stamped_at: float = -math.inf  # the store's clock at the last heartbeat stamp


def default_db_path() -> Path:
    """Where the store lives: $COREG_DATA_DIR, else $XDG_DATA_HOME/coreg, else ~/.local/share/coreg.

    The folder is created (mode 0700: the store holds health data) if it is missing;
    returns ``<folder>/coreg.db``. A relative XDG_DATA_HOME is ignored, as the XDG Base
    Directory specification requires.
    """
    folder_env = os.environ.get("COREG_DATA_DIR", "")
    xdg = os.environ.get("XDG_DATA_HOME", "")
    if folder_env:
        folder = Path(folder_env).expanduser()
    elif xdg and Path(xdg).is_absolute():
        folder = Path(xdg) / "coreg"
    else:
        folder = Path.home() / ".local" / "share" / "coreg"
    _make_private_dir(folder)
    return folder / "coreg.db"


def _make_private_dir(folder: Path) -> None:
    if folder.is_dir():
        return  # an existing folder keeps the permissions its owner chose
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def _utc_iso(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_time(t_s: object, where: str) -> float:
    if isinstance(t_s, bool) or not isinstance(t_s, numbers.Real) or not math.isfinite(t_s) or t_s < 0:
        raise StoreError(f"{where}: t must be a finite number of seconds >= 0, got {t_s!r}")
    return float(t_s)


def _check_text(value: object, name: str, max_chars: int, where: str) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{where}: {name} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise StoreError(f"{where}: {name} is {len(value)} characters long; at most {max_chars} are kept")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"{where}: {name} is not valid Unicode ({exc.reason})") from None
    return value


def _json_text(value: object, where: str) -> str:
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where} cannot be stored as JSON: {exc}") from None


def _pid_alive(pid: int | None) -> bool:
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


def _orphaned(pid: int | None, heartbeat: float | None, now: float) -> bool:
    return heartbeat is None or now - heartbeat > HEARTBEAT_STALE_S or not _pid_alive(pid)


def _record_row(session_id: str, seq: int, record: Record, partners: tuple[str, ...]) -> tuple:
    """The records-table row of one record, checked the way a recording reader would."""
    where = f"session {session_id!r}, record {seq}"
    if not isinstance(record, (Notification, StatusChange, Annotation)):
        raise StoreError(f"{where}: expected a Notification, StatusChange or Annotation, got {type(record).__name__}")
    t_s = _check_time(record.t_s, where)
    if isinstance(record, Annotation):
        text = _check_text(record.text, "the annotation", MAX_ANNOTATION_CHARS, where)
        author = _check_text(record.author, "the author", MAX_NAME_CHARS, where)
        return (session_id, seq, t_s, "annotation", None, None, text, author)
    if record.partner not in partners:
        raise StoreError(f"{where}: partner {record.partner!r} is not one of the session's ({', '.join(partners)})")
    if isinstance(record, Notification):
        if not isinstance(record.payload, (bytes, bytearray)):
            raise StoreError(f"{where}: the payload must be bytes, got {type(record.payload).__name__}")
        return (session_id, seq, t_s, "hrm", record.partner, bytes(record.payload), None, None)
    if record.status not in CONNECTION_STATUSES:
        raise StoreError(f"{where}: status must be connected or disconnected, got {record.status!r}")
    return (session_id, seq, t_s, "status", record.partner, None, record.status, None)


def _record_from_row(kind: str, t_s: float, partner: str | None, payload: bytes | None, text: str | None,
                     author: str | None) -> Record:
    if kind == "hrm":
        return Notification(t_s=t_s, partner=partner, payload=bytes(payload))
    if kind == "status":
        return StatusChange(t_s=t_s, partner=partner, status=text)
    return Annotation(t_s=t_s, text=text, author=author or "")


class Store:
    """Sessions, their records and events, in one SQLite file (see the module docstring).

    ``clock`` (seconds, monotonic) times the commit interval; it is injectable for tests.
    ``busy_timeout_s``: how long a write waits for another connection's write lock.
    Use it as a context manager or call ``close()``.
    """

    def __init__(self, path: str | Path | None = None, *, commit_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, busy_timeout_s: float = _BUSY_TIMEOUT_S) -> None:
        if not commit_interval_s >= 0:
            raise ValueError(f"commit_interval_s must be >= 0 seconds, got {commit_interval_s!r}")
        self.path = Path(path) if path is not None else default_db_path()
        self._commit_interval_s = commit_interval_s
        self._clock = clock
        self._lock = threading.RLock()
        self._writing: dict[str, _Writing] = {}
        self._record_rows: list[tuple] = []
        self._event_rows: list[tuple] = []
        self._closed = False
        self._busy_timeout_s = busy_timeout_s
        self._unavailable: str | None = None  # the reason of the last failed commit, until one works
        self._conn = self._connect()
        self._last_commit_s = clock()

    # -- opening -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        _make_private_dir(self.path.parent)
        try:
            # Created here, not by SQLite, so that it is private from the start; SQLite
            # gives its -wal and -shm files the database file's permissions.
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            pass
        except OSError as exc:
            raise StoreError(f"{self.path}: cannot create the session store: {exc.strerror}") from None
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the session store: {exc}") from None
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA secure_delete = ON")  # a deleted session's data is overwritten
            self._migrate(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: cannot open the session store: {exc}") from None
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # two processes opening a new file must not both create it
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: written by a newer coreg (schema {version}; this one reads {SCHEMA_VERSION})"
                )
            has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            if (version == 0 and has_tables) or (version > 0 and app_id != APPLICATION_ID):
                raise StoreError(f"{self.path}: an SQLite database, but not a coreg session store")
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- transactions ----------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.path}: the session store is closed")

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        self._check_open()
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # SQLite may have rolled back already (a full disk, an I/O error)
            if isinstance(exc, sqlite3.Error):
                reason = _TRANSIENT_CODES.get(getattr(exc, "sqlite_errorcode", 0) & 0xFF, "error")
                raise StoreUnavailable(f"{self.path}: {what} failed: {exc}", reason) from None
            raise

    def _commit(self, what: str, also: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """Write the buffered rows, stamp the heartbeats, run ``also``: one transaction.

        On StoreUnavailable the rows stay buffered and the store notes that writing
        fails (see the module docstring) until a commit works again.
        """
        try:
            self._write_buffered(what, also)
        except StoreUnavailable as exc:
            if self._unavailable is None:
                self._set_busy_timeout(_RETRY_BUSY_TIMEOUT_S)
            self._unavailable = exc.reason
            raise
        if self._unavailable is not None:
            self._unavailable = None
            self._set_busy_timeout(self._busy_timeout_s)

    def _set_busy_timeout(self, seconds: float) -> None:
        self._conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")

    @property
    def unavailable(self) -> str | None:
        """Why the last commit failed ("full", "busy", "io"), or None when writing works."""
        return self._unavailable

    @property
    def buffered_rows(self) -> int:
        """Records and events added but not yet committed (all sessions of this store)."""
        return len(self._record_rows) + len(self._event_rows)

    def _write_buffered(self, what: str, also: Callable[[sqlite3.Connection], None] | None) -> None:
        with self._transaction(what) as conn:
            conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self._record_rows)
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", self._event_rows)
            heartbeat, now = time.time(), self._clock()
            for session_id, w in self._writing.items():
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
        self._record_rows.clear()
        self._event_rows.clear()
        for w in self._writing.values():
            w.new_notifications = w.new_events = 0
        self._last_commit_s = self._clock()

    def _flush_pending(self) -> None:
        """Commit buffered rows before a read, unless writing is failing: then the read
        shows what is committed and the rows wait for ``flush()``."""
        if (self._record_rows or self._event_rows) and self._unavailable is None:
            self._commit("writing buffered records")

    def flush(self) -> None:
        """Commit everything added so far and stamp the live sessions' heartbeats.

        Call it about once a second while a session runs, also when nothing arrives, so
        the heartbeat stays fresh and other processes do not take the session for dead.
        Raises StoreUnavailable, keeping every buffered row, when SQLite cannot write.
        """
        with self._lock:
            self._check_open()
            if self._writing or self._record_rows or self._event_rows:
                self._commit("flushing")

    # -- writing ---------------------------------------------------------------------

    def _writer(self, session_id: str) -> _Writing:
        self._check_open()
        w = self._writing.get(session_id)
        if w is None:
            status = self._session_row(session_id)[3]
            raise StoreError(f"session {session_id!r} is {status} and not being recorded by this store")
        return w

    def _maybe_commit(self) -> None:
        if self._unavailable is None and self._clock() - self._last_commit_s >= self._commit_interval_s:
            self._commit("committing records")

    def create_session(self, header: SessionHeader, *, label: str, kind: str, config: dict, source: str = "") -> str:
        """Start a live session recorded by this store; returns its id (12 random hex digits)."""
        where = f"new session {label!r}"
        if kind not in SESSION_KINDS:
            raise StoreError(f"{where}: kind must be one of {', '.join(SESSION_KINDS)}, got {kind!r}")
        if not isinstance(header, SessionHeader):
            raise StoreError(f"{where}: expected a SessionHeader, got {type(header).__name__}")
        _check_text(label, "the label", MAX_NAME_CHARS, where)
        _check_text(source, "the source", 4096, where)
        unknown = sorted(set(header.partners) - set(PARTNERS))
        if unknown:
            raise StoreError(f"{where}: unknown partner(s) {', '.join(unknown)} (expected {', '.join(PARTNERS)})")
        try:
            datetime.fromisoformat(header.started_at)
        except (TypeError, ValueError):
            raise StoreError(f"{where}: started_at is not an ISO 8601 time: {header.started_at!r}") from None
        partners_json = _json_text(header.to_json()["partners"], f"{where}: the partners")
        config_json = _json_text(config, f"{where}: the config")
        session_id = secrets.token_hex(6)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sessions (id, label, kind, status, started_at, partners, config, source, writer_pid,"
                " heartbeat) VALUES (?, ?, ?, 'live', ?, ?, ?, ?, ?, ?)",
                (session_id, label, kind, header.started_at, partners_json, config_json, source, os.getpid(),
                 time.time()),
            )

        with self._lock:
            self._check_open()
            while self._conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                session_id = secrets.token_hex(6)
            self._commit(f"creating session {session_id!r}", insert)
            self._writing[session_id] = _Writing(partners=tuple(header.partners) or PARTNERS)
        return session_id

    def add_record(self, session_id: str, record: Record) -> None:
        """Buffer one record of a live session; committed within ``commit_interval_s``."""
        with self._lock:
            w = self._writer(session_id)
            self._record_rows.append(_record_row(session_id, w.next_record_seq, record, w.partners))
            w.next_record_seq += 1
            w.new_notifications += isinstance(record, Notification)
            w.max_t_s = max(w.max_t_s, record.t_s)
            self._maybe_commit()

    def _event_row(self, session_id: str, seq: int, event: Event) -> tuple:
        where = f"session {session_id!r}, event {seq}"
        if not isinstance(event, Event):
            raise StoreError(f"{where}: expected a monitor.events.Event, got {type(event).__name__}")
        t_s = _check_time(event.t_s, where)
        if event.partner is not None and event.partner not in PARTNERS:
            raise StoreError(f"{where}: partner {event.partner!r} is not one of {', '.join(PARTNERS)} or None")
        data = _json_text(event.data, f"{where} ({event.kind})")
        return (session_id, seq, t_s, event.kind, event.partner, data)

    def add_event(self, session_id: str, event: Event) -> None:
        """Buffer one event of a live session; committed within ``commit_interval_s``."""
        with self._lock:
            w = self._writer(session_id)
            self._event_rows.append(self._event_row(session_id, w.next_event_seq, event))
            w.next_event_seq += 1
            w.new_events += 1
            w.max_t_s = max(w.max_t_s, event.t_s)
            self._maybe_commit()

    def add_annotation(self, session_id: str, t_s: float, text: str, author: str = "") -> Annotation:
        """Mark a moment (``t_s`` seconds into the session): stored as a record and an event, committed at once.

        Works on a live session of this store and on finished or interrupted ones
        (marking moments while reviewing). The text is at most MAX_ANNOTATION_CHARS.
        """
        where = f"session {session_id!r}, annotation"
        t_s = _check_time(t_s, where)
        _check_text(text, "the annotation", MAX_ANNOTATION_CHARS, where)
        _check_text(author, "the author", MAX_NAME_CHARS, where)
        if not text.strip():
            raise StoreError(f"{where}: the annotation is empty")
        annotation = Annotation(t_s=t_s, text=text, author=author)
        event = Event(t_s=t_s, kind="annotation", partner=None, data={"text": text, "author": author})
        with self._lock:
            self._check_open()
            w = self._writing.get(session_id)
            if w is not None:
                self._record_rows.append(_record_row(session_id, w.next_record_seq, annotation, w.partners))
                self._event_rows.append(self._event_row(session_id, w.next_event_seq, event))
                w.next_record_seq += 1
                w.next_event_seq += 1
                w.new_events += 1
                w.max_t_s = max(w.max_t_s, t_s)
                self._commit(f"storing an annotation in session {session_id!r}")
                return annotation
            row = self._session_row(session_id)
            if row[3] == "live":
                raise StoreError(f"session {session_id!r} is being recorded by another process (pid {row[12]})")

            def append(conn: sqlite3.Connection) -> None:
                next_seq = "SELECT coalesce(max(seq) + 1, 0) FROM {} WHERE session_id = ?"
                record_seq = conn.execute(next_seq.format("records"), (session_id,)).fetchone()[0]
                event_seq = conn.execute(next_seq.format("events"), (session_id,)).fetchone()[0]
                conn.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             _record_row(session_id, record_seq, annotation, PARTNERS))
                conn.execute("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
                             self._event_row(session_id, event_seq, event))
                conn.execute("UPDATE sessions SET n_events = n_events + 1, duration_s = max(duration_s, ?)"
                             " WHERE id = ?", (t_s, session_id))

            self._commit(f"storing an annotation in session {session_id!r}", append)
        return annotation

    def finish_session(self, session_id: str, status: str = "finished") -> None:
        """End a live session of this store: commit what is buffered, set its status and end time."""
        if status not in ("finished", "interrupted"):
            raise StoreError(f"session {session_id!r}: a session ends finished or interrupted, not {status!r}")
        with self._lock:
            self._writer(session_id)
            ended_at = _utc_iso(datetime.now(timezone.utc))
            self._commit(
                f"finishing session {session_id!r}",
                lambda conn: conn.execute(
                    "UPDATE sessions SET status = ?, ended_at = ? WHERE id = ?", (status, ended_at, session_id)
                ),
            )
            del self._writing[session_id]

    def recover_interrupted(self) -> list[str]:
        """Mark live sessions whose writer is gone (pid dead, or heartbeat older than
        HEARTBEAT_STALE_S) as interrupted, ended at their last heartbeat; returns their ids.

        Their records up to the last commit stay and replay like any other session's.
        """
        with self._lock, self._transaction("recovering interrupted sessions") as conn:
            now = time.time()
            recovered = []
            for session_id, pid, heartbeat in conn.execute(
                "SELECT id, writer_pid, heartbeat FROM sessions WHERE status = 'live'"
            ).fetchall():
                if session_id in self._writing or not _orphaned(pid, heartbeat, now):
                    continue
                ended = datetime.fromtimestamp(heartbeat if heartbeat is not None else now, timezone.utc)
                conn.execute("UPDATE sessions SET status = 'interrupted', ended_at = ? WHERE id = ?",
                             (_utc_iso(ended), session_id))
                recovered.append(session_id)
        return recovered

    def delete_session(self, session_id: str) -> None:
        """Remove a session with its records and events (the freed space is overwritten)."""
        with self._lock:
            row = self._session_row(session_id)
            if session_id in self._writing:
                raise StoreError(f"session {session_id!r} is still being recorded; finish it before deleting it")
            if row[3] == "live" and not _orphaned(row[12], row[13], time.time()):
                raise StoreError(f"session {session_id!r} is being recorded by another process (pid {row[12]})")
            with self._transaction(f"deleting session {session_id!r}") as conn:
                conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))

    # -- reading ---------------------------------------------------------------------

    def _session_row(self, session_id: str) -> tuple:
        self._check_open()
        try:
            row = self._conn.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: reading session {session_id!r} failed: {exc}") from None
        if row is None:
            raise StoreError(f"no session {session_id!r} in {self.path}")
        return row

    @staticmethod
    def _info(row: tuple) -> SessionInfo:
        return SessionInfo(
            id=row[0], label=row[1], kind=row[2], status=row[3], started_at=row[4], ended_at=row[5],
            partners=json.loads(row[6]), config=json.loads(row[7]), source=row[8], duration_s=row[9],
            n_notifications=row[10], n_events=row[11],
        )

    def list_sessions(self) -> list[SessionInfo]:
        """Every stored session, the most recently started first."""
        with self._lock:
            self._check_open()
            self._flush_pending()
            rows = self._conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY started_at DESC, rowid DESC"
            ).fetchall()
        return [self._info(row) for row in rows]

    def get_session(self, session_id: str) -> SessionInfo:
        """One session's summary; StoreError if there is no such session."""
        with self._lock:
            self._check_open()
            self._flush_pending()
            return self._info(self._session_row(session_id))

    def header(self, session_id: str) -> SessionHeader:
        """The session's coreg-session header (start time and partners, as created)."""
        with self._lock:
            row = self._session_row(session_id)
        partners = {key: PartnerInfo(**info) for key, info in json.loads(row[6]).items()}
        return SessionHeader(started_at=row[4], partners=partners)

    def records(self, session_id: str) -> Iterator[Record]:
        """The session's records in time order (ties in the order added), read in chunks.

        Raises StoreError at once for an unknown session. Records of a live session
        committed while iterating are yielded too if they come later in time.
        """
        with self._lock:
            self._session_row(session_id)
            self._flush_pending()
        return self._stream_records(session_id)

    def _stream_records(self, session_id: str) -> Iterator[Record]:
        after = (-1.0, -1)  # (t_s, seq) of the last row yielded; every t_s is >= 0
        while True:
            with self._lock:
                self._check_open()
                rows = self._conn.execute(
                    "SELECT t_s, seq, kind, partner, payload, text, author FROM records"
                    " WHERE session_id = ? AND (t_s, seq) > (?, ?) ORDER BY t_s, seq LIMIT ?",
                    (session_id, *after, _CHUNK_ROWS),
                ).fetchall()
            for t_s, _seq, kind, partner, payload, text, author in rows:
                yield _record_from_row(kind, t_s, partner, payload, text, author)
            if len(rows) < _CHUNK_ROWS:
                return
            after = (rows[-1][0], rows[-1][1])

    def events(self, session_id: str) -> list[dict]:
        """The session's events as Event.to_json() dicts, in time order (ties in the order added)."""
        with self._lock:
            self._session_row(session_id)
            self._flush_pending()
            rows = self._conn.execute(
                "SELECT t_s, kind, partner, data FROM events WHERE session_id = ? ORDER BY t_s, seq", (session_id,)
            ).fetchall()
        return [{"t": t_s, "kind": kind, "partner": partner, **json.loads(data)} for t_s, kind, partner, data in rows]

    # -- files -----------------------------------------------------------------------

    def export(self, session_id: str, path: str | os.PathLike) -> Path:
        """Write the session as a coreg-session recording (``.gz`` suffix: gzip); returns the path.

        An existing file is never overwritten (FileExistsError); a file left incomplete
        by an error is removed.
        """
        header = self.header(session_id)
        records = self.records(session_id)
        path = Path(path)
        writer = RecordingWriter(path, header)
        try:
            for record in records:
                writer.write(record)
            writer.close()
        except BaseException:
            writer.close()
            path.unlink(missing_ok=True)
            raise
        return path

    def import_recording(self, path: str | os.PathLike, *, label: str = "", kind: str = "import") -> str:
        """Store a coreg-session recording as a finished session; returns its id.

        A file with an error raises devices.recording.RecordingError and stores nothing;
        a cut-off last line is dropped with a RecordingWarning, as the reader does.
        The label defaults to the file name without its suffixes.
        """
        if kind not in SESSION_KINDS:
            raise StoreError(f"{path}: kind must be one of {', '.join(SESSION_KINDS)}, got {kind!r}")
        path = Path(path)
        label = label or path.name.split(".")[0]
        _check_text(label, "the label", MAX_NAME_CHARS, str(path))
        source = str(path.resolve()).encode("utf-8", "replace").decode("utf-8")
        with open_recording(path) as reader, self._lock:
            self._check_open()
            header = reader.header
            started = datetime.fromisoformat(header.started_at)
            started = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
            partners = tuple(header.partners) or PARTNERS
            session_id = secrets.token_hex(6)
            while self._conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
                session_id = secrets.token_hex(6)

            def insert(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "INSERT INTO sessions (id, label, kind, status, started_at, partners, config, source)"
                    " VALUES (?, ?, ?, 'finished', ?, ?, '{}', ?)",
                    (session_id, label, kind, header.started_at,
                     _json_text(header.to_json()["partners"], str(path)), source),
                )
                n_notifications, max_t_s, rows = 0, 0.0, []
                for seq, record in enumerate(reader):
                    rows.append(_record_row(session_id, seq, record, partners))
                    n_notifications += isinstance(record, Notification)
                    max_t_s = max(max_t_s, record.t_s)
                    if len(rows) == _CHUNK_ROWS:
                        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                        rows.clear()
                conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                conn.execute(
                    "UPDATE sessions SET n_notifications = ?, duration_s = ?, ended_at = ? WHERE id = ?",
                    (n_notifications, max_t_s, _utc_iso(started + timedelta(seconds=max_t_s)), session_id),
                )

            self._commit(f"importing {path}", insert)
        return session_id

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        """Commit what is buffered and close; sessions still live here become interrupted.

        Calling it again does nothing.
        """
        with self._lock:
            if self._closed:
                return
            try:
                if self._writing:
                    ended_at = _utc_iso(datetime.now(timezone.utc))
                    owned = list(self._writing)
                    self._commit("closing the store", lambda conn: conn.executemany(
                        "UPDATE sessions SET status = 'interrupted', ended_at = ? WHERE id = ?",
                        [(ended_at, session_id) for session_id in owned],
                    ))
                elif self._record_rows or self._event_rows:
                    self._commit("writing buffered records")
            finally:
                self._writing.clear()
                self._closed = True
                self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
