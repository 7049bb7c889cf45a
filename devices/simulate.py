"""Simulate two partners' hearts and the chest straps that report them.

Each partner's heart rate is a sum of a personal resting level, a slow smoothed random
walk, respiratory sinus arrhythmia (breathing at 0.2-0.3 Hz, irregular while speaking,
weaker under activation as vagal tone withdraws), a 0.1 Hz Mayer wave and the scripted
episodes of a ``Scenario``. Beats follow from the integral pulse-frequency modulation
model (Bayly 1968; Mateo & Laguna 2000): beat k falls where the integral of HR/60 reaches
k. Artifacts (ectopic, missed and extra beats, contact dropouts, link losses) are then
injected with their ground truth, and the beats are packed into Heart Rate Measurement
notifications about once a second, as a Polar H10 (flags 0x10) and a contact-sensing
strap (flags 0x16) send them, arriving on the host after a small Bluetooth latency.

Everything is a deterministic function of the scenario and the seed.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import numpy as np

from devices.recording import RecordingWriter
from devices.records import (
    Notification,
    PartnerInfo,
    Record,
    SessionHeader,
    SourceRecord,
    StatusChange,
)
from devices.scenarios import (
    SETTLE_IN_S,
    Scenario,
    get_scenario,
    scripted_delta_bpm,
    truth_episodes,
)
from devices.simulate_strap import inject_beat_artifacts, strap_notifications

GRID_HZ = 100          # heart-rate curve and IPFM integration grid
CONTROL_HZ = 10        # slow components (drift, speech, breathing rate) before interpolation
STARTED_AT = "2025-01-01T19:00:00Z"  # fixed, so that files are reproducible
DEVICES = {"a": "Polar H10 (simulated)", "b": "contact-sensing HRM strap (simulated)"}
FAST_YIELD_EVERY = 100  # unpaced playback hands control back this often (records)


@dataclass(frozen=True, eq=False)
class PartnerBeats:
    """What really happened to one partner's heart, for tests (times in session seconds).

    ``hr_bpm`` is the scripted heart-rate curve sampled at ``GRID_HZ`` from t = 0;
    ``beat_t_s`` every heartbeat (ectopic ones included) on the strap's 1/1024 s clock;
    ``detected_t_s`` the beats the strap reported (missed removed, extra added, none
    during dropouts); ``rr_units`` the RR intervals actually sent (1/1024 s), in order,
    and ``rr_end_t_s`` the beat that ends each of them.
    """

    partner: str
    rest_bpm: float
    hr_bpm: np.ndarray
    beat_t_s: np.ndarray
    detected_t_s: np.ndarray
    rr_units: np.ndarray
    rr_end_t_s: np.ndarray


@dataclass(frozen=True, eq=False)
class SimulatedSession:
    """A simulated recording: header, records in time order, truth (JSON-ready), beats."""

    header: SessionHeader
    records: list[Record]
    truth: dict
    beats: dict[str, PartnerBeats]


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average with edge padding (width in samples)."""
    width = max(int(width), 1)
    padded = np.pad(x, (width // 2, width - 1 - width // 2), mode="edge")
    return np.convolve(padded, np.ones(width) / width, mode="valid")


def _speech_masks(rng: np.random.Generator, n_ctl: int) -> dict[str, np.ndarray]:
    """Turn-taking: alternating turns of 3-20 s with short pauses; 1 while speaking."""
    n_turns = int(n_ctl / CONTROL_HZ / 3) + 2
    turn_s = rng.uniform(3.0, 20.0, n_turns)
    pause_s = rng.uniform(0.3, 2.5, n_turns)
    starts = np.concatenate(([0.0], np.cumsum(turn_s + pause_s)[:-1])) + rng.uniform(0, 5)
    speaker = (np.arange(n_turns) + rng.integers(2)) % 2
    t_ctl = np.arange(n_ctl) / CONTROL_HZ
    turn = np.searchsorted(starts, t_ctl, side="right") - 1
    talking = (turn >= 0) & (t_ctl < starts[turn] + turn_s[turn])
    return {p: (talking & (speaker[turn] == i)).astype(float) for i, p in enumerate("ab")}


def heart_rate_curve(
    rng: np.random.Generator, scenario: Scenario, partner: str, speech: np.ndarray, rest_bpm: float
) -> np.ndarray:
    """A partner's instantaneous heart rate (bpm) on the GRID_HZ grid from t = 0.

    Drift is a smoothed random walk scaled so that it stays within ``wander_bpm`` of its
    mean over the settle-in; RSA amplitude falls as exp(-activation / 15 bpm), the
    vagal withdrawal of stress (Berntson et al. 1997); speech adds about 1 bpm and
    makes breathing irregular in rate and depth.
    """
    n_ctl = speech.size
    n = int(round(scenario.duration_s * GRID_HZ)) + 1
    t_ctl = np.arange(n_ctl) / CONTROL_HZ
    t = np.arange(n) / GRID_HZ
    walk = _smooth(np.cumsum(rng.normal(size=n_ctl)), 60 * CONTROL_HZ)
    walk -= walk[: int(min(SETTLE_IN_S, scenario.duration_s) * CONTROL_HZ) + 1].mean()
    drift = scenario.wander_bpm * walk / max(np.abs(walk).max(), 1e-9)
    talk = _smooth(speech, 2 * CONTROL_HZ)
    breath_hz = (
        rng.uniform(0.22, 0.28)
        + 0.03 * _smooth(rng.normal(size=n_ctl), 20 * CONTROL_HZ) * math.sqrt(20 * CONTROL_HZ)
        + 0.08 * talk * _smooth(rng.normal(size=n_ctl), 3 * CONTROL_HZ) * math.sqrt(3 * CONTROL_HZ)
    )
    depth = 1.0 + 0.35 * talk * _smooth(rng.normal(size=n_ctl), 2 * CONTROL_HZ) * math.sqrt(2 * CONTROL_HZ)
    slow = np.stack([drift + 1.0 * talk, np.clip(breath_hz, 0.12, 0.45), np.clip(depth, 0.3, 1.8)])
    drift_g, breath_g, depth_g = (np.interp(t, t_ctl, row) for row in slow)
    episodes = scripted_delta_bpm(scenario, partner, t)
    rsa_amp = rng.uniform(2.5, 4.0) * depth_g * np.exp(-np.maximum(episodes, 0.0) / 15.0)
    breath_phase = 2 * np.pi * np.cumsum(breath_g) / GRID_HZ + rng.uniform(0, 2 * np.pi)
    mayer = rng.uniform(0.8, 1.5) * np.sin(2 * np.pi * 0.1 * t + rng.uniform(0, 2 * np.pi))
    return rest_bpm + drift_g + episodes + rsa_amp * np.sin(breath_phase) + mayer


def ipfm_beats(rng: np.random.Generator, hr_bpm: np.ndarray, jitter_s: float = 0.003) -> np.ndarray:
    """Beat times (s) by integral pulse-frequency modulation of ``hr_bpm`` on GRID_HZ.

    Beat k falls where the running integral of HR/60 crosses k + phase (linear
    interpolation inside a grid step); a few ms of timing jitter stands for the
    beat-to-beat variability the smooth curve lacks.
    """
    t = np.arange(hr_bpm.size) / GRID_HZ
    phase = np.concatenate(([0.0], np.cumsum((hr_bpm[:-1] + hr_bpm[1:]) / 2) / (60 * GRID_HZ)))
    targets = np.arange(rng.uniform(0, 1), phase[-1], 1.0)
    i = np.clip(np.searchsorted(phase, targets), 1, phase.size - 1)
    frac = (targets - phase[i - 1]) / (phase[i] - phase[i - 1])
    beats = t[i - 1] + frac / GRID_HZ + rng.normal(0, jitter_s, targets.size)
    return beats[(beats > 0) & (beats < t[-1])]


def _times(t_s: np.ndarray) -> list[float]:
    # Strap-clock times are multiples of 1/1024 s: their repr is exact, so tests can
    # match them against beat arrays with ==.
    return [float(x) for x in t_s]


def simulate(scenario: Scenario, seed: int) -> SimulatedSession:
    """Simulate ``scenario`` for both partners; the same seed gives the same session.

    Records are the two straps' notifications and status changes merged in time order
    (t in s since session start, rounded to the µs); ``truth`` is the JSON-ready ground
    truth (episodes, artifacts); ``beats`` the true beats per partner.
    """
    conversation, *partner_rngs = np.random.default_rng(seed).spawn(3)
    speech = _speech_masks(conversation, int(round(scenario.duration_s * CONTROL_HZ)) + 1)
    records: list[Record] = []
    beats: dict[str, PartnerBeats] = {}
    artifacts: dict[str, dict] = {}
    for partner, rng in zip("ab", partner_rngs):
        rest_bpm = rng.uniform(62.0, 78.0)
        hr_bpm = heart_rate_curve(rng, scenario, partner, speech[partner], rest_bpm)
        dropouts, links = ([g for g in gaps if g.partner == partner and g.start_s < scenario.duration_s]
                           for gaps in (scenario.dropouts, scenario.disconnects))
        true_t, detected, marks = inject_beat_artifacts(
            rng, ipfm_beats(rng, hr_bpm), scenario, dropouts + links)
        strap = strap_notifications(rng, partner, detected, scenario, dropouts, links)
        records += strap.records
        beats[partner] = PartnerBeats(partner, rest_bpm, hr_bpm, true_t, strap.detected_t_s,
                                      strap.rr_units, strap.rr_end_t_s)
        artifacts[partner] = {
            "n_beats": int(true_t.size),
            "ectopic_t_s": _times(marks["ectopic"]),
            "missed_t_s": _times(marks["missed"]),
            "extra_t_s": _times(marks["extra"]),
            "dropouts": [{"start_s": g.start_s, "end_s": min(g.end_s, scenario.duration_s)}
                         for g in dropouts],
            "disconnects": strap.disconnects,
        }
    records.sort(key=lambda r: (r.t_s, r.partner))
    header = SessionHeader(STARTED_AT, {p: PartnerInfo(f"Partner {p.upper()} (simulated)",
                                                       DEVICES[p]) for p in "ab"})
    truth = {
        "scenario": scenario.name, "seed": seed, "duration_s": scenario.duration_s,
        "settle_in_s": int(SETTLE_IN_S), "description": scenario.description,
        "rest_bpm": {p: round(b.rest_bpm, 2) for p, b in beats.items()},
        "devices": dict(DEVICES),
        "episodes": truth_episodes(scenario), "artifacts": artifacts,
    }
    return SimulatedSession(header, records, truth, beats)


def truth_path_for(out_path: str | os.PathLike) -> Path:
    """Where the truth file of a recording goes: .jsonl(.gz) replaced by .truth.json."""
    path = Path(out_path)
    for suffix in (".jsonl.gz", ".jsonl"):
        if path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)] + ".truth.json")
    return path.with_name(path.name + ".truth.json")


