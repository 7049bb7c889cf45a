"""Heart Rate Measurement parsing against the GATT Specification Supplement's layout.

Payloads here are written out byte by byte from the field layout (flags, HR as uint8 or
uint16 LE, energy uint16 LE, RR uint16 LE in 1/1024 s), not built with encode_hrm, so
the parser is checked against the specification rather than against itself.
"""

import itertools
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.hrs import (
    MalformedPayload,
    encode_hrm,
    parse_battery_level,
    parse_body_sensor_location,
    parse_hrm,
    parse_hrm_many,
    rr_ms_to_units,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def spec_payload(flags: int, hr: int, energy: int | None, rr_units: list[int]) -> bytes:
    """Lay out the fields by hand, as the specification describes them."""
    out = bytes([flags])
    out += struct.pack("<H", hr) if flags & 0x01 else struct.pack("<B", hr)
    if flags & 0x08:
        out += struct.pack("<H", energy)
    if flags & 0x10:
        out += b"".join(struct.pack("<H", u) for u in rr_units)
    return out


@pytest.mark.parametrize("flags", range(0x20))
def test_every_flag_combination(flags: int) -> None:
    hr = 300 if flags & 0x01 else 72
    rr_units = [840, 851, 799] if flags & 0x10 else []
    payload = spec_payload(flags, hr, 1234, rr_units)
    m = parse_hrm(payload)
    assert m.hr_bpm == hr
    assert m.energy_kj == (1234 if flags & 0x08 else None)
    if flags & 0x04:
        assert m.contact is bool(flags & 0x02)
    else:
        assert m.contact is None  # bit 1 means nothing without bit 2
    assert m.rr_ms == tuple(u * 1000 / 1024 for u in rr_units)


def test_polar_h10_flags_0x10_two_rr() -> None:
    # 0x10: uint8 HR, no contact support, no energy, RR present (as a Polar H10 sends).
    m = parse_hrm(bytes.fromhex("105a4b04a701"))
    assert m.hr_bpm == 0x5A == 90
    assert m.contact is None and m.energy_kj is None
    assert m.rr_ms == (0x044B * 1000 / 1024, 0x01A7 * 1000 / 1024)
    assert m.rr_ms == (1073.2421875, 413.0859375)  # exact, no rounding


def test_rr_values_are_exact_in_ms() -> None:
    units = list(range(1, 0x10000, 257))
    m = parse_hrm(spec_payload(0x10, 70, None, units))
    # 1000/1024 = 0.9765625 is a binary fraction: the conversion is exact.
    assert [r * 1024 / 1000 for r in m.rr_ms] == units


def test_nine_rr_values_in_one_notification() -> None:
    units = [700 + 10 * i for i in range(9)]
    m = parse_hrm(spec_payload(0x10, 88, None, units))
    assert len(m.rr_ms) == 9
    assert m.rr_ms[-1] == 780 * 1000 / 1024


def test_uint16_heart_rate() -> None:
    m = parse_hrm(bytes([0x01, 0x2C, 0x01]))
    assert m.hr_bpm == 300


def test_energy_and_rr_together_and_saturated() -> None:
    m = parse_hrm(bytes([0x18, 65, 0xFF, 0xFF, 0x00, 0x04]))
    assert m.energy_kj == 0xFFFF and m.energy_saturated
    assert m.rr_ms == (1000.0,)
    assert not parse_hrm(bytes([0x08, 65, 0x10, 0x00])).energy_saturated


def test_contact_bits() -> None:
    assert parse_hrm(bytes([0x06, 60])).contact is True
    assert parse_hrm(bytes([0x04, 60])).contact is False
    assert parse_hrm(bytes([0x02, 60])).contact is None


def test_reserved_bits_are_ignored() -> None:
    plain = parse_hrm(bytes([0x10, 70, 0x00, 0x04]))
    assert parse_hrm(bytes([0xF0, 70, 0x00, 0x04])) == plain


def test_rr_flag_with_no_values_is_allowed() -> None:
    assert parse_hrm(bytes([0x10, 64])).rr_ms == ()


def test_zero_rr_is_dropped_and_counted() -> None:
    m = parse_hrm(spec_payload(0x10, 70, None, [0, 860, 0]))
    assert m.rr_ms == (860 * 1000 / 1024,)
    assert m.rr_zero_dropped == 2


@pytest.mark.parametrize(
    ("payload", "reason", "offset"),
    [
        (b"", "truncated", 0),
        (bytes([0x00]), "truncated", 1),  # uint8 HR missing
        (bytes([0x01, 0x50]), "truncated", 2),  # uint16 HR needs two bytes
        (bytes([0x08, 70, 0x01]), "truncated", 3),  # energy needs two bytes
        (bytes([0x10, 70, 0x00, 0x04, 0x12]), "odd_rr_bytes", 4),
        (bytes([0x10, 70, 0x33]), "odd_rr_bytes", 2),
        (bytes([0x00, 0x00]), "hr_zero_no_rr", 1),
        (bytes([0x10, 0x00, 0x00, 0x00]), "hr_zero_no_rr", 1),  # its only RR was 0
    ],
)
def test_malformed_payloads_say_which_byte_and_why(payload: bytes, reason: str, offset: int) -> None:
    with pytest.raises(MalformedPayload) as info:
        parse_hrm(payload)
    assert info.value.reason == reason
    assert info.value.offset == offset
    assert f"byte {offset}" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_hr_zero_with_rr_is_kept() -> None:
    assert parse_hrm(bytes([0x10, 0x00, 0x00, 0x04])).rr_ms == (1000.0,)


@given(st.binary(max_size=40))
@settings(max_examples=3000)
def test_no_byte_string_raises_anything_but_malformed(payload: bytes) -> None:
    try:
        m = parse_hrm(payload)
    except MalformedPayload:
        return
    assert 0 <= m.hr_bpm <= 0xFFFF
    assert all(0 < r < 64000 for r in m.rr_ms)


@given(
    hr=st.integers(0, 0xFFFF),
    rr=st.lists(st.integers(1, 0xFFFF), max_size=9),
    contact=st.sampled_from([None, True, False]),
    energy=st.one_of(st.none(), st.integers(0, 0xFFFF)),
    wide=st.booleans(),
)
def test_encode_then_parse_round_trips(hr, rr, contact, energy, wide) -> None:
    if hr == 0 and not rr:
        return
    wide = wide or hr > 0xFF
    m = parse_hrm(encode_hrm(hr, rr, contact=contact, energy_kj=energy, hr_uint16=wide))
    assert (m.hr_bpm, m.contact, m.energy_kj) == (hr, contact, energy)
    assert m.rr_ms == tuple(u * 1000 / 1024 for u in rr)


def test_encode_matches_spec_layout() -> None:
    for flags, rr in itertools.product([0x10, 0x16, 0x18, 0x1E], [[812], [800, 1023]]):
        contact = None if not flags & 0x04 else bool(flags & 0x02)
        energy = 77 if flags & 0x08 else None
        assert encode_hrm(66, rr, contact=contact, energy_kj=energy) == spec_payload(
            flags, 66, energy, rr
        )


def test_rr_ms_to_units_rounds_and_clamps() -> None:
    assert rr_ms_to_units(1000.0) == 1024
    assert rr_ms_to_units(820.3125) == 840
    assert rr_ms_to_units(0.1) == 1
    assert rr_ms_to_units(1e9) == 0xFFFF


def test_body_sensor_location_and_battery() -> None:
    assert parse_body_sensor_location(b"\x01") == "chest"
    assert parse_body_sensor_location(b"\x06") == "foot"
    assert parse_body_sensor_location(b"\x09") == "reserved (9)"
    assert parse_battery_level(b"\x57") == 87
    with pytest.raises(MalformedPayload):
        parse_battery_level(b"\x65")
    with pytest.raises(MalformedPayload):
        parse_body_sensor_location(b"")


def test_real_polar_recording_parses_completely() -> None:
    lines = (FIXTURES / "polar_h10_pvc.jsonl").read_text().splitlines()[1:]
    parsed = [parse_hrm(bytes.fromhex(json.loads(line)["hrm"])) for line in lines]
    assert len(parsed) == 600
    assert sum(len(m.rr_ms) for m in parsed) == 798
    assert all(m.contact is None and m.energy_kj is None for m in parsed)
    assert all(300 < r < 2000 for m in parsed for r in m.rr_ms)


# --- parse_hrm_many: the vectorised parser against parse_hrm, payload by payload ---


def assert_many_matches_one_by_one(payloads: list[bytes]) -> None:
    many = parse_hrm_many(payloads)
    assert len(many) == len(payloads)
    k = 0
    for i, payload in enumerate(payloads):
        try:
            m = parse_hrm(payload)
        except MalformedPayload as exc:
            assert not many.ok[i] and many.malformed[i] == exc.reason
            assert (many.hr_bpm[i], many.rr_count[i], many.rr_zero_dropped[i]) == (0, 0, 0)
            continue
        assert many.ok[i] and i not in many.malformed
        assert many.hr_bpm[i] == m.hr_bpm
        assert many.rr_zero_dropped[i] == m.rr_zero_dropped
        n = int(many.rr_count[i])
        assert many.rr_units[k : k + n].tolist() == [r * 1024 / 1000 for r in m.rr_ms]
        k += n
    assert k == len(many.rr_units)
    assert many.rr_units.dtype == many.rr_count.dtype == many.hr_bpm.dtype == np.int64


def test_many_on_hand_laid_payloads() -> None:
    payloads = [
        spec_payload(0x10, 90, None, [1099, 423]),  # Polar H10
        b"",
        spec_payload(0x1F, 300, 0xFFFF, [0, 812, 0]),  # every flag, zeros dropped
        bytes([0x01, 0x50]),  # truncated uint16 HR
        bytes([0x10, 70, 0x33]),  # odd RR byte
        bytes([0x00, 0x00]),  # HR 0, no RR
        bytes([0x10, 0x00, 0x00, 0x00]),  # HR 0, its only RR was 0
        bytes([0x06, 61, 0xAA, 0xBB, 0xCC]),  # no RR flag: trailing bytes ignored
        bytes([0x08, 70, 0x01]),  # truncated energy
    ]
    many = parse_hrm_many(payloads)
    assert many.ok.tolist() == [True, False, True, False, False, False, False, True, False]
    assert dict(many.malformed) == {
        1: "truncated", 3: "truncated", 4: "odd_rr_bytes", 5: "hr_zero_no_rr",
        6: "hr_zero_no_rr", 8: "truncated",
    }
    assert many.hr_bpm.tolist() == [90, 0, 300, 0, 0, 0, 0, 61, 0]
    assert many.rr_units.tolist() == [1099, 423, 812]
    assert many.rr_count.tolist() == [2, 0, 1, 0, 0, 0, 0, 0, 0]
    assert many.rr_zero_dropped.tolist() == [0, 0, 2, 0, 0, 0, 0, 0, 0]
    assert_many_matches_one_by_one(payloads)


def test_many_with_payloads_of_256_bytes_and_more() -> None:
    # Lengths past one byte take parse_hrm_many's other way of measuring payloads.
    long_rr = list(range(1, 200))  # 1 + 1 + 2 * 199 = 400 bytes
    payloads = [spec_payload(0x10, 70, None, [800]), spec_payload(0x10, 71, None, long_rr), bytes(255), bytes(256)]
    assert max(map(len, payloads)) >= 256
    many = parse_hrm_many(payloads)
    assert many.rr_count.tolist()[:2] == [1, 199]
    assert many.rr_units.tolist()[:200] == [800, *long_rr]
    assert_many_matches_one_by_one(payloads)
    assert_many_matches_one_by_one(payloads[2:3])  # 255 bytes: the one-byte way


def test_many_of_none() -> None:
    many = parse_hrm_many([])
    assert len(many) == 0 and len(many.rr_units) == 0 and not many.malformed


@st.composite
def hrm_payloads(draw) -> bytes:
    """Payloads of every shape: well-formed with any flags, cut short, odd, junk."""
    flags = draw(st.integers(0, 0xFF))
    hr = draw(st.integers(0, 0xFFFF if flags & 0x01 else 0xFF))
    rr = draw(st.lists(st.sampled_from([0, 1, 0xFFFF]) | st.integers(0, 0xFFFF), max_size=9))
    payload = spec_payload(flags, hr, draw(st.integers(0, 0xFFFF)), rr)
    shape = draw(st.sampled_from(["whole", "whole", "cut", "extra", "junk"]))
    if shape == "cut":
        return payload[: draw(st.integers(0, len(payload)))]
    if shape == "extra":
        return payload + draw(st.binary(min_size=1, max_size=3))
    if shape == "junk":
        return draw(st.binary(max_size=12))
    return payload


@given(st.lists(hrm_payloads(), max_size=40))
@settings(max_examples=200, deadline=None)
def test_many_matches_parse_hrm(payloads: list[bytes]) -> None:
    assert_many_matches_one_by_one(payloads)


def test_many_on_the_polar_recording() -> None:
    lines = (FIXTURES / "polar_h10_pvc.jsonl").read_text().splitlines()[1:]
    payloads = [bytes.fromhex(json.loads(line)["hrm"]) for line in lines]
    assert_many_matches_one_by_one(payloads)
    assert parse_hrm_many(payloads).rr_count.sum() == 798
