"""Reading the session store back: session summaries and headers, records streamed in chunks, events.

Reads first commit what this store has buffered, unless writing is failing: then they
show what is committed (monitor/store_buffer.py). Records are fetched ``CHUNK_ROWS`` at
a time, the lock held only while fetching one chunk, so a long session streams without
holding up a live session's writes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

from devices.records import PartnerInfo, Record, SessionHeader
from monitor.store_buffer import BufferedConnection
from monitor.store_errors import StoreError
from monitor.store_rows import SESSION_COLUMNS, SessionInfo, record_from_row, session_info

CHUNK_ROWS = 1000  # rows fetched per query while streaming records (and inserted per query on import)


def session_row(db: BufferedConnection, session_id: str) -> tuple:
    """The session's sessions-table row (SESSION_COLUMNS); StoreError if there is none. Hold ``db.lock``."""
    db.check_open()
    try:
        row = db.conn.execute(f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)).fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"{db.path}: reading session {session_id!r} failed: {exc}") from None
    if row is None:
        raise StoreError(f"no session {session_id!r} in {db.path}")
    return row


def list_sessions(db: BufferedConnection) -> list[SessionInfo]:
    """Every stored session, the most recently started first."""
    with db.lock:
        db.check_open()
        db.flush_pending()
        rows = db.conn.execute(
            f"SELECT {SESSION_COLUMNS} FROM sessions ORDER BY started_at DESC, rowid DESC"
        ).fetchall()
    return [session_info(row) for row in rows]


def get_session(db: BufferedConnection, session_id: str) -> SessionInfo:
    """One session's summary; StoreError if there is no such session."""
    with db.lock:
        db.check_open()
        db.flush_pending()
        return session_info(session_row(db, session_id))


def read_header(db: BufferedConnection, session_id: str) -> SessionHeader:
    """The session's coreg-session header (start time and partners, as created)."""
    with db.lock:
        row = session_row(db, session_id)
    partners = {key: PartnerInfo(**info) for key, info in json.loads(row[6]).items()}
    return SessionHeader(started_at=row[4], partners=partners)


def read_records(db: BufferedConnection, session_id: str) -> Iterator[Record]:
    """The session's records in time order (ties in the order added), read in chunks.

    Raises StoreError at once for an unknown session. Records of a live session
    committed while iterating are yielded too if they come later in time.
    """
    with db.lock:
        session_row(db, session_id)
        db.flush_pending()
    return _stream_records(db, session_id)


def _stream_records(db: BufferedConnection, session_id: str) -> Iterator[Record]:
    after = (-1.0, -1)  # (t_s, seq) of the last row yielded; every t_s is >= 0
    while True:
        with db.lock:
            db.check_open()
            rows = db.conn.execute(
                "SELECT t_s, seq, kind, partner, payload, text, author FROM records"
                " WHERE session_id = ? AND (t_s, seq) > (?, ?) ORDER BY t_s, seq LIMIT ?",
                (session_id, *after, CHUNK_ROWS),
            ).fetchall()
        for t_s, _seq, kind, partner, payload, text, author in rows:
            yield record_from_row(kind, t_s, partner, payload, text, author)
        if len(rows) < CHUNK_ROWS:
            return
        after = (rows[-1][0], rows[-1][1])


def read_events(db: BufferedConnection, session_id: str) -> list[dict]:
    """The session's events as Event.to_json() dicts, in time order (ties in the order added)."""
    with db.lock:
        session_row(db, session_id)
        db.flush_pending()
        rows = db.conn.execute(
            "SELECT t_s, kind, partner, data FROM events WHERE session_id = ? ORDER BY t_s, seq", (session_id,)
        ).fetchall()
    return [{"t": t_s, "kind": kind, "partner": partner, **json.loads(data)} for t_s, kind, partner, data in rows]
