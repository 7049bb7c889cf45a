"""Scripted two-partner sessions for the simulator: what happens to whose heart, and when.

Each scenario realises one row of DESIGN.md, "What the detector must do", with margins
wide enough that a detector can be tested against the ground truth without argument:
every scenario lasts 20 minutes and starts with at least 4 calm minutes, so the default
3-minute settle-in baseline is free of scripted episodes.

An ``Episode`` moves one partner's heart rate by ``delta_bpm`` with raised-cosine ramps
(``scripted_delta_bpm``). Episodes of the same ``kind`` whose spans overlap form one
pattern instance in the truth file (``truth_episodes``): an escalation is two episodes,
one per partner, a few seconds apart; a divergence pairs the rising partner with the
other one settling slightly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

EpisodeKind = Literal["calm", "laugh", "standing", "divergence", "escalation", "flooding"]

# Patterns the detector must answer with a prompt; the others must pass silently.
PROMPTING_KINDS = frozenset({"divergence", "escalation", "flooding"})
# Patterns both partners live together: the truth names no single partner.
SHARED_KINDS = frozenset({"escalation", "laugh"})
SETTLE_IN_S = 180.0
CALM_LEAD_IN_S = 240.0
SESSION_S = 1200.0


class ScenarioError(ValueError):
    """A scenario that cannot be simulated, or a name that is not in the registry."""


@dataclass(frozen=True, slots=True)
class Episode:
    """One scripted change of one partner's heart rate.

    The change starts at ``start_s`` (seconds since session start), reaches
    ``delta_bpm`` after ``rise_s``, stays there for ``hold_s`` and returns to zero over
    ``fall_s``; onset and offset are raised-cosine ramps, so the curve is smooth.
    """

    kind: EpisodeKind
    partner: str
    start_s: float
    rise_s: float
    hold_s: float
    fall_s: float
    delta_bpm: float

    @property
    def plateau_start_s(self) -> float:
        return self.start_s + self.rise_s

    @property
    def plateau_end_s(self) -> float:
        return self.start_s + self.rise_s + self.hold_s

    @property
    def end_s(self) -> float:
        return self.start_s + self.rise_s + self.hold_s + self.fall_s


@dataclass(frozen=True, slots=True)
class Gap:
    """A span without beats from one partner: contact lost (dropout) or link lost."""

    partner: str
    start_s: float
    duration_s: float

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s


@dataclass(frozen=True, slots=True)
class Scenario:
    """A whole session script.

    ``*_rate`` are fractions of each partner's beats turned into that artifact;
    ``dropouts`` lose skin contact (strap still connected, no notifications);
    ``disconnects`` lose the Bluetooth link (status records around the silence);
    ``wander_bpm`` bounds the slow drift of each partner's resting heart rate.
    """

    name: str
    duration_s: float
    episodes: tuple[Episode, ...]
    description: str
    ectopic_rate: float = 0.0
    missed_rate: float = 0.0
    extra_rate: float = 0.0
    dropouts: tuple[Gap, ...] = ()
    disconnects: tuple[Gap, ...] = ()
    wander_bpm: float = 2.5

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ScenarioError(f"scenario {self.name!r}: duration_s must be > 0")
        for ep in self.episodes:
            if ep.partner not in ("a", "b"):
                raise ScenarioError(f"scenario {self.name!r}: episode partner {ep.partner!r}")
            if min(ep.rise_s, ep.fall_s) <= 0 or ep.hold_s < 0 or ep.start_s < 0:
                raise ScenarioError(f"scenario {self.name!r}: episode {ep} has a bad span")
        for gap in self.dropouts + self.disconnects:
            if gap.partner not in ("a", "b") or gap.duration_s <= 0:
                raise ScenarioError(f"scenario {self.name!r}: bad gap {gap}")
        if self.ectopic_rate + self.missed_rate + self.extra_rate > 0.1:
            raise ScenarioError(f"scenario {self.name!r}: artifact rates above 10 % in total")

    def shortened(self, duration_s: float) -> Scenario:
        """The same script cut to ``duration_s`` seconds (for quick tests and demos)."""
        return replace(self, duration_s=float(duration_s))


def _both(kind: EpisodeKind, start_s: float, rise_s: float, hold_s: float, fall_s: float,
          delta_a: float, delta_b: float, lag_b_s: float = 0.0) -> tuple[Episode, Episode]:
    return (
        Episode(kind, "a", start_s, rise_s, hold_s, fall_s, delta_a),
        Episode(kind, "b", start_s + lag_b_s, rise_s, hold_s, fall_s, delta_b),
    )


CALM = Scenario(
    name="calm",
    duration_s=SESSION_S,
    description=(
        "Twenty minutes of ordinary talk: heart rates wander a few bpm with speech, "
        "breathing and slow drift; one shared laugh (both +12 bpm for 14 s) and one "
        "partner standing up (+10 bpm for 19 s). Nothing here should prompt."
    ),
    episodes=(
        Episode("calm", "a", 300.0, 30.0, 60.0, 40.0, 3.5),
        Episode("calm", "b", 480.0, 40.0, 50.0, 40.0, -3.0),
        *_both("laugh", 640.0, 4.0, 5.0, 5.0, 12.0, 12.0),
        Episode("calm", "b", 760.0, 30.0, 70.0, 50.0, 3.5),
        Episode("calm", "a", 920.0, 40.0, 50.0, 30.0, -3.0),
        Episode("standing", "b", 1040.0, 5.0, 8.0, 6.0, 10.0),
    ),
    wander_bpm=3.0,
)

DIVERGENCE = Scenario(
    name="divergence",
    duration_s=SESSION_S,
    description=(
        "Five calm minutes, then partner a rises +20 bpm within 50 s and stays up for "
        "150 s while b settles slightly (-3 bpm); both recover. Later b rises +18 bpm "
        "for 120 s while a stays near baseline."
    ),
    episodes=(
        Episode("divergence", "a", 330.0, 50.0, 150.0, 90.0, 20.0),
        Episode("divergence", "b", 340.0, 60.0, 130.0, 90.0, -3.0),
        Episode("divergence", "b", 800.0, 45.0, 120.0, 90.0, 18.0),
    ),
)

ESCALATION = Scenario(
    name="escalation",
    duration_s=SESSION_S,
    description=(
        "Six calm minutes, then both rise together (a +16, b +18 bpm, onsets 20 s "
        "apart), held for about 140 s, then a slow shared recovery."
    ),
    episodes=(
        Episode("escalation", "a", 360.0, 50.0, 150.0, 120.0, 16.0),
        Episode("escalation", "b", 380.0, 55.0, 140.0, 120.0, 18.0),
    ),
)

FLOODING = Scenario(
    name="flooding",
    duration_s=SESSION_S,
    description=(
        "Partner a floods: +34 bpm (above 100 bpm from any resting level) within 45 s, "
        "held 120 s, then a slow five-minute return; b is touched only lightly (+4 bpm)."
    ),
    episodes=(
        Episode("flooding", "a", 400.0, 45.0, 120.0, 300.0, 34.0),
        Episode("flooding", "b", 420.0, 60.0, 120.0, 200.0, 4.0),
    ),
)

ARTIFACTS = Scenario(
    name="artifacts",
    duration_s=SESSION_S,
    description=(
        "A divergence (a +20 bpm for 150 s) in a noisy signal: 3 % of each partner's "
        "beats are ectopic (1.5 %), missed (1 %) or extra (0.5 %), and there are two "
        "contact dropouts of 12 s and 25 s."
    ),
    episodes=(
        Episode("divergence", "a", 420.0, 50.0, 150.0, 90.0, 20.0),
        Episode("divergence", "b", 430.0, 60.0, 130.0, 90.0, -2.0),
    ),
    ectopic_rate=0.015,
    missed_rate=0.01,
    extra_rate=0.005,
    dropouts=(Gap("a", 540.0, 12.0), Gap("b", 780.0, 25.0)),
)

DISCONNECT = Scenario(
    name="disconnect",
    duration_s=SESSION_S,
    description=(
        "A divergence (a +20 bpm for 140 s), and later, in a calm stretch, partner b's "
        "strap loses its Bluetooth link for 60 s and reconnects."
    ),
    episodes=(
        Episode("divergence", "a", 360.0, 50.0, 140.0, 90.0, 20.0),
        Episode("divergence", "b", 370.0, 60.0, 120.0, 90.0, -2.0),
    ),
    disconnects=(Gap("b", 800.0, 60.0),),
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (CALM, DIVERGENCE, ESCALATION, FLOODING, ARTIFACTS, DISCONNECT)
}


def get_scenario(name: str) -> Scenario:
    """The registered scenario called ``name``; ScenarioError listing the names if none."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ScenarioError(
            f"no scenario named {name!r}; known: {', '.join(sorted(SCENARIOS))}"
        ) from None


