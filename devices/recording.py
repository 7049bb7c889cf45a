"""Read and write coreg-session v1 recordings: JSON Lines, UTF-8, optionally gzip.

Follows DESIGN.md, "The recording format: coreg-session v1". The reader streams line by
line (a ten-hour session is never held in memory), checks every line strictly and
names the file, line and byte of the first problem. A last line cut off mid-write, or a
gzip stream that was never closed, is what a crash leaves behind: the complete lines
are kept and the rest is dropped with a warning. The writer flushes every line and
fsyncs at least once per ``fsync_interval_s``, so a killed process loses at most the
last second.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import warnings
import zlib
from datetime import datetime
from pathlib import Path
from time import monotonic
from typing import BinaryIO, Callable, Iterator

from devices.records import (
    FORMAT_NAME,
    FORMAT_VERSION,
    PARTNERS,
    Annotation,
    Notification,
    PartnerInfo,
    Record,
    SessionHeader,
    StatusChange,
)

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 16 * 1024
# Real lines are under 200 bytes; the cap keeps a file without newlines from being
# read into memory whole.
MAX_LINE_BYTES = 1 << 20
STATUSES = ("connected", "disconnected")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
_RECORD_KEYS = {
    "hrm": ({"t", "partner", "hrm"}, set()),
    "status": ({"t", "partner", "status"}, set()),
    "annotation": ({"t", "annotation"}, {"author"}),
}
_HEADER_KEYS = {"format", "version", "started_at", "partners"}


class RecordingError(Exception):
    """A recording that cannot be read or written as coreg-session v1.

    ``path`` names the file, ``line`` the 1-based line (or None), ``byte`` the offset
    in the decompressed stream (or None), ``detail`` what is wrong.
    """

    def __init__(
        self, path: str | os.PathLike, detail: str, *, line: int | None = None, byte: int | None = None
    ) -> None:
        self.path = str(path)
        self.line = line
        self.byte = byte
        self.detail = detail
        where = self.path
        if line is not None:
            where += f", line {line}"
        if byte is not None:
            where += f", byte {byte}"
        super().__init__(f"{where}: {detail}")


class RecordingWarning(UserWarning):
    """Something in a recording was dropped or repaired while reading it."""


class _Invalid(ValueError):
    """A line's content is wrong; the caller adds the file and line."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Invalid(f"the key {dup!r} appears twice")
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys)


def _string(obj: dict, key: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str):
        raise _Invalid(f'"{key}" must be a string, got {_show(value)}')
    return value


def _check_keys(obj: dict, required: set[str], optional: set[str], what: str) -> None:
    if obj.keys() == required:
        return
    missing = sorted(required - obj.keys())
    if missing:
        raise _Invalid(f"{what} lacks the field(s) {', '.join(missing)}")
    extra = sorted(obj.keys() - required - optional)
    if extra:
        raise _Invalid(f"{what} has unexpected field(s) {', '.join(extra)}")


def _header_from_json(obj: object) -> SessionHeader:
    """Check a decoded first line and build the SessionHeader it describes."""
    if not isinstance(obj, dict) or obj.get("format") != FORMAT_NAME:
        raise _Invalid(f'not a coreg-session recording: the first line must carry "format": "{FORMAT_NAME}"')
    version = obj.get("version")
    if isinstance(version, bool) or version != FORMAT_VERSION or not isinstance(version, int):
        raise _Invalid(f"unsupported version {_show(version)}: this reader reads version {FORMAT_VERSION}")
    _check_keys(obj, {"started_at"}, _HEADER_KEYS, "the header")
    started_at = _string(obj, "started_at")
    try:
        datetime.fromisoformat(started_at)
    except ValueError:
        raise _Invalid(f'"started_at" is not an ISO 8601 time: {_show(started_at)}') from None
    raw_partners = obj.get("partners", {})
    if not isinstance(raw_partners, dict):
        raise _Invalid(f'"partners" must be an object, got {_show(raw_partners)}')
    partners: dict[str, PartnerInfo] = {}
    for key, info in raw_partners.items():
        if key not in PARTNERS:
            raise _Invalid(f"unknown partner {key!r} in the header (expected one of {', '.join(PARTNERS)})")
        if not isinstance(info, dict):
            raise _Invalid(f"partner {key!r} must be an object, got {_show(info)}")
        _check_keys(info, set(), {"name", "device"}, f"partner {key!r}")
        partners[key] = PartnerInfo(name=_string(info, "name", ""), device=_string(info, "device", ""))
    return SessionHeader(started_at=started_at, partners=partners)


