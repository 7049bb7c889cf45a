"""Export a session to the formats other tools read: CSV tables, Kubios RR text, EDF+.

- csv: ``<stem>_beats.csv`` (one row per raw beat per partner, plus the beats that
  correction inserted), ``<stem>_metrics.csv`` (every per-second column of the analysis,
  per partner, and the linkage), ``<stem>_events.csv``.
- kubios: ``<stem>_<partner>_rr.txt``, one RR interval in ms per line: the format Kubios
  HRV reads as "RR interval data (ASCII)". Corrected NN intervals by default, raw RR on
  request.
- edf: ``<stem>.edf``, EDF+ (Kemp & Olivan 2003): the 4 Hz heart rate of each partner
  (the series linkage is computed from, monitor.linkage.resample_hr) and every event as
  an annotation. Written by export_edf.py.

The tables are computed by pure functions (beats_table, metrics_table, events_table,
kubios_rr_ms); ``export_session`` only writes them.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Iterable

import numpy as np

from devices.records import Record, SessionHeader
from monitor.artifacts import BeatFlag, correct_beats
from monitor.beats import MS_PER_RR_UNIT, beats_by_partner
from monitor.config import Config
from monitor.pipeline import PARTNERS, Analysis, analyze_records

FORMATS = ("csv", "kubios", "edf")
BEAT_COLUMNS = ("partner", "t_s", "rr_ms", "nn_ms", "flags", "corrected")
EVENT_COLUMNS = ("t_s", "kind", "partner", "pattern", "text", "data")


class ExportError(ValueError):
    """A session that cannot be exported as asked; says which and why."""


def present_partners(header: SessionHeader) -> list[str]:
    """The partners a session has: those in the header, or both for a bare header."""
    return [p for p in PARTNERS if p in header.partners] or list(PARTNERS)


def flag_names(flags: int) -> str:
    """BeatFlag bits as lower-case names joined by '|' ('' for a normal beat)."""
    return "|".join(f.name.lower() for f in BeatFlag if f and flags & f)


def beats_table(header: SessionHeader, records: list[Record], cfg: Config | None = None) -> list[dict]:
    """Per partner, every raw beat and what artifact correction made of it.

    Rows: partner, t_s (beat time, s since session start), rr_ms (the raw RR ending at
    the beat; None for a beat correction inserted), nn_ms (the NN interval ending there
    after correction; None when the beat was removed or dropped), flags (BeatFlag names),
    corrected (the beat does not reach the NN series as measured). Correction follows
    monitor.artifacts (Lipponen & Tarvainen 2019), as the pipeline runs it.
    """
    cfg = cfg or Config()
    partners = present_partners(header)
    rows: list[dict] = []
    for p, beats in beats_by_partner(records, tuple(partners), cfg.beats).items():
        if len(beats) == 0:
            continue
        cb = correct_beats(beats.rr_units, beats.t_s, beats.contiguous, cfg.artifacts)
        # An NN beat at its raw beat's time continues that beat; one elsewhere was inserted.
        same = cb.t_s == beats.t_s[cb.raw_index]
        nn_ms = np.full(len(beats), np.nan)
        nn_ms[cb.raw_index[same]] = cb.nn_units[same] * MS_PER_RR_UNIT
        corrected = cb.raw_changed.copy()
        corrected[cb.raw_index[same]] |= cb.corrected[same]
        for i in range(len(beats)):
            rows.append({
                "partner": p, "t_s": float(beats.t_s[i]), "rr_ms": float(beats.rr_units[i] * MS_PER_RR_UNIT),
                "nn_ms": None if math.isnan(nn_ms[i]) else float(nn_ms[i]),
                "flags": flag_names(int(cb.beat_flags[i])), "corrected": bool(corrected[i]),
            })
        for j in np.flatnonzero(~same):
            rows.append({
                "partner": p, "t_s": float(cb.t_s[j]), "rr_ms": None,
                "nn_ms": float(cb.nn_units[j] * MS_PER_RR_UNIT),
                "flags": flag_names(int(cb.beat_flags[cb.raw_index[j]])), "corrected": True,
            })
    rows.sort(key=lambda r: (r["partner"], r["t_s"], r["rr_ms"] is not None))
    return rows


def metrics_table(analysis: Analysis) -> dict[str, np.ndarray]:
    """Every per-second column of the analysis: t_s, then ``<partner>_<column>`` for each
    partner's PartnerResult.columns(), then linkage_r and linkage_lag_s."""
    table = {"t_s": analysis.tick_t_s}
    for p, result in analysis.partners.items():
        for name, values in result.columns().items():
            table[f"{p}_{name}"] = values
    table["linkage_r"] = analysis.linkage_r
    table["linkage_lag_s"] = analysis.linkage_lag_s
    return table


