"""Beat timing from notifications: hand-worked chains, the real Polar H10 recording,
live (one record at a time) against batch on every prefix, and the vectorised batch
path against BeatTimer, bit for bit, on every fixture and on random record streams."""

import json
from functools import lru_cache
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import monitor.beats_batch as beats_batch
from devices.hrs import encode_hrm
from devices.recording import read_records
from devices.records import Annotation, Notification, StatusChange
from monitor.beats import (
    BeatSeries,
    BeatTimer,
    BeatTimingConfig,
    beats_by_partner,
    beats_from_notifications,
)
from monitor.beats_batch import BatchBeats, batch_beats_by_partner

POLAR = Path(__file__).resolve().parents[2] / "fixtures" / "polar_h10_pvc.jsonl"
CFG = BeatTimingConfig()


def note(t_s: float, *rr_units: int, partner: str = "a") -> Notification:
    return Notification(t_s, partner, encode_hrm(60, rr_units))


def run(records, cfg: BeatTimingConfig = CFG) -> BeatSeries:
    return beats_from_notifications(records, "a", cfg)


def polar_notifications() -> list[Notification]:
    records = []
    with POLAR.open(encoding="utf-8") as lines:
        next(lines)  # header
        for line in lines:
            obj = json.loads(line)
            records.append(Notification(obj["t"], obj["partner"], bytes.fromhex(obj["hrm"])))
    return records


def test_first_notification_ends_at_its_arrival():
    s = run([note(10.0, 512, 1024)])
    np.testing.assert_array_equal(s.t_s, [9.0, 10.0])
    np.testing.assert_array_equal(s.rr_units, [512, 1024])
    np.testing.assert_array_equal(s.contiguous, [False, True])
    np.testing.assert_array_equal(s.rr_ms, [500.0, 1000.0])


def test_arrival_jitter_does_not_move_the_chain():
    # Beats every 1 s; arrivals early and late by up to 0.25 s.
    s = run([note(10.0, 1024), note(11.1, 1024), note(11.75, 1024), note(13.25, 1024)])
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0, 12.0, 13.0])
    np.testing.assert_array_equal(s.contiguous, [False, True, True, True])


def test_chain_ahead_of_arrival_is_reanchored_without_losing_contiguity():
    # The chain puts the third beat at 12.0 but it arrived at 11.6: 0.4 s > 0.3 s ahead.
    timer = BeatTimer("a")
    for r in [note(10.0, 1024), note(11.0, 1024), note(11.6, 1024), note(12.6, 1024)]:
        timer.feed(r)
    s = timer.series()
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0, 11.6, 12.6])
    np.testing.assert_array_equal(s.contiguous, [False, True, True, True])
    assert timer.reanchor_count == 2
    batch = batch_beats_by_partner([note(10.0, 1024), note(11.0, 1024), note(11.6, 1024), note(12.6, 1024)])
    np.testing.assert_array_equal(batch["a"].series.t_s, [10.0, 11.0, 11.6, 12.6])
    assert batch["a"].reanchor_count == 2


def test_chain_far_behind_arrivals_means_lost_beats():
    # Intervals of 0.5 s reported every 1.0 s: the chain falls 0.5 s further behind
    # at each notification and is re-anchored once it is more than 2.5 s behind.
    records = [note(10.0 + k, 512) for k in range(8)]
    s = run(records)
    # drift at notification k (k >= 1, before re-anchoring) is -0.5 * k
    np.testing.assert_array_equal(s.t_s, [10.0, 10.5, 11.0, 11.5, 12.0, 12.5, 16.0, 16.5])
    np.testing.assert_array_equal(s.contiguous, [False] + [True] * 5 + [False, True])


def test_gap_restarts_the_chain_and_breaks_contiguity():
    records = [note(10.0, 1024), note(11.0, 1024), note(14.5, 1024, 1024), note(15.5, 1024)]
    s = run(records)
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0, 13.5, 14.5, 15.5])
    np.testing.assert_array_equal(s.contiguous, [False, True, False, True, True])


def test_gap_limit_is_configurable():
    records = [note(10.0, 1024), note(11.0, 1024), note(13.0, 1024)]
    assert run(records).contiguous.tolist() == [False, True, True]
    tight = BeatTimingConfig(max_gap_s=1.5)
    assert run(records, tight).contiguous.tolist() == [False, True, False]


