"""Benchmark: one simulated hour of two partners through the batch pipeline.

What it times (medians of repeated runs, wall clock, one process):

- ``monitor.pipeline.analyze_records(header, records)`` on records already in memory:
  beats, artifact correction, metrics and quality, baseline, linkage, detector, events;
- the same run with each stage function of ``monitor.pipeline`` wrapped in a timer, for
  the per-stage split (the detector loop is what is left of the total);
- writing the hour to a coreg-session file in a temporary folder, and reading it back
  (``devices.recording.read_records``), reported apart from the pipeline;
- a reference that computes only the 60-s RMSSD, SDNN and mean NN of each partner at
  every tick by calling ``neurokit2.hrv_time`` once per window (Makowski et al. 2021),
  on the pipeline's own artifact-corrected NN beats, each tick seeing only the beats
  available by then. When a full pass would not fit the time budget, a random sample
  of windows is timed and scaled up, and the output says so.

The pipeline is also timed between chunks of the reference passes (each timed run after
an untimed one), and the ratio uses the median of those runs, so that both figures come
from the same minutes of a machine whose speed drifts.

It also checks that the pipeline's rmssd60_ms, sdnn60_ms and mean_nn60_ms agree with
the reference on every window the reference computed, and prints peak memory. The last
line is ``ratio_vs_neurokit2=<reference time / pipeline time for the hour>``.
Targets (printed, not asserted): ratio >= 1000 and pipeline <= 100 ms for the hour.

Run from the repository root:  .venv/bin/python bench/pipeline.py
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
import warnings
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

import monitor.pipeline as pipeline
from devices.recording import RecordingWriter, read_records
from devices.scenarios import SESSION_S, Scenario, back_to_back, get_scenario
from devices.simulate import simulate
from monitor.beats import beats_by_partner
from monitor.config import Config
from monitor.prompts import PromptCatalogue
from monitor.stages import NNBeats

HOUR_S = 3600.0
SEGMENTS = ("divergence", "escalation", "artifacts")  # 3 x 20 min, back to back
TARGET_RATIO = 1000.0
TARGET_PIPELINE_S = 0.100
# Stage name -> the monitor.pipeline functions whose time it adds up (analyze_records
# looks them up as module globals, so wrapping them there times them in place).
STAGES = {
    "beats": ("scan_records", "time_partner_beats"),  # one pass over the records, then beat timing
    "artifacts": ("partner_nn",),
    "metrics+quality": ("connection_by_tick", "partner_ticks"),
    "linkage": ("batch_linkage",),
}
# Parts of the detector loop (the rest of analyze_records) timed on their own.
DETAIL = {"  of which Detector.run": "Detector.run", "  of which record_events": "record_events"}
METRICS = (("RMSSD", "rmssd60_ms"), ("SDNN", "sdnn60_ms"), ("MeanNN", "mean_nn60_ms"))


class BenchError(RuntimeError):
    """The benchmark cannot give a meaningful figure (says which part and why)."""


def hour_scenario(names: tuple[str, ...] = SEGMENTS) -> Scenario:
    """A one-hour script: the registered 20-min scenarios ``names`` played back to back.

    Episodes and gaps are shifted by each segment's start (every segment opens with
    calm minutes, so they never overlap); the artifact rates, which a Scenario holds for
    the whole session, are the highest of the segments' (the "artifacts" segment makes
    the whole hour a noisy 3 % one), and the resting-rate wander the widest.
    """
    parts = [get_scenario(n) for n in names]
    if abs(len(parts) * SESSION_S - HOUR_S) > 1e-9:
        raise BenchError(f"segments {names}: {len(parts)} x {SESSION_S:g} s is not one hour")
    return back_to_back(
        parts, name="hour:" + "+".join(names),
        description="benchmark hour: " + " then ".join(p.description for p in parts),
    )


def timed_runs(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        gc.collect()  # each run starts without the previous run's garbage
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.2f} ms"


def spread(times: list[float]) -> str:
    return f"median {ms(statistics.median(times)).strip()}  (min {ms(min(times)).strip()}, max {ms(max(times)).strip()}, n={len(times)})"


@contextmanager
def stage_timers(names: tuple[str, ...]) -> Iterator[dict[str, list[float]]]:
    """Wrap the named callables of monitor.pipeline ("f" or "Class.method") in timers.

    Yields name -> seconds of each call made meanwhile, and restores the originals on
    leaving; a name the module no longer has is not wrapped (its stage reads "not called").
    """
    calls: dict[str, list[float]] = {}
    saved = []
    for name in names:
        *owner_path, attr = name.split(".")
        owner = pipeline
        for part in owner_path:
            owner = getattr(owner, part, None)
        fn = getattr(owner, attr, None) if owner is not None else None
        if fn is None:
            continue
        calls[name] = []

        def timed(*args, _fn=fn, _log=calls[name], **kwargs):
            t0 = time.perf_counter()
            try:
                return _fn(*args, **kwargs)
            finally:
                _log.append(time.perf_counter() - t0)

        saved.append((owner, attr, vars(owner).get(attr)))
        setattr(owner, attr, wraps(fn)(timed))
    try:
        yield calls
    finally:
        for owner, attr, fn in reversed(saved):
            if fn is None:
                delattr(owner, attr)  # it was inherited: let the base class show through again
            else:
                setattr(owner, attr, fn)


def stage_split(header, records, repeats: int) -> tuple[dict[str, list[float]], list[float]]:
    """Per-stage seconds of each of ``repeats`` wrapped pipeline runs, and their totals.

    The detector loop is the total less the stages named in STAGES; DETAIL names parts
    of it that are timed too (per call, so their timers cost a little themselves).
    """
    per_run: dict[str, list[float]] = {s: [] for s in (*STAGES, "detector loop", *DETAIL)}
    totals = []
    with stage_timers(tuple(n for names in STAGES.values() for n in names) + tuple(DETAIL.values())) as calls:
        for run in range(repeats + 1):  # run 0 warms up
            for log in calls.values():
                log.clear()
            gc.collect()
            t0 = time.perf_counter()
            pipeline.analyze_records(header, records)
            total = time.perf_counter() - t0
            if run == 0:
                continue
            totals.append(total)
            accounted = 0.0
            for stage, names in STAGES.items():
                logged = [t for n in names for t in calls.get(n, [])]
                per_run[stage].append(sum(logged) if logged else float("nan"))
                accounted += sum(logged)
            per_run["detector loop"].append(total - accounted)
            for label, name in DETAIL.items():
                per_run[label].append(sum(calls[name]) if calls.get(name) else float("nan"))
    return per_run, totals


def corrected_nn(header, records, cfg: Config) -> dict[str, NNBeats]:
    """Each partner's artifact-corrected NN beats, made as the pipeline makes them."""
    present = [p for p in pipeline.PARTNERS if p in header.partners] or list(pipeline.PARTNERS)
    beats = beats_by_partner(records, tuple(present), cfg.beats)
    return {p: pipeline.partner_nn(beats[p], cfg)[0] for p in present}


