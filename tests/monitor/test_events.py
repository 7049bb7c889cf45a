"""Event values: the hand-written constructor keeps what the dataclass one gave."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from monitor.events import Event


def test_an_event_is_frozen_and_checks_its_kind() -> None:
    e = Event(12.0, "prompt", "a", {"pattern": "divergence"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.t_s = 13.0  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown event kind"):
        Event(12.0, "promt", "a")


def test_fields_defaults_and_copies_are_those_of_a_dataclass() -> None:
    e = Event(t_s=5.5, kind="quality_ok", partner="b")
    assert (e.t_s, e.kind, e.partner, e.data) == (5.5, "quality_ok", "b", {})
    assert Event(1.0, "connected").data is not Event(1.0, "connected").data  # a fresh dict each
    assert Event(1.0, "connected", None, {}) == Event(1.0, "connected")
    moved = dataclasses.replace(e, t_s=6.0)
    assert moved == Event(6.0, "quality_ok", "b") and moved != e
    assert pickle.loads(pickle.dumps(e)) == e
    assert dataclasses.asdict(e) == {"t_s": 5.5, "kind": "quality_ok", "partner": "b", "data": {}}
    assert e.to_json() == {"t": 5.5, "kind": "quality_ok", "partner": "b"}