def test_empty_notifications_do_not_hide_a_gap():
    # Notifications kept coming but carried no beat for 4 s.
    records = [note(10.0, 1024), note(11.0), note(12.0), note(13.0), note(14.0), note(15.0, 1024)]
    s = run(records)
    np.testing.assert_array_equal(s.t_s, [10.0, 15.0])
    np.testing.assert_array_equal(s.contiguous, [False, False])


@pytest.mark.parametrize("status", ["disconnected", "connected"])
def test_connection_change_breaks_the_chain(status):
    records = [note(10.0, 1024), StatusChange(10.5, "a", status), note(11.2, 1024), note(12.2, 1024)]
    s = run(records)
    np.testing.assert_array_equal(s.t_s, [10.0, 11.2, 12.2])
    np.testing.assert_array_equal(s.contiguous, [False, False, True])


def test_other_partner_and_annotations_are_ignored():
    records = [
        note(10.0, 1024),
        note(10.3, 700, partner="b"),
        StatusChange(10.4, "b", "disconnected"),
        Annotation(10.5, "pursuit starts", "practitioner"),
        note(11.0, 1024),
    ]
    s = run(records)
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0])
    np.testing.assert_array_equal(s.contiguous, [False, True])
    assert len(beats_from_notifications(records, "b")) == 1
    both = beats_by_partner(records)
    assert both["a"].t_s.tolist() == [10.0, 11.0] and both["b"].rr_units.tolist() == [700]


def test_malformed_payloads_are_counted_and_skipped():
    records = [
        note(10.0, 1024),
        Notification(11.0, "a", b""),  # no flags byte
        Notification(11.1, "a", bytes([0x10, 60, 0x00])),  # odd RR byte
        Notification(11.2, "a", bytes([0x00, 0])),  # HR 0 and no RR
        note(12.0, 1024),
        note(13.0, 1024),
        Notification(14.0, "a", encode_hrm(60, [0, 1024])),  # RR of 0
        note(15.0, 1024),
    ]
    s = run(records)
    assert dict(s.malformed) == {"truncated": 1, "odd_rr_bytes": 1, "hr_zero_no_rr": 1, "rr_zero": 1}
    np.testing.assert_array_equal(s.t_s, [10.0, 12.0, 13.0, 14.0, 15.0])
    np.testing.assert_array_equal(s.rr_units, [1024] * 5)
    # a lost notification breaks the chain; a dropped zero spoils the differences
    # next to it, i.e. the beat that came with it
    np.testing.assert_array_equal(s.contiguous, [False, False, True, False, True])


def test_reanchor_never_puts_a_beat_before_the_previous_one():
    # Chain says 13.0 (two 1-s beats after 11.0), arrival 11.5: the re-anchored
    # first beat would fall at 10.5, before the beat at 11.0.
    s = run([note(10.0, 1024), note(11.0, 1024), note(11.5, 1024, 1024)])
    np.testing.assert_array_equal(s.t_s, [10.0, 11.0, 11.0, 11.5])
    assert np.all(np.diff(s.t_s) >= 0)


def test_real_polar_recording():
    records = polar_notifications()
    s = run(records)
    assert len(s) == 798
    # Every RR value exactly as sent: flags 0x10, uint8 HR, then uint16 LE values.
    sent = [
        int.from_bytes(r.payload[i : i + 2], "little")
        for r in records
        for i in range(2, len(r.payload), 2)
    ]
    assert s.rr_units.dtype == np.int64
    np.testing.assert_array_equal(s.rr_units, sent)
    assert np.all(np.diff(s.t_s) >= 0)
    # No gap in this recording: only the first beat lacks a predecessor.
    assert s.contiguous.tolist() == [False] + [True] * 797
    # The chain absorbs arrival jitter: successive beat times differ by the RR
    # itself, except where the chain was re-anchored (here once, about 70 s in).
    steps = np.diff(s.t_s) - s.rr_units[1:] / 1024
    assert np.count_nonzero(np.abs(steps) > 1e-9) == 1
    # Each notification's beats end within the drift band around its arrival, and
    # the earlier ones precede the last by exactly the RR values in between.
    k = 0
    for r in records:
        n = (len(r.payload) - 2) // 2
        if not n:
            continue
        t, rr = s.t_s[k : k + n], s.rr_units[k : k + n]
        assert r.t_s - CFG.max_behind_s <= t[-1] <= r.t_s + CFG.max_ahead_s
        np.testing.assert_allclose(t[-1] - t, (np.cumsum(rr[::-1])[::-1] - rr) / 1024, atol=1e-9)
        k += n
    assert k == 798


