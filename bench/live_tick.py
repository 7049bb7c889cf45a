"""Benchmark: the CPU cost of one live tick of a dyad, and what it is spent on.

Feeds the first N seconds (default 1,200) of the noisy benchmark hour (pipeline.py's
``hour_scenario``, seed 1) record by record through ``monitor.live.LivePipeline``
(``keep_ticks=False``, ticks taken as they come, as the session runner does) and
prints, per tick, the CPU time (``time.process_time``) of:

- all of it (records fed and ticks evaluated),
- artifact correction (``_PartnerLive.finalise``, both partners),
- record intake (``_PartnerLive.feed``: beat timing, both partners),
- the rest of the tick: metrics, quality, baseline, activation, detector, linkage and
  the tick's values (``LivePipeline._tick`` less artifact correction).

The parts are timed by wrapping those methods for the duration of a run (nothing in
monitor/ is edited). Median of the repeats; the min is printed beside it, since on a
shared machine single runs scatter. Run from the repository root:

    .venv/bin/python bench/live_tick.py [--seconds 1200 --repeats 3]

The last line is ``tick_rest_ms=<median ms of the rest of the tick>``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from devices.simulate import simulate  # noqa: E402
from monitor import live  # noqa: E402
from pipeline import hour_scenario  # noqa: E402

PARTS = {"artifacts": (live._PartnerLive, "finalise"), "intake": (live._PartnerLive, "feed"), "tick": (live.LivePipeline, "_tick")}


@contextmanager
def timing(spent: Counter) -> Iterator[None]:
    """Add the CPU seconds of each part's calls to ``spent`` while inside."""
    originals = {name: getattr(owner, attr) for name, (owner, attr) in PARTS.items()}

    def timed(name: str, fn):
        def call(*args, **kwargs):
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[name] += time.process_time() - t0

        return call

    for name, (owner, attr) in PARTS.items():
        setattr(owner, attr, timed(name, originals[name]))
    try:
        yield
    finally:
        for name, (owner, attr) in PARTS.items():
            setattr(owner, attr, originals[name])


def run_once(header, records) -> dict[str, float]:
    """CPU seconds of one pass, total and per part (the tick's rest excludes artifact
    correction), and the number of ticks evaluated."""
    spent: Counter = Counter()
    gc.collect()
    with timing(spent):
        pipeline = live.LivePipeline(header, keep_ticks=False)
        t0 = time.process_time()
        for record in records:
            pipeline.feed(record)
            pipeline.take_ticks()
        total = time.process_time() - t0
    rest = spent["tick"] - spent["artifacts"]
    return {"total": total, "artifacts": spent["artifacts"], "intake": spent["intake"], "rest": rest, "ticks": pipeline.next_tick - 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=1200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    session = simulate(hour_scenario(), seed=1)
    records = [r for r in session.records if r.t_s < args.seconds]
    runs = [run_once(session.header, records) for _ in range(args.repeats)]
    ticks = runs[0]["ticks"]
    print(f"{len(records)} records, {ticks} ticks, {args.repeats} runs; CPU ms per tick (median, min):")
    for part in ("total", "artifacts", "intake", "rest"):
        values = [run[part] / ticks * 1e3 for run in runs]
        print(f"  {part:10s} {statistics.median(values):7.3f}  {min(values):7.3f}")
    rest = statistics.median(run["rest"] / ticks * 1e3 for run in runs)
    share = statistics.median(run["rest"] / run["total"] for run in runs)
    print(f"rest of the tick: {100 * share:.0f} % of the total")
    print(f"tick_rest_ms={rest:.3f}")


if __name__ == "__main__":
    main()