def _time_s(obj: dict) -> float:
    t = obj["t"]
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise _Invalid(f'"t" must be a number of seconds, got {_show(t)}')
    try:
        t_s = float(t)
    except OverflowError:
        t_s = math.inf
    if not math.isfinite(t_s):
        raise _Invalid(f'"t" must be a finite number of seconds, got {_show(t)}')
    if t_s < 0:
        raise _Invalid(f'"t" must not be negative, got {t_s!r}')
    return t_s


def _partner(obj: dict, header: SessionHeader) -> str:
    partner = _string(obj, "partner")
    allowed = tuple(header.partners) or PARTNERS
    if partner not in allowed:
        raise _Invalid(f"partner {partner!r} is not one of this recording's partners ({', '.join(allowed)})")
    return partner


def _record_from_json(obj: object, header: SessionHeader) -> Record:
    """Check a decoded record line and build the Record it describes."""
    if not isinstance(obj, dict):
        raise _Invalid(f"a record must be a JSON object, got {_show(obj)}")
    kinds = [kind for kind in _RECORD_KEYS if kind in obj]
    if len(kinds) != 1:
        if kinds:
            raise _Invalid(f"ambiguous record: it has {' and '.join(kinds)}")
        raise _Invalid(f"unknown record kind: none of hrm, status, annotation among {sorted(obj)}")
    kind = kinds[0]
    required, optional = _RECORD_KEYS[kind]
    if obj.keys() != required:
        _check_keys(obj, required, optional, f"a {kind} record")
    t_s = _time_s(obj)
    if kind == "hrm":
        partner = _partner(obj, header)
        hrm = _string(obj, "hrm")
        if not _HEX.fullmatch(hrm):
            raise _Invalid(f'"hrm" must be hexadecimal bytes, got {_show(hrm)}')
        return Notification(t_s=t_s, partner=partner, payload=bytes.fromhex(hrm))
    if kind == "status":
        partner = _partner(obj, header)
        status = _string(obj, "status")
        if status not in STATUSES:
            raise _Invalid(f'"status" must be "connected" or "disconnected", got {_show(status)}')
        return StatusChange(t_s=t_s, partner=partner, status=status)
    return Annotation(t_s=t_s, text=_string(obj, "annotation"), author=_string(obj, "author", ""))


def record_to_line(record: Record | SessionHeader) -> str:
    """The exact text (without newline) of a header or record line, as written."""
    return json.dumps(record.to_json(), ensure_ascii=False)