def simulate_to_file(
    scenario_name: str, seed: int, out_path: str | os.PathLike, *, duration_s: float | None = None
) -> SimulatedSession:
    """Simulate a registered scenario into a coreg-session recording plus its truth file.

    The output is byte-for-byte reproducible from (name, seed, duration_s): the writer
    leaves the time and file name out of a gzip header.
    Existing files are never overwritten (FileExistsError); ScenarioError for an
    unknown name.
    """
    scenario = get_scenario(scenario_name)
    if duration_s is not None:
        scenario = scenario.shortened(duration_s)
    truth_path = truth_path_for(out_path)
    if truth_path.exists():
        raise FileExistsError(f"{truth_path}: the truth file already exists")
    session = simulate(scenario, seed)
    with RecordingWriter(out_path, session.header) as writer:
        for record in session.records:
            writer.write(record)
    with open(truth_path, "x", encoding="utf-8") as f:
        f.write(json.dumps(session.truth, indent=1, ensure_ascii=False) + "\n")
    return session


class SimulatorSource:
    """A beat source that plays a simulated session in real time (or ``speed`` times it).

    Records are yielded when the clock reaches start + t / speed; ``speed`` 0 or inf
    yields as fast as possible. ``sleep`` and ``clock`` (monotonic seconds, default the
    running loop's time) are injectable for tests, like RecordingSource's.
    """

    def __init__(
        self, scenario: Scenario | str, seed: int = 0, *, speed: float = 1.0,
        duration_s: float | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if math.isnan(speed) or speed < 0:
            raise ValueError(f"speed must be a positive factor (0 or inf: no pacing), got {speed!r}")
        if isinstance(scenario, str):
            scenario = get_scenario(scenario)
        if duration_s is not None:
            scenario = scenario.shortened(duration_s)
        self.session = simulate(scenario, seed)
        self.header = self.session.header
        self._speed = speed
        self._sleep = sleep
        self._clock = clock
        self._closed = False

    def __aiter__(self) -> AsyncIterator[SourceRecord]:
        return self._play()

    async def _play(self) -> AsyncIterator[SourceRecord]:
        clock = self._clock or asyncio.get_running_loop().time
        paced = 0 < self._speed < math.inf
        start = clock()
        for count, record in enumerate(self.session.records, 1):
            if self._closed:
                return
            if not isinstance(record, (Notification, StatusChange)):
                continue
            if paced:
                wait_s = start + record.t_s / self._speed - clock()
                if wait_s > 0:
                    await self._sleep(wait_s)
                if self._closed:
                    return
            elif count % FAST_YIELD_EVERY == 0:
                await self._sleep(0)  # let other tasks run during an unpaced burst
            yield record

    async def close(self) -> None:
        """Stop the playback; iteration ends at the next record."""
        self._closed = True
