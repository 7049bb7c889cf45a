"""The post-session report: one self-contained HTML page and a PNG summary figure.

``build_report`` gathers the numbers (the batch pipeline's analysis, whole-session HRV
of each partner's corrected NN intervals, prompts with recovery, pattern shares, signal
quality); ``render_html`` writes them as a page a couple reads at the top and a
practitioner below; ``write_report`` puts the page and ``report_plots.summary_png`` next
to each other on disk. The page embeds its figure as a base64 PNG and its CSS inline,
links nowhere and so opens offline. Every text that comes from data (names,
annotations, the config) passes through ``html.escape``.

Frequency-domain HRV uses NeuroKit2 (Makowski et al. 2021), imported only here and only
when a report is made: it takes seconds to import and must stay off the live path.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from devices.records import Annotation, Record, SessionHeader
from monitor.beats import beats_by_partner
from monitor.config import Config
from monitor.metrics import MS_PER_UNIT, NNSeriesLike, compute_metrics
from monitor.pipeline import Analysis, analyze_records, partner_nn
from monitor.summary import episodes, summarize

PATTERN_WORDS = {
    "divergence": "activation diverging",
    "escalation": "escalating together",
    "flooding": "flooded",
}
FREQUENCY_RATE_HZ = 4  # resampling rate of the NN series before Welch's PSD (the usual 4 Hz)
MIN_SPECTRAL_S = 120.0  # LF reaches down to 0.04 Hz: a shorter series holds too few of its cycles


@dataclass(frozen=True)
class SessionHrv:
    """Whole-session HRV of one partner's corrected NN intervals.

    Time domain (Task Force 1996, as monitor.metrics): mean HR (bpm), SDNN and RMSSD
    (ms). Frequency domain (NeuroKit2 hrv_frequency, Welch PSD): LF 0.04–0.15 Hz and
    HF 0.15–0.4 Hz power (ms²) and their ratio; NaN when the series is too short.
    """

    n_beats: int
    mean_hr_bpm: float
    sdnn_ms: float
    rmssd_ms: float
    lf_ms2: float = math.nan
    hf_ms2: float = math.nan
    lf_hf: float = math.nan


@dataclass(frozen=True, eq=False)
class Report:
    """Everything the report shows, computed once."""

    analysis: Analysis
    header: SessionHeader
    summary: dict
    hrv: dict[str, SessionHrv]
    annotations: list[Annotation]
    title: str


def time_domain_hrv(nn: NNSeriesLike, metrics_cfg) -> SessionHrv:
    """Mean HR (bpm), SDNN and RMSSD (ms) over all beats, through the pipeline's own
    windowed metrics with one window spanning the whole session (so the definitions
    are exactly those of the live metrics: SDNN ddof 1, differences of adjacent beats)."""
    n = len(nn.t_s)
    if n < 2:
        return SessionHrv(n, math.nan, math.nan, math.nan)
    span_s = float(nn.t_s[-1] - nn.t_s[0]) + 1.0
    whole = dataclasses.replace(metrics_cfg, long_window_s=span_s, min_beats_long=2)
    frame = compute_metrics(nn, np.array([float(nn.t_s[-1])]), whole)
    mean_nn_ms = float(frame.mean_nn60_ms[0])
    return SessionHrv(n, 60_000.0 / mean_nn_ms, float(frame.sdnn60_ms[0]), float(frame.rmssd60_ms[0]))


def frequency_domain_hrv(t_s: np.ndarray, nn_ms: np.ndarray) -> tuple[float, float, float]:
    """(LF ms², HF ms², LF/HF) of an NN series by NeuroKit2's hrv_frequency (Welch PSD
    of the series resampled at 4 Hz, absolute power). NaN for under 2 minutes of beats.
    Speech moves breathing out of the HF band: the values are for reference only."""
    if len(t_s) < 3 or float(t_s[-1] - t_s[0]) < MIN_SPECTRAL_S:
        return math.nan, math.nan, math.nan
    import neurokit2 as nk  # lazily: seconds to import, reports only

    out = nk.hrv_frequency(
        {"RRI": np.asarray(nn_ms, dtype=np.float64), "RRI_Time": np.asarray(t_s, dtype=np.float64)},
        interpolation_rate=FREQUENCY_RATE_HZ,
        normalize=False,
        silent=True,
    )
    row = out.iloc[0]
    return float(row["HRV_LF"]), float(row["HRV_HF"]), float(row["HRV_LFHF"])


def build_report(header: SessionHeader, records: list[Record], cfg: Config | None = None, *, title: str = "") -> Report:
    """Analyse a session's records and gather the report's numbers."""
    cfg = cfg or Config()
    analysis = analyze_records(header, records, cfg)
    beats = beats_by_partner(records, tuple(analysis.partners), cfg.beats)
    hrv = {}
    for p in analysis.partners:
        nn, _ = partner_nn(beats[p], cfg)
        td = time_domain_hrv(nn, cfg.metrics)
        lf, hf, ratio = frequency_domain_hrv(nn.t_s, nn.nn_units * MS_PER_UNIT)
        hrv[p] = dataclasses.replace(td, lf_ms2=lf, hf_ms2=hf, lf_hf=ratio)
    notes = [r for r in records if isinstance(r, Annotation)]
    day = header.started_at[:10]
    return Report(analysis, header, summarize(analysis), hrv, notes, title or f"coreg session report {day}".strip())


# -- text ------------------------------------------------------------------------------


def clock(t_s: float) -> str:
    """Session time as m:ss."""
    minutes, seconds = divmod(int(round(t_s)), 60)
    return f"{minutes}:{seconds:02d}"


def fmt(x: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals, or an en dash when unknown."""
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def who(report: Report, partner: str | None) -> str:
    """A partner's name, or "Partner A" when the header has none."""
    if partner is None:
        return "both"
    return report.analysis.names.get(partner) or f"Partner {partner.upper()}"