class RecordingWriter:
    """Write a recording line by line; the header is written when the file is created.

    A ``.gz`` suffix gives a gzip file. Every line is flushed to the operating system at
    once, and fsynced when ``fsync_interval_s`` has passed since the last fsync (and on
    close). An existing file is never overwritten (FileExistsError). Records that a
    reader would reject (time going backwards, unknown partner, ...) raise
    RecordingError and are not written.
    """

    def __init__(
        self, path: str | os.PathLike, header: SessionHeader, *, fsync_interval_s: float = 1.0
    ) -> None:
        if not fsync_interval_s >= 0:
            raise ValueError(f"fsync_interval_s must be >= 0 seconds, got {fsync_interval_s!r}")
        self.path = Path(path)
        self.header = header
        self._fsync_interval_s = fsync_interval_s
        self._lines = 0
        self._last_t_s = 0.0
        self._closed = False
        self._check(lambda: _header_from_json(header.to_json()))
        header_line = self._encode(header)
        self._raw: BinaryIO = open(self.path, "xb")
        try:
            # MTIME 0 ("not given", RFC 1952 2.3.1): the start time is in the header
            # line, and a fixed value makes equal sessions give equal files.
            self._gzip = (
                gzip.GzipFile(filename="", fileobj=self._raw, mode="wb", mtime=0)
                if self.path.suffix.lower() == ".gz"
                else None
            )
            self._emit(header_line)
            self._fsync()
        except BaseException:
            self._raw.close()
            raise

    def _check(self, build: Callable[[], Record | SessionHeader]) -> Record | SessionHeader:
        try:
            return build()
        except (_Invalid, AttributeError, TypeError) as exc:
            raise RecordingError(self.path, f"refusing to write: {exc}", line=self._lines + 1) from None

    def _encode(self, record: Record | SessionHeader) -> bytes:
        try:
            return (record_to_line(record) + "\n").encode("utf-8")
        except UnicodeEncodeError as exc:
            raise RecordingError(
                self.path, f"refusing to write text that is not valid Unicode: {exc.reason}", line=self._lines + 1
            ) from None

    def _emit(self, data: bytes) -> None:
        if self._gzip is not None:
            self._gzip.write(data)
            # A sync flush ends the deflate block on a byte boundary, so everything
            # written so far can be decompressed even if the stream is never closed.
            self._gzip.flush(zlib.Z_SYNC_FLUSH)
        else:
            self._raw.write(data)
            self._raw.flush()
        self._lines += 1

    def _fsync(self) -> None:
        os.fsync(self._raw.fileno())
        self._last_fsync = monotonic()

    def write(self, record: Record) -> None:
        """Append one record as one JSON line; flushed at once, fsynced at least once a second."""
        if self._closed:
            raise ValueError(f"{self.path}: the recording is already closed")
        if not isinstance(record, (Notification, StatusChange, Annotation)):
            raise TypeError(f"expected a Notification, StatusChange or Annotation, got {type(record).__name__}")
        checked = self._check(lambda: _record_from_json(record.to_json(), self.header))
        if checked.t_s < self._last_t_s:
            raise RecordingError(
                self.path,
                f"refusing to write t={checked.t_s!r} s after t={self._last_t_s!r} s: records are ordered by time",
                line=self._lines + 1,
            )
        self._emit(self._encode(record))
        self._last_t_s = checked.t_s
        if monotonic() - self._last_fsync >= self._fsync_interval_s:
            self._fsync()

    def close(self) -> None:
        """Finish the file (gzip trailer), fsync and close it; calling again does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._gzip is not None:
                self._gzip.close()  # writes the trailer; leaves self._raw open
            self._raw.flush()
            self._fsync()
        finally:
            self._raw.close()

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RecordingReader:
    """A recording opened for reading: ``header`` at once, records by iterating.

    Iteration streams the file and can be done once. ``warnings`` lists what was
    dropped (an incomplete last line, a gzip stream that was never closed); each is
    also issued as a RecordingWarning.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        self.warnings: list[str] = []
        self._raw: BinaryIO = open(path, "rb")
        try:
            gzipped = self._raw.read(2) == GZIP_MAGIC
            self._raw.seek(0)
            self._stream: BinaryIO = gzip.GzipFile(fileobj=self._raw, mode="rb") if gzipped else self._raw
            self._lines = self._split_lines()
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise
        self._last_t_s = 0.0

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, RecordingWarning, stacklevel=4)

    def _read_chunk(self, line: int, byte: int) -> bytes:
        try:
            return self._stream.read1(CHUNK_BYTES)
        except EOFError:
            # read1 raises only when no data is left, so nothing decoded is lost.
            self._warn(
                f"{self.path}: the gzip stream ends without its end marker (the recording "
                f"was not closed); keeping the {byte} byte(s) of text that reached the file"
            )
            return b""
        except (OSError, zlib.error) as exc:
            raise RecordingError(self.path, f"corrupt gzip data: {exc}", line=line, byte=byte) from None

    def _split_lines(self) -> Iterator[tuple[int, int, bytes, bool]]:
        """Yield (line number, byte offset, bytes without newline, ended by a newline)."""
        line, offset, pending = 1, 0, b""
        while chunk := self._read_chunk(line, offset + len(pending)):
            buffer, start = pending + chunk, 0
            while (end := buffer.find(b"\n", start)) >= 0:
                yield line, offset, buffer[start:end], True
                line, offset, start = line + 1, offset + end + 1 - start, end + 1
            pending = buffer[start:]
            if len(pending) > MAX_LINE_BYTES:
                raise RecordingError(
                    self.path, f"line longer than {MAX_LINE_BYTES} bytes", line=line, byte=offset
                )
        if pending:
            yield line, offset, pending, False

    def _decode(self, line: int, offset: int, data: bytes) -> object:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordingError(
                self.path, f"not UTF-8: byte 0x{data[exc.start]:02x} cannot start or continue a character",
                line=line, byte=offset + exc.start,
            ) from None
        if not text.strip():
            raise RecordingError(self.path, "empty line", line=line, byte=offset)
        try:
            return _DECODER.decode(text)
        except json.JSONDecodeError as exc:
            at = offset + len(text[: exc.pos].encode("utf-8"))
            raise RecordingError(self.path, f"not JSON: {exc.msg}", line=line, byte=at) from None
        except (ValueError, RecursionError) as exc:
            raise RecordingError(self.path, f"not usable JSON: {exc}", line=line, byte=offset) from None

    def _read_header(self) -> SessionHeader:
        first = next(self._lines, None)
        if first is None:
            raise RecordingError(self.path, "empty file: the header line is missing", line=1, byte=0)
        line, offset, data, ended = first
        try:
            obj = self._decode(line, offset, data)
        except RecordingError as exc:
            if ended:
                raise
            raise RecordingError(
                self.path, f"the header line is incomplete (cut off mid-write?): {exc.detail}", line=line, byte=offset
            ) from None
        try:
            return _header_from_json(obj)
        except _Invalid as exc:
            raise RecordingError(self.path, str(exc), line=line, byte=offset) from None

    def __iter__(self) -> Iterator[Record]:
        for line, offset, data, ended in self._lines:
            try:
                obj = self._decode(line, offset, data)
            except RecordingError:
                if ended:
                    raise
                self._warn(
                    f"{self.path}, line {line}, byte {offset}: dropped an incomplete last line "
                    f"of {len(data)} byte(s) (the recording was cut off mid-write)"
                )
                return
            try:
                record = _record_from_json(obj, self.header)
            except _Invalid as exc:
                raise RecordingError(self.path, str(exc), line=line, byte=offset) from None
            if record.t_s < self._last_t_s:
                raise RecordingError(
                    self.path,
                    f"time goes backwards: t={record.t_s!r} s after t={self._last_t_s!r} s",
                    line=line, byte=offset,
                )
            self._last_t_s = record.t_s
            yield record

    def close(self) -> None:
        """Release the file; calling again does nothing."""
        stream = getattr(self, "_stream", None)
        if stream is not None and stream is not self._raw:
            stream.close()
        self._raw.close()

    def __enter__(self) -> RecordingReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def open_recording(path: str | os.PathLike) -> RecordingReader:
    """Open a recording (plain or gzip, told apart by its first bytes) and read its header."""
    return RecordingReader(path)


def read_records(path: str | os.PathLike) -> tuple[SessionHeader, list[Record]]:
    """The header and every record of a (small) recording, in file order."""
    with open_recording(path) as reader:
        return reader.header, list(reader)
