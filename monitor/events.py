"""The runner's output: events, stored and pushed to viewers (DESIGN.md, "Events")."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

EVENT_KINDS = frozenset(
    {
        "settled",
        "pattern_start",
        "pattern_end",
        "prompt",
        "recovered",
        "connected",
        "disconnected",
        "quality_low",
        "quality_ok",
        "annotation",
    }
)
PATTERNS = ("divergence", "escalation", "flooding")


_NO_DATA: Any = object()  # data not given: a fresh empty dict


@dataclass(frozen=True, init=False)
class Event:
    """Something that happened at ``t_s`` (seconds since session start).

    ``partner`` is "a", "b" or None; ``data`` holds the kind's own fields (for example
    ``pattern``, ``text_a`` and ``text_b`` of a prompt).
    """

    t_s: float
    kind: str
    partner: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __init__(self, t_s: float, kind: str, partner: str | None = None, data: dict[str, Any] = _NO_DATA) -> None:
        # Written out: the generated frozen __init__ sets each field through
        # object.__setattr__ and costs ~4x more; a session makes hundreds of events.
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        fields = self.__dict__
        fields["t_s"] = t_s
        fields["kind"] = kind
        fields["partner"] = partner
        fields["data"] = {} if data is _NO_DATA else data

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data (unknown numbers, NaN or infinite, become null)."""
        return json_safe({"t": self.t_s, "kind": self.kind, "partner": self.partner, **self.data})


def json_safe(value: Any) -> Any:
    """Plain JSON: NaN and infinities (unknown values) become None, NumPy scalars Python."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy scalar
        return json_safe(value.item())
    return value
