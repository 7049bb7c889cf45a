"""Request and response bodies of the dashboard's HTTP API (shown at /openapi.json).

Requests are strict (unknown fields are refused) and bounded, because the dashboard
may listen on a home network; responses allow extra fields, so that the store can grow
its session summary without breaking the API.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MAX_SPEED = 1000.0  # the replay runner's own limit


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def plain_text(value: str) -> str:
    """Refuse what the store or a recording cannot keep faithfully: lone surrogates
    (not UTF-8) and control characters other than tab and newline."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the text is not valid Unicode") from None
    if any(unicodedata.category(c) == "Cc" and c not in "\t\n" for c in value):
        raise ValueError("the text holds control characters")
    return value


class StartSession(_Strict):
    """Start a session: the bundled demo, a replay (a stored session id, or the file
    name of a recording in the data folder's recordings/, in ``source``), or live with
    two straps (``addr_a``, ``addr_b``)."""

    kind: Literal["demo", "replay", "live"]
    source: str | None = Field(default=None, min_length=1, max_length=4096)
    speed: float = Field(default=1.0, gt=0, le=MAX_SPEED, description="replay speed, times real time")
    addr_a: str | None = Field(default=None, min_length=1, max_length=64, description="partner A's strap")
    addr_b: str | None = Field(default=None, min_length=1, max_length=64, description="partner B's strap")
    name_a: str | None = Field(default=None, max_length=60)
    name_b: str | None = Field(default=None, max_length=60)
    label: str = Field(default="", max_length=120)

    @field_validator("source", "addr_a", "addr_b", "name_a", "name_b", "label")
    @classmethod
    def _plain(cls, value: str | None) -> str | None:
        return None if value is None else plain_text(value)

    @model_validator(mode="after")
    def _needs(self) -> "StartSession":
        if self.kind == "replay" and not self.source:
            raise ValueError("a replay needs a source: a stored session id or a recording's file name")
        if self.kind == "live" and not (self.addr_a and self.addr_b):
            raise ValueError("a live session needs both straps' addresses, addr_a and addr_b")
        return self


class AnnotationIn(_Strict):
    """A moment marked by the practitioner (or anyone watching)."""

    text: str = Field(min_length=1, max_length=500)
    author: str = Field(default="", max_length=60)

    @field_validator("text")
    @classmethod
    def _text(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("the annotation text is empty")
        return plain_text(text)

    @field_validator("author")
    @classmethod
    def _author(cls, author: str) -> str:
        return plain_text(author)


class Control(_Strict):
    """A replay control: play, pause, seek to ``value`` seconds, or set speed ``value``."""

    action: Literal["play", "pause", "seek", "speed"]
    value: float | None = Field(default=None, allow_inf_nan=False)

    @model_validator(mode="after")
    def _value(self) -> "Control":
        if self.action in ("seek", "speed") and self.value is None:
            raise ValueError(f"{self.action} needs a value")
        if self.action == "speed" and not (0 < self.value <= MAX_SPEED):  # type: ignore[operator]
            raise ValueError(f"speed must be above 0 and at most {MAX_SPEED:g}")
        if self.action == "seek" and self.value < 0:  # type: ignore[operator]
            raise ValueError("seek needs a time of 0 s or later")
        return self


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class SessionOut(_Open):
    """A stored session (monitor.store.SessionInfo) and whether a runner holds it now."""

    id: str
    label: str
    kind: str
    status: str
    started_at: str
    ended_at: str | None = None
    partners: dict[str, dict[str, Any]] = {}
    config: dict[str, Any] = {}
    source: str = ""
    duration_s: float | None = None
    n_notifications: int = 0
    n_events: int = 0
    running: bool = False
    runner_status: str | None = None  # "running" or "paused" while a runner holds it


class RecordingOut(_Open):
    """A recording the replay form offers (dashboard.recordings): its file name, size
    in bytes and when it was last changed (UTC)."""

    name: str
    bytes: int
    modified: str


class ReplayState(_Open):
    """A runner's state: status, position and duration in seconds, speed, seekable."""

    status: str
    position_s: float | None = None
    duration_s: float | None = None
    speed: float = 1.0
    can_seek: bool = False


class SessionDetail(_Open):
    """One session with its events (Event.to_json() dicts) and, if held, its state."""

    session: SessionOut
    events: list[dict[str, Any]]
    state: ReplayState | None = None


class EventOut(_Open):
    """An event as stored and pushed to viewers: t (s), kind, partner, own fields."""

    t: float
    kind: str
    partner: str | None = None


class Problem(BaseModel):
    """Every error: what went wrong, in words."""

    detail: Any
