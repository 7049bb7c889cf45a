"""Fuzzing the Heart Rate Measurement path: parser, vectorised parser, live pipeline.

A million payloads (encode_hrm output with random fields, then bit flips, truncation,
extension, random bytes, flag changes and zeroed RR values; see hrm_mutations.py) go
through ``parse_hrm_many``; a large sample also goes through ``parse_hrm``, and the two
must agree on every payload. Then a stream of such payloads, packed several hundred to
a second of session time, goes through the live pipeline (and part of it through the
live runner with its store): nothing may raise but MalformedPayload inside the parser,
and the pipeline must count exactly the malformed payloads the parser rejects.

The full run (10^6 payloads through the scalar parser and through the live pipeline,
a few minutes) is for a local machine:

    COREG_FUZZ_FULL=1 .venv/bin/python -m pytest tests/devices/test_fuzz.py -s -p no:cacheprovider

It prints the per-reason counts.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.hrs import RR_UNITS_PER_SECOND, MalformedPayload, encode_hrm, parse_hrm, parse_hrm_many
from devices.recording import read_records
from devices.records import Notification, PartnerInfo, SessionHeader
from monitor.live import LivePipeline
from monitor.runner import LiveRunner
from monitor.store import Store

from hrm_mutations import MUTATIONS, mutated_payloads

FULL = os.environ.get("COREG_FUZZ_FULL") == "1"
N_PAYLOADS = 1_000_000
N_SCALAR = N_PAYLOADS if FULL else 200_000
N_LIVE = N_PAYLOADS if FULL else 100_000
N_RUNNER = 100_000 if FULL else 20_000
PER_SECOND = 500  # notifications per second of session time in the packed live runs
FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "sim_divergence.jsonl.gz"
HEADER = SessionHeader(
    started_at="2026-01-01T00:00:00Z", partners={"a": PartnerInfo("A", "AA:01"), "b": PartnerInfo("B", "BB:02")}
)


def scalar_parse(payloads: list[bytes]) -> dict:
    """parse_hrm on each payload, gathered column by column like parse_hrm_many.

    Only MalformedPayload is caught: any other exception fails the test that calls this.
    """
    n = len(payloads)
    ok = np.ones(n, dtype=bool)
    hr = np.zeros(n, dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    zeros = np.zeros(n, dtype=np.int64)
    units: list[int] = []
    reasons: dict[int, str] = {}
    for i, payload in enumerate(payloads):
        try:
            m = parse_hrm(payload)
        except MalformedPayload as exc:
            ok[i] = False
            reasons[i] = exc.reason
            assert 0 <= exc.offset <= len(payload) and exc.detail
            continue
        hr[i], count[i], zeros[i] = m.hr_bpm, len(m.rr_ms), m.rr_zero_dropped
        units += [round(ms * RR_UNITS_PER_SECOND / 1000) for ms in m.rr_ms]
    return {"ok": ok, "hr": hr, "count": count, "zeros": zeros, "units": np.array(units, dtype=np.int64), "reasons": reasons}


@pytest.fixture(scope="module")
def payloads() -> tuple[list[bytes], np.ndarray]:
    return mutated_payloads(seed=20261126, n=N_PAYLOADS)


def test_a_million_payloads_parse_alike_one_by_one_and_at_once(payloads) -> None:
    data, kind = payloads
    many = parse_hrm_many(data)
    assert len(many) == N_PAYLOADS
    counts = Counter(many.malformed.values())
    # Every reason the parser knows turns up, and valid, untouched payloads never fail.
    assert set(counts) == {"truncated", "odd_rr_bytes", "hr_zero_no_rr"}
    assert many.ok[kind == MUTATIONS.index("none")].all()
    assert not many.ok[(kind == MUTATIONS.index("truncate"))].all()
    # The vectorised columns hang together over the whole million.
    assert many.rr_count.sum() == len(many.rr_units) and (many.rr_units > 0).all()
    assert (many.hr_bpm[~many.ok] == 0).all() and ((many.hr_bpm > 0) | (many.rr_count > 0))[many.ok].all()

    sample = data[:N_SCALAR]
    one = scalar_parse(sample)
    head = parse_hrm_many(sample)
    assert np.array_equal(one["ok"], head.ok)
    assert one["reasons"] == dict(head.malformed)
    assert np.array_equal(one["hr"], head.hr_bpm)
    assert np.array_equal(one["count"], head.rr_count)
    assert np.array_equal(one["zeros"], head.rr_zero_dropped)
    assert np.array_equal(one["units"], head.rr_units)
    # The sample is the head of the million: parsing it alone changes nothing.
    assert np.array_equal(head.rr_units, many.rr_units[: len(head.rr_units)])
    zero_rr = int(many.rr_zero_dropped.sum())
    print(f"\n{N_PAYLOADS} payloads, {N_SCALAR} also one by one: malformed {dict(counts)}, RR zeros dropped {zero_rr}")


mutations = st.sampled_from(["flip", "cut", "extend", "flags", "rr_zero", "none"])


@st.composite
def damaged(draw) -> bytes:
    """An encode_hrm payload with random fields, then one random mutation."""
    rr = draw(st.lists(st.integers(0, 0xFFFF), max_size=9))
    wide = draw(st.booleans())
    payload = bytearray(
        encode_hrm(
            draw(st.integers(0, 0xFFFF if wide else 0xFF)),
            rr,
            contact=draw(st.sampled_from([None, True, False])),
            energy_kj=draw(st.none() | st.integers(0, 0xFFFF)),
            hr_uint16=wide,
            rr_present=draw(st.booleans()) if not rr else None,
        )
    )
    what = draw(mutations)
    if what == "flip":
        at = draw(st.integers(0, len(payload) - 1))
        payload[at] ^= 1 << draw(st.integers(0, 7))
    elif what == "cut":
        del payload[draw(st.integers(0, len(payload) - 1)) :]
    elif what == "extend":
        payload += draw(st.binary(min_size=1, max_size=12))
    elif what == "flags":
        payload[0] = draw(st.integers(0, 255))
    elif what == "rr_zero" and rr:
        at = len(payload) - 2 * draw(st.integers(1, len(rr)))
        payload[at : at + 2] = b"\0\0"
    return bytes(payload)


@settings(max_examples=100, deadline=None)
@given(st.lists(damaged(), max_size=30))
def test_damaged_payloads_parse_alike_one_by_one_and_at_once(data: list[bytes]) -> None:
    one = scalar_parse(data)
    many = parse_hrm_many(data)
    assert np.array_equal(one["ok"], many.ok) and one["reasons"] == dict(many.malformed)
    assert np.array_equal(one["units"], many.rr_units) and np.array_equal(one["zeros"], many.rr_zero_dropped)


def expected_counts(data: list[bytes]) -> Counter:
    """What the beat timer must count: the parser's reasons, plus RR zeros dropped."""
    many = parse_hrm_many(data)
    counts = Counter(many.malformed.values())
    if zeros := int(many.rr_zero_dropped.sum()):
        counts["rr_zero"] = zeros
    return counts


