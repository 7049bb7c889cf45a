"""Turn imported RR series into a coreg session of raw notifications, and store it.

coreg's ground truth is the raw Heart Rate Measurement notification (DESIGN.md, "The
recording format"), so an imported series becomes the notifications a strap would have
sent: one per original timestamp group (or per beat, when the file has no times),
arriving at that time, its RR values in 1/1024 s (GATT Specification Supplement 3.106)
and its heart rate the one the file stored, else the mean of its RR values. The beat
chain of monitor.beats then lays the beats where the file had them, and the session
analyses, replays and reports like a recorded one.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from devices.hrs import encode_hrm, rr_ms_to_units
from devices.records import Notification, PartnerInfo, Record, SessionHeader
from monitor.importers import ImportedRR, read_rr_file

SECONDS_PER_MINUTE = 60.0


def rr_notifications(rr: ImportedRR, partner: str, offset_s: float = 0.0) -> list[Notification]:
    """The notifications that carry ``rr``'s beats, at ``offset_s`` + their arrival (s).

    Beats sharing an arrival time share a notification. Times are rounded to the
    microsecond, as SessionClock rounds them.
    """
    units = [rr_ms_to_units(float(v)) for v in rr.rr_ms]
    t_s = np.round(rr.arrival_t_s + offset_s, 6)
    starts = np.flatnonzero(np.r_[True, np.diff(t_s) != 0])
    ends = np.r_[starts[1:], len(t_s)]
    out = []
    for s, e in zip(starts, ends):
        group = units[s:e]
        stored = rr.hr_bpm[s:e][np.isfinite(rr.hr_bpm[s:e])]
        if len(stored):
            hr_bpm = round(float(stored[-1]))
        else:
            hr_bpm = round(SECONDS_PER_MINUTE * 1024 / (sum(group) / len(group)))
        out.append(Notification(float(t_s[s]), partner, encode_hrm(max(hr_bpm, 1), group)))
    return out


def _span_s(rr: ImportedRR) -> float:
    return float(rr.arrival_t_s[-1]) if len(rr.arrival_t_s) else 0.0


def build_session(series: dict[str, ImportedRR], *, names: dict[str, str] | None = None,
                  sources: dict[str, str] | None = None,
                  fallback_start: datetime | None = None) -> tuple[SessionHeader, list[Record]]:
    """A coreg session (header and time-ordered records) from one RR series per partner.

    When every series has clock times the partners are aligned on them and the session
    starts with the earliest; otherwise each starts at t = 0 and the session at the one
    known start, else ``fallback_start`` (else now). ``sources`` (partner → text, e.g.
    format and file name) goes into the header's device field.
    """
    if not series or set(series) - {"a", "b"}:
        raise ValueError(f"expected partners a and/or b, got {sorted(series)}")
    names, sources = names or {}, sources or {}
    starts = {p: s.started_at for p, s in series.items()}
    if all(starts.values()):
        t0 = min(starts.values())
        offsets = {p: (start - t0).total_seconds() for p, start in starts.items()}
    else:
        t0 = next((s for s in starts.values() if s), None) or fallback_start or datetime.now(timezone.utc)
        offsets = {p: 0.0 for p in series}
    records: list[Record] = []
    for p in sorted(series):
        records += rr_notifications(series[p], p, offsets[p])
    records.sort(key=lambda r: r.t_s)  # stable: at equal times a before b
    partners = {p: PartnerInfo(name=names.get(p, ""), device=sources.get(p, series[p].fmt)) for p in sorted(series)}
    started_at = t0.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return SessionHeader(started_at=started_at, partners=partners), records


def session_from_files(files: dict[str, str | Path], names: dict[str, str] | None = None
                       ) -> tuple[SessionHeader, list[Record]]:
    """Read one export per partner (format recognised by content) and build the session.

    Files without clock times are taken to end when they were last modified.
    """
    series = {p: read_rr_file(path) for p, path in files.items()}
    sources = {p: f"{series[p].fmt}: {Path(path).name}"[:200] for p, path in files.items()}
    ends = [datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc) - timedelta(seconds=_span_s(series[p]))
            for p, path in files.items()]
    return build_session(series, names=names, sources=sources, fallback_start=min(ends))


def import_files(store, files: dict[str, str | Path], *, label: str = "",
                 names: dict[str, str] | None = None) -> str:
    """Store one session built from the partners' export files; returns its id.

    The label defaults to the file names without suffixes. Nothing is stored when a
    file cannot be read (ImportFormatError names the file and line).
    """
    header, records = session_from_files(files, names)
    label = label or " + ".join(Path(f).name.split(".")[0] for f in files.values())[:200]
    source = "; ".join(str(Path(f).resolve()) for f in files.values())[:4096]
    session_id = store.create_session(header, label=label, kind="import", config={}, source=source)
    try:
        for record in records:
            store.add_record(session_id, record)
    finally:
        store.finish_session(session_id)
    return session_id
