"""The recordings a dashboard request may replay: files in the data folder, by name.

A request never names a path. The practitioner's replay form offers the recordings in
``recordings/`` beside the session database (the data folder), and the API takes a
stored session id or one of those file names. Anything else, an absolute path, a name
with a folder in it, or a link that leads out of the folder, is refused, so no request
can make the server open a file elsewhere on the machine. A recording anywhere else is
replayed from the terminal with ``coreg replay FILE``, or copied into the folder.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from monitor.sessions import RECORDING_SUFFIXES

RECORDINGS_SUBDIR = "recordings"
MAX_LISTED = 500


class RecordingRefused(ValueError):
    """A replay source a request may not use; the message says why, kindly."""


def recordings_dir(store_path: Path) -> Path:
    """The folder whose recordings the dashboard offers: ``recordings/`` by the database."""
    return Path(store_path).parent / RECORDINGS_SUBDIR


def list_recordings(folder: Path) -> list[dict]:
    """The recordings in ``folder`` (not its subfolders), newest first."""
    try:
        entries = [p for p in folder.iterdir() if _acceptable(folder, p)]
    except OSError:  # no folder yet: nothing to offer
        return []
    rows = []
    for path in entries:
        stat = path.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(timespec="seconds")
        rows.append({"name": path.name, "bytes": stat.st_size, "modified": modified})
    rows.sort(key=lambda r: (r["modified"], r["name"]), reverse=True)
    return rows[:MAX_LISTED]


def recording_for_request(folder: Path, name: str) -> Path:
    """The file ``name`` names in ``folder``, or RecordingRefused."""
    if "/" in name or "\\" in name or name.startswith(".") or not name.endswith(RECORDING_SUFFIXES):
        raise RecordingRefused(
            f"{name!r} is not a session id or a recording's file name; the dashboard replays stored "
            f"sessions and the .jsonl/.jsonl.gz files in {folder} (for a file elsewhere: coreg replay FILE)"
        )
    path = folder / name
    if not _acceptable(folder, path):
        raise RecordingRefused(f"no recording {name!r} in {folder}")
    return path.resolve()


def _acceptable(folder: Path, path: Path) -> bool:
    """A regular file with a recording's suffix that really lies in ``folder``
    (a symbolic link is followed, and must end up in the folder too)."""
    if not path.name.endswith(RECORDING_SUFFIXES) or path.name.startswith("."):
        return False
    try:
        real = path.resolve(strict=True)
        return real.parent == folder.resolve(strict=True) and real.is_file()
    except OSError:
        return False
