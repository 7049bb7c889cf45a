"""Figures of bench/load.py: beat latencies matched to deliveries, and their printout."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

TARGET_P99_MS = {1: 20.0, 100: 50.0}
SLOW_FEED_MS = 2.0  # a feed this long evaluated a tick (a plain feed takes well under 1 ms)


@dataclass
class Level:
    """What one run with ``dyads`` live sessions measured in its window."""

    dyads: int
    viewers: int
    notifications: int  # delivered by the fake straps in the window
    beats_expected: int  # beat frames the viewers should have received (each viewer, each beat)
    beats_received: int
    missing: int  # never arrived, of which ``unhandled`` the session never even handled
    unhandled: int
    duplicated: int
    frames: int  # every frame the viewers received, of any type
    latency_ms: dict[str, np.ndarray]  # by group: all, first half, second half, ...
    per_viewer: dict[str, dict]  # viewer id -> expected/received/missing/duplicated
    cpu_server_pct: float
    cpu_clients_pct: float
    rss_mib: float
    peak_rss_mib: float
    server: dict  # timings and loop lag from the server
    client_lag_p99_ms: float
    stall: dict | None
    load_average: float  # 1-min, at the window's end: other processes competing for the 2 cores
    errors: list[str] = field(default_factory=list)

    def p(self, group: str, q: float) -> float:
        values = self.latency_ms.get(group)
        return float(np.percentile(values, q)) if values is not None and len(values) else math.nan

    def p99_all(self) -> float:
        """p99 over every expected beat, one that never arrived counting as infinitely late."""
        values = np.sort(self.latency_ms.get("all", np.array([])))
        n = len(values) + self.missing
        if not n:
            return math.nan
        k = math.ceil(0.99 * n) - 1
        return float(values[k]) if k < len(values) else math.inf


def analyse(*, dyads, plan, server, viewers, stall, window, cpu_server_pct, cpu_clients_pct, rss_mib,
            peak_rss_mib, stalled_session, load_average) -> Level:
    """Match every beat frame to the notification it came from (session, partner, t)."""
    start, mid, end = window
    delivered: dict[tuple, float] = {}
    expected_by_session: dict[str, set] = defaultdict(set)
    notifications = 0
    unhandled: Counter = Counter()  # delivered in the window, never handled by the session
    for session_id, rows in server["sessions"].items():
        for partner, t_s, at, parses in rows:
            in_window = start <= at < end
            notifications += in_window
            if t_s is None:
                unhandled[session_id] += in_window
            elif parses:
                delivered[(session_id, partner, t_s)] = at
                if in_window:
                    expected_by_session[session_id].add((session_id, partner, t_s))
    # Beats whose record's feed evaluated a tick (or otherwise took long) before the frame could leave.
    slow_feed = {(sid, partner, t) for sid, partner, t, ms in server.get("feed_ms", ()) if ms >= SLOW_FEED_MS}
    session_of = dict((v, s) for v, s in plan)
    received: dict[str, Counter] = defaultdict(Counter)
    groups: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    for result in viewers:
        errors += result["errors"]
        for viewer_id, partner, t_s, at_viewer in result["beats"]:
            key = (session_of[viewer_id], partner, t_s)
            at = delivered.get(key)
            if at is None:
                if at_viewer >= start:
                    errors.append(f"viewer {viewer_id} got a beat no strap delivered: {key}")
                continue
            if not start <= at < end:
                continue
            received[viewer_id][key] += 1
            ms = 1000 * (at_viewer - at)
            groups["all"].append(ms)
            groups["dyads' own viewers" if not viewer_id.startswith("x") else "extra viewers"].append(ms)
            groups["first half" if at < mid else "second half"].append(ms)
            groups["beats fed after a tick" if key in slow_feed else "other beats"].append(ms)
            if key[0] == stalled_session and not viewer_id.startswith("x"):
                groups[f"stalled viewer's session, {'first' if at < mid else 'second'} half"].append(ms)
    for session_id, partner, t_s, at_server in server.get("sent", ()):
        at = delivered.get((session_id, partner, t_s))
        if at is not None and start <= at < end:
            groups["written by the server"].append(1000 * (at_server - at))
    unconnected = {v for r in viewers for v in r.get("unconnected", ())}
    per_viewer = {}
    for viewer_id, session_id in plan:
        if viewer_id in unconnected:
            continue
        want, got = expected_by_session[session_id], received[viewer_id]
        per_viewer[viewer_id] = {
            "expected": len(want) + unhandled[session_id],
            "received": sum(got.values()),
            "missing": len(want - set(got)) + unhandled[session_id],
            "duplicated": sum(n - 1 for n in got.values() if n > 1),
        }
    lags = sorted(lag for r in viewers for at, lag in r["lags"] if start <= at <= end)
    return Level(
        dyads=dyads,
        viewers=len(plan) - len(unconnected),
        notifications=notifications,
        beats_expected=sum(v["expected"] for v in per_viewer.values()),
        beats_received=sum(v["received"] for v in per_viewer.values()),
        missing=sum(v["missing"] for v in per_viewer.values()),
        unhandled=sum(unhandled.values()),
        duplicated=sum(v["duplicated"] for v in per_viewer.values()),
        frames=sum(sum(c.values()) for r in viewers for c in r["frames"].values()),
        latency_ms={k: np.asarray(v) for k, v in groups.items()},
        per_viewer=per_viewer,
        cpu_server_pct=cpu_server_pct,
        cpu_clients_pct=cpu_clients_pct,
        rss_mib=rss_mib,
        peak_rss_mib=peak_rss_mib,
        server=server,
        client_lag_p99_ms=1000 * lags[int(len(lags) * 0.99)] if lags else math.nan,
        stall=stall,
        load_average=load_average,
        errors=errors,
    )


def _ms(level: Level, group: str) -> str:
    n = len(level.latency_ms.get(group, ()))
    if not n:
        return "no beats"
    p50, p99, top = (level.p(group, q) for q in (50, 99, 100))
    return f"p50 {p50:6.1f}  p99 {p99:6.1f}  max {top:6.1f} ms  ({n} frames)"


def print_level(level: Level) -> None:
    server = level.server
    timings = server["timings"]

    def per_s(*labels: str) -> float:
        return sum(timings.get(label, {}).get("ms_per_s", 0.0) for label in labels)

    lag = server["loop_lag_ms"]
    print(f"\n== {level.dyads} dyad(s), {level.viewers} viewers" + (" + 1 stalled" if level.stall else "")
          + f"; machine load average {level.load_average:.1f}")
    print(f"  notifications delivered {level.notifications}; beat frames expected {level.beats_expected}, "
          f"received {level.beats_received} (never arrived {level.missing}, duplicated {level.duplicated}); "
          + (f"{level.unhandled} notifications never handled by the server; " if level.unhandled else "")
          + f"all frames {level.frames}")
    for group in ("all", "written by the server", "dyads' own viewers", "extra viewers",
                  "beats fed after a tick", "other beats", "first half", "second half",
                  "stalled viewer's session, first half", "stalled viewer's session, second half"):
        if group in level.latency_ms:
            print(f"  latency {group:38s} {_ms(level, group)}")
    print(f"  server: CPU {level.cpu_server_pct:5.1f} % of a core, RSS {level.rss_mib:.0f} MiB "
          f"(peak {level.peak_rss_mib:.0f}); loop lag p50 {lag['p50']:.1f} / p99 {lag['p99']:.1f} / max {lag['max']:.1f} ms")
    pipeline_ms = per_s("pipeline.feed", "pipeline.advance")
    cpu = sum(timings.get(k, {}).get("cpu_ms_per_s", 0.0) for k in ("pipeline.feed", "pipeline.advance"))
    longest = {k: timings.get(f"pipeline.{k}", {}).get("max_ms", 0.0) for k in ("feed", "advance")}
    store_ms = per_s("store.add_record", "store.add_event", "store.flush")
    missing = "" if server.get("pipeline_wrapped", True) else "  [LivePipeline.feed/advance not found]"
    print(f"  server loop time per second: pipeline {pipeline_ms:.0f} ms, {cpu:.0f} ms of it on CPU "
          f"({cpu / max(level.dyads, 1):.1f} ms per dyad); store {store_ms:.1f} ms{missing}")
    print(f"  pipeline: records fed, with the ticks they evaluate, {per_s('pipeline.feed'):.0f} ms/s (longest "
          f"{longest['feed']:.1f} ms); ticks by the ticker {per_s('pipeline.advance'):.0f} ms/s (longest "
          f"{longest['advance']:.1f} ms)")
    gcs = server.get("gc")
    if gcs:
        print(f"  server garbage collections in the window: {gcs['collections']} (generations 0/1/2), longest "
              f"{' / '.join(f'{ms:.1f}' for ms in gcs['longest_ms'])} ms, {gcs['total_ms']:.0f} ms in all")
    print(f"  viewer processes: CPU {level.cpu_clients_pct:5.1f} % of a core, loop lag p99 {level.client_lag_p99_ms:.1f} ms")
    if level.stall is not None:
        s = level.stall
        print(f"  stalled viewer ({s['stalled_s']:.0f} s without reading): then found waiting {dict(s['frames'])}, "
              f"resyncs {s['frames'].get('resync', 0)}, closed by server: {s['closed_by_server'] or 'no'}")
    for error in level.errors[:5]:
        print(f"  ! {error}")
    if len(level.errors) > 5:
        print(f"  ! ... {len(level.errors) - 5} more")


def print_summary(levels: list[Level]) -> None:
    by_n = {level.dyads: level for level in levels}
    print("\nTargets (printed, not asserted):")
    for n, target in TARGET_P99_MS.items():
        got = by_n[n].p99_all() if n in by_n else math.nan
        verdict = "not run" if math.isnan(got) else ("met" if got <= target else "NOT met")
        print(f"  p99 <= {target:g} ms at {n} dyad(s): {got:.1f} ms, {verdict}")
    for level in levels:
        if level.stall is not None:
            before, after = level.p("first half", 99), level.p("second half", 99)
            print(f"  stalled viewer, {level.dyads} dyad(s): p99 {before:.1f} ms before it, {after:.1f} ms with it")
    print(f"p99_ms_1dyad={by_n[1].p99_all():.1f}" if 1 in by_n else "p99_ms_1dyad=nan")
    print(f"p99_ms_100dyads={by_n[100].p99_all():.1f}" if 100 in by_n else "p99_ms_100dyads=nan")