@st.composite
def record_streams(draw):
    records, t = [], 0.0
    for _ in range(draw(st.integers(0, 30))):
        t = round(t + draw(st.floats(0.0, 4.0)), 4)
        kind = draw(st.sampled_from(["hrm"] * 6 + ["status", "bad", "zero", "other"]))
        rr = draw(st.lists(st.integers(250, 2100), min_size=0, max_size=4))
        if kind == "hrm":
            records.append(note(t, *rr))
        elif kind == "status":
            records.append(StatusChange(t, "a", draw(st.sampled_from(["connected", "disconnected"]))))
        elif kind == "bad":
            records.append(Notification(t, "a", bytes([0x10, 70, 1])))
        elif kind == "zero":
            records.append(Notification(t, "a", encode_hrm(70, rr + [0])))
        else:
            records.append(note(t, *rr, partner="b"))
    return records


def assert_same(x: BeatSeries, y: BeatSeries) -> None:
    assert x.t_s.view(np.int64).tolist() == y.t_s.view(np.int64).tolist()
    assert x.rr_units.tolist() == y.rr_units.tolist()
    assert x.contiguous.tolist() == y.contiguous.tolist()
    assert dict(x.malformed) == dict(y.malformed)


@settings(max_examples=60, deadline=None)
@given(record_streams())
def test_live_equals_batch_on_every_prefix(records):
    timer = BeatTimer("a")
    fed = []
    for k, record in enumerate(records, start=1):
        fed.append(timer.feed(record))
        assert_same(timer.series(), run(records[:k]))
    whole = run(records)
    assert whole.t_s.tolist() == [t for chunk in fed for t in chunk.t_s.tolist()]
    assert np.all(np.diff(whole.t_s) >= 0)
    assert np.all(whole.rr_units >= 250)


@settings(max_examples=60, deadline=None)
@given(record_streams())
def test_last_beat_of_each_notification_stays_in_the_drift_band(records):
    timer = BeatTimer("a")
    for record in records:
        new = timer.feed(record)
        if len(new):
            assert record.t_s - CFG.max_behind_s <= new.t_s[-1] <= record.t_s + CFG.max_ahead_s


# --- the vectorised batch path against BeatTimer, bit for bit ---

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
FIXTURE_FILES = sorted(FIXTURES.glob("*.jsonl")) + sorted(FIXTURES.glob("*.jsonl.gz"))
# A narrow symmetric band: the chain is re-anchored at most notifications, which
# exercises the step from one re-anchor to the next far more than the defaults.
TIGHT = BeatTimingConfig(max_ahead_s=0.05, max_behind_s=0.05, max_gap_s=1.5)


@lru_cache(maxsize=None)
def fixture_records(path: Path) -> tuple:
    return tuple(read_records(path)[1])


def reference(records, partner: str, cfg: BeatTimingConfig) -> BeatTimer:
    timer = BeatTimer(partner, cfg)
    for record in records:
        timer.feed(record)
    return timer


def assert_identical(batch: BatchBeats, timer: BeatTimer) -> None:
    got, ref = batch.series, timer.series()
    for name in ("t_s", "arrival_t_s"):
        x, y = getattr(got, name), getattr(ref, name)
        assert x.dtype == y.dtype == np.float64
        assert x.view(np.int64).tolist() == y.view(np.int64).tolist(), name
    assert got.rr_units.dtype == ref.rr_units.dtype and got.rr_units.tolist() == ref.rr_units.tolist()
    assert got.contiguous.dtype == ref.contiguous.dtype and got.contiguous.tolist() == ref.contiguous.tolist()
    assert list(got.malformed.items()) == list(ref.malformed.items())  # key order too
    assert batch.reanchor_count == timer.reanchor_count


def test_fixtures_are_there():
    names = {p.name for p in FIXTURE_FILES}
    assert "polar_h10_pvc.jsonl" in names and "sim_artifacts.jsonl.gz" in names
    assert len(names) >= 7


