"""coreg-session v1 reading and writing, checked against the format in DESIGN.md.

Expected lines are written out by hand from the format description; bad files are
built byte by byte so that each error's line and byte offset can be stated exactly.
"""

import gzip
import math
import os
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import recording
from devices.recording import (
    RecordingError,
    RecordingWarning,
    RecordingWriter,
    open_recording,
    read_records,
    record_to_line,
)
from devices.records import Annotation, Notification, PartnerInfo, SessionHeader, StatusChange

REPO = Path(__file__).resolve().parents[2]
POLAR = Path(__file__).resolve().parents[2] / "fixtures" / "polar_h10_pvc.jsonl"

HEADER = SessionHeader(
    started_at="2024-05-05T15:00:00Z",
    partners={"a": PartnerInfo("Ann", "Polar H10"), "b": PartnerInfo("Bea", "Wahoo TICKR")},
)
HEADER_LINE = (
    '{"format": "coreg-session", "version": 1, "started_at": "2024-05-05T15:00:00Z", '
    '"partners": {"a": {"name": "Ann", "device": "Polar H10"}, '
    '"b": {"name": "Bea", "device": "Wahoo TICKR"}}}'
)
RECORDS = [
    Notification(0.0, "a", bytes.fromhex("105aaf01")),
    Notification(0.5, "b", bytes.fromhex("1648")),
    StatusChange(0.5, "b", "disconnected"),
    Annotation(12.25, "pursuit starts — «ça»", "practitioner"),
    StatusChange(30.0, "b", "connected"),
    Notification(30.000001, "b", bytes.fromhex("11480004")),
]
RECORD_LINES = [
    '{"t": 0.0, "partner": "a", "hrm": "105aaf01"}',
    '{"t": 0.5, "partner": "b", "hrm": "1648"}',
    '{"t": 0.5, "partner": "b", "status": "disconnected"}',
    '{"t": 12.25, "annotation": "pursuit starts — «ça»", "author": "practitioner"}',
    '{"t": 30.0, "partner": "b", "status": "connected"}',
    '{"t": 30.000001, "partner": "b", "hrm": "11480004"}',
]


def write_bytes(path: Path, lines: list[str | bytes], *, final_newline: bool = True) -> Path:
    """A file holding ``lines`` exactly, each followed by a newline (the last optionally)."""
    data = b"\n".join(line.encode("utf-8") if isinstance(line, str) else line for line in lines)
    path.write_bytes(data + (b"\n" if final_newline else b""))
    return path


def offset_of(lines: list[str], index: int) -> int:
    """Byte offset of line ``index`` (0-based) in a file of newline-terminated lines."""
    return sum(len(line.encode("utf-8")) + 1 for line in lines[:index])


# -- line format and round trips -------------------------------------------------------


def test_record_lines_are_the_documented_json():
    assert record_to_line(HEADER) == HEADER_LINE
    assert [record_to_line(r) for r in RECORDS] == RECORD_LINES


def test_plain_file_holds_exactly_one_line_per_record(tmp_path):
    path = tmp_path / "s.jsonl"
    with RecordingWriter(path, HEADER) as writer:
        for record in RECORDS:
            writer.write(record)
    assert path.read_bytes() == ("\n".join([HEADER_LINE, *RECORD_LINES]) + "\n").encode("utf-8")
    header, records = read_records(path)
    assert header == HEADER
    assert records == RECORDS


