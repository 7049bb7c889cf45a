"""The one Config object: JSON round trip, TOML overrides of named fields only, and
errors that name the file and the key."""

import dataclasses
import json
from pathlib import Path

import pytest

from monitor.baseline import BaselineConfig
from monitor.config import Config, ConfigError
from monitor.linkage import LinkageConfig
from monitor.prompts import PromptConfig

SECTIONS = ("beats", "artifacts", "metrics", "baseline", "linkage", "detector", "prompts")


def toml_file(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "coreg.toml"
    path.write_text(body, encoding="utf-8")
    return path


def test_every_section_is_present_with_its_defaults():
    data = Config().to_json()
    assert tuple(data) == SECTIONS
    assert data["baseline"] == dataclasses.asdict(BaselineConfig())
    assert data["prompts"] == {"cooldown_s": 120.0, "max_per_window": 3, "window_s": 600.0}


def test_default_round_trips_through_json():
    cfg = Config()
    data = cfg.to_json()
    # plain data: survives a trip through a JSON string too
    again = Config.from_mapping(json.loads(json.dumps(data)))
    assert again == cfg
    assert again.to_json() == data


def test_changed_config_round_trips():
    cfg = Config(
        baseline=BaselineConfig(settle_in_s=150.0, sd_floor_bpm=2.5),
        linkage=LinkageConfig(fs_hz=8, max_lag_s=3.0),
        prompts=PromptConfig(max_per_window=2),
    )
    data = json.loads(json.dumps(cfg.to_json()))
    assert Config.from_mapping(data) == cfg
    assert Config.from_mapping(data) != Config()


def test_load_overrides_only_the_named_fields(tmp_path):
    path = toml_file(
        tmp_path,
        """
        [baseline]
        settle_in_s = 150

        [detector]
        rise_bpm = 12.5

        [prompts]
        max_per_window = 2
        """,
    )
    cfg = Config.load(path)
    default = Config().to_json()
    got = cfg.to_json()
    changed = {
        (section, key)
        for section in SECTIONS
        for key in default[section]
        if got[section][key] != default[section][key]
    }
    assert changed == {("baseline", "settle_in_s"), ("detector", "rise_bpm"), ("prompts", "max_per_window")}
    assert cfg.baseline.settle_in_s == 150.0 and isinstance(cfg.baseline.settle_in_s, float)
    assert cfg.detector.rise_bpm == 12.5
    assert cfg.prompts.max_per_window == 2
    assert cfg.linkage == LinkageConfig()


def test_empty_file_gives_the_defaults(tmp_path):
    assert Config.load(toml_file(tmp_path, "# nothing\n")) == Config()


def error_of(tmp_path: Path, body: str) -> str:
    path = toml_file(tmp_path, body)
    with pytest.raises(ConfigError) as err:
        Config.load(path)
    message = str(err.value)
    assert str(path) in message
    return message


def test_unknown_section(tmp_path):
    message = error_of(tmp_path, "[basline]\nsettle_in_s = 150\n")
    assert "[basline]" in message


def test_unknown_key(tmp_path):
    message = error_of(tmp_path, "[baseline]\nsettle_s = 150\n")
    assert "baseline.settle_s" in message


def test_section_that_is_not_a_table(tmp_path):
    assert "[baseline]" in error_of(tmp_path, "baseline = 3\n")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[baseline]\nsettle_in_s = "150"\n', "baseline.settle_in_s"),
        ("[detector]\nrise_bpm = true\n", "detector.rise_bpm"),
        ("[linkage]\nwindow_s = [30]\n", "linkage.window_s"),
        ("[prompts]\ncooldown_s = nan\n", "prompts.cooldown_s"),
    ],
)
def test_not_a_number(tmp_path, body, key):
    message = error_of(tmp_path, body)
    assert key in message and "number" in message


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ("[prompts]\nmax_per_window = 2.5\n", "prompts.max_per_window"),
        ("[linkage]\nfs_hz = 4.0\n", "linkage.fs_hz"),
        ("[artifacts]\nmedian_window_beats = false\n", "artifacts.median_window_beats"),
        ('[metrics]\nmin_beats_hr = "3"\n', "metrics.min_beats_hr"),
    ],
)
def test_counts_must_be_whole_numbers(tmp_path, body, key):
    message = error_of(tmp_path, body)
    assert key in message and "whole number" in message


def test_settle_in_below_minimum(tmp_path):
    message = error_of(tmp_path, "[baseline]\nsettle_in_s = 100\n")
    assert "[baseline]" in message and "settle_in_s" in message
    # allowed once the minimum is lowered in the same table
    path = toml_file(tmp_path, "[baseline]\nsettle_in_s = 100\nmin_settle_in_s = 90\n")
    assert Config.load(path).baseline.settle_in_s == 100.0


def test_section_validation_errors_become_config_errors(tmp_path):
    message = error_of(tmp_path, "[artifacts]\nrr_min_ms = 2500\n")
    assert "[artifacts]" in message and "rr_min_ms" in message


def test_bad_toml_and_missing_file(tmp_path):
    message = error_of(tmp_path, "[baseline\nsettle_in_s = 150\n")
    assert "TOML" in message
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match="absent.toml"):
        Config.load(missing)


def test_from_mapping_names_its_source():
    with pytest.raises(ConfigError, match=r"^session header: unknown setting linkage\.lag_s"):
        Config.from_mapping({"linkage": {"lag_s": 3}}, where="session header")
