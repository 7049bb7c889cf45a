"""The `coreg` command line: simulate, demo and replay, run as a user would."""

import gzip
from pathlib import Path

import pytest

from devices.hrs import parse_hrm
from devices.recording import RecordingWriter, open_recording
from devices.records import Notification
from monitor.cli import main

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"


def test_simulate_output_reads_back_byte_for_byte(tmp_path: Path, capsys) -> None:
    out = tmp_path / "calm.jsonl.gz"
    assert main(["simulate", "--scenario", "calm", "--seed", "1", "--out", str(out)]) == 0
    assert "calm" in capsys.readouterr().out
    # The committed fixture was made by this very command.
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(
        (FIXTURES / "sim_calm.jsonl.gz").read_bytes()
    )
    with open_recording(out) as reader:
        header, records = reader.header, list(reader)
    again = tmp_path / "again.jsonl.gz"
    with RecordingWriter(again, header) as writer:
        for record in records:
            writer.write(record)
    assert again.read_bytes() == out.read_bytes()
    assert (tmp_path / "calm.truth.json").exists()


def test_simulate_unknown_scenario_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["simulate", "--scenario", "nope", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'nope'" in err and "divergence" in err


def test_demo_prints_both_partners_heart_rate_and_rr(capsys) -> None:
    assert main(["demo", "--terminal", "--speed", "0", "--duration", "30"]) == 0
    lines = capsys.readouterr().out.splitlines()
    beats = [ln for ln in lines if ":" in ln[:9] and "strap" not in ln]
    # Compare with the recording itself: the notifications of the first 30 s.
    with open_recording(FIXTURES / "sim_divergence.jsonl.gz") as reader:
        first = [r for r in reader if isinstance(r, Notification) and r.t_s <= 30]
    assert len(beats) == len(first)
    assert lines[-1] == f"{len(first)} notifications shown."
    hr = parse_hrm(first[0].payload).hr_bpm
    who = first[0].partner.upper()
    assert beats[0].split()[1:3] == [who, str(hr)]
    assert {ln.split()[1] for ln in beats} == {"A", "B"}


def test_replay_of_a_broken_file_names_the_line(tmp_path: Path, capsys) -> None:
    src = (FIXTURES / "polar_h10_pvc.jsonl").read_text().splitlines()
    src[5] = src[5].replace('"hrm": "', '"hrm": "zz')
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(src) + "\n")
    assert main(["replay", str(bad), "--terminal", "--speed", "0"]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "line 6" in err


def test_replay_missing_file(capsys) -> None:
    assert main(["replay", "/nonexistent/x.jsonl", "--terminal"]) == 2
    assert "no such recording" in capsys.readouterr().err


@pytest.mark.parametrize("cmd", [["--help"], ["demo", "--help"], ["record", "--help"]])
def test_help_exits_cleanly(cmd: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(cmd)
    assert info.value.code == 0