def test_gzip_round_trip_and_detection_by_magic_bytes(tmp_path):
    path = tmp_path / "s.jsonl.gz"
    with RecordingWriter(path, HEADER) as writer:
        for record in RECORDS:
            writer.write(record)
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b"
    assert raw[4:8] == b"\0\0\0\0"  # MTIME left out, so equal sessions give equal files
    assert gzip.decompress(raw) == ("\n".join([HEADER_LINE, *RECORD_LINES]) + "\n").encode("utf-8")
    assert read_records(path) == (HEADER, RECORDS)
    # The name does not decide: gzip data under a plain name, plain text under ".gz".
    disguised = tmp_path / "gz_inside.jsonl"
    disguised.write_bytes(raw)
    assert read_records(disguised) == (HEADER, RECORDS)
    plain = write_bytes(tmp_path / "plain_inside.jsonl.gz", [HEADER_LINE, *RECORD_LINES])
    assert read_records(plain) == (HEADER, RECORDS)


def test_polar_file_reads_and_writes_back_byte_for_byte(tmp_path):
    header, records = read_records(POLAR)
    assert header.partners == {"a": PartnerInfo("H10 wearer with frequent PVCs", "Polar H10")}
    assert len(records) == 600
    assert all(isinstance(r, Notification) and r.payload[0] == 0x10 for r in records)
    assert records[2] == Notification(2.2433, "a", bytes([0x10, 0x5A, 0x4B, 0x04, 0xA7, 0x01]))
    copy = tmp_path / "polar.jsonl"
    with RecordingWriter(copy, header) as writer:
        for record in records:
            writer.write(record)
    assert copy.read_bytes() == POLAR.read_bytes()


def test_line_separators_inside_text_stay_inside_one_line(tmp_path):
    # U+2028, U+0085 and "\r" are line breaks to str.splitlines but not in JSON Lines.
    notes = [Annotation(1.0, "a\u2028b\x85c\rd\ne", "x"), Annotation(2.0, "", "")]
    path = tmp_path / "s.jsonl"
    with RecordingWriter(path, HEADER) as writer:
        for note in notes:
            writer.write(note)
    assert path.read_bytes().count(b"\n") == 3
    assert read_records(path)[1] == notes


@st.composite
def recordings(draw):
    times = sorted(draw(st.lists(st.floats(0, 1e6, allow_nan=False), max_size=25)))
    records = []
    for t_s in times:
        kind = draw(st.sampled_from(["hrm", "status", "annotation"]))
        if kind == "hrm":
            records.append(Notification(t_s, draw(st.sampled_from("ab")), draw(st.binary(max_size=20))))
        elif kind == "status":
            status = draw(st.sampled_from(["connected", "disconnected"]))
            records.append(StatusChange(t_s, draw(st.sampled_from("ab")), status))
        else:
            records.append(Annotation(t_s, draw(st.text(max_size=30)), draw(st.text(max_size=10))))
    return records


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=recordings(), gzipped=st.booleans(), name=st.text(max_size=12))
def test_any_valid_records_read_back_unchanged(records, gzipped, name):
    header = SessionHeader("2025-01-31T08:15:00.250000+00:00", {"a": PartnerInfo(name, "H10"), "b": PartnerInfo()})
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("s.jsonl.gz" if gzipped else "s.jsonl")
        with RecordingWriter(path, header) as writer:
            for record in records:
                writer.write(record)
        assert read_records(path) == (header, records)


# -- streaming ------------------------------------------------------------------------


@pytest.mark.parametrize("gzipped", [False, True])
def test_a_long_recording_is_streamed_not_loaded(tmp_path, gzipped):
    per_partner = 36_000  # ten hours at one notification a second
    path = tmp_path / ("long.jsonl.gz" if gzipped else "long.jsonl")
    lines = [HEADER_LINE]
    for i in range(per_partner):
        lines.append(record_to_line(Notification(float(i), "a", bytes([0x10, 60 + i % 40, 0, 4]))))
        lines.append(record_to_line(Notification(i + 0.5, "b", bytes([0x10, 70 + i % 30, 0, 3]))))
    text = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(text, compresslevel=1) if gzipped else text)
    del lines
    tracemalloc.start()
    try:
        count = 0
        last = None
        with open_recording(path) as reader:
            for last in reader:
                count += 1
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 2 * per_partner
    assert last == Notification(per_partner - 0.5, "b", bytes([0x10, 70 + (per_partner - 1) % 30, 0, 3]))
    assert len(text) > 3_000_000
    assert peak_bytes < len(text) / 10


