"""Live == batch: each fixture run one tick at a time gives batch mode's arrays and
events exactly (to the last bit), as DESIGN.md requires."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.recording import read_records
from devices.scenarios import SCENARIOS, get_scenario
from devices.simulate import simulate
from monitor.live import LivePipeline
from monitor.pipeline import analyze_records

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
RECORDINGS = sorted(p.name for p in FIXTURES.glob("*.jsonl*"))


def run_live(header, records) -> LivePipeline:
    live = LivePipeline(header)
    for record in records:
        live.feed(record)
    live.advance(max(r.t_s for r in records))
    return live


def assert_identical(header, records) -> None:
    batch = analyze_records(header, records)
    live = run_live(header, records)
    assert [t.t_s for t in live.ticks] == list(batch.tick_t_s)
    for p, result in batch.partners.items():
        for name, column in result.columns().items():
            got = np.array([t.partners[p][name] for t in live.ticks], dtype=np.float64)
            want = np.asarray(column, dtype=np.float64)
            # Bit for bit: compare the raw 64-bit patterns (NaN included).
            assert np.array_equal(got.view(np.int64), want.view(np.int64)), (p, name)
    link = np.array([t.linkage_r for t in live.ticks])
    lag = np.array([t.linkage_lag_s for t in live.ticks])
    assert np.array_equal(link.view(np.int64), batch.linkage_r.view(np.int64))
    assert np.array_equal(lag.view(np.int64), batch.linkage_lag_s.view(np.int64))
    assert [e.to_json() for e in live.events] == [e.to_json() for e in batch.events]


@pytest.mark.parametrize("name", RECORDINGS)
def test_live_equals_batch_on_every_fixture(name: str) -> None:
    header, records = read_records(FIXTURES / name)
    assert_identical(header, records)


@given(
    name=st.sampled_from(sorted(SCENARIOS)),
    seed=st.integers(0, 10_000),
    start_s=st.sampled_from([240.0, 300.0, 420.0]),
)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_live_equals_batch_on_random_simulated_stretches(name: str, seed: int, start_s: float) -> None:
    session = simulate(get_scenario(name).shortened(start_s + 200.0), seed)
    assert_identical(session.header, session.records)

