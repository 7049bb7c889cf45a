"""The simulated straps: beat artifacts, and beats packed into notifications.

``devices.simulate`` makes each partner's true beats; this module turns them into what
a strap would actually deliver: a share of ectopic, missed and extra beats (with their
ground truth), then Heart Rate Measurement notifications about once a second, with the
strap's own clock, contact dropouts, link losses and a small Bluetooth latency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from devices.hrs import RR_UNITS_PER_SECOND, encode_hrm
from devices.records import Notification, SourceRecord, StatusChange
from devices.scenarios import Gap, Scenario, ScenarioError

CONTACT_SENSING = {"a": False, "b": True}  # partner a: an H10; b: a contact-sensing strap
ARTIFACT_MARGIN_S = 3.0  # keep beat artifacts this far from gaps and session edges


def _on_strap_clock(t_s: np.ndarray) -> np.ndarray:
    """Round times to the strap's 1/1024 s counter, on which its RR values are exact."""
    return np.round(t_s * RR_UNITS_PER_SECOND) / RR_UNITS_PER_SECOND


def _in_gaps(t_s: np.ndarray, gaps: list[Gap], margin_s: float = 0.0) -> np.ndarray:
    inside = np.zeros(t_s.shape, bool)
    for gap in gaps:
        inside |= (t_s >= gap.start_s - margin_s) & (t_s <= gap.end_s + margin_s)
    return inside


