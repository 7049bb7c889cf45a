"""The tick messages of a live session so far, kept compactly for late viewers.

A live session sends one ``tick`` message a second; a viewer who opens the dashboard
later gets them all in its snapshot. Kept as dicts, an hour of them holds about 7.5 MB
(60 MB for eight hours); kept here as columns (per tick 8 bytes of time, 4 bytes per
number, 1 byte per partner for the quality word and the settled flag, and the active
patterns only where they change: 58 bytes for two partners) eight hours hold under
2 MB, and the messages are rebuilt, equal to those sent, when a snapshot asks for them.

The numbers in a tick message are rounded to 3 decimals; float32 keeps such a number
exactly enough to round back to the same value while its size is below 8192 (its
relative error, 6e-8, stays under half a thousandth). A tick with a larger number is kept
as its message.

A snapshot of a very long session thins the older ticks (see ``messages``): charts plot
ticks by their time, so a thinned stretch draws the same curve with fewer points.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from operator import itemgetter
from typing import Any

import numpy as np

from monitor.summary import rounded

Message = dict[str, Any]

QUALITY_WORDS = ("away", "none", "low", "ok")
CHUNK_ROWS = 3600  # an hour of ticks per block of columns
MAX_SNAPSHOT_TICKS = 7200  # a snapshot holds at most about this many ticks
_EXACT_BELOW = 8192.0


class TickHistory:
    """Tick messages of ``partners`` in the order appended (their ``t`` increasing);
    ``value_names``: the numbers of each partner's part of a tick (monitor.runner.TICK_FIELDS)."""

    def __init__(self, partners: tuple[str, ...], value_names: tuple[str, ...]) -> None:
        self.partners = tuple(partners)
        self.value_names = tuple(value_names)
        self._n_values = 2 + len(self.partners) * len(self.value_names)  # linkage r, lag, then per partner
        self._t: list[np.ndarray] = []
        self._values: list[np.ndarray] = []
        self._codes: list[np.ndarray] = []  # per partner: quality index + 4 when settled
        self._n = 0
        self._pattern_runs: list[tuple[int, list[dict]]] = []  # (first tick, patterns) where they change
        self._exact: dict[int, Message] = {}  # ticks whose numbers float32 cannot keep

    def __len__(self) -> int:
        return self._n

    def append(self, msg: Message) -> None:
        """Keep one tick message (as built by monitor.runner.tick_message)."""
        i = self._n
        row, k = i % CHUNK_ROWS, i // CHUNK_ROWS
        if row == 0:
            self._t.append(np.zeros(CHUNK_ROWS, np.float64))
            self._values.append(np.zeros((CHUNK_ROWS, self._n_values), np.float32))
            self._codes.append(np.zeros((CHUNK_ROWS, len(self.partners)), np.int8))
        numbers = [msg["linkage"]["r"], msg["linkage"]["lag_s"]]
        for j, p in enumerate(self.partners):
            part = msg["partners"][p]
            numbers += [part[name] for name in self.value_names]
            self._codes[k][row, j] = QUALITY_WORDS.index(part["quality"]) + 4 * bool(part["settled"])
        values = [math.nan if x is None else x for x in numbers]
        if any(abs(x) >= _EXACT_BELOW for x in values):
            self._exact[i] = msg
        self._t[k][row] = msg["t"]
        self._values[k][row] = values
        if not self._pattern_runs or self._pattern_runs[-1][1] != msg["patterns"]:
            self._pattern_runs.append((i, msg["patterns"]))
        self._n += 1

    def last_t(self) -> float | None:
        """The time of the last tick kept, or None."""
        if not self._n:
            return None
        i = self._n - 1
        return float(self._t[i // CHUNK_ROWS][i % CHUNK_ROWS])

    def message(self, i: int) -> Message:
        """The ``i``-th tick message, equal to the one appended."""
        if i in self._exact:
            return self._exact[i]
        row, k = i % CHUNK_ROWS, i // CHUNK_ROWS
        values = self._values[k][row].tolist()
        codes = self._codes[k][row].tolist()
        partners = {}
        for j, p in enumerate(self.partners):
            part: dict[str, Any] = {}
            for m, name in enumerate(self.value_names):
                part[name] = rounded(values[2 + j * len(self.value_names) + m], 3)
            part["quality"] = QUALITY_WORDS[codes[j] % 4]
            part["settled"] = codes[j] >= 4
            partners[p] = part
        r, lag = values[0], values[1]
        return {
            "type": "tick",
            "t": float(self._t[k][row]),
            "partners": partners,
            "linkage": {"r": rounded(r, 3), "lag_s": rounded(lag, 3)},
            "patterns": self._patterns_at(i),
        }

    def _patterns_at(self, i: int) -> list[dict]:
        """The patterns of the last run starting at or before tick ``i``."""
        run = bisect_right(self._pattern_runs, i, key=itemgetter(0)) - 1
        return list(self._pattern_runs[run][1])

    def messages(self, max_ticks: int = MAX_SNAPSHOT_TICKS) -> list[Message]:
        """The tick messages for a snapshot, oldest first, the last one always included.

        Up to ``max_ticks`` ticks: every tick. Beyond, the latest ``max_ticks // 2`` ticks
        stay whole and the older ones are thinned to every n-th, so the snapshot holds
        about ``max_ticks`` (an 8-hour session: the last hour every second, the hours
        before every seventh second).
        """
        n = self._n
        if n <= max_ticks:
            keep = range(n)
        else:
            recent = max_ticks // 2
            older = n - recent
            step = math.ceil(older / (max_ticks - recent))
            keep = [*range(0, older, step), *range(older, n)]
        return [self.message(i) for i in keep]