# -- errors name the line -------------------------------------------------------------

GOOD = ['{"t": 0.0, "partner": "a", "hrm": "105aaf01"}', '{"t": 1.0, "partner": "b", "status": "connected"}']

BAD_RECORDS = {
    "not json": ('{"t": 2.0, "partner": "a" "hrm": "10"}', "not JSON"),
    "not an object": ("[2.0, \"a\", \"10\"]", "must be a JSON object"),
    "unknown kind": ('{"t": 2.0, "partner": "a", "heart": "10"}', "unknown record kind"),
    "two kinds": ('{"t": 2.0, "partner": "a", "hrm": "10", "status": "connected"}', "ambiguous"),
    "missing partner": ('{"t": 2.0, "hrm": "1050"}', "partner"),
    "missing t": ('{"partner": "a", "hrm": "1050"}', "lacks the field(s) t"),
    "extra field": ('{"t": 2.0, "partner": "a", "hrm": "1050", "rr": [1]}', "unexpected field(s) rr"),
    "t a string": ('{"t": "2.0", "partner": "a", "hrm": "1050"}', '"t" must be a number'),
    "t a boolean": ('{"t": true, "partner": "a", "hrm": "1050"}', '"t" must be a number'),
    "t NaN": ('{"t": NaN, "partner": "a", "hrm": "1050"}', "finite"),
    "t infinite": ('{"t": Infinity, "partner": "a", "hrm": "1050"}', "finite"),
    "t overflowing": ('{"t": 1e400, "partner": "a", "hrm": "1050"}', "finite"),
    "t huge integer": ('{"t": 1' + "0" * 400 + ', "partner": "a", "hrm": "1050"}', "finite"),
    "t negative": ('{"t": -0.5, "partner": "a", "hrm": "1050"}', "negative"),
    "partner a number": ('{"t": 2.0, "partner": 1, "hrm": "1050"}', '"partner" must be a string'),
    "unknown partner": ('{"t": 2.0, "partner": "c", "hrm": "1050"}', "partner 'c'"),
    "hrm odd length": ('{"t": 2.0, "partner": "a", "hrm": "105"}', "hexadecimal"),
    "hrm not hex": ('{"t": 2.0, "partner": "a", "hrm": "1g50"}', "hexadecimal"),
    "hrm with a space": ('{"t": 2.0, "partner": "a", "hrm": "10 50"}', "hexadecimal"),
    "hrm a list": ('{"t": 2.0, "partner": "a", "hrm": [16, 80]}', '"hrm" must be a string'),
    "bad status": ('{"t": 2.0, "partner": "a", "status": "lost"}', '"status" must be'),
    "author a number": ('{"t": 2.0, "annotation": "x", "author": 3}', '"author" must be a string'),
    "duplicate key": ('{"t": 2.0, "t": 3.0, "annotation": "x", "author": ""}', "'t' appears twice"),
    "empty line": ("", "empty line"),
}


@pytest.mark.parametrize("gzipped", [False, True])
@pytest.mark.parametrize("case", sorted(BAD_RECORDS))
def test_a_bad_record_in_the_middle_names_its_line(tmp_path, case, gzipped):
    bad, detail = BAD_RECORDS[case]
    lines = [HEADER_LINE, *GOOD, bad, '{"t": 5.0, "partner": "a", "hrm": "1050"}']
    path = write_bytes(tmp_path / "bad.jsonl", lines)
    if gzipped:
        path.write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(RecordingError) as caught:
        read_records(path)
    error = caught.value
    assert error.line == 4
    assert error.path == str(path)
    assert detail in error.detail
    assert str(error).startswith(f"{path}, line 4, byte ")
    start = offset_of(lines, 3)
    if case == "not json":
        assert error.byte == start + bad.index('"hrm"')  # where the comma is missing
    else:
        assert error.byte == start


