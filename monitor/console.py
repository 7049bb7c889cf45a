"""A plain terminal view of a session: each partner's heart rate and RR as they arrive."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TextIO

from devices.hrs import MalformedPayload, parse_hrm
from devices.records import Notification, StatusChange


def _clock(t_s: float) -> str:
    minutes, seconds = divmod(t_s, 60.0)
    return f"{int(minutes):3d}:{seconds:05.2f}"


async def replay_to_terminal(
    path: Path,
    *,
    speed: float = 1.0,
    limit_s: float | None = None,
    out: TextIO | None = None,
) -> int:
    """Replay a recording at ``speed`` and print one line per notification.

    Returns the process exit status (0). Stops after ``limit_s`` seconds of session
    time when given. Malformed notifications are counted and reported, never fatal.
    """
    from devices.recording import open_recording
    from devices.replay import RecordingSource

    out = out or sys.stdout

    with open_recording(path) as reader:
        header = reader.header
    names = {
        key: (info.name or f"partner {key.upper()}") for key, info in header.partners.items()
    }
    pace = "as fast as it goes" if speed <= 0 or speed == float("inf") else f"at {speed:g}x"
    print(f"Replaying {path.name} {pace} (Ctrl-C to stop).", file=out)
    for key, name in names.items():
        device = header.partners[key].device
        print(f"  {key.upper()} = {name}" + (f" ({device})" if device else ""), file=out)
    print(f"{'time':>9}  who  {'HR':>4}  RR (ms)", file=out)

    malformed: Counter[str] = Counter()
    notifications = 0
    source = RecordingSource(path, speed=speed)
    try:
        async for record in source:
            if limit_s is not None and record.t_s > limit_s:
                break
            who = record.partner.upper()
            if isinstance(record, StatusChange):
                print(f"{_clock(record.t_s)}  {who}    strap {record.status}", file=out)
                continue
            if not isinstance(record, Notification):
                continue
            try:
                m = parse_hrm(record.payload)
            except MalformedPayload as exc:
                malformed[exc.reason] += 1
                continue
            notifications += 1
            rr = ", ".join(f"{r:.0f}" for r in m.rr_ms) or "-"
            print(f"{_clock(record.t_s)}  {who}   {m.hr_bpm:>4}  {rr}", file=out, flush=True)
    finally:
        await source.close()
    summary = f"{notifications} notifications shown"
    if malformed:
        summary += "; skipped malformed: " + ", ".join(f"{k} {v}" for k, v in malformed.items())
    print(summary + ".", file=out)
    return 0
