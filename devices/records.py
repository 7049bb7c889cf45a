"""The records every beat source yields and every recording holds (coreg-session v1).

A record is one line of a recording: a raw Heart Rate Measurement notification, a
strap's connection change, or an annotation. ``t_s`` is seconds since the session
started, on the host's monotonic clock. Raw notifications, not derived beats, are the
ground truth, so later pipeline improvements can be re-run on old sessions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Literal, Protocol, runtime_checkable

FORMAT_NAME = "coreg-session"
FORMAT_VERSION = 1
PARTNERS = ("a", "b")

Partner = Literal["a", "b"]
ConnectionStatus = Literal["connected", "disconnected"]


@dataclass(frozen=True, slots=True)
class PartnerInfo:
    """Who wears a strap, and which strap."""

    name: str = ""
    device: str = ""


@dataclass(frozen=True, slots=True)
class SessionHeader:
    """The first line of a recording. ``started_at`` is ISO 8601 UTC."""

    started_at: str
    partners: dict[str, PartnerInfo] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "started_at": self.started_at,
            "partners": {
                key: {"name": info.name, "device": info.device}
                for key, info in self.partners.items()
            },
        }


@dataclass(frozen=True, slots=True)
class Notification:
    """One Heart Rate Measurement notification exactly as received."""

    t_s: float
    partner: str
    payload: bytes

    def to_json(self) -> dict:
        return {"t": self.t_s, "partner": self.partner, "hrm": self.payload.hex()}


@dataclass(frozen=True, slots=True)
class StatusChange:
    """A strap connecting or dropping its link."""

    t_s: float
    partner: str
    status: ConnectionStatus

    def to_json(self) -> dict:
        return {"t": self.t_s, "partner": self.partner, "status": self.status}


@dataclass(frozen=True, slots=True)
class Annotation:
    """A moment someone marked ("pursuit starts"), with who marked it."""

    t_s: float
    text: str
    author: str = ""

    def to_json(self) -> dict:
        return {"t": self.t_s, "annotation": self.text, "author": self.author}


Record = Notification | StatusChange | Annotation
SourceRecord = Notification | StatusChange


@runtime_checkable
class BeatSource(Protocol):
    """Where notifications come from: a strap, a recording replayer, the simulator.

    Iterating yields records in time order (per partner at least) until the source is
    exhausted or closed; ``close()`` stops it and releases what it holds.
    """

    def __aiter__(self) -> AsyncIterator[SourceRecord]: ...

    async def close(self) -> None: ...


class SessionClock:
    """Seconds since the session started, on the host's monotonic clock.

    Readings are rounded to the microsecond so that what is recorded and what the
    live pipeline sees are the same number.
    """

    def __init__(self, monotonic=time.monotonic) -> None:
        self._monotonic = monotonic
        self._t0 = monotonic()

    def now_s(self) -> float:
        return round(self._monotonic() - self._t0, 6)