def test_records_before_the_bad_line_are_delivered(tmp_path):
    path = write_bytes(tmp_path / "bad.jsonl", [HEADER_LINE, *GOOD, '{"t": 2.0, "partner": "a", "hrm": "zz"}'])
    seen = []
    with open_recording(path) as reader, pytest.raises(RecordingError):
        for record in reader:
            seen.append(record)
    assert seen == [Notification(0.0, "a", bytes.fromhex("105aaf01")), StatusChange(1.0, "b", "connected")]


def test_time_going_backwards_is_an_error_but_equal_times_are_not(tmp_path):
    lines = [HEADER_LINE, *GOOD, '{"t": 1.0, "annotation": "same time", "author": ""}',
             '{"t": 0.999, "partner": "a", "hrm": "1050"}']
    with pytest.raises(RecordingError) as caught:
        read_records(write_bytes(tmp_path / "back.jsonl", lines))
    assert caught.value.line == 5
    assert caught.value.byte == offset_of(lines, 4)
    assert "backwards: t=0.999 s after t=1.0 s" in caught.value.detail


def test_partner_must_be_listed_in_the_header_when_it_lists_any(tmp_path):
    only_a = '{"format": "coreg-session", "version": 1, "started_at": "2024-05-05T15:00:00Z", "partners": {"a": {"name": "", "device": ""}}}'
    with pytest.raises(RecordingError) as caught:
        read_records(write_bytes(tmp_path / "a.jsonl", [only_a, GOOD[0], GOOD[1]]))
    assert caught.value.line == 3
    assert "partner 'b' is not one of this recording's partners (a)" in caught.value.detail
    # With no partners listed, "a" and "b" are the format's own names.
    unlisted = only_a.replace('{"a": {"name": "", "device": ""}}', "{}")
    header, records = read_records(write_bytes(tmp_path / "none.jsonl", [unlisted, *GOOD]))
    assert header.partners == {} and len(records) == 2


def test_non_utf8_bytes_are_reported_with_their_byte_offset(tmp_path):
    bad = b'{"t": 2.0, "annotation": "caf\xe9", "author": ""}'
    lines = [HEADER_LINE, *GOOD]
    path = write_bytes(tmp_path / "latin1.jsonl", [*lines, bad, GOOD[1].replace("1.0", "3.0")])
    with pytest.raises(RecordingError) as caught:
        read_records(path)
    assert caught.value.line == 4
    assert caught.value.byte == offset_of(lines, 3) + bad.index(b"\xe9")
    assert path.read_bytes()[caught.value.byte] == 0xE9
    assert "0xe9" in caught.value.detail


