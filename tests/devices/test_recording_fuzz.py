"""Damaged recordings: the reader says where, warns about a cut-off end, never lies.

A small recording (header, notifications of both partners, status changes, an
annotation), plain and gzip, is damaged the ways disks, crashes and hand edits damage
files: a line deleted, a bit flipped, the file cut at any byte, a line of garbage
inserted, a field given a value of the wrong type. Reading it must end in one of:

- a RecordingError naming the file, line and byte;
- the records that are there, with a RecordingWarning when the last line was cut off
  (a prefix of the original records, nothing invented);
- for damage the format cannot see (a deleted line, a flipped bit that still leaves
  a valid record in time order), records that differ from the original only where
  the damage was.

Never another exception type, and never a record out of time order.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.recording import RecordingError, RecordingWarning, RecordingWriter, read_records, record_to_line
from devices.records import Annotation, Notification, PartnerInfo, Record, SessionHeader, StatusChange

HEADER = SessionHeader(
    started_at="2026-01-01T09:00:00Z", partners={"a": PartnerInfo("Ann", "Polar H10"), "b": PartnerInfo("Bo", "")}
)
RECORDS: list[Record] = [StatusChange(0.41, "a", "connected"), StatusChange(0.52, "b", "connected")]
for _i in range(1, 25):
    RECORDS.append(Notification(round(_i * 1.0371, 4), "a", bytes([0x10, 60 + _i, 0x20 + _i, 0x03])))
    RECORDS.append(Notification(round(_i * 1.0371 + 0.3, 4), "b", bytes([0x16, 70 + _i, 0x10 + _i, 0x04, 0x11, 0x04])))
    if _i == 9:
        RECORDS.append(Annotation(round(_i * 1.0371 + 0.4, 4), "she turns away", "practitioner"))
    if _i == 15:
        RECORDS.append(StatusChange(round(_i * 1.0371 + 0.5, 4), "b", "disconnected"))
    if _i == 17:
        RECORDS.append(StatusChange(round(_i * 1.0371 + 0.5, 4), "b", "connected"))
LINES = [record_to_line(HEADER).encode()] + [record_to_line(r).encode() for r in RECORDS]
TEXT = b"".join(line + b"\n" for line in LINES)
# COREG_FUZZ_EXAMPLES=5000 for a longer local run.
FUZZ = settings(max_examples=int(os.environ.get("COREG_FUZZ_EXAMPLES", "150")), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read(path: Path) -> tuple[list[Record] | RecordingError, list[str]]:
    """The records, or the RecordingError; and the warnings issued. Anything else raises."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _, records = read_records(path)
        except RecordingError as exc:
            assert exc.path == str(path) and exc.line is not None and exc.byte is not None, exc
            assert str(exc).startswith(f"{path}, line {exc.line}, byte {exc.byte}: ")
            records = exc
    assert all(issubclass(w.category, RecordingWarning) for w in caught), [str(w.message) for w in caught]
    return records, [str(w.message) for w in caught]


def in_time_order(records: list[Record]) -> bool:
    return all(a.t_s <= b.t_s for a, b in zip(records, records[1:]))


def put(tmp_path: Path, data: bytes, gzipped: bool) -> Path:
    path = tmp_path / ("damaged.jsonl.gz" if gzipped else "damaged.jsonl")
    path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
    return path


def test_the_undamaged_recording_reads_back(tmp_path: Path) -> None:
    for name in ("w.jsonl", "w.jsonl.gz"):
        with RecordingWriter(tmp_path / name, HEADER) as writer:
            for record in RECORDS:
                writer.write(record)
        assert read(tmp_path / name) == (RECORDS, [])
    assert gzip.decompress((tmp_path / "w.jsonl.gz").read_bytes()) == TEXT == (tmp_path / "w.jsonl").read_bytes()


@FUZZ
@given(index=st.integers(0, len(LINES) - 1), gzipped=st.booleans())
def test_a_deleted_line(tmp_path: Path, index: int, gzipped: bool) -> None:
    data = b"".join(line + b"\n" for i, line in enumerate(LINES) if i != index)
    got, warned = read(put(tmp_path, data, gzipped))
    if index == 0:  # the header is gone: the first record is not one
        assert isinstance(got, RecordingError) and got.line == 1 and "not a coreg-session" in got.detail
    else:  # a lost line is a lost notification: the rest is exactly as written
        assert got == RECORDS[: index - 1] + RECORDS[index:] and warned == []


@FUZZ
@given(at=st.integers(0, len(TEXT) - 1), bit=st.integers(0, 7), gzipped=st.booleans())
def test_a_flipped_bit_in_the_text(tmp_path: Path, at: int, bit: int, gzipped: bool) -> None:
    data = bytearray(TEXT)
    data[at] ^= 1 << bit
    got, warned = read(put(tmp_path, bytes(data), gzipped))
    line = TEXT.count(b"\n", 0, at) + 1
    if isinstance(got, RecordingError):
        # Found on the damaged line, or on the next one (the newline itself was hit,
        # or the damaged time now runs past the next record's).
        assert got.line in (line, line + 1), (got, line)
        return
    assert in_time_order(got)
    if warned:  # only the last line's newline can turn into "cut off mid-write"
        assert at == len(TEXT) - 1 and got == RECORDS[:-1]
        return
    # What the format cannot tell from real data: one record changed, in time order
    # (or, in the header, a start time or name: the records are then untouched).
    assert len(got) == len(RECORDS)
    changed = [i for i, (a, b) in enumerate(zip(got, RECORDS)) if a != b]
    assert changed in ([], [line - 2]), (changed, line)


