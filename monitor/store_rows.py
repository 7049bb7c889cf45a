"""Rows of the session store: records, events and sessions checked and turned into table rows and back.

A record is checked the way a recording reader would check it (a known partner, bytes
for a payload, a finite time >= 0, bounded texts) before it becomes a ``records`` row,
so that every stored session exports to a recording that reads back unchanged. Events
keep their ``data`` as compact JSON; session rows become ``SessionInfo`` values.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from datetime import datetime, timezone

from devices.records import PARTNERS, Annotation, Notification, Record, StatusChange
from monitor.events import Event
from monitor.store_errors import StoreError

CONNECTION_STATUSES = ("connected", "disconnected")
MAX_ANNOTATION_CHARS = 2000
MAX_NAME_CHARS = 200  # labels and annotation authors
SESSION_COLUMNS = (
    "id, label, kind, status, started_at, ended_at, partners, config, source, "
    "duration_s, n_notifications, n_events, writer_pid, heartbeat"
)


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


def session_info(row: tuple) -> SessionInfo:
    """The SessionInfo of a sessions-table row selected with SESSION_COLUMNS."""
    return SessionInfo(
        id=row[0], label=row[1], kind=row[2], status=row[3], started_at=row[4], ended_at=row[5],
        partners=json.loads(row[6]), config=json.loads(row[7]), source=row[8], duration_s=row[9],
        n_notifications=row[10], n_events=row[11],
    )


def utc_iso(when: datetime) -> str:
    """``when`` as the store writes times: UTC, whole seconds, ISO 8601 with a Z."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_time(t_s: object, where: str) -> float:
    """``t_s`` as a float of seconds; StoreError (naming ``where``) unless finite and >= 0."""
    if isinstance(t_s, bool) or not isinstance(t_s, numbers.Real) or not math.isfinite(t_s) or t_s < 0:
        raise StoreError(f"{where}: t must be a finite number of seconds >= 0, got {t_s!r}")
    return float(t_s)


def check_text(value: object, name: str, max_chars: int, where: str) -> str:
    """``value`` unchanged if it is a string of at most ``max_chars`` that encodes as UTF-8; else StoreError."""
    if not isinstance(value, str):
        raise StoreError(f"{where}: {name} must be a string, got {type(value).__name__}")
    if len(value) > max_chars:
        raise StoreError(f"{where}: {name} is {len(value)} characters long; at most {max_chars} are kept")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise StoreError(f"{where}: {name} is not valid Unicode ({exc.reason})") from None
    return value


def json_text(value: object, where: str) -> str:
    """``value`` as compact JSON text (no NaN or infinity); StoreError naming ``where`` if it cannot be."""
    try:
        return json.dumps(value, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{where} cannot be stored as JSON: {exc}") from None


def record_row(session_id: str, seq: int, record: Record, partners: tuple[str, ...]) -> tuple:
    """The records-table row of one record, checked the way a recording reader would."""
    where = f"session {session_id!r}, record {seq}"
    if not isinstance(record, (Notification, StatusChange, Annotation)):
        raise StoreError(f"{where}: expected a Notification, StatusChange or Annotation, got {type(record).__name__}")
    t_s = check_time(record.t_s, where)
    if isinstance(record, Annotation):
        text = check_text(record.text, "the annotation", MAX_ANNOTATION_CHARS, where)
        author = check_text(record.author, "the author", MAX_NAME_CHARS, where)
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


def record_from_row(kind: str, t_s: float, partner: str | None, payload: bytes | None, text: str | None,
                    author: str | None) -> Record:
    """The record a records-table row holds (the columns after session_id and seq)."""
    if kind == "hrm":
        return Notification(t_s=t_s, partner=partner, payload=bytes(payload))
    if kind == "status":
        return StatusChange(t_s=t_s, partner=partner, status=text)
    return Annotation(t_s=t_s, text=text, author=author or "")


def event_row(session_id: str, seq: int, event: Event) -> tuple:
    """The events-table row of one event: its time checked, its data as JSON."""
    where = f"session {session_id!r}, event {seq}"
    if not isinstance(event, Event):
        raise StoreError(f"{where}: expected a monitor.events.Event, got {type(event).__name__}")
    t_s = check_time(event.t_s, where)
    if event.partner is not None and event.partner not in PARTNERS:
        raise StoreError(f"{where}: partner {event.partner!r} is not one of {', '.join(PARTNERS)} or None")
    data = json_text(event.data, f"{where} ({event.kind})")
    return (session_id, seq, t_s, event.kind, event.partner, data)
