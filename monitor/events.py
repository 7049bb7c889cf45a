"""The runner's output: events, stored and pushed to viewers (DESIGN.md, "Events")."""

from __future__ import annotations

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


@dataclass(frozen=True)
class Event:
    """Something that happened at ``t_s`` (seconds since session start).

    ``partner`` is "a", "b" or None; ``data`` holds the kind's own fields (for example
    ``pattern``, ``text_a`` and ``text_b`` of a prompt).
    """

    t_s: float
    kind: str
    partner: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        return {"t": self.t_s, "kind": self.kind, "partner": self.partner, **self.data}