HEADER_CASES = {
    "a record first": ('{"t": 0.0, "partner": "a", "hrm": "1050"}', "not a coreg-session recording"),
    "wrong format name": (HEADER_LINE.replace("coreg-session", "coreg-sessions"), "not a coreg-session recording"),
    "version 2": (HEADER_LINE.replace('"version": 1', '"version": 2'), "unsupported version 2"),
    "version as text": (HEADER_LINE.replace('"version": 1', '"version": "1"'), "unsupported version '1'"),
    "version missing": (HEADER_LINE.replace('"version": 1, ', ""), "unsupported version None"),
    "started_at missing": (HEADER_LINE.replace('"started_at": "2024-05-05T15:00:00Z", ', ""), "started_at"),
    "started_at not a time": (HEADER_LINE.replace("2024-05-05T15:00:00Z", "yesterday"), "ISO 8601"),
    "unknown partner key": (HEADER_LINE.replace('"b": {', '"c": {'), "unknown partner 'c'"),
    "partners a list": (HEADER_LINE[: HEADER_LINE.index('"partners"')] + '"partners": []}', '"partners" must be an object'),
    "not json": (HEADER_LINE[:-1] + "]", "not JSON"),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_a_bad_header_is_reported_on_line_1(tmp_path, case):
    first, detail = HEADER_CASES[case]
    with pytest.raises(RecordingError) as caught:
        open_recording(write_bytes(tmp_path / "h.jsonl", [first, *GOOD]))
    assert caught.value.line == 1
    assert detail in caught.value.detail


@pytest.mark.parametrize("content", [b"", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"])
def test_an_empty_file_has_no_header(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(RecordingError) as caught, pytest.warns(RecordingWarning) if content else _no_op():
        open_recording(path)
    assert (caught.value.line, caught.value.byte) == (1, 0)
    assert "header line is missing" in caught.value.detail


class _no_op:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_corrupt_gzip_data_is_an_error(tmp_path):
    raw = bytearray(gzip.compress(("\n".join([HEADER_LINE, *RECORD_LINES]) + "\n").encode()))
    raw[-6] ^= 0xFF  # inside the CRC-32 trailer
    path = tmp_path / "crc.jsonl.gz"
    path.write_bytes(bytes(raw))
    with pytest.raises(RecordingError) as caught:
        read_records(path)
    assert "corrupt gzip data" in caught.value.detail


# -- what a crash leaves behind -------------------------------------------------------


@pytest.mark.parametrize("tail", [b'{"t": 2.0, "partner": "a", "hr', b'{"t": 2.0, "annotation": "caf\xc3'])
def test_an_incomplete_last_line_is_dropped_with_a_warning(tmp_path, tail):
    path = write_bytes(tmp_path / "cut.jsonl", [HEADER_LINE, *GOOD, tail], final_newline=False)
    with pytest.warns(RecordingWarning, match=r"line 4, byte \d+: dropped an incomplete last line") as caught:
        with open_recording(path) as reader:
            records = list(reader)
    assert len(records) == 2
    assert len(reader.warnings) == 1
    assert f"byte {offset_of([HEADER_LINE, *GOOD], 3)}" in reader.warnings[0]
    assert str(caught[0].message) == reader.warnings[0]


def test_a_complete_last_line_without_newline_is_kept(tmp_path, recwarn):
    path = write_bytes(tmp_path / "nonl.jsonl", [HEADER_LINE, *GOOD], final_newline=False)
    with open_recording(path) as reader:
        assert len(list(reader)) == 2
    assert reader.warnings == []
    assert not [w for w in recwarn if issubclass(w.category, RecordingWarning)]


def test_an_incomplete_last_line_that_parses_badly_elsewhere_is_still_an_error(tmp_path):
    # Only the unterminated last line gets the benefit of the doubt; the same text
    # followed by a newline is a bad line.
    path = write_bytes(tmp_path / "mid.jsonl", [HEADER_LINE, GOOD[0], '{"t": 2.0, "partner": "a", "hr', GOOD[1]])
    with pytest.raises(RecordingError) as caught:
        read_records(path)
    assert caught.value.line == 3


def test_a_gzip_file_that_was_never_closed_reads_up_to_the_last_line(tmp_path):
    path = tmp_path / "open.jsonl.gz"
    writer = RecordingWriter(path, HEADER)
    try:
        for record in RECORDS:
            writer.write(record)
        copy = tmp_path / "copy.jsonl.gz"
        shutil.copyfile(path, copy)
    finally:
        writer.close()
    with pytest.warns(RecordingWarning, match="without its end marker"):
        with open_recording(copy) as reader:
            assert reader.header == HEADER
            assert list(reader) == RECORDS
    # Cut inside the last deflate block: the lines before it survive.
    copy.write_bytes(copy.read_bytes()[:-12])
    with pytest.warns(RecordingWarning):
        assert read_records(copy) == (HEADER, RECORDS[:-1])


KILLED_WRITER = """
import os, signal, sys
from devices.recording import RecordingWriter
from devices.records import Notification, SessionHeader
writer = RecordingWriter(sys.argv[1], SessionHeader("2024-05-05T15:00:00Z"))
for i in range(50):
    writer.write(Notification(i * 0.75, "a", bytes([0x10, 60 + i])))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("name", ["killed.jsonl", "killed.jsonl.gz"])
def test_a_killed_writer_loses_no_written_line(tmp_path, name):
    path = tmp_path / name
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(path)], env=env, timeout=60)
    assert done.returncode == -9
    with pytest.warns(RecordingWarning) if name.endswith(".gz") else _no_op():
        header, records = read_records(path)
    assert records == [Notification(i * 0.75, "a", bytes([0x10, 60 + i])) for i in range(50)]


# -- the writer -----------------------------------------------------------------------


def test_fsync_happens_at_creation_at_least_once_per_interval_and_on_close(tmp_path, monkeypatch):
    now = [100.0]
    synced_at = []
    monkeypatch.setattr(recording, "monotonic", lambda: now[0])
    monkeypatch.setattr(recording.os, "fsync", lambda fd: synced_at.append(now[0]))
    for name in ("s.jsonl", "s.jsonl.gz"):
        synced_at.clear()
        now[0] = 100.0
        writer = RecordingWriter(tmp_path / name, HEADER, fsync_interval_s=1.0)
        for t_s in (0.2, 0.5, 0.999, 1.0, 1.5, 1.99, 2.2, 2.3):
            now[0] = 100.0 + t_s
            writer.write(Notification(t_s, "a", b"\x10\x3c"))
        now[0] = 103.0
        writer.close()
        writer.close()
        assert synced_at == [100.0, 101.0, 102.2, 103.0]
        assert len(read_records(tmp_path / name)[1]) == 8


def test_every_line_reaches_the_file_at_once(tmp_path):
    path = tmp_path / "s.jsonl"
    with RecordingWriter(path, HEADER, fsync_interval_s=3600) as writer:
        for count, record in enumerate(RECORDS, start=1):
            writer.write(record)
            assert path.read_bytes().count(b"\n") == count + 1


def test_the_writer_refuses_what_a_reader_would_reject(tmp_path):
    path = tmp_path / "s.jsonl"
    with RecordingWriter(path, HEADER) as writer:
        writer.write(Notification(5.0, "a", b"\x10\x3c"))
        cases = [
            (Notification(4.0, "a", b"\x10\x3c"), "records are ordered by time"),
            (Notification(6.0, "c", b"\x10\x3c"), "partner 'c'"),
            (Notification(math.nan, "a", b"\x10\x3c"), "finite"),
            (Notification(-1.0, "a", b"\x10\x3c"), "negative"),
            (StatusChange(6.0, "a", "gone"), '"status" must be'),
            (Annotation(6.0, "half a surrogate \ud800", ""), "not valid Unicode"),
        ]
        for record, detail in cases:
            with pytest.raises(RecordingError, match="refusing to write") as caught:
                writer.write(record)
            assert detail in caught.value.detail
            assert caught.value.line == 3
        with pytest.raises(TypeError):
            writer.write({"t": 6.0, "annotation": "x"})
        writer.write(Notification(5.0, "b", b"\x10\x3c"))
    assert read_records(path)[1] == [Notification(5.0, "a", b"\x10\x3c"), Notification(5.0, "b", b"\x10\x3c")]
    with pytest.raises(ValueError, match="already closed"):
        writer.write(Notification(6.0, "a", b"\x10\x3c"))


def test_the_writer_never_overwrites_a_recording(tmp_path):
    path = write_bytes(tmp_path / "old.jsonl", [HEADER_LINE])
    with pytest.raises(FileExistsError):
        RecordingWriter(path, HEADER)
    assert path.read_bytes() == (HEADER_LINE + "\n").encode()