def inject_beat_artifacts(
    rng: np.random.Generator, beat_t_s: np.ndarray, scenario: Scenario, gaps: list[Gap]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Turn a share of beats into ectopic, missed and extra beats; returns
    (true beats, detected beats, artifact times by kind), times in seconds.

    Ectopic: the beat comes 20-35 % early and the next beat keeps its time, so the
    short and the compensatory long RR sum to two normal RRs (a PVC with a full
    compensatory pause). Missed: the strap skips the R peak, two RRs merge. Extra: a
    spurious detection splits one RR. Artifacts are spread one per block of beats, at
    least four beats apart, away from gaps.
    """
    rates = {"ectopic": scenario.ectopic_rate, "missed": scenario.missed_rate,
             "extra": scenario.extra_rate}
    counts = {k: int(round(r * beat_t_s.size)) for k, r in rates.items()}
    total = sum(counts.values())
    beats = beat_t_s.copy()
    ok = ~_in_gaps(beats, gaps, ARTIFACT_MARGIN_S)
    ok &= (beats > ARTIFACT_MARGIN_S) & (beats < scenario.duration_s - ARTIFACT_MARGIN_S)
    eligible = np.flatnonzero(ok[1:-1]) + 1
    if total == 0:
        beats = _on_strap_clock(beats)
        return beats, beats.copy(), {k: np.zeros(0) for k in rates}
    if eligible.size < 8 * total:
        raise ScenarioError(
            f"scenario {scenario.name!r}: {total} beat artifacts need at least {8 * total} "
            f"beats away from gaps and edges, the session has {eligible.size}")
    block = eligible.size // total
    picks = eligible[np.arange(total) * block + rng.integers(2, block - 2, total)]
    kinds = rng.permutation(np.repeat(list(rates), list(counts.values())))
    idx = {k: np.sort(picks[kinds == k]) for k in rates}
    prev = beats[idx["ectopic"] - 1]
    beats[idx["ectopic"]] = prev + (1 - rng.uniform(0.20, 0.35, idx["ectopic"].size)) * (
        beats[idx["ectopic"]] - prev)
    prev = beats[idx["extra"] - 1]
    extra_t = prev + rng.uniform(0.35, 0.65, idx["extra"].size) * (beats[idx["extra"]] - prev)
    beats, extra_t = _on_strap_clock(beats), _on_strap_clock(extra_t)
    detected = np.sort(np.concatenate((np.delete(beats, idx["missed"]), extra_t)))
    return beats, detected, {"ectopic": beats[idx["ectopic"]], "missed": beats[idx["missed"]],
                             "extra": extra_t}


@dataclass(frozen=True, eq=False)
class StrapOutput:
    records: list[SourceRecord]
    detected_t_s: np.ndarray
    rr_units: np.ndarray
    rr_end_t_s: np.ndarray
    disconnects: list[dict]


def strap_notifications(
    rng: np.random.Generator, partner: str, detected_t_s: np.ndarray, scenario: Scenario,
    dropouts: list[Gap], disconnects: list[Gap],
) -> StrapOutput:
    """Pack detected beats into notifications, one per strap tick (about 1 s), as received.

    A notification carries the RR of every beat completed since the previous tick and
    the strap's own HR (60 / mean of the last four RR, rounded). During a dropout no
    beat is detected and nothing is sent (a contact-sensing strap first reports the lost
    contact once); the RR spanning the dropout is never sent. During a link loss the
    strap keeps ticking but nothing arrives. Arrival = tick + 5-60 ms latency, to the µs.
    """
    contact = CONTACT_SENSING[partner]
    connect_t_s = rng.uniform(0.2, 0.8)
    period_s = rng.uniform(0.9995, 1.0005)  # the strap's own clock is a little off
    ticks = connect_t_s + rng.uniform(0.5, 1.2) + np.arange(int(scenario.duration_s) + 2) * period_s
    ticks = ticks[ticks < scenario.duration_s]
    arrival = np.maximum.accumulate(ticks + 0.005 + 0.055 * rng.beta(1.6, 5.0, ticks.size))

    beats = detected_t_s[~_in_gaps(detected_t_s, dropouts)]
    units = np.round(beats * RR_UNITS_PER_SECOND).astype(np.int64)
    rr = np.diff(units)
    valid = np.ones(rr.size, bool)
    for gap in dropouts:
        valid &= ~((beats[:-1] < gap.start_s) & (beats[1:] > gap.end_s))
    rr, rr_end = rr[valid], beats[1:][valid]
    rr_tick = np.searchsorted(ticks, rr_end, side="left")  # first tick at or after the beat
    bounds = np.searchsorted(rr_tick, np.arange(ticks.size + 1), side="left")
    # The strap's displayed HR: mean of the last four RR completed by each tick.
    csum = np.concatenate(([0], np.cumsum(rr)))
    upto = np.maximum(bounds[1:], 1)
    mean_units = (csum[upto] - csum[np.maximum(upto - 4, 0)]) / (upto - np.maximum(upto - 4, 0))
    hr_bpm = np.rint(60.0 * RR_UNITS_PER_SECOND / mean_units).astype(int)
    energy_kj = np.floor(np.cumsum(hr_bpm) * 0.0012).astype(int)

    status: list[SourceRecord] = [StatusChange(round(connect_t_s, 6), partner, "connected")]
    silent = _in_gaps(ticks, dropouts)
    link = []
    for gap in disconnects:
        resume_s = gap.end_s + rng.uniform(0.5, 1.5)  # re-subscribing takes a moment
        silent |= (ticks >= gap.start_s) & (ticks < resume_s)
        lost_t = round(gap.start_s + rng.uniform(0.5, 2.0), 6)  # supervision timeout
        back_t = round(gap.end_s, 6) if gap.end_s < scenario.duration_s else None
        if lost_t < scenario.duration_s:
            status.append(StatusChange(lost_t, partner, "disconnected"))
            link.append({"start_s": lost_t, "end_s": back_t})  # None: not back by the end
        if back_t is not None:
            status.append(StatusChange(back_t, partner, "connected"))
    contact_lost = np.zeros(ticks.size, bool)
    if contact:
        for gap in dropouts:
            first = np.searchsorted(ticks, gap.start_s)
            if first < ticks.size and ticks[first] <= gap.end_s:
                contact_lost[first] = True

    notes: list[SourceRecord] = []
    for j in np.flatnonzero(~silent | contact_lost):
        if contact_lost[j]:
            payload = encode_hrm(int(hr_bpm[j]), (), contact=False)
        else:
            payload = encode_hrm(
                int(hr_bpm[j]), rr[bounds[j]: bounds[j + 1]].tolist(),
                contact=True if contact else None,
                energy_kj=int(energy_kj[j]) if contact and j % 10 == 0 else None,
                rr_present=None if contact else True,  # an H10 always sets the RR flag
            )
        notes.append(Notification(round(float(arrival[j]), 6), partner, payload))
    sent = np.zeros(rr.size, bool)  # RR after the last tick are never sent
    sent[: bounds[-1]] = np.repeat(~silent, np.diff(bounds))
    records = sorted(status + notes, key=lambda r: r.t_s)
    return StrapOutput(records, beats, rr[sent], rr_end[sent], link)