def _about_minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60.0))
    return "about a minute" if minutes == 1 else f"about {minutes} minutes"


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


def plain_summary(report: Report) -> list[str]:
    """A few kind, plain sentences for the couple: what their hearts did, no blame, no diagnosis."""
    s = report.summary
    eps = s["patterns"]
    lines = []
    if not any(np.isfinite(r.ticks.metrics.hr10_bpm).any() for r in report.analysis.partners.values()):
        return ["This session holds too little heart data to say anything about it yet."]
    apart = sum(1 for e in eps if e["pattern"] == "divergence")
    together = sum(1 for e in eps if e["pattern"] == "escalation")
    flooded = sum(1 for e in eps if e["pattern"] == "flooding")
    if not eps:
        lines.append("Your hearts stayed fairly steady through this conversation; no pause was suggested.")
    if apart:
        lines.append(f"Your hearts moved apart {_times(apart)}.")
    if together:
        lines.append(f"Your hearts sped up together {_times(together)}.")
    if flooded:
        lines.append(f"{'Once' if flooded == 1 else _times(flooded).capitalize()}, a heart beat fast enough "
                     "that a longer break was suggested.")
    recoveries = [p["recovery_s"] for p in s["prompts"]]
    seen = [r for r in recoveries if r is not None]
    if seen and len(seen) == len(recoveries):
        after = "After each pause" if len(seen) > 1 else "After the pause"
        lines.append(f"{after} you both came back within {_about_minutes(max(seen))}.")
    elif seen:
        lines.append(f"After {len(seen)} of the {len(recoveries)} pauses you both came back within "
                     f"{_about_minutes(max(seen))}; the other time the session ended first.")
    elif recoveries:
        lines.append("The session ended before both hearts had settled again; that is common and fine.")
    lines.append("These are heartbeats, not a verdict: they show when a pause might help, never who is right.")
    return lines


# -- HTML ------------------------------------------------------------------------------

