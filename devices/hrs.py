"""Heart Rate Service characteristics: parse and build their payloads.

Follows the Bluetooth SIG GATT Specification Supplement, sections 3.106 (Heart Rate
Measurement, 0x2A37), 3.31 (Body Sensor Location, 0x2A38) and 3.27 (Battery Level,
0x2A19). All multi-byte fields are little-endian.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

import numpy as np

HEART_RATE_SERVICE_UUID = "0000180d-0000-1000-8000-00805f9b34fb"
HEART_RATE_MEASUREMENT_UUID = "00002a37-0000-1000-8000-00805f9b34fb"
BODY_SENSOR_LOCATION_UUID = "00002a38-0000-1000-8000-00805f9b34fb"
BATTERY_SERVICE_UUID = "0000180f-0000-1000-8000-00805f9b34fb"
BATTERY_LEVEL_UUID = "00002a19-0000-1000-8000-00805f9b34fb"

FLAG_HR_UINT16 = 0x01
FLAG_CONTACT_DETECTED = 0x02
FLAG_CONTACT_SUPPORTED = 0x04
FLAG_ENERGY_PRESENT = 0x08
FLAG_RR_PRESENT = 0x10

RR_UNITS_PER_SECOND = 1024
ENERGY_SATURATED_KJ = 0xFFFF

BODY_SENSOR_LOCATIONS = {
    0: "other",
    1: "chest",
    2: "wrist",
    3: "finger",
    4: "hand",
    5: "ear lobe",
    6: "foot",
}


class MalformedPayload(ValueError):
    """A characteristic payload that cannot be what its flags say it is.

    ``reason`` is a short stable code (for counting), ``offset`` the byte where
    the problem was found.
    """

    def __init__(self, reason: str, offset: int, detail: str) -> None:
        super().__init__(f"malformed payload at byte {offset}: {detail} [{reason}]")
        self.reason = reason
        self.offset = offset
        self.detail = detail


@dataclass(frozen=True, slots=True)
class HeartRateMeasurement:
    """One parsed Heart Rate Measurement notification.

    ``rr_ms`` holds the RR intervals in milliseconds, exactly ``units * 1000 / 1024``;
    ``contact`` is None when the sensor does not support contact detection;
    ``rr_zero_dropped`` counts RR values of 0 that were removed from ``rr_ms``.
    """

    hr_bpm: int
    rr_ms: tuple[float, ...] = ()
    contact: bool | None = None
    energy_kj: int | None = None
    rr_zero_dropped: int = 0

    @property
    def energy_saturated(self) -> bool:
        """True when the energy counter has reached its ceiling (0xFFFF kJ)."""
        return self.energy_kj == ENERGY_SATURATED_KJ


def _require(payload: bytes, offset: int, size: int, field: str) -> None:
    if len(payload) < offset + size:
        raise MalformedPayload(
            "truncated",
            len(payload),
            f"{field} needs bytes {offset}..{offset + size - 1} "
            f"but the payload is {len(payload)} byte(s) long",
        )


def parse_hrm(payload: bytes | bytearray | memoryview) -> HeartRateMeasurement:
    """Parse a Heart Rate Measurement (0x2A37) payload.

    Reserved flag bits (5-7) are ignored, as the specification asks of receivers.
    RR values of 0 are physiologically impossible: they are dropped and counted.
    Raises MalformedPayload (a ValueError) naming the byte and the reason when the
    payload is shorter than its flags require, ends in an odd byte after the RR
    values, or carries a heart rate of 0 with no RR interval.
    """
    data = bytes(payload)
    _require(data, 0, 1, "the flags byte")
    flags = data[0]
    offset = 1
    if flags & FLAG_HR_UINT16:
        _require(data, offset, 2, "the uint16 heart rate")
        hr_bpm = int.from_bytes(data[offset : offset + 2], "little")
        offset += 2
    else:
        _require(data, offset, 1, "the uint8 heart rate")
        hr_bpm = data[offset]
        offset += 1

    contact: bool | None = None
    if flags & FLAG_CONTACT_SUPPORTED:
        contact = bool(flags & FLAG_CONTACT_DETECTED)

    energy_kj: int | None = None
    if flags & FLAG_ENERGY_PRESENT:
        _require(data, offset, 2, "the energy expended field")
        energy_kj = int.from_bytes(data[offset : offset + 2], "little")
        offset += 2

    rr_ms: tuple[float, ...] = ()
    zeros = 0
    if flags & FLAG_RR_PRESENT:
        rest = len(data) - offset
        if rest % 2:
            raise MalformedPayload(
                "odd_rr_bytes",
                len(data) - 1,
                f"{rest} byte(s) of RR intervals is not a whole number of uint16 values",
            )
        units = struct.unpack_from(f"<{rest // 2}H", data, offset)
        zeros = units.count(0)
        rr_ms = tuple(u * 1000 / RR_UNITS_PER_SECOND for u in units if u)
    # Without the RR flag, octets after the known fields are ignored: the
    # characteristic may be extended by later versions of the specification.

    if hr_bpm == 0 and not rr_ms:
        raise MalformedPayload(
            "hr_zero_no_rr", 1, "heart rate is 0 and the notification carries no RR interval"
        )
    return HeartRateMeasurement(
        hr_bpm=hr_bpm, rr_ms=rr_ms, contact=contact, energy_kj=energy_kj, rr_zero_dropped=zeros
    )


@dataclass(frozen=True, eq=False)
class HeartRateMeasurements:
    """Many Heart Rate Measurement notifications parsed at once, column by column.

    Per notification (arrays of the payloads' length): ``ok`` is False where
    ``parse_hrm`` would raise, and ``malformed`` maps those indices to its reason code;
    ``hr_bpm`` is the heart rate (0 where malformed); ``rr_count`` is how many RR
    values the notification adds to ``rr_units`` and ``rr_zero_dropped`` how many zeros
    it dropped (both 0 where malformed). ``rr_units`` holds the nonzero RR intervals of
    every well-formed notification, in order, in 1/1024 s (int64).
    """

    ok: np.ndarray
    hr_bpm: np.ndarray
    rr_count: np.ndarray
    rr_zero_dropped: np.ndarray
    rr_units: np.ndarray
    malformed: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))

    def __len__(self) -> int:
        return len(self.ok)


def _lengths(payloads: Sequence[bytes | bytearray | memoryview]) -> np.ndarray:
    """Each payload's length in bytes (int64)."""
    try:
        # Payloads of a strap are a few bytes: their lengths fit one byte each, and
        # bytearray() takes them in one C loop, at 0.7 of np.fromiter's cost (and 0.85
        # of bytes(), which grows its buffer less cheaply from an iterator).
        return np.frombuffer(bytearray(map(len, payloads)), dtype=np.uint8).astype(np.int64)
    except ValueError:  # a payload of 256 bytes or more
        return np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))


