"""The one config object: every window and threshold of the pipeline, in sections.

Each section is the frozen dataclass of the module that uses it, documented there.
A TOML file may override any field: one table per section, for example

    [baseline]
    settle_in_s = 120

    [detector]
    rise_bpm = 12

Unknown sections or fields are errors (a typo should never be silently ignored).
The whole config is stored with each session and shown in every analysis output.
"""

from __future__ import annotations

import dataclasses
import logging
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from monitor.artifacts import ArtifactConfig
from monitor.baseline import BaselineConfig
from monitor.beats import BeatTimingConfig
from monitor.detector import DetectorConfig
from monitor.linkage import LinkageConfig
from monitor.metrics import MetricsConfig
from monitor.prompts import PromptConfig

log = logging.getLogger("coreg.config")


class ConfigError(ValueError):
    """A config file or value that cannot be used; says which file and which key."""


@dataclass(frozen=True)
class Config:
    """Every setting of the pipeline, one section per module."""

    beats: BeatTimingConfig = field(default_factory=BeatTimingConfig)
    artifacts: ArtifactConfig = field(default_factory=ArtifactConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    linkage: LinkageConfig = field(default_factory=LinkageConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)

    def to_json(self) -> dict[str, dict[str, Any]]:
        """All settings as plain data, for storing beside a session or an analysis."""
        return {f.name: _plain(dataclasses.asdict(getattr(self, f.name))) for f in dataclasses.fields(self)}

    @classmethod
    def from_mapping(cls, data: dict[str, Any], where: str = "config") -> "Config":
        """Build a Config from nested tables, as read from TOML or from to_json()."""
        sections = {f.name: f for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for name, table in data.items():
            if name not in sections:
                raise ConfigError(f"{where}: unknown section [{name}]; known: {', '.join(sections)}")
            if not isinstance(table, dict):
                raise ConfigError(f"{where}: [{name}] must be a table of settings")
            section_cls = sections[name].default_factory  # type: ignore[misc]
            known = {f.name: f for f in dataclasses.fields(section_cls)}
            defaults = section_cls()
            merged = {}
            for key, value in table.items():
                if key not in known:
                    raise ConfigError(f"{where}: unknown setting {name}.{key}")
                merged[key] = _checked(value, getattr(defaults, key), f"{where}: {name}.{key}")
            try:
                values[name] = section_cls(**merged)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: [{name}]: {exc}") from exc
        return cls(**values)

    @classmethod
    def stored(cls, data: dict[str, Any], where: str) -> "Config":
        """The config a session was recorded with, as the store keeps it.

        A session stored by an older coreg may name settings this one no longer has;
        its analysis then uses today's defaults (logged), since a report or replay is
        better made with known settings than refused.
        """
        try:
            return cls.from_mapping(data or {}, where=where)
        except ConfigError as exc:
            log.warning("%s; using the default settings instead", exc)
            return cls()

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        """Read a TOML file of overrides; everything not named keeps its default."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        return cls.from_mapping(data, where=str(path))


def _checked(value: Any, default: Any, what: str) -> Any:
    """``value`` in the kind of ``default`` (the field's type), or a ConfigError.

    A whole number is accepted for a float setting (TOML ``settle_in_s = 120``) and
    stored as a float; a count (int default) must be a whole number, as 2.5 beats or
    prompts would be silently rounded somewhere downstream; bools are never numbers,
    and nan is refused (inf is allowed: it can mean "no limit").
    """
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{what} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{what} must be a whole number, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{what} must be a number, got {value!r}")
        if value != value:  # TOML allows nan; every comparison with it is False
            raise ConfigError(f"{what} must be a number, got nan")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise ConfigError(f"{what} must be a string, got {value!r}")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{what} must be a list, got {value!r}")
        return tuple(value)
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    return value
