"""What an analysis says in a few lines: as JSON for tools, as text for people."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from monitor.events import json_safe
from monitor.pipeline import Analysis, malformed_total


def _clock(t_s: float) -> str:
    minutes, seconds = divmod(int(round(t_s)), 60)
    return f"{minutes}:{seconds:02d}"


def rounded(x: float | None, digits: int = 1) -> float | None:
    """``x`` rounded for display or JSON; None when unknown (None, NaN, infinite)."""
    return None if x is None or not math.isfinite(x) else round(float(x), digits)


def episodes(analysis: Analysis) -> list[dict[str, Any]]:
    """Pattern episodes, pairing each pattern_start with its pattern_end."""
    open_: dict[tuple[str, str | None], dict[str, Any]] = {}
    out = []
    for e in analysis.events:
        if e.kind == "pattern_start":
            ep = {"pattern": e.data["pattern"], "partner": e.partner, "start_s": e.t_s, "end_s": None}
            open_[(ep["pattern"], e.partner)] = ep
            out.append(ep)
        elif e.kind == "pattern_end":
            ep = open_.pop((e.data["pattern"], e.partner), None)
            if ep is not None:
                ep["end_s"] = e.t_s
    return out


def summarize(analysis: Analysis) -> dict[str, Any]:
    """The summary object of `coreg analyze --json`."""
    prompts = [e for e in analysis.events if e.kind == "prompt"]
    recovered = {e.data["prompt_t"]: e.data["recovery_s"] for e in analysis.events if e.kind == "recovered"}
    partners = {}
    for p, res in analysis.partners.items():
        q = res.ticks
        partners[p] = {
            "name": analysis.names.get(p, ""),
            "baseline": res.baseline.to_json() if res.baseline else None,
            "settled_s": res.settled_t_s,
            "beats": res.n_raw_beats,
            "corrected_beats": res.n_corrected_beats,
            "low_quality_share": rounded(float(np.mean(q.connected & ~q.quality_ok)) if len(q.connected) else 0.0, 4),
            "disconnected_s": float(np.sum(~q.connected)),
            "malformed": res.malformed,
            "mean_hr_bpm": rounded(float(np.nanmean(q.metrics.hr10_bpm)) if np.isfinite(q.metrics.hr10_bpm).any() else float("nan")),
        }
    eps = episodes(analysis)
    pattern_s = {}
    for ep in eps:
        end = ep["end_s"] if ep["end_s"] is not None else analysis.duration_s
        pattern_s[ep["pattern"]] = pattern_s.get(ep["pattern"], 0.0) + end - ep["start_s"]
    return {
        "partners": partners,
        "patterns": eps,
        "pattern_share": {k: round(v / max(analysis.duration_s, 1e-9), 4) for k, v in pattern_s.items()},
        "prompts": [
            {"t": e.t_s, "pattern": e.data["pattern"], "partner": e.partner, "recovery_s": recovered.get(e.t_s)}
            for e in prompts
        ],
        "linkage_median_r": rounded(float(np.nanmedian(analysis.linkage_r)) if np.isfinite(analysis.linkage_r).any() else float("nan"), 3),
        "malformed": dict(malformed_total(analysis)),
    }


def analysis_json(file: str, analysis: Analysis) -> dict[str, Any]:
    """One line of `coreg analyze --json` output."""
    return json_safe(
        {
            "file": file,
            "duration_s": analysis.duration_s,
            "events": [e.to_json() for e in analysis.events],
            "summary": summarize(analysis),
            "config": analysis.config.to_json(),
        }
    )


def format_summary(file: str, analysis: Analysis) -> str:
    """A readable summary of one analysed session."""
    s = summarize(analysis)
    lines = [f"{file} — {_clock(analysis.duration_s)} (m:ss)"]
    for p, info in s["partners"].items():
        who = info["name"] or f"partner {p.upper()}"
        base = info["baseline"]
        if base:
            lines.append(
                f"  {p.upper()} {who}: calm baseline {base['hr_mean_bpm']:.0f} bpm "
                f"(± {base['hr_sd_bpm']:.1f}), ln RMSSD {base['ln_rmssd_mean']:.2f}, settled at {_clock(info['settled_s'])}"
            )
        else:
            lines.append(f"  {p.upper()} {who}: no baseline (not enough calm, clean signal at the start)")
        quality = f"    signal: {info['beats']} beats, {info['corrected_beats']} corrected, low quality {100 * (info['low_quality_share'] or 0):.1f} % of the time"
        if info["disconnected_s"]:
            quality += f", strap away {info['disconnected_s']:.0f} s"
        if info["malformed"]:
            quality += ", malformed: " + ", ".join(f"{k} {v}" for k, v in info["malformed"].items())
        lines.append(quality)
    if s["patterns"]:
        lines.append("  patterns:")
        for ep in s["patterns"]:
            who = f" ({ep['partner'].upper()})" if ep["partner"] else ""
            end = _clock(ep["end_s"]) if ep["end_s"] is not None else "end"
            lines.append(f"    {ep['pattern']}{who} {_clock(ep['start_s'])} – {end}")
    else:
        lines.append("  patterns: none")
    if s["prompts"]:
        lines.append("  prompts:")
        for pr in s["prompts"]:
            rec = f"back near baseline after {pr['recovery_s']:.0f} s" if pr["recovery_s"] is not None else "no recovery seen"
            lines.append(f"    {_clock(pr['t'])} {pr['pattern']}: {rec}")
    else:
        lines.append("  prompts: none")
    if s["linkage_median_r"] is not None:
        lines.append(f"  linkage: median r {s['linkage_median_r']:+.2f}")
    return "\n".join(lines)
