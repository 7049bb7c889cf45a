"""LSL output (monitor/lsl.py): the pure parts, the packaged liblsl settings, and a
replay received back over loopback by real pylsl inlets.

The loopback test needs pylsl (the coreg[lsl] extra); without it it is skipped,
except under CI (``$CI`` set), where .ci/run installs the extra and a missing pylsl
is a failure so the test cannot quietly stop running.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from devices.hrs import parse_hrm
from devices.records import Notification, PartnerInfo, SessionHeader
from devices.recording import read_records
from monitor.lsl import CONFIG_FILE, HR_HOLD_S, LslUnavailable, hr_samples, load_pylsl, rr_times_s, source_ids
from monitor.sessions import SessionManager
from monitor.store import Store

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "sim_divergence.jsonl.gz"
SPEED = 300.0  # the 20-minute fixture plays in 4 s
INLET_BUFFER_S = 3600


def test_rr_times_place_beats_back_from_the_notification() -> None:
    np.testing.assert_allclose(rr_times_s(10.0, [800.0, 900.0, 1000.0]), [8.1, 9.0, 10.0])
    np.testing.assert_allclose(rr_times_s(3.5, [640.0]), [3.5])
    assert len(rr_times_s(3.5, [])) == 0


def test_hr_samples_hold_the_latest_beat_on_the_4hz_grid() -> None:
    # Last sent grid point 40 (10.0 s); beats at 10.1 s (70 bpm) and now 11.0 s (75 bpm).
    k, bpm = hr_samples(40, 10.1, 70.0, 11.0, 75.0)
    assert k.tolist() == [41, 42, 43, 44]  # 10.25, 10.5, 10.75, 11.0 s
    assert bpm.tolist() == [70.0, 70.0, 70.0, 75.0]
    # After a silence longer than the hold, the samples are unknown (NaN).
    k, bpm = hr_samples(40, 10.0, 70.0, 10.0 + HR_HOLD_S + 1.0, 80.0)
    t = k / 4.0
    assert np.all(bpm[t - 10.0 <= HR_HOLD_S] == 70.0)
    assert np.all(np.isnan(bpm[(t - 10.0 > HR_HOLD_S) & (t < 16.0)]))
    assert bpm[-1] == 80.0


def test_source_ids_follow_strap_addresses_else_the_session() -> None:
    live = SessionHeader("2026-01-01T10:00:00Z", {"a": PartnerInfo("Sam", "A0:9E:1A:12:34:56"),
                                                  "b": PartnerInfo("Alex", "0D1C2B3A-4F5E-6D7C-8B9A-0A1B2C3D4E5F")})
    assert source_ids(live, "s1") == {
        "a RR": "coreg-A0:9E:1A:12:34:56-RR",
        "a HR": "coreg-A0:9E:1A:12:34:56-HR",
        "b RR": "coreg-0D1C2B3A-4F5E-6D7C-8B9A-0A1B2C3D4E5F-RR",
        "b HR": "coreg-0D1C2B3A-4F5E-6D7C-8B9A-0A1B2C3D4E5F-HR",
        "markers": "coreg-A0:9E:1A:12:34:56+0D1C2B3A-4F5E-6D7C-8B9A-0A1B2C3D4E5F-markers",
    }
    simulated = SessionHeader("2026-01-01T10:00:00Z", {"a": PartnerInfo("A", "Polar H10 (simulated)"),
                                                       "b": PartnerInfo("B", "")})
    ids = source_ids(simulated, "3fa2b1c9d0e1")
    assert ids["a RR"] == "coreg-3fa2b1c9d0e1-a-RR"
    assert ids["b HR"] == "coreg-3fa2b1c9d0e1-b-HR"
    assert ids["markers"] == "coreg-3fa2b1c9d0e1-markers"


def test_packaged_liblsl_settings_keep_discovery_on_loopback() -> None:
    """Read the file by liblsl's own rules (a line that breaks them makes liblsl drop
    the whole file and fall back to multicast on the local network)."""
    values: dict[str, str] = {}
    section = ""
    for n, line in enumerate(CONFIG_FILE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith(";"):
            continue
        if line.startswith("["):
            assert "]" in line, f"line {n}"
            section = line[1:line.index("]")] + "."
            continue
        key, sep, value = line.partition("=")
        assert sep and key.strip() and value.strip(), f"line {n}: not key = value"
        assert section + key.strip() not in values, f"line {n}: duplicate key"
        values[section + key.strip()] = value.strip()
    assert values["ports.IPv6"] == "disable"
    assert values["multicast.ResolveScope"] == "machine"
    assert values["multicast.AddressesOverride"] == "{127.0.0.1}"
    assert values["multicast.ListenAddress"] == "127.0.0.1"
    assert values["lab.KnownPeers"] == "{}"


def _unavailable(reason: str) -> None:
    """Skip locally, fail under CI (where .ci/run installs coreg[lsl])."""
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        pytest.fail(f"the LSL test cannot run under CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def pylsl():
    try:
        return load_pylsl()
    except LslUnavailable as exc:
        _unavailable(str(exc))


def _expected_hr(beats: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """The 4 Hz grid from first to last beat, each point with the heart rate of the
    latest beat at or before it (NaN when that beat is older than the hold)."""
    t = np.array([b[0] for b in beats])
    hr = np.array([b[1] if b[1] > 0 else np.nan for b in beats])
    grid = np.arange(math.ceil(t[0] * 4), math.floor(t[-1] * 4) + 1) / 4.0
    i = np.searchsorted(t, grid, side="right") - 1
    return grid, np.where(grid - t[i] <= HR_HOLD_S, hr[i], np.nan)


async def _replay_through_lsl(pylsl, db: Path) -> tuple[dict, dict, object]:
    with Store(db) as store:
        manager = SessionManager(store)
        manager.enable_lsl()
        runner = await manager.start_replay(str(FIXTURE), speed=SPEED)
        runner.pause()  # nothing has been sent yet: the replay task has not run
        inlets = {}
        for key, sid in source_ids(runner.header, runner.id).items():
            found = await asyncio.to_thread(pylsl.resolve_byprop, "source_id", sid, 1, 10.0)
            assert len(found) == 1, f"stream {sid} not found on this machine"
            inlet = pylsl.StreamInlet(found[0], max_buflen=INLET_BUFFER_S)
            await asyncio.to_thread(inlet.open_stream, 10.0)
            inlets[key] = inlet
        infos = {key: inlet.info(5.0) for key, inlet in inlets.items()}
        samples: dict[str, list] = {key: [] for key in inlets}

        def drain() -> int:
            n = 0
            for key, inlet in inlets.items():
                chunk, _ = inlet.pull_chunk(timeout=0.0, max_samples=100_000)
                samples[key] += [row[0] for row in chunk]
                n += len(chunk)
            return n

        runner.seek(0.0)
        runner.resume()
        while runner.state()["status"] != "finished":
            await asyncio.sleep(0.05)
            drain()
        quiet = 0
        while quiet < 5:  # the last samples are on their way through loopback
            await asyncio.sleep(0.1)
            quiet = quiet + 1 if drain() == 0 else 0
        events = [e.to_json() for e in runner.analysis.events]
        await manager.close()
    return infos, samples, events


def test_replay_streams_rr_hr_and_markers_to_inlets_on_this_machine(pylsl, tmp_path: Path) -> None:
    header, records = read_records(FIXTURE)
    infos, samples, events = asyncio.run(_replay_through_lsl(pylsl, tmp_path / "coreg.db"))

    assert infos["a RR"].type() == "RR" and infos["a RR"].nominal_srate() == 0.0
    assert infos["b HR"].type() == "HR" and infos["b HR"].nominal_srate() == 4.0
    assert infos["markers"].type() == "Markers"
    assert infos["a RR"].name().startswith("coreg ") and infos["a RR"].name().endswith(" A RR")
    assert infos["a RR"].desc().child("channels").child("channel").child_value("unit") == "ms"
    assert infos["b HR"].desc().child("channels").child("channel").child_value("unit") == "bpm"

    for p in ("a", "b"):
        hrms = [(r.t_s, parse_hrm(r.payload)) for r in records if isinstance(r, Notification) and r.partner == p]
        rr_expected = [rr for _, m in hrms for rr in m.rr_ms]
        assert len(samples[f"{p} RR"]) == len(rr_expected)
        np.testing.assert_allclose(samples[f"{p} RR"], rr_expected, atol=5e-4)

        grid, hr_expected = _expected_hr([(t, float(m.hr_bpm)) for t, m in hrms])
        got = np.array(samples[f"{p} HR"], dtype=float)
        assert len(got) == len(grid)
        assert abs(len(got) - 1200 * 4) < 4 * 5  # about the session's length at 4 Hz
        np.testing.assert_array_equal(got, hr_expected.astype(np.float32))

    markers = [json.loads(s) for s in samples["markers"]]
    assert markers == [{k: v for k, v in e.items() if k != "t"} for e in events]
    prompts = [m for m in markers if m["kind"] == "prompt"]
    # The fixture's two divergence episodes (a, then b) each bring one prompt.
    assert [(m["pattern"], m["partner"]) for m in prompts] == [("divergence", "a"), ("divergence", "b")]
    expected_prompts = [e for e in events if e["kind"] == "prompt"]
    assert [(m["title"], m["text_a"], m["text_b"]) for m in prompts] == [
        (e["title"], e["text_a"], e["text_b"]) for e in expected_prompts
    ]
    assert all(m["text_a"] and m["text_b"] for m in prompts)


class _FakeDesc:
    """Enough of pylsl's XML element for the stream descriptions."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def append_child_value(self, key: str, value: str) -> "_FakeDesc":
        self.values[key] = value
        return self

    def append_child(self, name: str) -> "_FakeDesc":
        return self


