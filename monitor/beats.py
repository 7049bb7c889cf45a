"""Beat times reconstructed from Heart Rate Measurement notifications.

A notification carries zero or more RR intervals (1/1024 s) and no time of its own
beats; it arrives about once a second. The beats are laid on the host clock by a
running chain (each beat = previous beat + its RR), anchored so that the last RR of
a notification ends at that notification's arrival, and re-anchored when the chain
and the arrivals disagree too much or after a break in the stream (DESIGN.md,
"Beat times"). The chain keeps BLE arrival jitter out of the beat times; the
re-anchoring keeps a drifting strap clock or lost notifications from pulling the
beats away from the session clock.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping

import numpy as np

from devices.hrs import RR_UNITS_PER_SECOND, MalformedPayload, parse_hrm
from devices.records import Notification, Record, StatusChange

MS_PER_RR_UNIT = 1000.0 / RR_UNITS_PER_SECOND  # 0.9765625, exact in binary


@dataclass(frozen=True)
class BeatTimingConfig:
    """How beat times follow notification arrivals.

    max_ahead_s: the chain may place a notification's last beat at most this long
        after the notification arrived (a beat cannot be reported before it happens,
        so this much is allowed only for clock drift and timestamp rounding);
        beyond it the chain is re-anchored to the arrival. No beats are lost.
    max_behind_s: the chain may place the last beat at most this long before the
        arrival. Straps batch about a second of beats per notification and BLE adds
        latency, so the natural lag spans up to ~2 s on real recordings; a larger
        lag means the chain is missing time (lost beats): it is re-anchored and the
        first beat after it is marked non-contiguous.

    The band is one-sided on purpose: on the Polar H10 fixture a symmetric 0.3 s
    band re-anchors at 347 of 574 notifications, i.e. the beats would follow the
    arrival jitter; this band re-anchors once.
    max_gap_s: a break, in seconds, between this notification and the previous
        one that carried RR intervals, after which the chain restarts at the
        arrival and the first beat is marked non-contiguous.
    """

    max_ahead_s: float = 0.3
    max_behind_s: float = 2.5
    max_gap_s: float = 3.0


@dataclass(frozen=True, eq=False)
class BeatSeries:
    """Beats of one partner, in time order.

    t_s: beat time, seconds since session start (float64, non-decreasing).
    rr_units: the RR interval ending at that beat, in 1/1024 s (int64), exactly as
        the strap sent it.
    contiguous: True when the previous element is the directly preceding heart
        beat, so a successive difference rr[i] - rr[i-1] is meaningful.
    malformed: per reason code, notifications skipped as malformed (the parser's
        codes) and RR values of 0 dropped ("rr_zero"), up to the last beat.
    arrival_t_s: when the notification carrying the beat arrived (s since session
        start, non-decreasing): what a live pipeline could know at which tick.
    """

    t_s: np.ndarray
    rr_units: np.ndarray
    contiguous: np.ndarray
    malformed: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    arrival_t_s: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def rr_ms(self) -> np.ndarray:
        """RR intervals in milliseconds (exact: units * 1000 / 1024)."""
        return self.rr_units * MS_PER_RR_UNIT

    @property
    def nn_units(self) -> np.ndarray:
        """The RR intervals taken as NN intervals as they are (no artifact correction)."""
        return self.rr_units

    def __len__(self) -> int:
        return len(self.t_s)


class BeatTimer:
    """Incremental beat timing for one partner: feed records in arrival order.

    Pure state machine over records: no clock is read, the arrival time is the
    record's ``t_s``. Feeding the same records always yields the same beats, bit
    for bit, whether they come one at a time (live) or from a file (batch).

    ``keep_beats=False`` keeps only the chain's state, not the beats placed: ``feed``
    still returns the new beats, but ``series()`` is then refused. A live session that
    stores the beats it needs elsewhere uses it so that hours of beats are not held twice.
    """

    def __init__(self, partner: str, cfg: BeatTimingConfig = BeatTimingConfig(), *, keep_beats: bool = True) -> None:
        self.partner = partner
        self.cfg = cfg
        self.keep_beats = keep_beats
        self._forgotten = 0  # beats placed and no longer kept (keep_beats=False)
        # Chain: beat time = anchor_t_s + (cumulative units - anchor_units) / 1024,
        # kept in integers so that long sessions accumulate no rounding error.
        self._anchor_t_s: float | None = None
        self._anchor_units = 0
        self._cum_units = 0
        self._last_beat_t_s = -math.inf
        self._last_rr_arrival_s: float | None = None
        self._broken = True  # the next beat has no known predecessor
        self._malformed: Counter[str] = Counter()
        # Plain lists: a notification adds 1-2 beats, too few for NumPy to pay off.
        self._t_s: list[float] = []
        self._rr_units: list[int] = []
        self._contiguous: list[bool] = []
        self._arrival_t_s: list[float] = []
        self.reanchor_count = 0

    @property
    def malformed_counts(self) -> Mapping[str, int]:
        """Skipped or damaged notifications so far, per reason code."""
        return MappingProxyType(dict(self._malformed))

    def __len__(self) -> int:
        """Beats placed so far (kept or not)."""
        return self._forgotten + len(self._t_s)

    def feed(self, record: Record) -> BeatSeries:
        """Take one record; return the beats it adds (often 1-2, maybe none).

        Records of the other partner and annotations are ignored. A connection
        change breaks the chain. A malformed payload is counted under its reason
        code and skipped, and breaks the chain (its beats are lost).
        """
        before = len(self._t_s)
        self._step(record)
        new = self._series(before)
        self._forget()
        return new

    def step(self, record: Record) -> int:
        """Like feed, but only return how many beats were added (the batch path)."""
        added = self._step(record)
        self._forget()
        return added

    def _forget(self) -> None:
        if not self.keep_beats and self._t_s:
            self._forgotten += len(self._t_s)
            for kept in (self._t_s, self._rr_units, self._contiguous, self._arrival_t_s):
                kept.clear()

    def _step(self, record: Record) -> int:
        if isinstance(record, StatusChange):
            if record.partner == self.partner:
                self._broken = True
            return 0
        if not isinstance(record, Notification) or record.partner != self.partner:
            return 0
        try:
            hrm = parse_hrm(record.payload)
        except MalformedPayload as exc:
            self._malformed[exc.reason] += 1
            self._broken = True
            return 0
        if hrm.rr_zero_dropped:
            # Where the zero sat among the values is unknown, so no successive
            # difference inside this notification can be trusted.
            self._malformed["rr_zero"] += hrm.rr_zero_dropped
        if not hrm.rr_ms:
            return 0
        # Exact inverse of the parser's units * 1000 / 1024.
        units = [round(ms * RR_UNITS_PER_SECOND / 1000) for ms in hrm.rr_ms]
        self._place(record.t_s, units, damaged=hrm.rr_zero_dropped > 0)
        return len(units)

    def _place(self, arrival_s: float, units: list[int], damaged: bool) -> None:
        cfg = self.cfg
        last_cum = self._cum_units + sum(units)
        gap = (
            self._last_rr_arrival_s is not None
            and arrival_s - self._last_rr_arrival_s > cfg.max_gap_s
        )
        lost = self._broken or gap or self._anchor_t_s is None
        if not lost:
            chain_s = self._anchor_t_s + (last_cum - self._anchor_units) / RR_UNITS_PER_SECOND
            drift_s = chain_s - arrival_s
            if drift_s < -cfg.max_behind_s:
                lost = True  # arrivals ran on without the chain: beats are missing
            elif drift_s > cfg.max_ahead_s:
                self._reanchor(arrival_s, last_cum)
        if lost:
            self._reanchor(arrival_s, last_cum)
        cum = self._cum_units
        contiguous = not (lost or damaged)
        for rr in units:
            cum += rr
            t_s = self._anchor_t_s + (cum - self._anchor_units) / RR_UNITS_PER_SECOND
            # A re-anchor that pulls the chain back, or a long notification after
            # a gap, may reach behind the previous beat; time order must still hold.
            t_s = max(t_s, self._last_beat_t_s)
            self._t_s.append(t_s)
            self._rr_units.append(rr)
            self._contiguous.append(contiguous)
            self._arrival_t_s.append(arrival_s)
            self._last_beat_t_s = t_s
            contiguous = not damaged
        self._cum_units = last_cum
        self._last_rr_arrival_s = arrival_s
        self._broken = False

    def _reanchor(self, arrival_s: float, last_cum: int) -> None:
        self._anchor_t_s = float(arrival_s)
        self._anchor_units = last_cum
        self.reanchor_count += 1

    def _series(self, start: int = 0) -> BeatSeries:
        return BeatSeries(
            t_s=np.array(self._t_s[start:], dtype=np.float64),
            rr_units=np.array(self._rr_units[start:], dtype=np.int64),
            contiguous=np.array(self._contiguous[start:], dtype=bool),
            malformed=self.malformed_counts,
            arrival_t_s=np.array(self._arrival_t_s[start:], dtype=np.float64),
        )

    def series(self) -> BeatSeries:
        """All beats placed so far, as one series (a timer made with keep_beats=True)."""
        if not self.keep_beats:
            raise ValueError(f"the beat timer of partner {self.partner!r} does not keep its beats (keep_beats=False)")
        return self._series()


def beats_from_notifications(
    records: Iterable[Record], partner: str, cfg: BeatTimingConfig = BeatTimingConfig()
) -> BeatSeries:
    """Beat times and RR intervals of one partner from a recording's records.

    ``records`` in arrival order (t_s = seconds since session start, host clock).
    Returns beat times in seconds and RR in 1/1024 s, the very arrays a BeatTimer fed
    the same records one by one (live mode) returns, so any prefix of a recording gives
    the same arrays live and batch. Follows DESIGN.md "Beat times".
    """
    return beats_by_partner(records, (partner,), cfg)[partner]


def beats_by_partner(
    records: Iterable[Record],
    partners: Iterable[str] = ("a", "b"),
    cfg: BeatTimingConfig = BeatTimingConfig(),
) -> dict[str, BeatSeries]:
    """beats_from_notifications for several partners in one pass over the records.

    Vectorised (monitor.beats_batch); BeatTimer is its reference, bit for bit.
    """
    # Imported here: beats_batch builds on this module's BeatSeries and config.
    from monitor.beats_batch import batch_beats_by_partner

    return {p: timed.series for p, timed in batch_beats_by_partner(records, partners, cfg).items()}
