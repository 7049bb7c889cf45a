"""Lab Streaming Layer output: a running session's RR, heart rate and events as LSL streams.

An ``LslBridge`` subscribes to a session runner (live or replay) and, per partner,
publishes an irregular RR stream (one sample per RR interval, in ms, stamped with the
beat's time on LSL's clock) and a regular 4 Hz heart-rate stream (the strap's heart
rate held from beat to beat), plus one string marker stream with every event and
prompt as a JSON object. Lab software (LabRecorder, an EEG suite) can then record the
heart data in sync with its own streams.

pylsl is an optional extra (``pip install 'coreg[lsl]'``) and is imported only here.
liblsl's defaults would announce and query streams by multicast and broadcast on the
local network; coreg points liblsl at ``lsl_api.cfg`` beside this module, which keeps
discovery on 127.0.0.1, unless the person has set ``LSLAPICFG`` to a file of their own.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

from devices.records import SessionHeader

log = logging.getLogger("coreg.lsl")

CONFIG_FILE = Path(__file__).resolve().with_name("lsl_api.cfg")
CONFIG_ENV = "LSLAPICFG"
HR_RATE_HZ = 4.0
# The heart rate of a beat is held at most this long; later 4 Hz samples are NaN
# (strap away or silent) until the next beat.
HR_HOLD_S = 5.0
OUTLET_BUFFER_S = 360  # liblsl's default: how much an outlet keeps for a slow inlet
# A Bluetooth address as bleak gives it: a MAC (Linux, Windows) or a UUID (macOS).
_ADDRESS = re.compile(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$|^[0-9A-Fa-f]{8}(-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}$")


class LslUnavailable(Exception):
    """LSL output was asked for but pylsl (with its liblsl) cannot be loaded."""


def load_pylsl() -> Any:
    """Import pylsl with coreg's machine-only liblsl settings; the module.

    The settings must be in place before liblsl reads its configuration (once, at its
    first use), so pylsl is never imported anywhere else in coreg.
    """
    if CONFIG_ENV not in os.environ:
        if "pylsl" in sys.modules:
            raise LslUnavailable(
                "pylsl was loaded before coreg could give liblsl its machine-only settings; "
                f"set {CONFIG_ENV}={CONFIG_FILE} before starting"
            )
        if not CONFIG_FILE.is_file():
            raise LslUnavailable(f"coreg's liblsl settings {CONFIG_FILE} are missing; reinstall coreg")
        os.environ[CONFIG_ENV] = str(CONFIG_FILE)
    elif os.environ[CONFIG_ENV] != str(CONFIG_FILE):
        log.warning("LSL uses your own liblsl settings in %s=%s, not coreg's machine-only ones",
                    CONFIG_ENV, os.environ[CONFIG_ENV])
    try:
        import pylsl
    except (ImportError, RuntimeError) as exc:  # pylsl raises RuntimeError without liblsl
        raise LslUnavailable(f"LSL output needs pylsl: pip install 'coreg[lsl]' ({exc})") from None
    return pylsl


def is_strap_address(device: str) -> bool:
    """True for a Bluetooth address (a MAC or a macOS UUID), False for a device name."""
    return bool(_ADDRESS.match(device))


def source_ids(header: SessionHeader, session_id: str) -> dict[str, str]:
    """LSL source ids, keyed "<partner> RR", "<partner> HR" and "markers".

    A partner's streams are named after their strap's address, so a recorder that
    loses a stream finds it again when the same strap comes back; without an address
    (simulated, imported) they are named after the session.
    """
    ids: dict[str, str] = {}
    addresses = []
    for p, info in sorted(header.partners.items()):
        device = info.device.strip()
        base = f"coreg-{device}" if is_strap_address(device) else f"coreg-{session_id}-{p}"
        addresses.append(device if is_strap_address(device) else "")
        ids[f"{p} RR"] = f"{base}-RR"
        ids[f"{p} HR"] = f"{base}-HR"
    together = "+".join(addresses) if addresses and all(addresses) else session_id
    ids["markers"] = f"coreg-{together}-markers"
    return ids


def rr_times_s(t_s: float, rr_ms: list[float]) -> np.ndarray:
    """Session times (s) of the beats ending each RR interval of one notification.

    The strap sends the intervals that ended since its last notification; the last
    one ends at the notification's arrival, the others are placed back from it.
    """
    rr_s = np.asarray(rr_ms, dtype=float) / 1000.0
    after = np.concatenate((np.cumsum(rr_s[::-1])[::-1][1:], [0.0])) if len(rr_s) else rr_s
    return t_s - after


def hr_samples(
    last_k: int, prev_t_s: float, prev_hr_bpm: float, t_s: float, hr_bpm: float
) -> tuple[np.ndarray, np.ndarray]:
    """The 4 Hz heart-rate samples a new beat at ``t_s`` settles: grid indices above
    ``last_k`` up to ``t_s`` (grid time = index / 4 s), each with the heart rate of the
    latest beat at or before it (``hr_bpm`` at ``t_s`` itself, ``prev_hr_bpm`` before),
    NaN where that beat is more than ``HR_HOLD_S`` old. Returns (indices, bpm)."""
    k = np.arange(last_k + 1, math.floor(t_s * HR_RATE_HZ) + 1)
    g = k / HR_RATE_HZ
    held = np.where(g - prev_t_s <= HR_HOLD_S, prev_hr_bpm, np.nan)
    return k, np.where(g >= t_s, hr_bpm, held)


class _HrGrid:
    """One partner's 4 Hz heart-rate state: the last grid index sent and the last beat."""

    def __init__(self) -> None:
        self.last_k: int | None = None
        self.prev_t_s = -math.inf
        self.prev_hr_bpm = math.nan

    def feed(self, t_s: float, hr_bpm: float) -> tuple[np.ndarray, np.ndarray]:
        if self.last_k is None or t_s < self.prev_t_s:  # first beat, or a replay went back
            self.last_k = math.ceil(t_s * HR_RATE_HZ) - 1
            self.prev_t_s, self.prev_hr_bpm = -math.inf, math.nan
        k, bpm = hr_samples(self.last_k, self.prev_t_s, self.prev_hr_bpm, t_s, hr_bpm)
        if len(k):
            self.last_k = int(k[-1])
        self.prev_t_s, self.prev_hr_bpm = t_s, hr_bpm
        return k / HR_RATE_HZ, bpm