class _FakePylsl:
    """A stand-in for pylsl: outlets that keep what is pushed, a clock at 5000 s."""

    def __init__(self) -> None:
        self.outlets: dict[str, list[tuple[float, object]]] = {}

    def local_clock(self) -> float:
        return 5000.0

    def StreamInfo(self, name, kind, channels, rate, fmt, source_id):
        info = type("Info", (), {})()
        info.source_id, info.desc = source_id, _FakeDesc
        return info

    def StreamOutlet(self, info, chunk_size, max_buffered):
        pushed = self.outlets.setdefault(info.source_id, [])
        outlet = type("Outlet", (), {})()
        outlet.push_sample = lambda x, ts: pushed.append((ts, x[0]))
        outlet.push_chunk = lambda xs, tss: pushed.extend((ts, x[0]) for x, ts in zip(xs, tss))
        return outlet


class _StubRunner:
    """A runner's face as the bridge sees it; ``position`` only for a replay."""

    def __init__(self, now_s: float, speed: float | None) -> None:
        self.id = "s1"
        self.header = SessionHeader("2026-01-01T10:00:00Z", {"a": PartnerInfo("A", "A0:9E:1A:12:34:56")})
        self.callbacks: list = []
        if speed is None:
            self.clock = type("Clock", (), {"now_s": lambda _: now_s})()
        else:
            self.position = lambda: now_s
            self.state = lambda: {"speed": speed}

    def subscribe(self, callback):
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)


