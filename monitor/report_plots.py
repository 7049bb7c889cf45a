"""The report's summary figure: both partners' heart rate and activation over a session.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, so no global state and
no GUI backend, safe in the dashboard's worker threads). matplotlib is imported inside
``summary_png`` only: reports are made after a session, never on the live path.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from monitor.report import Report

PARTNER_COLOURS = {"a": "#2f6f9f", "b": "#c0692b"}
PATTERN_COLOURS = {"divergence": "#e8b04a", "escalation": "#d0534f", "flooding": "#8e5bb5"}
SETTLE_COLOUR = "#9a9a9a"
FIGURE_IN = (12.0, 6.5)
DPI = 100


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [start, stop) where ``mask`` is True."""
    edges = np.diff(np.concatenate(([0], mask.astype(np.int8), [0])))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def _plain(text: str) -> str:
    """Text from data, shown literally (a '$' would otherwise start matplotlib mathtext)."""
    return text.replace("$", r"\$")


def summary_png(report: "Report") -> bytes:
    """The summary figure as PNG bytes (1200 × 650 px): HR10 with each calm baseline
    above, activation (baseline SDs) below; settle-in shaded, pattern bands, prompt
    markers with the recovery after each, numbered annotations, disconnection gaps."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.transforms import blended_transform_factory

    a = report.analysis
    from monitor.report import clock, episodes, who  # the report module imports this one lazily

    fig = Figure(figsize=FIGURE_IN, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    ax_hr, ax_act = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    t_min = a.tick_t_s / 60.0
    legend_extra = []

    settled = [r.settled_t_s for r in a.partners.values() if r.settled_t_s is not None]
    settle_end = max(settled) if settled else a.duration_s
    for ax in (ax_hr, ax_act):
        ax.axvspan(0, settle_end / 60.0, color=SETTLE_COLOUR, alpha=0.15, lw=0)
    legend_extra.append(Patch(color=SETTLE_COLOUR, alpha=0.3, label="settle-in"))

    seen_patterns = set()
    for ep in episodes(a):
        end = ep["end_s"] if ep["end_s"] is not None else a.duration_s
        colour = PATTERN_COLOURS.get(ep["pattern"], "#cccccc")
        for ax in (ax_hr, ax_act):
            ax.axvspan(ep["start_s"] / 60.0, end / 60.0, color=colour, alpha=0.18, lw=0)
        if ep["pattern"] not in seen_patterns:
            seen_patterns.add(ep["pattern"])
            legend_extra.append(Patch(color=colour, alpha=0.4, label=ep["pattern"]))

    for p, res in a.partners.items():
        colour = PARTNER_COLOURS.get(p, "#444444")
        name = _plain(who(report, p))
        ax_hr.plot(t_min, res.ticks.metrics.hr10_bpm, color=colour, lw=1.2, label=name)
        if res.baseline is not None:
            ax_hr.axhline(res.baseline.hr_mean_bpm, color=colour, lw=0.8, ls="--", alpha=0.7)
        ax_act.plot(t_min, res.activation_sd, color=colour, lw=1.0)
        for start, stop in _runs(~res.ticks.connected):
            lo = a.tick_t_s[start] / 60.0
            hi = a.tick_t_s[min(stop, len(a.tick_t_s) - 1)] / 60.0
            for ax in (ax_hr, ax_act):
                ax.axvspan(lo, hi, facecolor="none", edgecolor=colour, hatch="///", lw=0)
    if any(not r.ticks.connected.all() for r in a.partners.values()):
        legend_extra.append(Patch(facecolor="none", edgecolor="#555555", hatch="///", label="strap away"))

    top_hr = blended_transform_factory(ax_hr.transData, ax_hr.transAxes)
    top_act = blended_transform_factory(ax_act.transData, ax_act.transAxes)
    for i, pr in enumerate(report.summary["prompts"]):
        x = pr["t"] / 60.0
        for ax in (ax_hr, ax_act):
            ax.axvline(x, color="#333333", lw=0.9, ls="-", alpha=0.6)
        ax_hr.plot([x], [0.97], marker="v", color="#333333", ms=8, transform=top_hr, clip_on=False)
        if pr["recovery_s"] is not None:
            y = 0.92 - 0.08 * (i % 3)  # staggered so that close prompts stay readable
            end = (pr["t"] + pr["recovery_s"]) / 60.0
            ax_act.annotate("", xy=(end, y), xytext=(x, y), xycoords=top_act, textcoords=top_act,
                            arrowprops={"arrowstyle": "->", "color": "#2d7d46", "lw": 1.2})
            ax_act.text((x + end) / 2, y + 0.02, f"back in {clock(pr['recovery_s'])}", transform=top_act,
                        ha="center", va="bottom", fontsize=8, color="#2d7d46")
    if report.summary["prompts"]:
        legend_extra.append(Patch(color="#333333", alpha=0.6, label="prompt"))

    for i, note in enumerate(report.annotations):
        x = note.t_s / 60.0
        for ax in (ax_hr, ax_act):
            ax.axvline(x, color="#555555", lw=0.8, ls=":")
        ax_hr.text(x, 1.01, str(i + 1), transform=top_hr, ha="center", va="bottom", fontsize=8, color="#555555")

    ax_hr.set_ylabel("heart rate (bpm, 10 s mean)")
    ax_act.set_ylabel("activation (baseline SDs)")
    ax_act.axhline(0, color="#888888", lw=0.6)
    ax_act.set_xlabel("session time (minutes)")
    ax_act.set_xlim(0, max(a.duration_s, 1.0) / 60.0)
    handles, _ = ax_hr.get_legend_handles_labels()
    fig.legend(handles=handles + legend_extra, loc="outside lower center", fontsize=8, ncol=8, frameon=False)
    for ax in (ax_hr, ax_act):
        ax.grid(alpha=0.25)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()
