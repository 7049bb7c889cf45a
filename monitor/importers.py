"""Read other tools' RR exports: recognise the format by content, return the beats.

Formats (each recognised from the file's first non-empty line, never its name):

- HRV Logger RR CSV: a comma-separated header naming a time column (``timestamp`` or
  ``date``) and an ``rr`` column (ms), e.g. ``timestamp, relative_time, rr_sincestart,
  rr``. Rows that share a timestamp came in one notification.
- Polar Sensor Logger: semicolon-separated, first column ``Phone timestamp`` (phone
  local time, ISO 8601). The RR file (``Phone timestamp;RR-interval [ms]``) has one RR
  per row; the older HR file (``Phone timestamp;sensor timestamp [ns];HR [bpm];HRV
  [ms]``) has one notification per row, its HR and, from the HRV column on, the RR
  values in ms (the app's FAQ: "the extra columns are RR intervals in ms"). The newer HR
  file (with ``Breathing interval [rpm]``) holds no RR values and is refused.
- Elite HRV export, Kubios / plain RR text: one RR per line (or ``time RR`` pairs,
  whitespace, comma, semicolon or tab separated); seconds or ms, told apart by the
  magnitudes (a resting-to-exercise RR is 0.25-2.5 s).

All readers are pure: they take the file's text and return an ``ImportedRR``.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

KNOWN_FORMATS = (
    "HRV Logger RR CSV (timestamp, ..., rr)",
    "Polar Sensor Logger RR or HR file (Phone timestamp;...)",
    "Elite HRV export (one RR in ms per line)",
    "Kubios / plain RR text (RR in s or ms, one per line)",
)
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")
_SPLIT = re.compile(r"[\s,;]+")
# Medians of a plausible RR series (300-2000 ms) in either unit, with a margin.
_SECONDS_RANGE = (0.2, 3.0)
_MS_RANGE = (200.0, 3000.0)


class ImportFormatError(ValueError):
    """A file coreg cannot import: names the file and, where it applies, the line."""

    def __init__(self, path: str, detail: str, line: int | None = None) -> None:
        where = f"{path}, line {line}" if line is not None else str(path)
        super().__init__(f"{where}: {detail}")
        self.path = str(path)
        self.line = line
        self.detail = detail


@dataclass(frozen=True, eq=False)
class ImportedRR:
    """One person's RR series as another tool exported it.

    rr_ms: RR intervals in ms (float64), in order.
    arrival_t_s: per beat, seconds from ``started_at`` at which the notification that
        carried it arrived; beats of one notification share it. Without timestamps in the
        file every beat arrives at its own time (the running sum of the RR values).
    hr_bpm: per beat, the heart rate the tool stored with it (NaN where it stored none).
    started_at: the start of the RR chain (aware, UTC), or None when the file has no
        clock times.
    fmt: which format was read; ``unit`` the unit the RR values were written in.
    """

    rr_ms: np.ndarray
    arrival_t_s: np.ndarray
    hr_bpm: np.ndarray
    started_at: datetime | None
    fmt: str
    unit: str = "ms"


def read_rr_file(path: str | Path) -> ImportedRR:
    """Read one RR export, whatever its format (recognised by content); see the module notes."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFormatError(str(path), f"not a text file (byte {exc.start} is not UTF-8)") from None
    except OSError as exc:
        raise ImportFormatError(str(path), f"cannot be read: {exc.strerror or exc}") from None
    return parse_rr_text(text, str(path))


def parse_rr_text(text: str, path: str = "<text>") -> ImportedRR:
    """Recognise the format of an export's text and read it (``path`` names it in errors)."""
    lines = text.splitlines()
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        raise ImportFormatError(path, "the file is empty")
    head = lines[first].strip()
    lowered = head.lower()
    if lowered.startswith("phone timestamp"):
        return _read_polar(lines, first, path)
    fields = [f.strip().lower() for f in head.split(",")]
    if "rr" in fields and ({"timestamp", "date"} & set(fields)):
        return _read_hrv_logger(text, first, fields, path)
    if _NUMBER.fullmatch(_SPLIT.split(head)[-1] or ""):
        return _read_rr_column(lines, path)
    raise ImportFormatError(
        path, f"not a format coreg imports (first line {head[:60]!r}); known formats: {'; '.join(KNOWN_FORMATS)}",
        line=first + 1,
    )


