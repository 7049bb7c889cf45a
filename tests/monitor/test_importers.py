"""Importers: every format from hand-written samples, the synthesized notifications, errors."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from devices.hrs import parse_hrm, rr_ms_to_units
from devices.records import Notification
from monitor.beats import beats_by_partner
from monitor.cli import main
from monitor.import_session import build_session, import_files, rr_notifications, session_from_files
from monitor.importers import KNOWN_FORMATS, ImportFormatError, parse_rr_text, read_rr_file
from monitor.pipeline import analyze_records
from monitor.store import Store

SAMPLES = Path(__file__).parent / "samples"


def notifications(path: Path, partner: str = "a") -> list[Notification]:
    return rr_notifications(read_rr_file(path), partner)


def rr_of(n: Notification) -> list[int]:
    return [rr_ms_to_units(v) for v in parse_hrm(n.payload).rr_ms]


def local(*args: int) -> datetime:
    """A phone's naive local time, as the importer reads it."""
    return datetime(*args).astimezone().astimezone(timezone.utc)


def test_hrv_logger_rows_with_one_timestamp_share_a_notification():
    rr = read_rr_file(SAMPLES / "hrv_logger_rr.csv")
    assert rr.fmt == "hrv_logger"
    np.testing.assert_array_equal(rr.rr_ms, [812, 808, 805, 820, 831, 824, 810, 796])
    # The chain starts where the first notification's RR begins: 0.812 s before it.
    assert rr.started_at == local(2024, 5, 5, 15, 0, 1) - timedelta(milliseconds=812)
    notes = notifications(SAMPLES / "hrv_logger_rr.csv")
    assert [n.t_s for n in notes] == [0.812, 1.712, 2.762, 3.512, 4.462, 5.312]
    assert [rr_of(n) for n in notes] == [
        [rr_ms_to_units(812)], [rr_ms_to_units(808)], [rr_ms_to_units(805), rr_ms_to_units(820)],
        [rr_ms_to_units(831)], [rr_ms_to_units(824)], [rr_ms_to_units(810), rr_ms_to_units(796)],
    ]
    # No HR in the file: the mean of the notification's RR, 60 * 1024 / 831.5 units = 73.9.
    assert parse_hrm(notes[2].payload).hr_bpm == round(60 * 1024 / ((824 + 840) / 2))


def test_elite_hrv_one_ms_value_per_line_gives_one_notification_per_beat():
    rr = read_rr_file(SAMPLES / "elite_hrv_export.txt")
    assert (rr.fmt, rr.unit, rr.started_at) == ("elite_hrv", "ms", None)
    units = [rr_ms_to_units(v) for v in (1000, 990, 1012, 1005, 980, 975, 1001)]
    notes = notifications(SAMPLES / "elite_hrv_export.txt")
    assert [rr_of(n) for n in notes] == [[u] for u in units]
    assert [n.t_s for n in notes] == pytest.approx(np.cumsum(units) / 1024, abs=1e-6)


def test_kubios_seconds_are_told_from_their_magnitude():
    rr = read_rr_file(SAMPLES / "kubios_rr_seconds.txt")
    assert (rr.fmt, rr.unit) == ("rr_text", "s")
    np.testing.assert_allclose(rr.rr_ms, [750, 762, 781, 770, 755, 748])
    # The same values in ms, with a time column, read the same way.
    text = "".join(f"{i}\t{v}\n" for i, v in enumerate([750.0, 762.5, 781.25]))
    both = parse_rr_text(text)
    assert (both.unit, list(both.rr_ms)) == ("ms", [750.0, 762.5, 781.25])


def test_polar_sensor_logger_rr_file_groups_by_phone_timestamp():
    rr = read_rr_file(SAMPLES / "polar_sensor_logger_RR.txt")
    assert rr.fmt == "polar_sensor_logger"
    assert rr.started_at == local(2024, 5, 5, 15, 0, 1, 250000) - timedelta(milliseconds=700)
    notes = notifications(SAMPLES / "polar_sensor_logger_RR.txt")
    assert [n.t_s for n in notes] == [0.7, 1.69, 2.46, 3.55]
    assert [len(rr_of(n)) for n in notes] == [1, 2, 1, 2]


def test_polar_sensor_logger_hr_file_keeps_its_heart_rate():
    notes = notifications(SAMPLES / "polar_sensor_logger_HR.txt")
    # The row without an RR value adds no notification.
    assert [parse_hrm(n.payload).hr_bpm for n in notes] == [62, 61, 60]
    assert [rr_of(n) for n in notes] == [
        [rr_ms_to_units(960)], [rr_ms_to_units(975), rr_ms_to_units(990)], [rr_ms_to_units(1002)],
    ]
    assert [n.t_s for n in notes] == [0.96, 1.97, 3.99]


def test_a_pair_with_clock_times_is_aligned_on_them():
    header, records = session_from_files(
        {"a": SAMPLES / "hrv_logger_rr.csv", "b": SAMPLES / "polar_sensor_logger_RR.txt"}
    )
    # a starts 15:00:00.188, b 15:00:00.550: b's notifications move 0.362 s later.
    assert header.started_at == "2024-05-05T15:00:00.188Z"
    b_times = [r.t_s for r in records if r.partner == "b"]
    assert b_times == pytest.approx([1.062, 2.052, 2.822, 3.912], abs=1e-9)
    assert [r.t_s for r in records] == sorted(r.t_s for r in records)
    assert header.partners["b"].device == "polar_sensor_logger: polar_sensor_logger_RR.txt"


def test_imported_beats_carry_the_file_rr_values():
    header, records = session_from_files({"a": SAMPLES / "hrv_logger_rr.csv"})
    beats = beats_by_partner(records, ("a",))["a"]
    np.testing.assert_array_equal(beats.rr_units, [rr_ms_to_units(v) for v in (812, 808, 805, 820, 831, 824, 810, 796)])
    assert list(header.partners) == ["a"]