# Per flags byte (all 256 values): the byte where the RR values start (after the flags,
# a uint8 or uint16 heart rate and the energy field if present), and whether the RR
# flag is set. One table lookup per payload instead of a mask per flag.
_ALL_FLAGS = np.arange(256)
_RR_OFFSET = 2 + (_ALL_FLAGS & FLAG_HR_UINT16) + 2 * ((_ALL_FLAGS & FLAG_ENERGY_PRESENT) != 0)
_RR_PRESENT = (_ALL_FLAGS & FLAG_RR_PRESENT) != 0


def parse_hrm_many(payloads: Sequence[bytes | bytearray | memoryview]) -> HeartRateMeasurements:
    """Parse many Heart Rate Measurement (0x2A37) payloads in one vectorised pass.

    Gives what ``parse_hrm`` gives for each payload (heart rate, nonzero RR values in
    1/1024 s, zeros dropped) and flags exactly the payloads it rejects, with the same
    reason codes; contact and energy are read past but not returned. Layout as in
    ``parse_hrm``: GATT Specification Supplement 3.106, little-endian fields.
    """
    n = len(payloads)
    length = _lengths(payloads)
    start = np.cumsum(length)
    start -= length
    # Padding lets the header be read at fixed offsets from every start, short or
    # empty payloads included; what is read past a payload's end is masked below.
    raw = b"".join(payloads) + bytes(4)
    buf = np.frombuffer(raw, dtype=np.uint8)
    # The little-endian uint16 that starts at each byte: an unaligned view with a
    # one-byte stride, so any uint16 field is read with one gather, not two and a shift.
    word = np.ndarray((len(raw) - 1,), dtype="<u2", buffer=raw, strides=(1,))
    flags = buf[start]
    hr_bpm = buf[start + 1].astype(np.int64)
    wide = np.flatnonzero(flags & FLAG_HR_UINT16)
    if len(wide):  # straps seldom send a uint16 heart rate
        hr_bpm[wide] = word[start[wide] + 1]
    rr_offset = _RR_OFFSET[flags]
    rest = length - rr_offset
    # An empty payload lacks even the flags byte; rr_offset >= 2 covers that case too.
    truncated = rest < 0
    rr_present = _RR_PRESENT[flags] & ~truncated
    odd = rr_present & ((rest & 1) == 1)
    n_values = np.where(rr_present & ~odd, rest >> 1, 0)

    # Every uint16 RR value, read at its notification's RR start plus two bytes per
    # value before it in that notification.
    first_value = np.cumsum(n_values)
    first_value -= n_values
    base = start + rr_offset - 2 * first_value
    byte = np.repeat(base, n_values)
    byte += np.arange(0, 2 * len(byte), 2)
    units = word[byte].astype(np.int64)
    zero_at = np.flatnonzero(units == 0)
    if len(zero_at):
        owner = np.searchsorted(np.cumsum(n_values), zero_at, side="right")
        zeros = np.bincount(owner, minlength=n)
        rr_count = n_values - zeros
        units = np.delete(units, zero_at)
    else:
        zeros = np.zeros(n, dtype=np.int64)
        rr_count = n_values
    hr_zero = (hr_bpm == 0) & (rr_count == 0) & ~truncated & ~odd

    bad = np.flatnonzero(truncated | odd | hr_zero)
    if len(bad) == 0:
        ok = np.ones(n, dtype=bool)
        return HeartRateMeasurements(ok, hr_bpm, rr_count, zeros, units)
    ok = np.ones(n, dtype=bool)
    ok[bad] = False
    # Reasons only for the rejected few, the first that applies in parse_hrm's order.
    codes = np.where(truncated[bad], 0, np.where(odd[bad], 1, 2))
    names = ("truncated", "odd_rr_bytes", "hr_zero_no_rr")
    malformed = {i: names[c] for i, c in zip(bad.tolist(), codes.tolist())}
    # A rejected notification (HR 0, only zero RR values) adds nothing, counts nothing;
    # its rr_count is 0 already (no values, or only zeros).
    hr_bpm[bad] = 0
    zeros[bad] = 0
    return HeartRateMeasurements(
        ok=ok,
        hr_bpm=hr_bpm,
        rr_count=rr_count,
        rr_zero_dropped=zeros,
        rr_units=units,
        malformed=MappingProxyType(malformed),
    )