def pattern_instances(scenario: Scenario) -> list[list[Episode]]:
    """Group episodes into pattern instances: same kind and overlapping spans.

    Returned in order of onset; each group in order of onset too.
    """
    groups: list[list[Episode]] = []
    for ep in sorted(scenario.episodes, key=lambda e: (e.start_s, e.partner)):
        for group in groups:
            if group[0].kind == ep.kind and any(
                ep.start_s < other.end_s and other.start_s < ep.end_s for other in group
            ):
                group.append(ep)
                break
        else:
            groups.append([ep])
    return groups


def scripted_delta_bpm(scenario: Scenario, partner: str, t_s: np.ndarray) -> np.ndarray:
    """The partner's scripted heart-rate change (bpm) at times ``t_s`` (s): the sum of
    their episodes, each a raised-cosine rise, a hold and a raised-cosine fall."""
    total = np.zeros(np.shape(t_s))
    for ep in scenario.episodes:
        if ep.partner != partner:
            continue
        up = np.clip((t_s - ep.start_s) / ep.rise_s, 0.0, 1.0)
        down = np.clip((t_s - ep.plateau_end_s) / ep.fall_s, 0.0, 1.0)
        total += ep.delta_bpm * 0.5 * (np.cos(np.pi * down) - np.cos(np.pi * up))
    return total