def event_text(data: dict) -> str:
    """What an event says in words: a prompt's texts, an annotation's text, else ''."""
    if "text_a" in data or "text_b" in data:
        return " / ".join(str(data[k]) for k in ("title", "text_a", "text_b") if data.get(k))
    return str(data.get("text", ""))


def events_table(analysis: Analysis) -> list[dict]:
    """Events as rows: t_s, kind, partner, pattern, text (event_text) and data (the rest, JSON)."""
    rows = []
    for e in analysis.events:
        data = e.to_json()
        rest = {k: v for k, v in data.items() if k not in ("t", "kind", "partner", "pattern")}
        rows.append({
            "t_s": e.t_s, "kind": e.kind, "partner": e.partner or "", "pattern": e.data.get("pattern", ""),
            "text": event_text(e.data), "data": json.dumps(rest, ensure_ascii=False, sort_keys=True) if rest else "",
        })
    return rows


def kubios_rr_ms(header: SessionHeader, records: list[Record], *, corrected: bool = True,
                 cfg: Config | None = None) -> dict[str, np.ndarray]:
    """Per partner, the RR series Kubios should read (ms): NN after correction, or raw RR."""
    cfg = cfg or Config()
    out = {}
    for p, beats in beats_by_partner(records, tuple(present_partners(header)), cfg.beats).items():
        if corrected and len(beats):
            units = correct_beats(beats.rr_units, beats.t_s, beats.contiguous, cfg.artifacts).nn_units
        else:
            units = beats.rr_units
        out[p] = units * MS_PER_RR_UNIT
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return "" if not math.isfinite(value) else repr(float(value))
    return str(value)


def _write_csv(path: Path, columns: Iterable[str], rows: Iterable[Iterable[object]]) -> Path:
    with open(path, "x", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows([_cell(v) for v in row] for row in rows)
    return path


def export_session(header: SessionHeader, records: list[Record], fmt: str, out_dir: str | Path, stem: str,
                   *, raw: bool = False, cfg: Config | None = None) -> list[Path]:
    """Write the session in ``fmt`` (csv, kubios, edf) into ``out_dir``; returns the files.

    Existing files are never overwritten (FileExistsError). ``raw`` (kubios only)
    writes the RR values as received instead of the corrected NN intervals.
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    cfg = cfg or Config()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "kubios":
        files = []
        for p, rr_ms in kubios_rr_ms(header, records, corrected=not raw, cfg=cfg).items():
            path = out / f"{stem}_{p}_rr.txt"
            with open(path, "x", encoding="ascii") as f:
                f.writelines(f"{v:.3f}\n" for v in rr_ms)
            files.append(path)
        return files
    analysis = analyze_records(header, records, cfg)
    if fmt == "edf":
        from monitor.export_edf import write_edf

        return [write_edf(out / f"{stem}.edf", header, records, analysis, cfg)]
    beats = beats_table(header, records, cfg)
    metrics = metrics_table(analysis)
    events = events_table(analysis)
    return [
        _write_csv(out / f"{stem}_beats.csv", BEAT_COLUMNS, ([r[c] for c in BEAT_COLUMNS] for r in beats)),
        _write_csv(out / f"{stem}_metrics.csv", metrics, zip(*metrics.values())),
        _write_csv(out / f"{stem}_events.csv", EVENT_COLUMNS, ([r[c] for c in EVENT_COLUMNS] for r in events)),
    ]
