"""The `coreg` command line: one sub-command per thing a person wants to do.

Each command is a small function that parses nothing itself and imports its heavy
modules lazily, so `coreg --help` and `coreg demo` start quickly.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

REPO_FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
DEMO_RECORDING = REPO_FIXTURES / "sim_divergence.jsonl.gz"


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def _cmd_demo(args: argparse.Namespace) -> int:
    from monitor.console import replay_to_terminal

    path = Path(args.file) if args.file else DEMO_RECORDING
    if not path.exists():
        raise CliError(
            f"the demo recording {path} is missing; run coreg from a checkout of the "
            "repository (pip install -e .) or pass --file RECORDING"
        )
    return asyncio.run(replay_to_terminal(path, speed=args.speed, limit_s=args.duration))


def _cmd_replay(args: argparse.Namespace) -> int:
    from monitor.console import replay_to_terminal

    path = Path(args.file)
    if not path.exists():
        raise CliError(f"no such recording: {path}")
    return asyncio.run(replay_to_terminal(path, speed=args.speed, limit_s=args.duration))


def _cmd_scan(args: argparse.Namespace) -> int:
    from devices.ble import scan

    straps = asyncio.run(scan(timeout_s=args.timeout))
    if not straps:
        print("No heart-rate straps found. Is the strap on, moistened and close by?")
        return 1
    print(f"{'address':<20} {'rssi':>5}  name")
    for s in straps:
        print(f"{s.address:<20} {s.rssi_dbm:>5}  {s.name or '(no name)'}")
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from devices.ble import record_pair

    out = Path(args.out)
    if out.exists():
        if not args.overwrite:
            raise CliError(f"{out} exists; choose another name or pass --overwrite")
        out.unlink()
    print(f"Recording to {out}. Press Ctrl-C to stop; the file is kept complete.")
    print("A strap that is out of reach is retried until you stop.")
    try:
        summary = asyncio.run(
            record_pair(args.a, args.b, out, names=(args.name_a or "", args.name_b or ""))
        )
    except KeyboardInterrupt:
        print(f"\nStopped. The recording is in {out}.")
        return 0
    print(f"Done: {summary}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from devices.scenarios import SCENARIOS
    from devices.simulate import simulate_to_file

    if args.scenario not in SCENARIOS:
        raise CliError(
            f"unknown scenario {args.scenario!r}; choose one of: {', '.join(sorted(SCENARIOS))}"
        )
    session = simulate_to_file(args.scenario, args.seed, Path(args.out), duration_s=args.duration)
    n = sum(1 for r in session.records if hasattr(r, "payload"))
    print(f"Wrote {args.out}: scenario {args.scenario}, seed {args.seed}, {n} notifications.")
    return 0


def _cmd_analyze(args: argparse.Namespace) -> int:
    from monitor.analyze import analyze_files

    files = [Path(f) for f in args.files]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise CliError(f"no such recording: {', '.join(missing)}")
    return analyze_files(files, as_json=args.json, config_path=args.config, jobs=args.jobs)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `coreg`, with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="coreg",
        description="Co-regulation monitor: two heart-rate straps, one gentle prompt.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("demo", help="replay a bundled session live, as if two straps were on")
    p.add_argument("--file", help="replay this recording instead of the bundled one")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("replay", help="replay a recording live")
    p.add_argument("file", help="a coreg-session recording (.jsonl or .jsonl.gz)")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("analyze", help="run the whole pipeline over recordings, as fast as it goes")
    p.add_argument("files", nargs="+", help="coreg-session recordings")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line on stdout")
    p.add_argument("--config", help="a TOML file of settings to use instead of the defaults")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: one per core)")
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("scan", help="list heart-rate straps in range")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to listen")
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("record", help="record two straps to a file")
    p.add_argument("--a", required=True, metavar="ADDR", help="partner A's strap address")
    p.add_argument("--b", required=True, metavar="ADDR", help="partner B's strap address")
    p.add_argument("--out", required=True, help="output file (.jsonl or .jsonl.gz)")
    p.add_argument("--name-a", help="partner A's name, as it should appear")
    p.add_argument("--name-b", help="partner B's name, as it should appear")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_cmd_record)

    p = sub.add_parser("simulate", help="write a simulated two-partner session")
    p.add_argument("--scenario", required=True, help="calm, divergence, escalation, ...")
    p.add_argument("--seed", type=int, default=1, help="random seed (same seed, same file)")
    p.add_argument("--out", required=True, help="output file (.jsonl or .jsonl.gz)")
    p.add_argument("--duration", type=float, default=None, help="seconds (default: the scenario's)")
    p.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `coreg` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from devices.recording import RecordingError

    try:
        return args.func(args)
    except (CliError, RecordingError) as exc:
        print(f"coreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