def _number(value: str, path: str, line: int, what: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ImportFormatError(path, f"{what} {value.strip()!r} is not a number", line=line) from None


def _clock(value: str, path: str, line: int) -> datetime:
    """A timestamp cell: ISO 8601 (naive = this machine's local time) or Unix s / ms."""
    value = value.strip()
    if _NUMBER.fullmatch(value):
        epoch = float(value)
        # Unix times in ms are 1000 times those in s: anything past 1e11 (year 5138 in s) is ms.
        return datetime.fromtimestamp(epoch / 1000 if epoch > 1e11 else epoch, timezone.utc)
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise ImportFormatError(path, f"timestamp {value!r} is neither ISO 8601 nor Unix time", line=line) from None
    # Phones write local time without an offset; the phone and this machine are assumed
    # to share a time zone.
    return (when if when.tzinfo else when.astimezone()).astimezone(timezone.utc)


def _from_groups(stamps: list[datetime], rr_ms: list[float], hr: list[float], fmt: str, path: str) -> ImportedRR:
    """Beats stamped with their notification's clock time → an ImportedRR.

    The chain starts where the first notification's RR values begin, so every beat and
    every arrival lies at or after ``started_at``.
    """
    if not rr_ms:
        raise ImportFormatError(path, "the file holds no RR interval")
    rr = np.asarray(rr_ms, dtype=np.float64)
    t0 = stamps[0]
    rel_s = np.array([(s - t0).total_seconds() for s in stamps])
    if np.any(np.diff(rel_s) < 0):
        bad = int(np.flatnonzero(np.diff(rel_s) < 0)[0]) + 1
        raise ImportFormatError(path, f"timestamps go backwards at RR value {bad + 1}")
    first_group_s = rr[rel_s == rel_s[0]].sum() / 1000
    started = t0 - timedelta(seconds=float(first_group_s))
    return ImportedRR(rr, rel_s + first_group_s, np.asarray(hr, dtype=np.float64), started, fmt)


def _check_rr(value: float, path: str, line: int) -> float:
    if not 0 < value < 65536 * 1000 / 1024:
        raise ImportFormatError(path, f"RR {value!r} ms is not a positive interval a strap can send", line=line)
    return value


def _read_hrv_logger(text: str, first: int, fields: list[str], path: str) -> ImportedRR:
    """HRV Logger RR CSV: clock time per row, RR in ms; equal times = one notification."""
    t_col = fields.index("timestamp") if "timestamp" in fields else fields.index("date")
    rr_col = fields.index("rr")
    stamps, rr, hr = [], [], []
    reader = csv.reader(io.StringIO(text))
    for number, row in enumerate(reader, start=1):
        if number <= first + 1 or not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(t_col, rr_col):
            raise ImportFormatError(path, f"expected {len(fields)} columns, found {len(row)}", line=number)
        stamps.append(_clock(row[t_col], path, number))
        rr.append(_check_rr(_number(row[rr_col], path, number, "RR"), path, number))
        hr.append(np.nan)
    return _from_groups(stamps, rr, hr, "hrv_logger", path)


def _read_polar(lines: list[str], first: int, path: str) -> ImportedRR:
    """Polar Sensor Logger RR file, or its older HR file with RR columns."""
    header = [h.strip().lower() for h in lines[first].split(";")]
    rr_file = any(h.startswith("rr-interval") for h in header)
    hr_col = next((i for i, h in enumerate(header) if h.startswith("hr [")), None)
    if not rr_file and (hr_col is None or any(h.startswith("breathing") for h in header)):
        raise ImportFormatError(
            path, "this Polar Sensor Logger file holds no RR intervals; import the RR file "
            "(Phone timestamp;RR-interval [ms]) recorded beside it", line=first + 1,
        )
    first_rr = 1 if rr_file else hr_col + 1
    stamps, rr, hr = [], [], []
    for number, line in enumerate(lines[first + 1 :], start=first + 2):
        cells = [c.strip() for c in line.split(";")]
        if not any(cells):
            continue
        if len(cells) <= first_rr - (0 if rr_file else 1):
            raise ImportFormatError(path, f"expected at least {first_rr + 1} columns, found {len(cells)}", line=number)
        when = _clock(cells[0], path, number)
        hr_bpm = np.nan if rr_file else _number(cells[hr_col], path, number, "HR")
        values = [c for c in cells[first_rr:] if c]
        for value in values:
            stamps.append(when)
            rr.append(_check_rr(_number(value, path, number, "RR"), path, number))
            hr.append(hr_bpm)
    return _from_groups(stamps, rr, hr, "polar_sensor_logger", path)


def _read_rr_column(lines: list[str], path: str) -> ImportedRR:
    """Elite HRV / Kubios / plain text: RR per line (last number of the line), s or ms."""
    values, numbers = [], []
    for number, line in enumerate(lines, start=1):
        cells = [c for c in _SPLIT.split(line.strip()) if c]
        if not cells:
            continue
        if len(cells) > 2:
            raise ImportFormatError(path, f"expected one RR value (or time and RR), found {len(cells)} values", line=number)
        values.append(_number(cells[-1], path, number, "RR"))
        numbers.append(number)
    rr = np.asarray(values)
    median = float(np.median(rr))
    if _SECONDS_RANGE[0] <= median <= _SECONDS_RANGE[1]:
        unit, rr_ms = "s", rr * 1000
    elif _MS_RANGE[0] <= median <= _MS_RANGE[1]:
        unit, rr_ms = "ms", rr
    else:
        raise ImportFormatError(path, f"the median RR {median:g} is neither seconds (0.2-3) nor ms (200-3000)")
    for value, number in zip(rr_ms, numbers):
        _check_rr(float(value), path, number)
    integers = bool(np.all(rr == np.round(rr))) and unit == "ms"
    # Without clock times each beat arrives when it ends, on the strap's own 1/1024 s
    # grid, so the beat chain and the arrivals agree exactly however long the file is.
    units = np.clip(np.round(rr_ms * 1024 / 1000), 1, 0xFFFF)
    return ImportedRR(
        rr_ms, np.cumsum(units) / 1024, np.full(len(rr_ms), np.nan), None,
        "elite_hrv" if integers else "rr_text", unit,
    )
