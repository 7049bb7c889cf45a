"""One tick's signal quality for live mode: the longest gap between raw beats, and the
verdict (quality ok, and the 0/1/2 code) that stages.partner_ticks and
stages.quality_codes give for a tick.

``quality.max_gap_s`` builds a sparse table over every gap for many ticks at once; a
live tick needs the maximum over one window of a few dozen gaps, taken here from a
list of gaps kept as the raw beats arrive. Maxima and a subtraction are exact, so the
value is batch mode's to the bit (tests/monitor/test_quality_live.py).
"""

from __future__ import annotations

import math
from bisect import bisect_right
from dataclasses import dataclass

from monitor.artifacts import ArtifactConfig, ArtifactInputError

_TRIM_BEATS = 256  # forget old beats in steps this large, so appends stay cheap


class LiveGaps:
    """One partner's raw beat times (s) and arrival times (s), with the gap that ends
    at each beat, for the longest gap touching a window."""

    def __init__(self) -> None:
        self.t_s: list[float] = []
        self.arrival_t_s: list[float] = []
        self.gap_s: list[float] = []  # gap ending at each kept beat; -inf at the first beat
        self.dropped = 0

    def __len__(self) -> int:
        return self.dropped + len(self.t_s)

    def append(self, t_s: float, arrival_t_s: float) -> None:
        """Add the next raw beat (s) and its arrival (s). Beat times never go back (as
        check_times requires in batch mode); arrivals do not either when records are fed
        in arrival order, and an earlier one is held at the latest so far (the binary
        search needs them sorted)."""
        t, arrival = float(t_s), float(arrival_t_s)
        if self.t_s:
            if t < self.t_s[-1]:
                raise ArtifactInputError(f"raw beat {len(self)} goes back in time: t = {t} s after {self.t_s[-1]} s")
            arrival = max(arrival, self.arrival_t_s[-1])
        self.gap_s.append(t - self.t_s[-1] if self.t_s else -math.inf)
        self.t_s.append(t)
        self.arrival_t_s.append(arrival)

    def trim(self, before_t_s: float) -> None:
        """Forget beats before ``before_t_s`` (s) once there are many; callers pass a
        time no window of a later tick reaches back to."""
        # The last beat at or before it stays: a later tick whose window holds no beat
        # still measures the open gap from that beat, as batch mode does.
        drop = bisect_right(self.t_s, before_t_s) - 1
        if drop < _TRIM_BEATS:
            return
        del self.t_s[:drop], self.arrival_t_s[:drop], self.gap_s[:drop]
        self.dropped += drop

    def max_gap_at(self, tick_t_s: float, window_s: float) -> float:
        """Longest time without a beat (s) touching (tick - window_s, tick]: every gap
        ending inside the window and the open one since the last beat; inf before the
        first beat. quality.max_gap_s's value for one tick (beats known by the tick)."""
        t = float(tick_t_s)
        hi = min(bisect_right(self.t_s, t), bisect_right(self.arrival_t_s, t))
        if hi == 0:
            # Nothing kept is known yet; trim keeps the last beat, so none was ever.
            return math.inf
        lo = bisect_right(self.t_s, t - window_s, 0, hi)
        tail = t - self.t_s[hi - 1]
        inner = max(self.gap_s[lo:hi]) if hi > lo else -math.inf
        return max(inner, tail)


@dataclass(frozen=True)
class TickQuality:
    """One partner's quality at one tick: ok (stages.partner_ticks' quality_ok) and the
    code of stages.quality_codes (0 no data, 1 ok, 2 low)."""

    ok: bool
    code: int


def tick_quality(share: float, gap_s: float, connected: bool, hr10_bpm: float, cfg: ArtifactConfig) -> TickQuality:
    """Quality of one tick from its corrected share (0-1, NaN without beats), longest
    gap (s), connection and HR10 (bpm), by the rules of stages.partner_ticks."""
    share_known = 0.0 if math.isnan(share) else share
    low = share_known > cfg.max_corrected_share or gap_s > cfg.max_gap_s
    ok = connected and not low and math.isfinite(hr10_bpm)
    present = connected and math.isfinite(gap_s)
    return TickQuality(ok, (1 if ok else 2) if present else 0)