def rr_ms_to_units(rr_ms: float) -> int:
    """Round an RR interval in ms to the strap's 1/1024 s unit (uint16, at least 1)."""
    units = round(rr_ms * RR_UNITS_PER_SECOND / 1000)
    return min(max(units, 1), 0xFFFF)


def encode_hrm(
    hr_bpm: int,
    rr_units: Iterable[int] = (),
    *,
    contact: bool | None = None,
    energy_kj: int | None = None,
    hr_uint16: bool | None = None,
    rr_present: bool | None = None,
) -> bytes:
    """Build a Heart Rate Measurement payload, as a strap would send it.

    ``rr_units`` are RR intervals in 1/1024 s. The heart rate is written as uint16
    when asked, or when it does not fit a uint8. ``rr_present`` defaults to
    "some RR values given"; a Polar H10 with RR values sends flags 0x10.
    """
    rr = [int(u) for u in rr_units]
    if hr_uint16 is None:
        hr_uint16 = hr_bpm > 0xFF
    if rr_present is None:
        rr_present = bool(rr)
    flags = 0
    if hr_uint16:
        flags |= FLAG_HR_UINT16
    if contact is not None:
        flags |= FLAG_CONTACT_SUPPORTED | (FLAG_CONTACT_DETECTED if contact else 0)
    if energy_kj is not None:
        flags |= FLAG_ENERGY_PRESENT
    if rr_present:
        flags |= FLAG_RR_PRESENT
    out = bytearray([flags])
    out += int(hr_bpm).to_bytes(2 if hr_uint16 else 1, "little")
    if energy_kj is not None:
        out += min(int(energy_kj), ENERGY_SATURATED_KJ).to_bytes(2, "little")
    for u in rr:
        out += u.to_bytes(2, "little")
    return bytes(out)


def parse_body_sensor_location(payload: bytes | bytearray) -> str:
    """Parse Body Sensor Location (0x2A38): a name such as "chest", or "reserved (N)"."""
    data = bytes(payload)
    if len(data) < 1:
        raise MalformedPayload("truncated", 0, "body sensor location needs 1 byte, got 0")
    return BODY_SENSOR_LOCATIONS.get(data[0], f"reserved ({data[0]})")


def parse_battery_level(payload: bytes | bytearray) -> int:
    """Parse Battery Level (0x2A19): percent, 0-100."""
    data = bytes(payload)
    if len(data) < 1:
        raise MalformedPayload("truncated", 0, "battery level needs 1 byte, got 0")
    if data[0] > 100:
        raise MalformedPayload("out_of_range", 0, f"battery level {data[0]} % is above 100 %")
    return data[0]