def write_hrv_logger(path: Path, rr_ms: np.ndarray, start: datetime) -> None:
    """An HRV Logger RR file: one row per beat, beats grouped into ~1 s notifications."""
    ends_ms = np.cumsum(rr_ms)
    stamp_ms = np.ceil(ends_ms / 1000) * 1000 + 37  # notifications on a ~1 s grid
    lines = ["timestamp, relative_time, rr_sincestart, rr"]
    for end, stamp, rr in zip(ends_ms, stamp_ms, rr_ms):
        when = start + timedelta(milliseconds=float(stamp))
        lines.append(f"{when.isoformat(sep=' ', timespec='milliseconds')}, {stamp:.0f}, {end:.0f}, {rr:.0f}")
    path.write_text("\n".join(lines) + "\n")


def synthetic_rr(seed: int, mean_ms: float, minutes: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(minutes * 60_000 / mean_ms)
    t = np.arange(n) * mean_ms / 1000
    return np.round(mean_ms + 40 * np.sin(2 * np.pi * t / 5) + rng.normal(0, 8, n))


def test_an_imported_pair_analyses_like_a_recorded_session(tmp_path):
    rr_a, rr_b = synthetic_rr(1, 800, 6), synthetic_rr(2, 950, 6)
    start = datetime(2024, 5, 5, 15, 0, 0)
    write_hrv_logger(tmp_path / "a.csv", rr_a, start)
    write_hrv_logger(tmp_path / "b.csv", rr_b, start + timedelta(seconds=2))
    header, records = session_from_files({"a": tmp_path / "a.csv", "b": tmp_path / "b.csv"})
    analysis = analyze_records(header, records)
    for p, rr in (("a", rr_a), ("b", rr_b)):
        result = analysis.partners[p]
        assert result.baseline is not None
        assert result.n_raw_beats == len(rr)
        hr10 = result.ticks.metrics.hr10_bpm
        settled = analysis.tick_t_s >= result.settled_t_s
        # HR10 after the settle-in is 60000 / mean RR within a beat's worth of noise.
        assert np.nanmedian(hr10[settled]) == pytest.approx(60_000 / rr.mean(), abs=1.0)
        assert np.all(np.isfinite(hr10[settled][:-5]))
    assert np.isfinite(analysis.linkage_r[-10:]).all()


def test_import_files_stores_a_finished_session(tmp_path):
    files = {"a": SAMPLES / "elite_hrv_export.txt", "b": SAMPLES / "kubios_rr_seconds.txt"}
    with Store(tmp_path / "db.sqlite") as store:
        session_id = import_files(store, files, label="pair")
        info = store.get_session(session_id)
        stored = list(store.records(session_id))
    assert (info.kind, info.status, info.label, info.n_notifications) == ("import", "finished", "pair", 13)
    assert [r.partner for r in stored].count("b") == 6
    assert all(isinstance(r, Notification) for r in stored)


def test_the_cli_imports_files_and_pairs(tmp_path, capsys):
    db = str(tmp_path / "db.sqlite")
    rc = main(["import", "--db", db, str(SAMPLES / "hrv_logger_rr.csv"),
               "--a", str(SAMPLES / "elite_hrv_export.txt"), "--b", str(SAMPLES / "polar_sensor_logger_HR.txt")])
    assert rc == 0
    with Store(db) as store:
        sessions = store.list_sessions()
    assert sorted(len(s.partners) for s in sessions) == [1, 2]
    assert main(["import", "--db", db, str(SAMPLES / "polar_sensor_logger_HR_only.txt")]) == 2
    assert "holds no RR intervals" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, line, words",
    [
        ("1000\n990\nabc\n1005\n", 3, "'abc' is not a number"),
        ("1000\n990 1 2\n", 2, "found 3 values"),
        ("timestamp, relative_time, rr_sincestart, rr\n2024-05-05 15:00:01, 0, 812, 812\n"
         "2024-05-05 15:00:02, 900, 1620\n", 3, "expected 4 columns"),
        ("timestamp, relative_time, rr_sincestart, rr\nyesterday, 0, 812, 812\n", 2, "neither ISO 8601"),
        ("Phone timestamp;RR-interval [ms]\n2024-05-05T15:00:01.250;0\n", 2, "not a positive interval"),
        ("<html><body>RR</body></html>\n", 1, "known formats: " + "; ".join(KNOWN_FORMATS)),
    ],
)
def test_unreadable_files_are_named_with_their_line(tmp_path, text, line, words):
    path = tmp_path / "export.txt"
    path.write_text(text)
    with pytest.raises(ImportFormatError) as info:
        read_rr_file(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}, line {line}: ")
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_errors_without_a_line(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(ImportFormatError, match="empty.txt: the file is empty"):
        read_rr_file(tmp_path / "empty.txt")
    with pytest.raises(ImportFormatError, match=r"median RR 50 is neither seconds"):
        parse_rr_text("50\n50\n")
    with pytest.raises(ImportFormatError, match="timestamps go backwards at RR value 2"):
        parse_rr_text("Phone timestamp;RR-interval [ms]\n2024-05-05T15:00:02;800\n2024-05-05T15:00:01;800\n")
    with pytest.raises(ImportFormatError, match="line 1: this Polar Sensor Logger file holds no RR"):
        read_rr_file(SAMPLES / "polar_sensor_logger_HR_only.txt")


def test_build_session_refuses_unknown_partners():
    rr = parse_rr_text("800\n810\n")
    with pytest.raises(ValueError, match="partners a and/or b"):
        build_session({"c": rr})
