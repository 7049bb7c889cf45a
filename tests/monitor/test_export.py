"""Exports: CSV tables, Kubios RR text and EDF+, each read back and compared."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from devices.recording import read_records
from monitor.artifacts import correct_beats
from monitor.beats import MS_PER_RR_UNIT, beats_by_partner
from monitor.cli import main
from monitor.export import export_session, metrics_table
from monitor.export_edf import hr_resolution_bpm, hr_signals
from monitor.import_session import session_from_files
from monitor.pipeline import analyze_records

FIXTURES = Path(__file__).parents[2] / "fixtures"


@pytest.fixture(scope="module")
def session():
    return read_records(FIXTURES / "sim_artifacts.jsonl.gz")


@pytest.fixture(scope="module")
def analysis(session):
    return analyze_records(*session)


def rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("raw", [True, False])
def test_kubios_export_imports_back_to_the_same_beats(tmp_path, session, raw):
    header, records = session
    files = export_session(header, records, "kubios", tmp_path, "s", raw=raw)
    assert [f.name for f in files] == ["s_a_rr.txt", "s_b_rr.txt"]
    original = beats_by_partner(records, ("a", "b"))
    _, imported = session_from_files({"a": files[0], "b": files[1]})
    back = beats_by_partner(imported, ("a", "b"))
    for p in ("a", "b"):
        b = original[p]
        expected = b.rr_units if raw else correct_beats(b.rr_units, b.t_s, b.contiguous).nn_units
        # Three decimals of ms are far finer than the 1/1024 s unit: exactly the same units.
        np.testing.assert_array_equal(back[p].rr_units, expected)


def test_csv_beats_match_the_kubios_round_trip(tmp_path, session):
    header, records = session
    beats_csv = export_session(header, records, "csv", tmp_path, "s")[0]
    kubios = export_session(header, records, "kubios", tmp_path / "k", "s", raw=True)
    _, imported = session_from_files({"a": kubios[0]})
    back = beats_by_partner(imported, ("a",))["a"]
    table = [r for r in rows(beats_csv) if r["partner"] == "a" and r["rr_ms"]]
    rr_ms = np.array([float(r["rr_ms"]) for r in table])
    assert len(rr_ms) == len(back)
    assert np.max(np.abs(back.rr_ms - rr_ms)) <= MS_PER_RR_UNIT / 2
    # Between beats that follow each other the imported beats are as far apart as the
    # CSV's; a plain RR list has no times, so a gap in the recording (this fixture has
    # one dropout) closes up on import, and the chain re-anchors just after it.
    t_csv = np.array([float(r["t_s"]) for r in table])
    contiguous = beats_by_partner(records, ("a",))["a"].contiguous[1:].copy()
    assert np.count_nonzero(~contiguous) == 1
    contiguous[1:] &= contiguous[:-1]
    np.testing.assert_allclose(np.diff(back.t_s)[contiguous], np.diff(t_csv)[contiguous], atol=1e-6)


def test_csv_beats_name_the_artifacts_and_their_correction(tmp_path, session):
    header, records = session
    table = rows(export_session(header, records, "csv", tmp_path, "s")[0])
    b = beats_by_partner(records, ("a", "b"))["a"]
    cb = correct_beats(b.rr_units, b.t_s, b.contiguous)
    a_rows = [r for r in table if r["partner"] == "a"]
    raw_rows = [r for r in a_rows if r["rr_ms"]]
    assert len(raw_rows) == len(b)
    assert len(a_rows) - len(raw_rows) == cb.counts()["missed"]  # one inserted beat per split
    flagged = [r for r in raw_rows if r["flags"]]
    assert len(flagged) == np.count_nonzero(cb.beat_flags)
    assert all(r["corrected"] == "yes" for r in flagged)
    normal = [r for r in raw_rows if not r["flags"] and r["corrected"] == "no"]
    assert normal and all(r["nn_ms"] == r["rr_ms"] for r in normal)
    nn_ms = [float(r["nn_ms"]) for r in a_rows if r["nn_ms"]]
    np.testing.assert_array_equal(nn_ms, cb.nn_units * MS_PER_RR_UNIT)
    assert {"ectopic", "missed", "extra"} <= {name for r in flagged for name in r["flags"].split("|")}


def test_csv_metrics_and_events_hold_the_analysis(tmp_path, session, analysis):
    header, records = session
    _, metrics_csv, events_csv = export_session(header, records, "csv", tmp_path, "s")
    table = rows(metrics_csv)
    expected = metrics_table(analysis)
    assert list(table[0]) == list(expected)
    assert "a_hr10_bpm" in expected and "b_vagal_index" in expected and "linkage_lag_s" in expected
    assert len(table) == len(analysis.tick_t_s)
    for name in ("t_s", "a_hr10_bpm", "b_rmssd30_ms", "linkage_r"):
        got = np.array([float(r[name]) if r[name] else np.nan for r in table])
        np.testing.assert_array_equal(got, expected[name])
    events = rows(events_csv)
    assert [(float(e["t_s"]), e["kind"]) for e in events] == [(e.t_s, e.kind) for e in analysis.events]


def test_csv_events_carry_pattern_and_prompt_text(tmp_path):
    header, records = read_records(FIXTURES / "sim_divergence.jsonl.gz")
    events = rows(export_session(header, records, "csv", tmp_path, "d")[2])
    prompt = next(e for e in events if e["kind"] == "prompt")
    assert prompt["pattern"] == "divergence" and prompt["partner"] in ("a", "b")
    assert "breathe" in prompt["text"].lower()


def test_edf_holds_the_4hz_heart_rate_and_the_events(tmp_path):
    import pyedflib

    header, records = read_records(FIXTURES / "sim_divergence.jsonl.gz")
    analysis = analyze_records(header, records)
    (path,) = export_session(header, records, "edf", tmp_path, "d")
    expected = hr_signals(header, records, analysis.duration_s)
    reader = pyedflib.EdfReader(str(path))
    try:
        assert reader.signals_in_file == 2
        assert reader.getSignalLabels() == ["HR a", "HR b"]
        start = datetime.fromisoformat(header.started_at.replace("Z", "+00:00")).replace(tzinfo=None)
        assert reader.getStartdatetime() == start.replace(microsecond=0)
        for i, p in enumerate(("a", "b")):
            assert reader.getSampleFrequency(i) == 4
            assert reader.getPhysicalDimension(i) == "bpm"
            hr = reader.readSignal(i)
            want = np.nan_to_num(expected[p], nan=0.0)
            assert len(hr) == len(want)
            assert np.max(np.abs(hr - want)) <= hr_resolution_bpm()
            assert 55 < np.median(hr[hr > 0]) < 110
        onsets, _durations, texts = reader.readAnnotations()
    finally:
        reader.close()
    assert len(texts) == len(analysis.events)
    np.testing.assert_allclose(onsets, [e.t_s for e in analysis.events], atol=1e-4)
    assert [t.split(" ")[0].rstrip(":") for t in texts] == [e.kind for e in analysis.events]
    assert any(t.startswith("prompt a divergence: ") or t.startswith("prompt b divergence: ") for t in texts)


def test_exports_never_overwrite_and_the_cli_writes_files(tmp_path, capsys):
    recording = FIXTURES / "sim_calm.jsonl.gz"
    assert main(["export", str(recording), "--format", "kubios", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sim_calm_a_rr.txt", "sim_calm_b_rr.txt"]
    assert main(["export", str(recording), "--format", "kubios", "--out", str(tmp_path)]) == 2
    assert "does not overwrite" in capsys.readouterr().err
