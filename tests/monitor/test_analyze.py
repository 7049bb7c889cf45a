"""`coreg analyze`: batch analysis of several files in parallel, JSON and text."""

from __future__ import annotations

import io
import json
from pathlib import Path

from devices.recording import read_records
from monitor.analyze import analyze_files
from monitor.cli import main
from monitor.config import Config
from monitor.pipeline import analyze_records
from monitor.events import json_safe

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_json_output_for_every_fixture_matches_truth_and_batch() -> None:
    files = sorted(FIXTURES.glob("*.jsonl*"))
    out, err = io.StringIO(), io.StringIO()
    assert analyze_files(files, as_json=True, jobs=2, out=out, err=err) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == len(files)
    for path, line in zip(files, lines):
        obj = json.loads(line)
        assert obj["file"] == str(path)
        assert set(obj) == {"file", "duration_s", "events", "summary", "config"}
        assert obj["config"] == json_safe(Config().to_json())
        header, records = read_records(path)
        batch = analyze_records(header, records)
        assert obj["events"] == json_safe([e.to_json() for e in batch.events])
        assert obj["duration_s"] == records[-1].t_s
        truth_path = path.with_name(path.name.replace(".jsonl.gz", ".truth.json"))
        if path.name.startswith("sim_"):
            truth = json.loads(truth_path.read_text())
            expected = sorted(ep["pattern"] for ep in truth["episodes"] if ep["expect_prompt"])
            prompted = sorted(p["pattern"] for p in obj["summary"]["prompts"])
            # Each expected episode is prompted; a flooding climb may add a divergence.
            assert set(expected) <= set(prompted), (path.name, expected, prompted)
            if truth["scenario"] == "calm":
                assert prompted == []


def test_text_summary_names_baselines_patterns_and_recovery(capsys) -> None:
    assert main(["analyze", str(FIXTURES / "sim_divergence.jsonl.gz")]) == 0
    text = capsys.readouterr().out
    assert "calm baseline" in text and "settled at 3:00" in text
    assert "divergence (A)" in text and "divergence (B)" in text
    assert "back near baseline after" in text


def test_a_bad_file_is_reported_and_the_others_still_analysed(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "coreg-session", "version": 9}\n')
    out, err = io.StringIO(), io.StringIO()
    files = [bad, FIXTURES / "sim_calm.jsonl.gz"]
    assert analyze_files(files, as_json=True, jobs=2, out=out, err=err) == 1
    assert "bad.jsonl" in err.getvalue() and "line 1" in err.getvalue()
    assert len(out.getvalue().splitlines()) == 1


def test_config_file_changes_the_analysis(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "strict.toml"
    cfg.write_text("[detector]\nrise_bpm = 40\nescalation_bpm = 40\n")
    assert main(["analyze", "--json", "--config", str(cfg), str(FIXTURES / "sim_divergence.jsonl.gz")]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["config"]["detector"]["rise_bpm"] == 40
    assert obj["summary"]["prompts"] == []