def counted(pipeline: LivePipeline, partner: str) -> Counter:
    """What the live pipeline's beat timer of ``partner`` counted as malformed (it has
    no public accessor: the counts reach the summary through the batch analysis)."""
    return Counter(pipeline._p[partner].timer.malformed_counts)


def packed(data: list[bytes], first_t_s: float = 0.0) -> list[Notification]:
    """The payloads as notifications, alternating partners, PER_SECOND a second."""
    return [
        Notification(t_s=round(first_t_s + i / PER_SECOND, 6), partner="ab"[i % 2], payload=p)
        for i, p in enumerate(data)
    ]


def test_the_live_pipeline_takes_any_payload_and_counts_the_malformed(payloads) -> None:
    data = payloads[0][:N_LIVE]
    pipeline = LivePipeline(HEADER)
    for record in packed(data):
        pipeline.feed(record)
    pipeline.advance(N_LIVE / PER_SECOND)
    assert len(pipeline.ticks) == N_LIVE // PER_SECOND
    for k, partner in enumerate("ab"):
        assert counted(pipeline, partner) == expected_counts(data[k::2]), partner
    total = counted(pipeline, "a") + counted(pipeline, "b")
    print(f"\n{N_LIVE} notifications through the live pipeline, {len(pipeline.ticks)} ticks: counted {dict(total)}")


def test_the_live_runner_stores_every_notification_and_beats_only_good_ones(payloads, tmp_path) -> None:
    data = payloads[0][N_PAYLOADS - N_RUNNER :]
    store = Store(tmp_path / "fuzz.db")
    session_id = store.create_session(HEADER, label="fuzz", kind="live", config={})
    runner = LiveRunner(session_id, HEADER, [], store)
    beats: list[dict] = []
    runner.subscribe(lambda m: beats.append(m) if m["type"] == "beat" else None)
    for record in packed(data):
        runner.handle(record)
    store.finish_session(session_id, "finished")
    assert store.get_session(session_id).n_notifications == N_RUNNER
    assert len(beats) == int(parse_hrm_many(data).ok.sum())
    assert [r.payload for r in store.records(session_id)] == data
    store.close()


def test_a_real_session_with_damaged_notifications_runs_to_the_end() -> None:
    """The first 400 s of the divergence fixture at its own pace, one notification in
    thirty damaged: both baselines settle (at 180 s undamaged), the detector runs, and
    the counts match the parser's."""
    header, records = read_records(FIXTURE)
    records = [r for r in records if r.t_s <= 400.0]
    notes = [r for r in records if isinstance(r, Notification)]
    junk, _ = mutated_payloads(seed=7, n=len(notes))
    rng = np.random.default_rng(7)
    hit = rng.random(len(notes)) < 0.03
    swap = {id(r): p for r, p, h in zip(notes, junk, hit) if h}
    fed = [Notification(r.t_s, r.partner, swap.get(id(r), r.payload)) if isinstance(r, Notification) else r for r in records]
    pipeline = LivePipeline(header)
    for record in fed:
        pipeline.feed(record)
    pipeline.advance(fed[-1].t_s)
    kinds = Counter(e.kind for e in pipeline.events)
    assert kinds["settled"] == 2
    for partner in "ab":
        mine = [r.payload for r in fed if isinstance(r, Notification) and r.partner == partner]
        assert counted(pipeline, partner) == expected_counts(mine)
