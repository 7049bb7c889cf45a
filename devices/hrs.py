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
        # bytes() takes them in one C loop, at half the cost of np.fromiter.
        return np.frombuffer(bytes(map(len, payloads)), dtype=np.uint8).astype(np.int64)
    except ValueError:  # a payload of 256 bytes or more
        return np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))


def parse_hrm_many(payloads: Sequence[bytes | bytearray | memoryview]) -> HeartRateMeasurements:
    """Parse many Heart Rate Measurement (0x2A37) payloads in one vectorised pass.

    Gives what ``parse_hrm`` gives for each payload (heart rate, nonzero RR values in
    1/1024 s, zeros dropped) and flags exactly the payloads it rejects, with the same
    reason codes; contact and energy are read past but not returned. Layout as in
    ``parse_hrm``: GATT Specification Supplement 3.106, little-endian fields.
    """
    n = len(payloads)
    length = _lengths(payloads)
    start = np.zeros(n, dtype=np.int64)
    np.cumsum(length[:-1], out=start[1:])
    # Padding lets the header be read at fixed offsets from every start, short or
    # empty payloads included; what is read past a payload's end is masked below.
    buf = np.frombuffer(b"".join(payloads) + bytes(4), dtype=np.uint8).astype(np.int64)
    flags = buf[start]
    hr_uint16 = (flags & FLAG_HR_UINT16) != 0
    rr_present = (flags & FLAG_RR_PRESENT) != 0
    hr_bpm = np.where(hr_uint16, buf[start + 1] | (buf[start + 2] << 8), buf[start + 1])
    rr_offset = 2 + hr_uint16 + 2 * ((flags & FLAG_ENERGY_PRESENT) != 0)
    # An empty payload lacks even the flags byte; rr_offset >= 2 covers that case too.
    truncated = length < rr_offset
    rest = length - rr_offset
    odd = ~truncated & rr_present & (rest % 2 == 1)
    n_values = np.where(~truncated & ~odd & rr_present, rest // 2, 0)

    # Every uint16 RR value: its notification, then its byte index in the buffer.
    owner = np.repeat(np.arange(n), n_values)
    first_value = np.cumsum(n_values) - n_values
    byte = start[owner] + rr_offset[owner] + 2 * (np.arange(len(owner)) - first_value[owner])
    units = buf[byte] | (buf[byte + 1] << 8)
    zero = units == 0
    zeros = np.bincount(owner[zero], minlength=n)
    rr_count = n_values - zeros
    hr_zero = ~truncated & ~odd & (hr_bpm == 0) & (rr_count == 0)

    ok = ~(truncated | odd | hr_zero)
    # Reasons only for the rejected few, the first that applies in parse_hrm's order.
    bad = np.flatnonzero(~ok)
    codes = np.where(truncated[bad], 0, np.where(odd[bad], 1, 2))
    names = ("truncated", "odd_rr_bytes", "hr_zero_no_rr")
    malformed = {i: names[c] for i, c in zip(bad.tolist(), codes.tolist())}
    # A rejected notification (HR 0, only zero RR values) adds nothing, counts nothing.
    return HeartRateMeasurements(
        ok=ok,
        hr_bpm=np.where(ok, hr_bpm, 0),
        rr_count=np.where(ok, rr_count, 0),
        rr_zero_dropped=np.where(ok, zeros, 0),
        rr_units=units[~zero],
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