@pytest.mark.parametrize("cfg", [CFG, TIGHT], ids=["default", "tight"])
@pytest.mark.parametrize("path", FIXTURE_FILES, ids=lambda p: p.name)
def test_batch_equals_beat_timer_on_fixture(path, cfg):
    records = fixture_records(path)
    batch = batch_beats_by_partner(records, ("a", "b"), cfg)
    public = beats_by_partner(iter(records), ("a", "b"), cfg)  # a one-pass iterator will do
    for partner in ("a", "b"):
        timer = reference(records, partner, cfg)
        assert_identical(batch[partner], timer)
        assert public[partner].t_s.view(np.int64).tolist() == batch[partner].series.t_s.view(np.int64).tolist()
    assert len(batch["a"].series) > 700  # every fixture has partner a's beats
    if cfg is TIGHT and path.name == "polar_h10_pvc.jsonl":
        # hundreds of re-anchors, some runs of more than a scan's length without one
        assert batch["a"].reanchor_count > 200


def test_fixture_with_malformed_payloads_and_zeros():
    # The fixtures are clean; splice damage into the Polar recording at known places.
    records = list(fixture_records(FIXTURES / "polar_h10_pvc.jsonl"))
    records[5] = Notification(records[5].t_s, "a", b"\x10\x00\x00\x00")  # HR 0, RR 0
    records[100] = Notification(records[100].t_s, "a", records[100].payload[:-1])  # odd
    records[101] = Notification(records[101].t_s, "a", records[101].payload + b"\x00\x00")  # zero
    records[300] = Notification(records[300].t_s, "a", b"")
    records.insert(400, StatusChange(records[400].t_s, "a", "disconnected"))
    batch = batch_beats_by_partner(records, ("a",))["a"]
    assert_identical(batch, reference(records, "a", CFG))
    assert list(batch.series.malformed.items()) == [
        ("hr_zero_no_rr", 1), ("odd_rr_bytes", 1), ("rr_zero", 1), ("truncated", 1)
    ]


EDGES = BeatTimingConfig(max_ahead_s=0.25, max_behind_s=0.5, max_gap_s=2.0)


