"""The two-partner simulator: physiology, strap behaviour, artifacts, truth and fixtures."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from devices.hrs import RR_UNITS_PER_SECOND, parse_hrm
from devices.records import BeatSource, Notification, StatusChange
from devices.recording import RecordingWriter, read_records
from devices.scenarios import (
    CALM_LEAD_IN_S, SCENARIOS, SESSION_S, SETTLE_IN_S, ScenarioError, get_scenario,
)
from devices.simulate import (
    GRID_HZ, SimulatedSession, SimulatorSource, simulate, simulate_to_file, truth_path_for,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
COMMAND = re.compile(
    r"coreg simulate --scenario (\w+) --seed (\d+) --out fixtures/(sim_\w+\.jsonl\.gz)"
)


def fixture_commands() -> dict[str, tuple[int, str]]:
    """Scenario name -> (seed, file name), as documented in fixtures/README.md."""
    text = (FIXTURES / "README.md").read_text(encoding="utf-8")
    return {name: (int(seed), out) for name, seed, out in COMMAND.findall(text)}


@lru_cache(maxsize=None)
def session(name: str, seed: int | None = None) -> SimulatedSession:
    if seed is None:
        seed = fixture_commands()[name][0]
    return simulate(SCENARIOS[name], seed)


def parsed(sim: SimulatedSession, partner: str) -> list[tuple[float, object]]:
    return [(r.t_s, parse_hrm(r.payload)) for r in sim.records
            if isinstance(r, Notification) and r.partner == partner]


def mean_hr_bpm(rr_units: np.ndarray, rr_end_t_s: np.ndarray, lo_s: float, hi_s: float,
                keep: np.ndarray | None = None) -> float:
    """Mean heart rate over beats ending in [lo, hi): beats per minute of summed RR."""
    m = (rr_end_t_s >= lo_s) & (rr_end_t_s < hi_s)
    if keep is not None:
        m &= keep
    return 60.0 * RR_UNITS_PER_SECOND * m.sum() / rr_units[m].sum()


def hr10_bpm(rr_units: np.ndarray, rr_end_t_s: np.ndarray, duration_s: float):
    """HR over trailing 10 s windows each second (prefix sums), with the window ends."""
    ends = np.arange(10.0, duration_s, 1.0)
    csum = np.concatenate(([0], np.cumsum(rr_units)))
    hi = np.searchsorted(rr_end_t_s, ends, side="right")
    lo = np.searchsorted(rr_end_t_s, ends - 10.0, side="right")
    return ends, 60.0 * RR_UNITS_PER_SECOND * (hi - lo) / (csum[hi] - csum[lo])


def clean_mask(sim: SimulatedSession, partner: str) -> np.ndarray:
    """Emitted RR not touching a scripted artifact (ground truth), for measuring HR."""
    b, art = sim.beats[partner], sim.truth["artifacts"][partner]
    keep = np.ones(b.rr_units.size, bool)
    for t in art["ectopic_t_s"] + art["missed_t_s"] + art["extra_t_s"]:
        keep &= np.abs(b.rr_end_t_s - t) > 2.5
    return keep


# -- scenarios ------------------------------------------------------------------------


def test_registry_holds_six_twenty_minute_scenarios_with_a_calm_lead_in():
    assert set(SCENARIOS) == {"calm", "divergence", "escalation", "flooding", "artifacts",
                              "disconnect"}
    for sc in SCENARIOS.values():
        assert sc.duration_s == SESSION_S == 1200.0
        assert min(ep.start_s for ep in sc.episodes) >= CALM_LEAD_IN_S >= 240.0
        assert all(g.start_s >= CALM_LEAD_IN_S for g in sc.dropouts + sc.disconnects)
    with pytest.raises(ScenarioError, match="known: artifacts, calm"):
        get_scenario("argument")
    with pytest.raises(ScenarioError, match="above 10 %"):
        dataclasses.replace(SCENARIOS["artifacts"], missed_rate=0.1)


def test_scripts_realise_the_behaviour_table():
    calm = SCENARIOS["calm"]
    laughs = [ep for ep in calm.episodes if ep.kind == "laugh"]
    assert {ep.partner for ep in laughs} == {"a", "b"}
    assert all(ep.delta_bpm == 12 and ep.end_s - ep.start_s < 15 for ep in laughs)
    (stand,) = [ep for ep in calm.episodes if ep.kind == "standing"]
    assert stand.delta_bpm == 10 and stand.end_s - stand.start_s < 20
    assert all(abs(ep.delta_bpm) + calm.wander_bpm <= 8 for ep in calm.episodes if ep.kind == "calm")

    for name in ("divergence", "artifacts", "disconnect"):
        risers = [ep for ep in SCENARIOS[name].episodes if ep.delta_bpm >= 15]
        for ep in risers:
            assert ep.rise_s <= 60 and ep.hold_s >= 90
            others = [o for o in SCENARIOS[name].episodes if o.partner != ep.partner
                      and o.start_s < ep.end_s and ep.start_s < o.end_s]
            assert all(o.delta_bpm <= 0 for o in others)
    assert {ep.partner for ep in SCENARIOS["divergence"].episodes if ep.delta_bpm >= 15} == {"a", "b"}

    a, b = SCENARIOS["escalation"].episodes
    assert min(a.delta_bpm, b.delta_bpm) >= 12 and abs(a.start_s - b.start_s) <= 30
    assert min(a.plateau_end_s, b.plateau_end_s) - max(a.plateau_start_s, b.plateau_start_s) >= 90

    flood = max(SCENARIOS["flooding"].episodes, key=lambda ep: ep.delta_bpm)
    assert flood.delta_bpm >= 30 and flood.hold_s >= 60 and flood.fall_s >= 120

    art = SCENARIOS["artifacts"]
    assert art.ectopic_rate + art.missed_rate == pytest.approx(0.025)
    assert len(art.dropouts) == 2 and all(10 <= g.duration_s <= 30 for g in art.dropouts)
    (link,) = SCENARIOS["disconnect"].disconnects
    assert link.partner == "b" and link.duration_s == 60
    assert all(link.start_s > ep.end_s for ep in SCENARIOS["disconnect"].episodes)


# -- determinism and format -------------------------------------------------------------


def test_same_seed_same_session_other_seed_another():
    short = SCENARIOS["artifacts"].shortened(300)
    one, two, other = simulate(short, 3), simulate(short, 3), simulate(short, 4)
    assert one.records == two.records and one.truth == two.truth
    assert one.records != other.records


def test_same_seed_same_file_bytes(tmp_path):
    paths = [tmp_path / d / "s.jsonl.gz" for d in ("x", "y", "z")]
    for path, seed in zip(paths, (8, 8, 9)):
        path.parent.mkdir()
        simulate_to_file("disconnect", seed, path, duration_s=240)
    header, records = read_records(paths[0])
    assert 230 < records[-1].t_s < 240  # the disconnect scripted at 800 s is cut off
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    assert truth_path_for(paths[0]).read_bytes() == truth_path_for(paths[1]).read_bytes()


def test_every_payload_parses_with_the_strap_flag_layouts():
    sim = session("artifacts")
    flags = {"a": set(), "b": set()}
    for r in sim.records:
        if isinstance(r, Notification):
            parse_hrm(r.payload)
            flags[r.partner].add(r.payload[0])
    assert flags["a"] == {0x10}  # Polar H10: the RR flag even when no RR is carried
    # contact-sensing strap: 0x16 with RR, 0x06 without, 0x1E / 0x0E with energy,
    # 0x04 when contact is lost at a dropout
    assert {0x16, 0x1E, 0x04} <= flags["b"] <= {0x16, 0x06, 0x1E, 0x0E, 0x04}


def test_arrival_times_are_microseconds_monotonic_and_merged():
    sim = session("disconnect")
    ts = [r.t_s for r in sim.records]
    assert ts == sorted(ts)
    assert all(round(t, 6) == t for t in ts)
    for p in "ab":
        own = [r.t_s for r in sim.records if isinstance(r, Notification) and r.partner == p]
        gaps = np.diff(own)
        assert gaps.min() > 0.85 and np.median(gaps) == pytest.approx(1.0, abs=0.05)
    for p in "ab":
        first = next(r for r in sim.records if r.partner == p)
        assert isinstance(first, StatusChange) and first.status == "connected"


# -- beats and RR ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["calm", "artifacts", "disconnect"])
def test_reconstructed_rr_add_up_to_the_true_beat_times(name):
    sim = session(name)
    for p in "ab":
        b = sim.beats[p]
        notes = parsed(sim, p)
        units = np.array([round(ms * 1.024) for _, m in notes for ms in m.rr_ms], dtype=np.int64)
        np.testing.assert_array_equal(units, b.rr_units)
        # Each RR is the difference of two consecutive detected beats on the 1/1024 s clock.
        det = np.round(b.detected_t_s * RR_UNITS_PER_SECOND).astype(np.int64)
        end = np.searchsorted(det, np.round(b.rr_end_t_s * RR_UNITS_PER_SECOND))
        np.testing.assert_array_equal(det[end] - det[end - 1], units)
        # Running sums of consecutive RR land exactly on the beats; chains break only at gaps.
        art = sim.truth["artifacts"][p]
        chain_breaks = np.count_nonzero(np.diff(end) != 1)
        assert chain_breaks == len(art["dropouts"]) + len(art["disconnects"])
        # Detected = true beats - missed + extra (as sets of strap-clock times).
        gaps = art["dropouts"]
        true_t = [t for t in b.beat_t_s if not any(g["start_s"] <= t <= g["end_s"] for g in gaps)]
        expected = sorted(set(true_t) - set(art["missed_t_s"]) | set(art["extra_t_s"]))
        np.testing.assert_array_equal(b.detected_t_s, expected)
        # Every RR arrives with the first notification after its beat (5 ms-1.1 s later).
        arrival = np.repeat([t for t, _ in notes], [len(m.rr_ms) for _, m in notes])
        lag = arrival - b.rr_end_t_s
        assert lag.min() > 0.005 and lag.max() < 1.1


def test_notifications_carry_mostly_one_or_two_rr_and_a_sensible_hr():
    sim = session("calm")
    per_note = []
    for p in "ab":
        notes = parsed(sim, p)
        per_note += [len(m.rr_ms) for _, m in notes]
        counts = np.bincount([len(m.rr_ms) for _, m in notes], minlength=4)
        assert counts[1:3].sum() / counts.sum() > 0.97
        assert counts[1] > counts[2] > 0
        # As many RR per second as beats per second at ~60-90 bpm.
        rate = counts @ np.arange(counts.size) / SESSION_S
        assert rate == pytest.approx(np.mean(sim.beats[p].hr_bpm) / 60, rel=0.01)
        # The strap's HR field follows the RR it carries.
        diffs = [m.hr_bpm - 60000 / np.mean(m.rr_ms) for _, m in notes if m.rr_ms]
        assert np.abs(diffs).max() < 10 and abs(np.mean(diffs)) < 1
    # A high heart rate gives notifications with more RR.
    flooded = [len(m.rr_ms) for t, m in parsed(session("flooding"), "a") if 445 < t < 565]
    assert np.mean(flooded) > np.mean(per_note) + 0.35


# -- physiology against the script --------------------------------------------------------


@pytest.mark.parametrize("name", ["divergence", "escalation", "flooding", "artifacts", "disconnect"])
def test_measured_hr_follows_the_scripted_episodes(name):
    sim = session(name)
    keep = {p: clean_mask(sim, p) for p in "ab"}
    rr = {p: (sim.beats[p].rr_units, sim.beats[p].rr_end_t_s) for p in "ab"}
    base = {p: mean_hr_bpm(*rr[p], 0.0, SETTLE_IN_S, keep[p]) for p in "ab"}
    assert all(55 < base[p] < 85 for p in "ab")
    for ep in sim.truth["episodes"]:
        lo, hi = ep["plateau_s"]
        for p, delta in ep["delta_bpm"].items():
            rise = mean_hr_bpm(*rr[p], lo, hi, keep[p]) - base[p]
            assert abs(rise - delta) <= 3, (ep, p, rise)
            if ep["pattern"] == "divergence" and p != ep["partner"]:
                assert rise <= 6, (ep, p, rise)  # the other one stays near baseline
        if ep["pattern"] == "flooding":
            p = ep["partner"]
            ends, hr10 = hr10_bpm(*rr[p], sim.truth["duration_s"])
            plateau = hr10[(ends - 10 >= lo) & (ends <= hi)]
            assert np.all((plateau > 100) | (plateau >= base[p] + 30))


def test_calm_talk_wanders_within_8_bpm_and_laugh_and_standing_stay_short():
    sim = session("calm")
    brief = [ep for ep in sim.truth["episodes"] if ep["pattern"] in ("laugh", "standing")]
    assert {ep["pattern"]: ep["end_s"] - ep["start_s"] for ep in brief} == {"laugh": 14.0,
                                                                           "standing": 19.0}
    assert not any(ep["expect_prompt"] for ep in sim.truth["episodes"])
    for p in "ab":
        b = sim.beats[p]
        base = mean_hr_bpm(b.rr_units, b.rr_end_t_s, 0.0, SETTLE_IN_S)
        ends, hr10 = hr10_bpm(b.rr_units, b.rr_end_t_s, SESSION_S)
        outside = np.ones(ends.size, bool)
        for ep in brief:
            outside &= ~((ends >= ep["start_s"]) & (ends - 10 <= ep["end_s"]))
        assert np.abs(hr10[outside] - base).max() <= 8
        assert np.ptp(hr10[outside]) > 5  # it does wander
        for ep in brief:
            if ep["partner"] in (None, p):
                inst = 60 * RR_UNITS_PER_SECOND / b.rr_units
                during = (b.rr_end_t_s > ep["start_s"]) & (b.rr_end_t_s < ep["end_s"])
                assert inst[during].max() - base >= 7  # the bump is really there


def test_activation_lowers_rsa():
    sim = session("flooding")
    b = sim.beats["a"]
    plateau, rest = slice(445 * GRID_HZ, 565 * GRID_HZ), slice(0, 180 * GRID_HZ)
    # The scripted curve: the breathing-band swing (what a 10 s mean removes) shrinks
    # by more than the Mayer wave and speech leave behind.
    fast_bpm = b.hr_bpm - np.convolve(b.hr_bpm, np.ones(10 * GRID_HZ) / (10 * GRID_HZ), "same")
    assert fast_bpm[plateau].std() < 0.6 * fast_bpm[rest].std()
    # The beats: RMSSD, the vagal index the monitor shows, falls by more than half.
    rr_ms = b.rr_units * 1000 / RR_UNITS_PER_SECOND

    def rmssd_ms(lo_s, hi_s):
        m = (b.rr_end_t_s[1:] >= lo_s) & (b.rr_end_t_s[1:] < hi_s)
        return np.sqrt(np.mean(np.diff(rr_ms)[m] ** 2))

    assert rmssd_ms(445, 565) < 0.5 * rmssd_ms(0, 180)


# -- artifacts ------------------------------------------------------------------------


def test_artifact_rates_and_shapes_match_the_request():
    sim = session("artifacts")
    sc = SCENARIOS["artifacts"]
    for p in "ab":
        art, b = sim.truth["artifacts"][p], sim.beats[p]
        n = art["n_beats"]
        assert len(art["ectopic_t_s"]) / n == pytest.approx(sc.ectopic_rate, abs=0.002)
        assert len(art["missed_t_s"]) / n == pytest.approx(sc.missed_rate, abs=0.002)
        total = len(art["ectopic_t_s"] + art["missed_t_s"] + art["extra_t_s"]) / n
        assert total == pytest.approx(0.03, abs=0.01)
        rr, ends = b.rr_units.astype(float), b.rr_end_t_s

        def local(i):  # median RR of the neighbours, skipping the artifact itself
            return np.median(np.r_[rr[max(i - 6, 0): i - 1], rr[i + 3: i + 8]])

        for t in art["ectopic_t_s"]:
            (i,) = np.flatnonzero(ends == t)
            short, pause = rr[i] / local(i), (rr[i] + rr[i + 1]) / (2 * local(i))
            # 20-35 % premature against the beat's own RR; RSA blurs the local median
            assert 0.55 < short < 0.9 and 0.85 < pause < 1.15 and rr[i + 1] > 1.05 * local(i)
        for t in art["missed_t_s"]:
            (i,) = np.flatnonzero(ends > t)[:1]
            assert 1.75 < rr[i] / local(i) < 2.25
        for t in art["extra_t_s"]:
            (i,) = np.flatnonzero(ends == t)
            assert 0.85 < (rr[i] + rr[i + 1]) / local(i) < 1.15


def test_dropouts_and_disconnects_silence_the_strap():
    sim = session("artifacts")
    for p in "ab":
        notes = parsed(sim, p)
        for gap in sim.truth["artifacts"][p]["dropouts"]:
            # (a notification sent just before the dropout may arrive up to 60 ms into it)
            inside = [m for t, m in notes if gap["start_s"] + 0.061 < t <= gap["end_s"]]
            assert all(m.contact is False and m.rr_ms == () for m in inside)
        lost = [t for t, m in notes if m.contact is False]
        if p == "a":  # a Polar H10 does not report contact: silence
            assert lost == []
        else:  # the contact-sensing strap reports the lost contact once, without RR
            assert len(lost) == len(sim.truth["artifacts"][p]["dropouts"]) == 1
            (gap,) = sim.truth["artifacts"][p]["dropouts"]
            assert gap["start_s"] <= lost[0] <= gap["start_s"] + 1.1
    sim = session("disconnect")
    (link,) = sim.truth["artifacts"]["b"]["disconnects"]
    status = [(r.t_s, r.status) for r in sim.records if isinstance(r, StatusChange) and r.partner == "b"]
    assert status[1:] == [(link["start_s"], "disconnected"), (link["end_s"], "connected")]
    assert link["end_s"] - link["start_s"] == pytest.approx(60, abs=2)
    during = [r for r in sim.records if r.partner == "b" and isinstance(r, Notification)
              and link["start_s"] - 0.4 < r.t_s < link["end_s"]]
    assert during == []
    # Cut off mid-disconnect: the strap is not back by the end, and the truth says so.
    cut = simulate(SCENARIOS["disconnect"].shortened(830), 6)
    (link,) = cut.truth["artifacts"]["b"]["disconnects"]
    assert link["end_s"] is None
    last_b = [r for r in cut.records if r.partner == "b"][-1]
    assert isinstance(last_b, StatusChange) and last_b.status == "disconnected"


# -- files, fixtures, live source --------------------------------------------------------


def test_file_reads_back_as_the_in_memory_session(tmp_path):
    out = tmp_path / "sim_escalation.jsonl.gz"
    sim = simulate_to_file("escalation", 21, out, duration_s=420)
    header, records = read_records(out)
    assert header == sim.header and records == sim.records
    assert json.loads(truth_path_for(out).read_text()) == sim.truth
    assert sim.truth["duration_s"] == 420 and sim.truth["episodes"][0]["end_s"] == 420
    again = tmp_path / "again.jsonl.gz"
    with RecordingWriter(again, header) as writer:
        for record in records:
            writer.write(record)
    assert gzip.decompress(again.read_bytes()) == gzip.decompress(out.read_bytes())
    with pytest.raises(FileExistsError):
        simulate_to_file("escalation", 21, out, duration_s=420)


def test_truth_path_replaces_the_recording_suffix():
    assert truth_path_for("f/sim_calm.jsonl.gz") == Path("f/sim_calm.truth.json")
    assert truth_path_for("sim.jsonl") == Path("sim.truth.json")
    assert truth_path_for("sim.rec") == Path("sim.rec.truth.json")


def test_committed_fixtures_equal_freshly_generated_ones(tmp_path):
    commands = fixture_commands()
    assert set(commands) == set(SCENARIOS)
    for name, (seed, file_name) in commands.items():
        assert file_name == f"sim_{name}.jsonl.gz"
        committed = FIXTURES / file_name
        assert committed.stat().st_size < 100_000
        fresh = tmp_path / file_name
        simulate_to_file(name, seed, fresh)
        # The recorded lines byte for byte; the gzip framing around them depends on
        # the zlib build, so it is compared through decompression.
        assert gzip.decompress(fresh.read_bytes()) == gzip.decompress(committed.read_bytes()), name
        assert truth_path_for(fresh).read_bytes() == truth_path_for(committed).read_bytes(), name
        truth = json.loads(truth_path_for(committed).read_text())
        assert (truth["scenario"], truth["seed"], truth["settle_in_s"]) == (name, seed, 180)
        for ep in truth["episodes"]:
            assert {"pattern", "partner", "start_s", "end_s", "peak_delta_bpm",
                    "expect_prompt"} <= set(ep)
            assert ep["expect_prompt"] == (ep["pattern"] in ("divergence", "escalation", "flooding"))
        assert set(truth["artifacts"]) == {"a", "b"}


def test_simulator_source_paces_records_in_real_time():
    now = [100.0]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    async def play(source, limit):
        got = []
        async for record in source:
            got.append((now[0] - 100.0, record))
            if len(got) == limit:
                await source.close()
        return got

    source = SimulatorSource("calm", 1, speed=4.0, duration_s=60, sleep=fake_sleep,
                             clock=lambda: now[0])
    assert isinstance(source, BeatSource)
    got = asyncio.run(play(source, limit=50))
    assert len(got) == 50 and [r for _, r in got] == source.session.records[:50]
    for wall_s, record in got:
        assert wall_s == pytest.approx(record.t_s / 4.0, abs=1e-9)
    assert all(s > 0 for s in slept)

    fast = SimulatorSource("calm", 1, speed=0, duration_s=60, sleep=fake_sleep, clock=lambda: now[0])
    slept.clear()
    assert len(asyncio.run(play(fast, limit=10**6))) == len(fast.session.records)
    assert set(slept) <= {0}
    with pytest.raises(ValueError, match="speed"):
        SimulatorSource("calm", 1, speed=-1.0)
