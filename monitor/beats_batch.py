"""Beat timing of a whole recording at once, bit for bit what BeatTimer gives.

``monitor.beats.BeatTimer`` places beats one notification at a time (live mode). Over a
recording the same rules are applied column-wise: every payload is parsed in one pass
(``devices.hrs.parse_hrm_many``), the chain breaks (first beat, connection change,
malformed notification, gap) are found with prefix counts, and only the drift
re-anchors, which depend on the anchor before them, are found by stepping from one
re-anchor to the next, each step a vectorised scan of the notifications after it. The
float operations are those of ``BeatTimer._place`` in the same order (an exact integer
unit difference divided by 1024, then added to the anchor time), so the results are
identical, not merely close (DESIGN.md, "Beat times").
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from types import MappingProxyType
from typing import Iterable, Mapping, Sequence

import numpy as np

from devices.hrs import RR_UNITS_PER_SECOND, parse_hrm_many
from devices.records import Notification, Record, StatusChange
from monitor.beats import BeatSeries, BeatTimingConfig

# A chain's first drift scan covers the whole chain, so a calm chain (most of them)
# is one step, and all chains' first scans together touch each notification once.
# After a re-anchor the scan starts at _FIRST_SCAN notifications and doubles while no
# drift past the band is found: a stretch of frequent re-anchors then costs a short
# scan each, not a scan to the chain's end each. At a few hundred notifications a
# step's time is NumPy's per-call cost, not the scan: 256 takes no longer than 64.
_FIRST_SCAN = 256


@dataclass(frozen=True, eq=False)
class BatchBeats:
    """One partner's beats from a recording, and how often the chain was anchored.

    ``reanchor_count`` counts every (re-)anchoring, the first one included, as
    ``BeatTimer.reanchor_count`` does after the same records.
    """

    series: BeatSeries
    reanchor_count: int


@dataclass(frozen=True)
class PartnerRecords:
    """One partner's notifications in arrival order, and where the connection changed.

    t_s: arrival of each notification, s since session start (a list, or a float64
    array as pipeline.scan_records gives); payloads: their Heart Rate Measurement
    payloads; status_before: for each connection change, the index of
    the notification it came before (it breaks that notification's chain).
    """

    t_s: list[float] | np.ndarray
    payloads: list[bytes]
    status_before: list[int]


def split_by_partner(
    records: Iterable[Record], partners: tuple[str, ...]
) -> dict[str, PartnerRecords]:
    """Each partner's notifications and connection changes; other records are left out."""
    streams = {p: PartnerRecords([], [], []) for p in partners}
    for record in records:
        if isinstance(record, Notification):
            stream = streams.get(record.partner)
            if stream is not None:
                stream.t_s.append(record.t_s)
                stream.payloads.append(record.payload)
        elif isinstance(record, StatusChange):
            stream = streams.get(record.partner)
            if stream is not None:
                stream.status_before.append(len(stream.payloads))
    return streams


def _anchors(
    arrival_s: np.ndarray, last_units: np.ndarray, forced: np.ndarray, cfg: BeatTimingConfig
) -> tuple[np.ndarray, np.ndarray, int]:
    """Per RR-carrying notification: the index of the notification its chain is anchored
    to after placing it, whether its first beat lost its predecessor, and how many
    (re-)anchorings there were."""
    m = len(arrival_s)
    lost = forced.copy()
    starts = np.flatnonzero(forced).tolist()
    anchored = []  # every (re-)anchoring, in order
    for begin, end in zip(starts, starts[1:] + [m]):
        anchored.append(begin)
        # A chain's first scan reaches its end: a calm chain, the common case, is then
        # one step. Only after a re-anchor do the scans start short and double.
        k, pos, width = begin, begin + 1, end - begin
        while pos < end:
            hi = min(end, pos + width)
            drift_s = arrival_s[k] + (last_units[pos:hi] - last_units[k]) / RR_UNITS_PER_SECOND
            drift_s -= arrival_s[pos:hi]
            out = drift_s < -cfg.max_behind_s
            out |= drift_s > cfg.max_ahead_s
            first = int(out.argmax())
            if not out[first]:
                pos, width = hi, 2 * width
                continue
            k = pos + first
            anchored.append(k)
            lost[k] = drift_s[first] < -cfg.max_behind_s
            pos, width = k + 1, _FIRST_SCAN
    # Each notification keeps the latest anchoring at or before it.
    anchor = np.zeros(m, dtype=np.int64)
    anchor[anchored] = anchored
    np.maximum.accumulate(anchor, out=anchor)
    return anchor, lost, len(anchored)


def time_partner_beats(
    records: PartnerRecords, cfg: BeatTimingConfig = BeatTimingConfig()
) -> BatchBeats:
    """Beats of one partner from all their notifications, as BeatTimer would place them.

    Beat times and arrivals in s since session start, RR in 1/1024 s. Follows DESIGN.md
    "Beat times", with BeatTimer's rules and arithmetic.
    """
    hrm = parse_hrm_many(records.payloads)
    malformed = _malformed_counts(hrm.malformed, hrm.rr_zero_dropped)

    carries = np.flatnonzero(hrm.rr_count)  # the notifications that add beats
    m = len(carries)
    arrival_s = _float_array(records.t_s)[carries]
    # A chain starts at the first RR-carrying notification, after a gap, and at the
    # first one at or after each chain break (a malformed notification, which never
    # carries beats, or a connection change).
    forced = np.empty(m, dtype=bool)
    forced[:1] = True
    np.greater(arrival_s[1:] - arrival_s[:-1], cfg.max_gap_s, out=forced[1:])
    breaks = [*records.status_before, *hrm.malformed]
    if breaks:
        after = np.searchsorted(carries, breaks)
        forced[after[after < m]] = True

    count = hrm.rr_count[carries]
    ends = np.cumsum(count)
    cum_units = np.cumsum(hrm.rr_units)
    last_units = cum_units[ends - 1]
    anchor, lost, anchorings = _anchors(arrival_s, last_units, forced, cfg)

    # Each beat takes the anchor its notification was left with, as in BeatTimer._place.
    beat_anchor = np.repeat(anchor, count)
    t_raw = arrival_s[beat_anchor] + (cum_units - last_units[beat_anchor]) / RR_UNITS_PER_SECOND
    # A beat follows its predecessor directly unless its notification dropped a zero RR
    # value or it opens a notification whose chain was (re-)anchored with a lost beat.
    contiguous = np.ones(len(t_raw), dtype=bool)
    contiguous[(ends - count)[lost]] = False
    dropped = hrm.rr_zero_dropped[carries]
    if dropped.any():
        contiguous &= np.repeat(dropped == 0, count)
    series = BeatSeries(
        # A re-anchor may reach back before the previous beat: keep time order.
        t_s=np.maximum.accumulate(t_raw),
        rr_units=hrm.rr_units,
        contiguous=contiguous,
        malformed=malformed,
        arrival_t_s=np.repeat(arrival_s, count),
    )
    return BatchBeats(series, anchorings)


def _float_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """float64 array of a list of floats: np.fromiter unboxes them some 25 % faster
    than np.asarray (3 600 notification times per partner-hour)."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64, copy=False)
    return np.fromiter(values, dtype=np.float64, count=len(values))


def _malformed_counts(reasons: Mapping[int, str], rr_zero_dropped: np.ndarray) -> Mapping[str, int]:
    """Reason code -> count, keyed in order of first occurrence as BeatTimer's Counter is."""
    if not reasons and not rr_zero_dropped.any():  # a clean recording, the usual case
        return MappingProxyType({})
    first_at: dict[str, int] = {}
    for index, reason in sorted(reasons.items()):
        first_at.setdefault(reason, index)
    tally = Counter(reasons.values())
    zero_at = np.flatnonzero(rr_zero_dropped)
    if len(zero_at):
        first_at["rr_zero"] = int(zero_at[0])
        tally["rr_zero"] = int(rr_zero_dropped.sum())
    return MappingProxyType({reason: tally[reason] for reason in sorted(first_at, key=first_at.get)})


def batch_beats_by_partner(
    records: Iterable[Record],
    partners: Iterable[str] = ("a", "b"),
    cfg: BeatTimingConfig = BeatTimingConfig(),
) -> dict[str, BatchBeats]:
    """Each partner's beats from a recording's records (arrival order, t_s in s since
    session start), vectorised; identical to feeding the records to a BeatTimer."""
    streams = split_by_partner(records, tuple(partners))
    return {p: time_partner_beats(stream, cfg) for p, stream in streams.items()}