def reference_windows(nn: dict[str, NNBeats], tick_t_s: np.ndarray, cfg: Config) -> list[tuple[str, int]]:
    """(partner, tick index) of every 60-s window holding enough available beats for
    the pipeline to report its metrics (fewer give NaN there, and nothing to time here)."""
    w, need = cfg.metrics.long_window_s, max(cfg.metrics.min_beats_long, 2)
    out = []
    for p, b in nn.items():
        # cumulative counts: beats with t <= tick and available by tick (available_t_s
        # is non-decreasing, so "available" is a prefix of the beats)
        hi = np.minimum(np.searchsorted(b.t_s, tick_t_s, side="right"),
                        np.searchsorted(b.available_t_s, tick_t_s, side="right"))
        lo = np.searchsorted(b.t_s, tick_t_s - w, side="right")
        out += [(p, int(i)) for i in np.flatnonzero(hi - lo >= need)]
    return out


def neurokit_metrics(nk, b: NNBeats, tick_s: float, window_s: float) -> tuple[float, float, float]:
    """RMSSD, SDNN, MeanNN (ms) by neurokit2.hrv_time over the beats in (tick - W, tick]
    that were available by the tick."""
    inside = (b.t_s > tick_s - window_s) & (b.t_s <= tick_s) & (b.available_t_s <= tick_s)
    rri_ms = b.nn_units[inside] * (1000.0 / 1024.0)
    # hrv_time takes intervals as adjacent when their times step by the interval; a 1-s
    # jump before each beat whose predecessor is missing makes it skip exactly the
    # successive differences the pipeline skips.
    rri_time_s = np.cumsum(rri_ms) / 1000.0 + np.cumsum(~b.contiguous[inside])
    out = nk.hrv_time({"RRI": rri_ms, "RRI_Time": rri_time_s})
    return float(out["HRV_RMSSD"].iloc[0]), float(out["HRV_SDNN"].iloc[0]), float(out["HRV_MeanNN"].iloc[0])


