"""EDF+ export: each partner's 4 Hz heart rate as a signal, events as annotations.

Follows the EDF+ specification (Kemp & Olivan, Clin Neurophysiol 114:1755-1761, 2003),
written with pyedflib (EDFlib). One data record per second; each signal carries
``LinkageConfig.fs_hz`` (4) samples a record, the same step-held instantaneous HR that
linkage is computed from (monitor.linkage.resample_hr). A sample with no beat within
``max_hold_s`` is written as 0 bpm, since EDF has no "missing" value. The start date is
the header's ``started_at`` in UTC (EDF's clock has no time zone; the recording field
says "start_time_UTC").
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from devices.records import Record, SessionHeader
from monitor.beats import beats_by_partner
from monitor.config import Config
from monitor.events import Event
from monitor.export import event_text, present_partners
from monitor.linkage import resample_hr
from monitor.pipeline import Analysis, partner_nn

HR_PHYSICAL_MIN_BPM = 0.0  # 0 marks "no beat"; corrected NN is at most 2000 ms = 30 bpm
HR_PHYSICAL_MAX_BPM = 250.0  # above any NN the artifact range (>= 300 ms = 200 bpm) lets through
DIGITAL_MIN, DIGITAL_MAX = -32768, 32767
MISSING_BPM = 0.0


def hr_resolution_bpm() -> float:
    """The heart-rate step one digital unit stands for in the EDF file (bpm)."""
    return (HR_PHYSICAL_MAX_BPM - HR_PHYSICAL_MIN_BPM) / (DIGITAL_MAX - DIGITAL_MIN)


def hr_signals(header: SessionHeader, records: list[Record], duration_s: float,
               cfg: Config | None = None) -> dict[str, np.ndarray]:
    """Per partner, HR (bpm) at j / fs_hz s for every whole second of the session.

    NaN where no corrected beat is within max_hold_s (monitor.linkage.resample_hr).
    """
    cfg = cfg or Config()
    n = max(1, math.ceil(duration_s)) * cfg.linkage.fs_hz
    out = {}
    for p, beats in beats_by_partner(records, tuple(present_partners(header)), cfg.beats).items():
        nn, _ = partner_nn(beats, cfg)
        out[p] = resample_hr(nn.t_s, nn.nn_units, nn.available_t_s, 0, n, cfg.linkage)
    return out


def annotation_text(event: Event) -> str:
    """One event as the words of an EDF+ annotation: kind, partner, pattern, text."""
    parts = [event.kind]
    if event.partner:
        parts.append(event.partner)
    if event.data.get("pattern"):
        parts.append(str(event.data["pattern"]))
    text = event_text(event.data)
    return " ".join(parts) + (f": {text}" if text else "")


def _start(header: SessionHeader) -> datetime:
    start = datetime.fromisoformat(header.started_at)
    start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    return start.astimezone(timezone.utc).replace(tzinfo=None)


def write_edf(path: str | Path, header: SessionHeader, records: list[Record], analysis: Analysis,
              cfg: Config | None = None) -> Path:
    """Write an EDF+ file of the session: HR per partner, events as annotations; returns the path.

    An existing file is never overwritten (FileExistsError); a file left incomplete by
    an error is removed.
    """
    import pyedflib

    cfg = cfg or Config()
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; coreg does not overwrite exports")
    signals = hr_signals(header, records, analysis.duration_s, cfg)
    writer = pyedflib.EdfWriter(str(path), len(signals), file_type=pyedflib.FILETYPE_EDFPLUS)
    try:
        writer.setSignalHeaders([
            {
                "label": f"HR {p}",  # EDF labels hold 16 ASCII characters: no names
                "dimension": "bpm",
                "sample_frequency": cfg.linkage.fs_hz,
                "physical_min": HR_PHYSICAL_MIN_BPM,
                "physical_max": HR_PHYSICAL_MAX_BPM,
                "digital_min": DIGITAL_MIN,
                "digital_max": DIGITAL_MAX,
                "transducer": "chest strap RR",
                "prefilter": "L&T 2019 NN",
            }
            for p in signals
        ])
        writer.setStartdatetime(_start(header))
        writer.setEquipment("coreg")
        writer.setRecordingAdditional("start_time_UTC")
        for event in analysis.events:
            writer.writeAnnotation(event.t_s, -1, annotation_text(event))
        data = [np.clip(np.nan_to_num(hr, nan=MISSING_BPM), HR_PHYSICAL_MIN_BPM, HR_PHYSICAL_MAX_BPM)
                for hr in signals.values()]
        writer.writeSamples(data)
        writer.close()
    except BaseException:
        writer.close()
        path.unlink(missing_ok=True)
        raise
    return path