# RR 700 and 800 ms in a notification at 99.5 s: beats at 98.7 and 99.5 s. Live (now
# 100 s) they were 1.3 and 0.5 s ago; a replay at 10x (at 100 s) showed them 0.13 and
# 0.05 s ago. LSL's clock reads 5000 s.
@pytest.mark.parametrize(("speed", "stamps"), [(None, [4998.7, 4999.5]), (10.0, [4999.87, 4999.95])])
def test_bridge_maps_session_time_to_the_lsl_clock(speed, stamps) -> None:
    from monitor.lsl import LslBridge

    fake = _FakePylsl()
    runner = _StubRunner(100.0, speed)
    bridge = LslBridge(runner, pylsl=fake)
    runner.callbacks[0]({"type": "beat", "t": 99.5, "partner": "a", "hr_bpm": 70, "rr_ms": [700.0, 800.0]})
    runner.callbacks[0]({"type": "event", "event": {"t": 99.5, "kind": "settled", "partner": "a"}})
    rr = fake.outlets["coreg-A0:9E:1A:12:34:56-RR"]
    assert [v for _, v in rr] == [700.0, 800.0]
    np.testing.assert_allclose([ts for ts, _ in rr], stamps)
    hr = fake.outlets["coreg-A0:9E:1A:12:34:56-HR"]
    assert [v for _, v in hr] == [70.0]  # the grid point at 99.5 s itself
    markers = fake.outlets["coreg-A0:9E:1A:12:34:56-markers"]
    assert [json.loads(v) for _, v in markers] == [{"kind": "settled", "partner": "a"}]
    bridge.close()
    assert runner.callbacks == []