CSS = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #223; background: #fbfaf7; line-height: 1.45; }
h1 { font-weight: 500; } h2 { font-weight: 500; margin-top: 2rem; border-bottom: 1px solid #ddd; }
.couple { background: #eef4f1; border-radius: 0.8rem; padding: 1rem 1.4rem; font-size: 1.15rem; }
table { border-collapse: collapse; margin: 0.6rem 0; } caption { text-align: left; color: #556; }
th, td { padding: 0.3rem 0.8rem; border-bottom: 1px solid #e4e2dc; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #e4e2dc; border-radius: 0.4rem; }
.note { color: #556; font-size: 0.92rem; } pre { white-space: pre-wrap; font-size: 0.8rem; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _table(caption: str, head: list[str], rows: list[list[object]], cls: str = "") -> str:
    out = [f'<table class="{_e(cls)}"><caption>{_e(caption)}</caption><tr>']
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def pattern_rows(report: Report) -> list[list[object]]:
    """Share of the session in each pattern, and in none (overlaps counted once)."""
    a = report.analysis
    rows = [[PATTERN_WORDS.get(k, k), k, f"{100 * v:.1f} %"] for k, v in report.summary["pattern_share"].items()]
    covered = np.zeros(len(a.tick_t_s), dtype=bool)
    for ep in episodes(a):
        end = ep["end_s"] if ep["end_s"] is not None else a.duration_s
        covered |= (a.tick_t_s > ep["start_s"]) & (a.tick_t_s <= end)
    rows.append(["no pattern", "–", f"{100 * (1 - covered.mean()) if len(covered) else 100.0:.1f} %"])
    return rows


def render_html(report: Report, png: bytes) -> str:
    """The report page: plain words for the couple on top, the numbers below, the
    summary figure embedded as a base64 PNG; self-contained, no external reference."""
    a, s = report.analysis, report.summary
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(report.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{_e(report.title)}</h1>",
        f'<p class="note">{_e(" and ".join(who(report, p) for p in a.partners))} · started '
        f"{_e(report.header.started_at)} · length {clock(a.duration_s)} (m:ss)</p>",
        '<section class="couple" id="for-you"><h2>For the two of you</h2>',
        *[f"<p>{_e(line)}</p>" for line in plain_summary(report)],
        "</section>",
        '<h2>The session at a glance</h2>',
        f'<img id="summary-figure" alt="Heart rate and activation of both partners over the session" '
        f'src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">',
        '<p class="note">Grey: the settle-in that sets each calm baseline. Coloured bands: the patterns. '
        "Triangles: prompts, with the time until both were back near baseline. Numbered lines: "
        "the annotations below. Hatching: a strap away.</p>",
        "<h2>For the practitioner</h2>",
    ]
    base_rows, hrv_rows, quality_rows = [], [], []
    n_ticks = len(a.tick_t_s)
    for p, res in a.partners.items():
        info, b, h = s["partners"][p], res.baseline, report.hrv[p]
        name = who(report, p)
        if b is None:
            base_rows.append([name, "no baseline", "–", "–", "–", "–"])
        else:
            base_rows.append([name, fmt(b.hr_mean_bpm), fmt(b.hr_sd_bpm), fmt(b.ln_rmssd_mean, 2),
                              fmt(b.ln_rmssd_sd, 2), clock(res.settled_t_s or 0.0)])
        hrv_rows.append([name, h.n_beats, fmt(h.mean_hr_bpm), fmt(h.sdnn_ms), fmt(h.rmssd_ms),
                         fmt(h.lf_ms2, 0), fmt(h.hf_ms2, 0), fmt(h.lf_hf, 2)])
        low_s = (info["low_quality_share"] or 0.0) * n_ticks
        corrected = f"{res.n_corrected_beats} ({100 * res.n_corrected_beats / max(res.n_raw_beats, 1):.1f} %)"
        malformed = ", ".join(f"{k} {v}" for k, v in sorted(res.malformed.items())) or "0"
        quality_rows.append([name, res.n_raw_beats, corrected, f"{low_s:.0f} s ({100 * (info['low_quality_share'] or 0):.1f} %)",
                             f"{info['disconnected_s']:.0f} s", malformed])
    parts.append(_table("Calm baseline from the settle-in (HR10 and ln RMSSD over calm, clean ticks)",
                        ["partner", "HR mean (bpm)", "HR SD (bpm)", "ln RMSSD mean", "ln RMSSD SD", "settled at"], base_rows, "baseline"))
    parts.append(_table("HRV over the whole session, corrected NN intervals",
                        ["partner", "beats", "mean HR (bpm)", "SDNN (ms)", "RMSSD (ms)", "LF (ms²)", "HF (ms²)", "LF/HF"], hrv_rows, "hrv"))
    parts.append('<p class="note">LF 0.04–0.15 Hz and HF 0.15–0.4 Hz (NeuroKit2, Welch). Talking moves breathing '
                 "out of the HF band, so the frequency-domain values of a conversation are for reference only.</p>")
    prompt_rows = [[clock(pr["t"]), PATTERN_WORDS.get(pr["pattern"], pr["pattern"]), pr["pattern"], who(report, pr["partner"]),
                    clock(pr["recovery_s"]) if pr["recovery_s"] is not None else "not seen"] for pr in s["prompts"]]
    parts.append(_table("Prompts and recovery (both within 5 bpm of baseline for 30 s)",
                        ["time", "pattern", "detector name", "rising or flooded", "recovery (m:ss)"], prompt_rows, "prompts")
                 if prompt_rows else "<p>No prompts in this session.</p>")
    ep_rows = [[PATTERN_WORDS.get(ep["pattern"], ep["pattern"]), who(report, ep["partner"]), clock(ep["start_s"]),
                clock(ep["end_s"]) if ep["end_s"] is not None else "end"] for ep in s["patterns"]]
    if ep_rows:
        parts.append(_table("Pattern episodes", ["pattern", "partner", "from", "to"], ep_rows, "episodes"))
    parts.append(_table("Share of the session in each pattern", ["pattern", "detector name", "share"], pattern_rows(report), "shares"))
    parts.append(_table("Signal quality", ["partner", "beats", "corrected beats", "low-quality time", "strap away", "malformed notifications"],
                        quality_rows, "quality"))
    if s["linkage_median_r"] is not None:
        parts.append(f'<p class="note">Linkage (30 s cross-correlation of the two heart rates): median r {s["linkage_median_r"]:+.2f}.</p>')
    note_rows = [[i + 1, clock(n.t_s), n.author or "–", n.text] for i, n in enumerate(report.annotations)]
    parts.append(_table("Annotations", ["#", "time", "by", "note"], note_rows, "annotations") if note_rows else "<p>No annotations.</p>")
    parts.append("<details><summary>Settings used</summary><pre>"
                 f"{_e(json.dumps(a.config.to_json(), indent=1, default=str))}</pre></details>")
    parts.append('<p class="note">Made by coreg on this computer; nothing in this page was sent anywhere.</p></body></html>')
    return "\n".join(parts)


def report_html(header: SessionHeader, records: list[Record], cfg: Config | None = None, *, title: str = "") -> tuple[str, bytes]:
    """(HTML page, summary PNG) of a session, in memory (what the dashboard serves)."""
    from monitor.report_plots import summary_png

    report = build_report(header, records, cfg, title=title)
    png = summary_png(report)
    return render_html(report, png), png


def write_report(header: SessionHeader, records: list[Record], out_html: str | Path,
                 cfg: Config | None = None, *, title: str = "") -> tuple[Path, Path]:
    """Write the report page to ``out_html`` and its summary figure beside it (same
    name, .png); returns both paths."""
    out_html = Path(out_html)
    page, png = report_html(header, records, cfg, title=title)
    out_png = out_html.with_suffix(".png")
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_png.write_bytes(png)
    out_html.write_text(page, encoding="utf-8")
    return out_html, out_png
