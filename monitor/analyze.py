"""`coreg analyze`: recordings through the batch pipeline, several in parallel."""

from __future__ import annotations

import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TextIO

from devices.recording import RecordingError, read_records
from monitor.config import Config
from monitor.pipeline import Analysis, analyze_records
from monitor.summary import analysis_json, format_summary


def analyze_file(path: str | Path, config: Config | None = None) -> Analysis:
    """Read one recording and run the whole pipeline over it."""
    header, records = read_records(path)
    return analyze_records(header, records, config)


def _one(path: str, config_path: str | None, as_json: bool) -> tuple[str, str | None, str | None]:
    """Worker: (path, output text, error text). Errors are returned, not raised,
    so one bad file does not stop the others."""
    try:
        config = Config.load(config_path) if config_path else Config()
        analysis = analyze_file(path, config)
    except (RecordingError, ValueError, OSError) as exc:
        return path, None, str(exc)
    if as_json:
        return path, json.dumps(analysis_json(path, analysis), allow_nan=False, default=_json_default), None
    return path, format_summary(path, analysis), None


def _json_default(value):
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _progress(done: int, total: int, err: TextIO) -> None:
    if total < 2 or not err.isatty():
        return
    width = 30
    filled = width * done // total
    err.write(f"\ranalysing [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        err.write("\n")
    err.flush()


def analyze_files(
    files: list[Path],
    *,
    as_json: bool = False,
    config_path: str | None = None,
    jobs: int | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Analyse ``files`` (in parallel processes when there are several) and print the
    results in the order given. Exit status 0, or 1 if any file could not be read."""
    out = out or sys.stdout
    err = err or sys.stderr
    if config_path:
        Config.load(config_path)  # fail once, early, on a bad config
    names = [str(f) for f in files]
    results: dict[str, tuple[str | None, str | None]] = {}
    jobs = jobs or min(len(names), os.cpu_count() or 1)
    if jobs <= 1 or len(names) == 1:
        for i, name in enumerate(names):
            _, text, problem = _one(name, config_path, as_json)
            results[name] = (text, problem)
            _progress(i + 1, len(names), err)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futures = [pool.submit(_one, name, config_path, as_json) for name in names]
            for i, fut in enumerate(as_completed(futures)):
                name, text, problem = fut.result()
                results[name] = (text, problem)
                _progress(i + 1, len(names), err)
    status = 0
    for name in names:
        text, problem = results[name]
        if problem is not None:
            print(f"coreg analyze: {problem}", file=err)
            status = 1
        else:
            print(text, file=out)
            if not as_json:
                print(file=out)
    return status