def run_reference(
    nk, nn, tick_t_s, windows, window_s, between: Callable[[], object] | None = None
) -> tuple[float, dict[tuple[str, int], tuple[float, float, float]]]:
    """Seconds to compute the metrics of ``windows`` one hrv_time call each, and the values.

    With ``between``, the windows are timed in about 30 chunks and ``between`` is called
    after each one, outside the timing (the pipeline runs interleaved with the reference).
    """
    values = {}
    chunk = max(25, len(windows) // 30) if between is not None else max(len(windows), 1)
    elapsed = 0.0
    gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # indices that need longer recordings than 60 s
        for lo in range(0, len(windows), chunk):
            t0 = time.perf_counter()
            for p, i in windows[lo : lo + chunk]:
                values[(p, i)] = neurokit_metrics(nk, nn[p], float(tick_t_s[i]), window_s)
            elapsed += time.perf_counter() - t0
            if between is not None:
                between()
    return elapsed, values


def compare(analysis, values: dict[tuple[str, int], tuple[float, float, float]]) -> None:
    """Print the worst relative difference pipeline vs reference, per metric."""
    worst_all = 0.0
    for k, (ref_name, field) in enumerate(METRICS):
        worst, where, n, nan_pipe = 0.0, None, 0, 0
        for (p, i), ref in values.items():
            got = float(getattr(analysis.partners[p].ticks.metrics, field)[i])
            if not np.isfinite(got):
                nan_pipe += 1  # e.g. RMSSD: too few successive differences across a gap
                continue
            if not np.isfinite(ref[k]):
                raise BenchError(f"{ref_name}: reference NaN at partner {p}, tick {i + 1} where the pipeline has {got}")
            rel = abs(got - ref[k]) / max(abs(ref[k]), 1e-12)
            n += 1
            if rel >= worst:
                worst, where = rel, (p, float(analysis.tick_t_s[i]), got, ref[k])
        worst_all = max(worst_all, worst)
        extra = f"; {nan_pipe} window(s) NaN in the pipeline only" if nan_pipe else ""
        p, t, got, ref = where
        print(f"  {field:13s} vs HRV_{ref_name:7s}: worst rel diff {worst:.3e} over {n} windows "
              f"(partner {p}, t={t:g} s: {got:.9g} vs {ref:.9g}){extra}")
    print(f"  worst relative difference, all three metrics: {worst_all:.3e}")


def max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, numpy {np.__version__}; "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7, help="timed pipeline runs (median)")
    ap.add_argument("--read-repeats", type=int, default=3, help="timed reads of the file")
    ap.add_argument("--ref-repeats", type=int, default=3, help="reference passes (median)")
    ap.add_argument("--ref-budget-s", type=float, default=180.0,
                    help="longest a full reference pass may take before sampling instead")
    ap.add_argument("--ref-sample", type=int, default=600, help="windows timed when sampling")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    print(f"machine: {machine()}")
    scenario = hour_scenario()
    t0 = time.perf_counter()
    session = simulate(scenario, args.seed)
    header, records = session.header, session.records
    print(f"session: {scenario.name}, seed {args.seed}, {scenario.duration_s:g} s, {len(records)} records "
          f"(simulated in {time.perf_counter() - t0:.2f} s)")

    print("\nrecording file (not part of the pipeline time):")
    with tempfile.TemporaryDirectory(prefix="coreg-bench-") as tmp:
        path = Path(tmp) / "hour.jsonl"
        t0 = time.perf_counter()
        with RecordingWriter(path, header) as writer:
            for r in records:
                writer.write(r)
        print(f"  write   {ms(time.perf_counter() - t0)}  ({path.stat().st_size / 2**20:.2f} MiB, {path.name})")
        read_t = timed_runs(lambda: read_records(path), args.read_repeats, warmup=0)
        n_read = len(read_records(path)[1])
        if n_read != len(records):
            raise BenchError(f"{path}: read {n_read} records back, wrote {len(records)}")
        print(f"  read    {spread(read_t)}")

    print("\npipeline: analyze_records(header, records) from memory")
    pipe_t = timed_runs(lambda: pipeline.analyze_records(header, records), args.repeats)
    pipe_s = statistics.median(pipe_t)
    print(f"  whole   {spread(pipe_t)}")
    analysis = pipeline.analyze_records(header, records)
    kinds = sorted({e.kind for e in analysis.events})
    print(f"  {len(analysis.tick_t_s)} ticks, {len(analysis.events)} events ({', '.join(kinds)})")

    per_stage, wrapped_totals = stage_split(header, records, args.repeats)
    print(f"\nper-stage split (stage functions of monitor.pipeline wrapped in timers; medians of {args.repeats}; "
          f"wrapped total {ms(statistics.median(wrapped_totals)).strip()}):")
    for stage, times in per_stage.items():
        med = statistics.median(times)
        if not np.isfinite(med):
            print(f"  {stage:26s}  not called (monitor.pipeline changed shape?)")
            continue
        print(f"  {stage:26s} {ms(med)}  {100 * med / statistics.median(wrapped_totals):5.1f} %")
    cat_t = timed_runs(PromptCatalogue.load, args.repeats)
    print(f"  {'  of which catalogue load':26s} {ms(statistics.median(cat_t))}  (PromptCatalogue.load() timed alone)")
    print("  (detector loop = the total less the four stages above: record events, the loop over "
          "ticks with settle-in, quality events and Detector.run, activation, event sorting, "
          "catalogue load)")

    gc.collect()
    tracemalloc.start()
    pipeline.analyze_records(header, records)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_pipeline = max_rss_mib()
    print(f"\nmemory: tracemalloc peak of one pipeline run {peak / 2**20:.1f} MiB; "
          f"process max RSS so far {rss_pipeline:.0f} MiB (before importing neurokit2)")

    print("\nreference: neurokit2.hrv_time once per 60-s window, per partner per tick")
    t0 = time.perf_counter()
    import neurokit2 as nk  # here, so its import weighs on neither time nor the RSS above
    print(f"  neurokit2 {nk.__version__} imported in {time.perf_counter() - t0:.2f} s (not counted)")
    cfg = analysis.config
    window_s = cfg.metrics.long_window_s
    nn = corrected_nn(header, records, cfg)
    windows = reference_windows(nn, analysis.tick_t_s, cfg)
    n_all = len(analysis.tick_t_s) * len(nn)
    print(f"  {len(windows)} windows with >= {cfg.metrics.min_beats_long} beats "
          f"(of {n_all} partner-ticks; the rest are NaN in the pipeline too)")
    pilot = [windows[j] for j in rng.choice(len(windows), size=min(50, len(windows)), replace=False)]
    run_reference(nk, nn, analysis.tick_t_s, pilot, window_s)  # warm-up
    pilot_s, _ = run_reference(nk, nn, analysis.tick_t_s, pilot, window_s)
    per_call_s = pilot_s / len(pilot)
    estimate_s = per_call_s * len(windows)
    print(f"  pilot: {len(pilot)} random windows at {per_call_s * 1e3:.2f} ms per call -> "
          f"full pass estimated at {estimate_s:.1f} s")
    values: dict[tuple[str, int], tuple[float, float, float]] = {}
    # The pipeline is timed again between chunks of the reference, so that both figures
    # of the ratio come from the same minutes of a machine whose speed drifts.
    interleaved: list[float] = []

    def pipeline_run() -> None:
        # After a chunk of NeuroKit2 calls the caches hold pandas, not the pipeline: one
        # untimed run first, as the runs above follow a warm-up.
        pipeline.analyze_records(header, records)
        gc.collect()
        t_run = time.perf_counter()
        pipeline.analyze_records(header, records)
        interleaved.append(time.perf_counter() - t_run)

    if estimate_s <= args.ref_budget_s:
        passes = max(1, min(args.ref_repeats, int(args.ref_budget_s // estimate_s)))
        ref_t = []
        for _ in range(passes):
            elapsed, values = run_reference(nk, nn, analysis.tick_t_s, windows, window_s, pipeline_run)
            ref_t.append(elapsed)
        ref_s = statistics.median(ref_t)
        print(f"  full passes over all {len(windows)} windows: {spread(ref_t)}")
    else:
        k = min(args.ref_sample, len(windows))
        sample = [windows[j] for j in np.sort(rng.choice(len(windows), size=k, replace=False))]
        ref_t = []
        for _ in range(args.ref_repeats):
            elapsed, values = run_reference(nk, nn, analysis.tick_t_s, sample, window_s, pipeline_run)
            ref_t.append(elapsed * len(windows) / k)
        ref_s = statistics.median(ref_t)
        print(f"  SAMPLED (full pass over budget {args.ref_budget_s:g} s): timed {k} random windows "
              f"of {len(windows)}, {args.ref_repeats} passes, each scaled by {len(windows)}/{k}: "
              f"{spread(ref_t)}")

    print("\nagreement, pipeline vs reference (same corrected NN beats, each tick only beats available by then):")
    compare(analysis, values)

    print(f"\npipeline runs interleaved with the reference passes: {spread(interleaved)}")
    print(f"  (the first {args.repeats} runs, all at once before: median {ms(pipe_s).strip()})")
    pipe_s = statistics.median(interleaved)
    ratio = ref_s / pipe_s
    print(f"\nsummary (seed {args.seed}, {scenario.duration_s:g} s):")
    print(f"  pipeline for the hour   {ms(pipe_s)}   target <= {ms(TARGET_PIPELINE_S).strip()}: "
          f"{'met' if pipe_s <= TARGET_PIPELINE_S else 'not met'}")
    print(f"  read of the file        {ms(statistics.median(read_t))}")
    print(f"  neurokit2 reference     {ms(ref_s)}")
    print(f"  ratio                   {ratio:9.1f}      target >= {TARGET_RATIO:g}: "
          f"{'met' if ratio >= TARGET_RATIO else 'not met'}")
    print(f"  tracemalloc peak        {peak / 2**20:9.1f} MiB; max RSS {rss_pipeline:.0f} MiB before neurokit2, "
          f"{max_rss_mib():.0f} MiB at the end")
    print(f"ratio_vs_neurokit2={ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
