"""Moving sessions between the store and coreg-session recordings: export to a file, import from one.

Records stay in coreg-session terms (DESIGN.md, "The recording format"): a session
exports to a recording that ``devices.recording.read_records`` reads back unchanged,
and any recording imports as a finished session.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

from devices.records import PARTNERS, Notification
from devices.recording import RecordingWriter, open_recording
from monitor.store_buffer import BufferedConnection
from monitor.store_errors import StoreError
from monitor.store_reading import CHUNK_ROWS, read_header, read_records
from monitor.store_rows import MAX_NAME_CHARS, check_text, json_text, record_row, utc_iso
from monitor.store_schema import SESSION_KINDS


def export_session(db: BufferedConnection, session_id: str, path: str | os.PathLike) -> Path:
    """Write the session as a coreg-session recording (``.gz`` suffix: gzip); returns the path.

    An existing file is never overwritten (FileExistsError); a file left incomplete
    by an error is removed.
    """
    header = read_header(db, session_id)
    records = read_records(db, session_id)
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


def import_recording(db: BufferedConnection, path: str | os.PathLike, *, label: str, kind: str) -> str:
    """Store a coreg-session recording as a finished session in one transaction; returns its id.

    A file with an error raises devices.recording.RecordingError and stores nothing;
    a cut-off last line is dropped with a RecordingWarning, as the reader does.
    The label defaults to the file name without its suffixes.
    """
    if kind not in SESSION_KINDS:
        raise StoreError(f"{path}: kind must be one of {', '.join(SESSION_KINDS)}, got {kind!r}")
    path = Path(path)
    label = label or path.name.split(".")[0]
    check_text(label, "the label", MAX_NAME_CHARS, str(path))
    source = str(path.resolve()).encode("utf-8", "replace").decode("utf-8")
    with open_recording(path) as reader, db.lock:
        db.check_open()
        header = reader.header
        started = datetime.fromisoformat(header.started_at)
        started = started if started.tzinfo else started.replace(tzinfo=timezone.utc)
        partners = tuple(header.partners) or PARTNERS
        session_id = secrets.token_hex(6)
        while db.conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone():
            session_id = secrets.token_hex(6)

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO sessions (id, label, kind, status, started_at, partners, config, source)"
                " VALUES (?, ?, ?, 'finished', ?, ?, '{}', ?)",
                (session_id, label, kind, header.started_at,
                 json_text(header.to_json()["partners"], str(path)), source),
            )
            n_notifications, max_t_s, rows = 0, 0.0, []
            for seq, record in enumerate(reader):
                rows.append(record_row(session_id, seq, record, partners))
                n_notifications += isinstance(record, Notification)
                max_t_s = max(max_t_s, record.t_s)
                if len(rows) == CHUNK_ROWS:
                    conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
                    rows.clear()
            conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
            conn.execute(
                "UPDATE sessions SET n_notifications = ?, duration_s = ?, ended_at = ? WHERE id = ?",
                (n_notifications, max_t_s, utc_iso(started + timedelta(seconds=max_t_s)), session_id),
            )

        db.commit(f"importing {path}", insert)
    return session_id
