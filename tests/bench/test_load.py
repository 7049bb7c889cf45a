"""bench/load.py's machinery at small scale: one dyad, two viewers and a stalled one.

Checks what the benchmark's figures rest on, not how fast anything is: every beat the
fake straps delivered in the window reaches each viewer exactly once and is matched to
its delivery, and a viewer that stops reading is resynced rather than holding anyone up.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from load import Options, run_level  # noqa: E402


def test_one_dyad_every_beat_once_and_the_stalled_viewer_resynced(tmp_path: Path) -> None:
    # Straps at 8x pace and the smallest socket buffers and queue, so the stalled
    # viewer's backlog overflows within the few seconds of the window.
    opts = Options(
        seconds=5.0, warmup_s=2.0, extra_viewers=0, client_procs=1, queue_size=4,
        send_buffer=1, write_buffer=1, stall_at=0.0, strap_speed=8.0, workdir=tmp_path,
    )
    level = run_level(1, opts)

    assert level.errors == []
    assert level.viewers == 2 and set(level.per_viewer) == {"0.0", "0.1"}
    # 8x pace: about 16 notifications per second from the two straps.
    assert level.notifications >= 40
    for viewer_id, counts in level.per_viewer.items():
        assert counts["expected"] >= 40, viewer_id
        assert counts["received"] == counts["expected"], (viewer_id, counts)
        assert counts["missing"] == 0 and counts["duplicated"] == 0, (viewer_id, counts)
    assert level.beats_received == level.beats_expected == 2 * level.per_viewer["0.0"]["expected"]
    # Every received beat got a latency from its own delivery; none can precede it.
    assert len(level.latency_ms["all"]) == level.beats_received
    assert level.latency_ms["all"].min() > 0
    # The server stamped every beat frame it wrote (through its ASGI wrapper): at least
    # one per received beat, each after the strap delivered it.
    written = level.latency_ms["written by the server"]
    assert len(written) >= level.beats_received
    assert written.min() > 0
    # The viewer that stopped reading fell behind and was sent a fresh snapshot.
    assert level.stall is not None
    assert level.stall["frames"]["snapshot"] == 1
    assert level.stall["frames"].get("resync", 0) >= 1