def truth_episodes(scenario: Scenario) -> list[dict]:
    """The pattern instances of a scenario as its truth file lists them (JSON-ready).

    ``partner`` names the partner who moves most (the rising one in a divergence, the
    flooded one), or None for the shared patterns (escalation, laugh); ``plateau_s`` is
    the span where the change is complete (for shared patterns, where both are);
    ``end_s`` is clipped to the session's length.
    """
    out = []
    for group in pattern_instances(scenario):
        group = [ep for ep in group if ep.start_s < scenario.duration_s]
        if not group:
            continue
        kind = group[0].kind
        lead = max(group, key=lambda ep: abs(ep.delta_bpm))
        shared = kind in SHARED_KINDS
        plateau = ((max(ep.plateau_start_s for ep in group), min(ep.plateau_end_s for ep in group))
                   if shared else (lead.plateau_start_s, lead.plateau_end_s))
        out.append({
            "pattern": kind,
            "partner": None if shared else lead.partner,
            "start_s": min(ep.start_s for ep in group),
            "end_s": min(max(ep.end_s for ep in group), scenario.duration_s),
            "plateau_s": [plateau[0], plateau[1]],
            "peak_delta_bpm": lead.delta_bpm,
            "delta_bpm": {ep.partner: ep.delta_bpm for ep in group},
            "expect_prompt": kind in PROMPTING_KINDS,
        })
    return out


def back_to_back(parts: list[Scenario], *, name: str, description: str) -> Scenario:
    """One long script: ``parts`` played one after another, each ``SESSION_S`` long.

    Episodes and gaps are shifted by their part's start (every registered scenario opens
    with calm minutes, so they never overlap). The artifact rates, which a Scenario holds
    for the whole session, are the highest of the parts' (a noisy session throughout),
    and the resting-rate wander the widest. For benchmarks that need hours of session.
    """
    episodes, dropouts, disconnects = [], [], []
    for k, part in enumerate(parts):
        shift = k * SESSION_S
        episodes += [replace(ep, start_s=ep.start_s + shift) for ep in part.episodes]
        dropouts += [Gap(g.partner, g.start_s + shift, g.duration_s) for g in part.dropouts]
        disconnects += [Gap(g.partner, g.start_s + shift, g.duration_s) for g in part.disconnects]
    return Scenario(
        name=name,
        duration_s=len(parts) * SESSION_S,
        episodes=tuple(episodes),
        description=description,
        ectopic_rate=max(p.ectopic_rate for p in parts),
        missed_rate=max(p.missed_rate for p in parts),
        extra_rate=max(p.extra_rate for p in parts),
        dropouts=tuple(dropouts),
        disconnects=tuple(disconnects),
        wander_bpm=max(p.wander_bpm for p in parts),
    )