@pytest.mark.parametrize(
    ("arrivals", "rr", "t_s", "contiguous", "reanchors"),
    [
        # chain at 11.0 exactly 0.25 s ahead of the arrival: still in the band
        ((10.0, 10.75), 1024, [10.0, 11.0], [False, True], 1),
        ((10.0, 10.74), 1024, [10.0, 10.74], [False, True], 2),
        # chain exactly 0.5 s behind: in the band; a little more: beats were lost
        ((10.0, 11.5), 1024, [10.0, 11.0], [False, True], 1),
        ((10.0, 11.5078125), 1024, [10.0, 11.5078125], [False, False], 2),
        # exactly 2 s between notifications is no gap yet
        ((10.0, 12.0), 2048, [9.0, 10.0, 11.0, 12.0], [False, True, True, True], 1),
        ((10.0, 12.0078125), 2048, [9.0, 10.0, 11.0078125, 12.0078125], [False, True, False, True], 2),
    ],
)
def test_band_and_gap_edges_belong_inside(arrivals, rr, t_s, contiguous, reanchors):
    # Dyadic times, so the drift lands exactly on the edge in floating point.
    records = [note(t, *[1024] * (rr // 1024)) for t in arrivals]
    timer = reference(records, "a", EDGES)
    batch = batch_beats_by_partner(records, ("a",), EDGES)["a"]
    assert_identical(batch, timer)
    assert batch.series.t_s.tolist() == t_s
    assert batch.series.contiguous.tolist() == contiguous
    assert batch.reanchor_count == reanchors


def lay_out(flags: int, hr: int, energy: int, rr_units: list[int]) -> bytes:
    """A payload laid out field by field (GATT Supplement 3.106), whatever the flags."""
    out = bytes([flags]) + hr.to_bytes(2 if flags & 0x01 else 1, "little")
    if flags & 0x08:
        out += energy.to_bytes(2, "little")
    return out + b"".join(u.to_bytes(2, "little") for u in rr_units)


@st.composite
def rr_lists(draw, beat_units: int) -> list[int]:
    """0-9 RR values in 1/1024 s: near the stream's rhythm (now and then a 0), or any
    uint16 value."""
    if draw(st.integers(0, 3)):
        return [0 if b < 4 else beat_units + b // 4 - 32 for b in draw(st.binary(max_size=4))]
    wild = draw(st.binary(max_size=18))
    return [int.from_bytes(wild[i : i + 2], "little") for i in range(0, len(wild) - 1, 2)]


@st.composite
def payloads(draw, beat_units: int) -> tuple[bytes, int]:
    """A payload of any kind, and the RR units it carries (0 unless well formed)."""
    kind = draw(st.sampled_from(["beats"] * 10 + ["no_rr", "truncated", "odd", "hr_zero", "junk"]))
    # flags (uint16 HR, contact, energy and reserved bits), HR and energy in one draw
    flags, hr_lo, hr_hi, energy_lo, energy_hi = draw(st.binary(min_size=5, max_size=5))
    hr = hr_lo | (hr_hi << 8 if flags & 0x01 else 0)
    energy = energy_lo | energy_hi << 8
    if kind == "beats":
        rr = draw(rr_lists(beat_units))
        return lay_out(flags | 0x10, hr, energy, rr), sum(rr)
    if kind == "no_rr":  # bytes after the known fields are ignored without the RR flag
        return lay_out(flags & ~0x10, hr, energy, []) + draw(st.binary(max_size=5)), 0
    if kind == "truncated":
        whole = lay_out(flags | 0x10, hr, energy, [1024])
        return whole[: draw(st.integers(0, 2 + (flags & 0x01) + 2 * bool(flags & 0x08) - 1))], 0
    if kind == "odd":
        return lay_out(flags | 0x10, hr, energy, draw(rr_lists(beat_units))) + b"\x01", 0
    if kind == "hr_zero":  # with or without the RR flag, with or without zero RR values
        return lay_out(flags & ~0x01, 0, energy, [0] * (hr_lo % 3 if flags & 0x10 else 0)), 0
    return draw(st.binary(max_size=14)), 0


RECORD_KINDS = [(p, "hrm") for p in "aaaaaaaaaabbbbb"] + [("a", "status"), ("b", "status"), ("a", "note")]
# How long after the previous one a partner's record arrives, given the beats it
# carries: in step (BLE jitter), late (the chain falls behind), early (it runs ahead),
# after a gap, a little back in time (a host clock step), or anywhen.
PACES = {
    "in step": st.floats(-0.25, 0.25),
    "late": st.floats(0.2, 1.5),
    "early": st.floats(-1.0, -0.2),
}
OTHER_PACES = {"gap": st.floats(2.0, 12.0), "back": st.floats(-0.4, 0.0), "any": st.floats(0.0, 2.0)}
TIME_KINDS = ["as is"] * 17 + ["whole float", "int"]


@st.composite
def mixed_streams(draw):
    """Records of both partners, each on their own clock: arrivals in step with the
    beats, late, early, after gaps or a step back, times as floats or ints; connection
    changes, malformed payloads of every kind, dropped zeros, annotations."""
    beat_units = draw(st.integers(300, 1500))  # this stream's resting rhythm
    records, clock = [], {"a": 0.0, "b": 0.0}
    for _ in range(draw(st.integers(0, 60))):
        partner, kind = draw(st.sampled_from(RECORD_KINDS))
        payload, carried_units = draw(payloads(beat_units)) if kind == "hrm" else (b"", 0)
        pace = draw(st.sampled_from(["in step"] * 6 + ["late", "early"] * 2 + list(OTHER_PACES)))
        if pace in PACES:
            step_s = carried_units / 1024 + draw(PACES[pace])
        else:
            step_s = draw(OTHER_PACES[pace])
        t = clock[partner] = round(clock[partner] + step_s, 6)
        when = {"as is": t, "whole float": float(round(t)), "int": round(t)}[draw(st.sampled_from(TIME_KINDS))]
        if kind == "hrm":
            records.append(Notification(when, partner, payload))
        elif kind == "status":
            records.append(StatusChange(when, partner, draw(st.sampled_from(["connected", "disconnected"]))))
        else:
            records.append(Annotation(when, "marked", "test"))
    return records


band = st.sampled_from([0.0, 0.05, 0.3, 1.0, 2.5]) | st.floats(0.0, 5.0)
configs = st.builds(BeatTimingConfig, max_ahead_s=band, max_behind_s=band, max_gap_s=st.floats(0.5, 8.0))


@settings(max_examples=200, deadline=None)
@given(mixed_streams(), st.one_of(st.just(CFG), configs), st.sampled_from([1, 2, 3, 64]))
def test_batch_equals_beat_timer_on_random_streams(records, cfg, first_scan):
    # Short scans make the scan boundaries fall inside these short streams.
    with mock.patch.object(beats_batch, "_FIRST_SCAN", first_scan):
        batch = batch_beats_by_partner(records, ("a", "b"), cfg)
    for partner in ("a", "b"):
        assert_identical(batch[partner], reference(records, partner, cfg))
