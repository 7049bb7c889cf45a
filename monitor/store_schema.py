"""The session store's file: where it lives, how it is opened, its tables and their migrations.

One SQLite database file (WAL mode) holds all sessions. It is created private (mode
0600, in a 0700 folder: it holds health data), marked as a coreg store with
``PRAGMA application_id`` and versioned with ``PRAGMA user_version``; ``MIGRATIONS``
bring an older file up to ``SCHEMA_VERSION`` when it is opened.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

from monitor.store_errors import StoreError

SCHEMA_VERSION = 1
APPLICATION_ID = 0x636F7267  # "corg": marks the file as a coreg store (PRAGMA application_id)
SESSION_KINDS = ("live", "replay", "demo", "import")
SESSION_STATUSES = ("live", "finished", "interrupted")

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
    make_private_dir(folder)
    return folder / "coreg.db"


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` (and its parents) with mode 0700 unless it already exists."""
    if folder.is_dir():
        return  # an existing folder keeps the permissions its owner chose
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)  # mkdir's mode is filtered by the umask


def connect(path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """Open (creating it if need be) the store file at ``path`` and bring its schema up to date.

    ``busy_timeout_s``: how long a write waits for another connection's write lock.
    The connection is in autocommit mode (transactions are begun explicitly) and may be
    used from any thread; the caller serialises its use. StoreError if the file cannot
    be created or opened, or is not a coreg store this version can read.
    """
    make_private_dir(path.parent)
    try:
        # Created here, not by SQLite, so that it is private from the start; SQLite
        # gives its -wal and -shm files the database file's permissions.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the session store: {exc.strerror}") from None
    try:
        conn = sqlite3.connect(path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the session store: {exc}") from None
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA secure_delete = ON")  # a deleted session's data is overwritten
        migrate(conn, path)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{path}: cannot open the session store: {exc}") from None
        raise
    return conn


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the database on ``conn`` (the file at ``path``) to SCHEMA_VERSION, in one transaction.

    StoreError if the file was written by a newer coreg or is some other SQLite database.
    """
    conn.execute("BEGIN IMMEDIATE")  # two processes opening a new file must not both create it
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: written by a newer coreg (schema {version}; this one reads {SCHEMA_VERSION})"
            )
        has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] > 0
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if (version == 0 and has_tables) or (version > 0 and app_id != APPLICATION_ID):
            raise StoreError(f"{path}: an SQLite database, but not a coreg session store")
        for step in range(version, SCHEMA_VERSION):
            MIGRATIONS[step](conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