def _stream_info(pylsl, name: str, kind: str, rate_hz: float, fmt: str, source_id: str,
                 channel: str, unit: str, extra: dict[str, str]):
    info = pylsl.StreamInfo(name, kind, 1, rate_hz, fmt, source_id)
    desc = info.desc()
    desc.append_child_value("manufacturer", "coreg")
    for key, value in extra.items():
        desc.append_child_value(key, value)
    ch = desc.append_child("channels").append_child("channel")
    ch.append_child_value("label", channel)
    ch.append_child_value("unit", unit)
    ch.append_child_value("type", kind)
    return info


class LslBridge:
    """Publishes one runner's beats and events as LSL streams until ``close()``."""

    def __init__(self, runner, pylsl=None) -> None:
        self.pylsl = pylsl or load_pylsl()
        self.runner = runner
        self.ids = source_ids(runner.header, runner.id)
        self.outlets: dict[str, Any] = {}
        self._grids: dict[str, _HrGrid] = {}
        for p, info in sorted(runner.header.partners.items()):
            who = {"partner": p, "partner_name": info.name, "device": info.device, "session": runner.id}
            tag = p.upper()
            self._add(f"{p} RR", f"coreg {runner.id} {tag} RR", "RR", 0.0, "double64", "RR", "ms", who)
            self._add(f"{p} HR", f"coreg {runner.id} {tag} HR", "HR", HR_RATE_HZ, "float32", "HR", "bpm", who)
            self._grids[p] = _HrGrid()
        markers = {"session": runner.id, "format": "one JSON object per marker: kind, partner and the event's fields"}
        self._add("markers", f"coreg {runner.id} Markers", "Markers", 0.0, "string", "event", "json", markers)
        self._unsubscribe: Callable[[], None] | None = runner.subscribe(self.handle)

    def _add(self, key: str, name: str, kind: str, rate_hz: float, fmt: str, channel: str, unit: str,
             extra: dict[str, str]) -> None:
        info = _stream_info(self.pylsl, name, kind, rate_hz, fmt, self.ids[key], channel, unit, extra)
        self.outlets[key] = self.pylsl.StreamOutlet(info, 0, OUTLET_BUFFER_S)

    def to_lsl_time(self, t_s: np.ndarray | float) -> np.ndarray | float:
        """Session seconds to LSL's clock: a replay's times are compressed by its speed,
        so that the stream plays as the dashboard shows it."""
        now = self.pylsl.local_clock()
        if hasattr(self.runner, "position"):
            position_s, speed = self.runner.position(), float(self.runner.state()["speed"])
        else:
            position_s, speed = self.runner.clock.now_s(), 1.0
        return now - (position_s - np.asarray(t_s, dtype=float)) / speed

    def handle(self, message: dict) -> None:
        """The runner's callback: beats become RR and HR samples, events markers."""
        kind = message.get("type")
        if kind == "beat":
            self._beat(message)
        elif kind == "event":
            event = message["event"]
            text = json.dumps({k: v for k, v in event.items() if k != "t"}, sort_keys=True, ensure_ascii=False)
            self.outlets["markers"].push_sample([text], float(self.to_lsl_time(event["t"])))
        elif kind == "resync":  # a replay jumped: the heart-rate grid starts again
            for grid in self._grids.values():
                grid.last_k = None

    def _beat(self, beat: dict) -> None:
        p = beat["partner"]
        if p not in self._grids:
            return
        rr_ms = beat["rr_ms"]
        if rr_ms:
            stamps = self.to_lsl_time(rr_times_s(beat["t"], rr_ms))
            self.outlets[f"{p} RR"].push_chunk([[float(v)] for v in rr_ms], [float(s) for s in stamps])
        hr = float(beat["hr_bpm"]) if beat["hr_bpm"] > 0 else math.nan  # 0: no skin contact
        grid_t_s, bpm = self._grids[p].feed(float(beat["t"]), hr)
        if len(grid_t_s):
            stamps = self.to_lsl_time(grid_t_s)
            self.outlets[f"{p} HR"].push_chunk([[float(v)] for v in bpm], [float(s) for s in stamps])

    def close(self) -> None:
        """Stop listening and take the streams off (inlets see them end)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.outlets.clear()  # each outlet is destroyed with its last reference