@FUZZ
@given(at=st.data())
def test_a_flipped_bit_in_the_gzip_stream(tmp_path: Path, at) -> None:
    data = bytearray(gzip.compress(TEXT, mtime=0))
    offset = at.draw(st.integers(0, len(data) - 1))
    data[offset] ^= 1 << at.draw(st.integers(0, 7))
    got, warned = read(_write(tmp_path, bytes(data)))
    if isinstance(got, RecordingError):
        return
    if warned:
        # A flip that leaves the last deflate block unfinished looks like a file that was
        # never closed: what was decoded before it is kept, with a warning.
        assert got == RECORDS[: len(got)]
        assert any("never closed" in w or "without its end marker" in w for w in warned), warned
    else:
        # Header bits that carry no data (FTEXT, time, extra flags, OS) change nothing;
        # a flip anywhere else is caught by inflate or the CRC.
        assert got == RECORDS and offset in range(3, 10), offset


def _write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "raw.jsonl.gz"
    path.write_bytes(data)
    return path


@FUZZ
@given(cut=st.integers(0, len(TEXT)), gzipped=st.booleans())
def test_a_file_cut_at_any_byte(tmp_path: Path, cut: int, gzipped: bool) -> None:
    got, warned = read(put(tmp_path, TEXT[:cut], gzipped))
    complete = TEXT.count(b"\n", 0, cut)  # lines with their newline
    rest = TEXT[cut:]
    whole_last = rest.startswith(b"\n")  # cut just before a newline: that line is whole
    if cut < len(LINES[0]):
        assert isinstance(got, RecordingError) and got.line == 1 and got.byte == 0
        return
    n_records = max(complete - 1, 0) + (1 if whole_last and complete >= 1 else 0)
    assert got == RECORDS[:n_records]
    partial = cut < len(TEXT) and not whole_last and TEXT[cut - 1 : cut] != b"\n"
    assert (len(warned) == 1 and "incomplete last line" in warned[0]) == partial, warned


@FUZZ
@given(cut=st.data())
def test_a_gzip_file_cut_at_any_byte(tmp_path: Path, cut) -> None:
    data = gzip.compress(TEXT, mtime=0)
    at = cut.draw(st.integers(0, len(data)))
    got, warned = read(_write(tmp_path, data[:at]))
    if isinstance(got, RecordingError):
        assert got.line == 1  # not even the header line came through
        return
    assert got == RECORDS[: len(got)]
    assert warned or at == len(data)


garbage = st.binary(min_size=0, max_size=60).filter(lambda b: b"\n" not in b)


@FUZZ
@given(index=st.integers(0, len(LINES)), junk=garbage, gzipped=st.booleans())
def test_a_garbage_line(tmp_path: Path, index: int, junk: bytes, gzipped: bool) -> None:
    lines = LINES[:index] + [junk] + LINES[index:]
    got, _ = read(put(tmp_path, b"".join(line + b"\n" for line in lines), gzipped))
    assert isinstance(got, RecordingError) and got.line == index + 1
    assert got.byte >= sum(len(line) + 1 for line in lines[:index])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
WRONG_TYPE = {
    "t": lambda v: isinstance(v, bool) or not isinstance(v, (int, float)),
    "partner": lambda v: not isinstance(v, str),
    "hrm": lambda v: not isinstance(v, str),
    "status": lambda v: not isinstance(v, str),
    "annotation": lambda v: not isinstance(v, str),
    "author": lambda v: not isinstance(v, str),
}


@FUZZ
@given(index=st.integers(1, len(LINES) - 1), which=st.integers(0, 3), value=json_values, gzipped=st.booleans())
def test_a_field_of_the_wrong_type(tmp_path: Path, index: int, which: int, value: object, gzipped: bool) -> None:
    obj = json.loads(LINES[index])
    key = sorted(obj)[which % len(obj)]
    if not WRONG_TYPE[key](value):
        return
    obj[key] = value
    lines = [*LINES[:index], json.dumps(obj).encode(), *LINES[index + 1 :]]
    got, _ = read(put(tmp_path, b"".join(line + b"\n" for line in lines), gzipped))
    assert isinstance(got, RecordingError) and got.line == index + 1
    assert f'"{key}"' in got.detail, got.detail


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_flipped_digit_that_sends_time_backwards_is_caught(tmp_path: Path, gzipped: bool) -> None:
    """t=12.4452 becomes 02.4452 is not JSON; 12.4452 -> 10.4452 runs backwards."""
    index = next(i for i, line in enumerate(LINES) if b'"t": 12.' in line)
    lines = list(LINES)
    lines[index] = lines[index].replace(b'"t": 12.', b'"t": 10.')
    got, _ = read(put(tmp_path, b"".join(line + b"\n" for line in lines), gzipped))
    assert isinstance(got, RecordingError) and got.line == index + 1 and "time goes backwards" in got.detail
