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


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def _serve(args: argparse.Namespace, start, path: str = "/") -> int:
    from dashboard.serve import ServeError, serve

    config = _config(args)
    try:
        asyncio.run(
            serve(
                start, host=args.host, port=args.port, open_browser=not args.no_browser,
                db_path=args.db, config=config, path=path,
            )
        )
    except ServeError as exc:
        raise CliError(str(exc)) from exc
    return 0


def _lsl(args: argparse.Namespace, manager=None) -> None:
    """With --lsl: check that pylsl loads (before the server starts), or turn LSL
    output on for ``manager``'s sessions."""
    if not getattr(args, "lsl", False):
        return
    from monitor.lsl import LslUnavailable, load_pylsl

    if getattr(args, "terminal", False):
        raise CliError("--lsl publishes the dashboard's sessions; leave out --terminal")
    try:
        if manager is None:
            load_pylsl()
        else:
            manager.enable_lsl()
    except LslUnavailable as exc:
        raise CliError(str(exc)) from None


def _config(args: argparse.Namespace):
    from monitor.config import Config

    return Config.load(args.config) if getattr(args, "config", None) else Config()


def _cmd_demo(args: argparse.Namespace) -> int:
    from monitor.sessions import DEMO_RECORDING

    path = Path(args.file) if args.file else DEMO_RECORDING
    if not path.exists():
        raise CliError(
            f"the demo recording {path} is missing; run coreg from a checkout of the "
            "repository (pip install -e .) or pass --file RECORDING"
        )
    _lsl(args)
    if args.terminal:
        from monitor.console import replay_to_terminal

        return asyncio.run(replay_to_terminal(path, speed=args.speed, limit_s=args.duration))

    async def start(manager):
        _lsl(args, manager)
        if args.file:
            await manager.start_replay(str(path), speed=args.speed, kind="demo", label="Demo session")
        else:
            await manager.start_demo(speed=args.speed)

    return _serve(args, start)


def _cmd_replay(args: argparse.Namespace) -> int:
    _lsl(args)
    if args.terminal:
        from monitor.console import replay_to_terminal

        path = Path(args.source)
        if not path.exists():
            raise CliError(f"no such recording: {path}")
        return asyncio.run(replay_to_terminal(path, speed=args.speed, limit_s=args.duration))
    if args.source.endswith((".jsonl", ".jsonl.gz")) and not Path(args.source).exists():
        raise CliError(f"no such recording: {args.source}")

    async def start(manager):
        _lsl(args, manager)
        await manager.start_replay(args.source, speed=args.speed)

    return _serve(args, start, path="/practitioner")


def _cmd_live(args: argparse.Namespace) -> int:
    _lsl(args)

    async def start(manager):
        _lsl(args, manager)
        await manager.start_live(args.a, args.b, label=args.label or "", names=(args.name_a or "", args.name_b or ""))

    print("Connecting the straps (a strap out of reach is retried until you stop).")
    return _serve(args, start)


def _cmd_sessions(args: argparse.Namespace) -> int:
    from monitor.store import Store

    with Store(args.db) as store:
        store.recover_interrupted()
        sessions = store.list_sessions()
    if not sessions:
        print("No sessions stored yet. Try: coreg demo")
        return 0
    print(f"{'id':<14} {'kind':<7} {'status':<12} {'started (UTC)':<21} {'length':>7}  label")
    for s in sessions:
        minutes, seconds = divmod(int(s.duration_s), 60)
        print(f"{s.id:<14} {s.kind:<7} {s.status:<12} {s.started_at:<21} {minutes:>4}:{seconds:02d}  {s.label}")
    return 0


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


def _cmd_report(args: argparse.Namespace) -> int:
    from monitor.report import write_report

    source = Path(args.source)
    if source.exists() or args.source.endswith((".jsonl", ".jsonl.gz")):
        from devices.recording import read_records

        if not source.exists():
            raise CliError(f"no such recording: {source}")
        header, records = read_records(source)
        title = ""
        cfg = _config(args)
    else:
        from monitor.config import Config
        from monitor.store import Store

        with Store(args.db) as store:
            info = store.get_session(args.source)
            header, records = store.header(args.source), list(store.records(args.source))
        title = f"coreg session report: {info.label}" if info.label else ""
        # The settings the session ran with, unless --config asks for others.
        cfg = _config(args) if args.config else Config.stored(info.config, f"session {info.id}: stored config")
    html_path, png_path = write_report(header, records, Path(args.out), cfg, title=title)
    print(f"Wrote {html_path} and {png_path}.")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from devices.recording import read_records
    from monitor.export import export_session

    source = Path(args.session)
    if source.exists():
        header, records = read_records(source)
        stem = source.name.split(".")[0]
    else:
        from monitor.store import Store

        with Store(args.db) as store:
            header = store.header(args.session)
            records = list(store.records(args.session))
        stem = f"coreg_{args.session}"
    try:
        files = export_session(header, records, args.format, Path(args.out), stem, raw=args.raw, cfg=_config(args))
    except FileExistsError as exc:
        raise CliError(f"{exc.filename or exc}: exists; coreg does not overwrite exports") from None
    for f in files:
        print(f)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    from monitor.import_session import import_files
    from monitor.importers import ImportFormatError
    from monitor.store import Store

    if bool(args.a) != bool(args.b):
        raise CliError("--a and --b go together: one file for each partner")
    groups = [{"a": f} for f in args.files]
    if args.a:
        groups.append({"a": args.a, "b": args.b})
    if not groups:
        raise CliError("nothing to import: give FILE... or --a FILE --b FILE")
    for group in groups:
        missing = [str(f) for f in group.values() if not Path(f).exists()]
        if missing:
            raise CliError(f"no such file: {', '.join(missing)}")
    with Store(args.db) as store:
        for group in groups:
            try:
                session_id = import_files(store, group, label=args.label or "")
            except ImportFormatError as exc:
                raise CliError(str(exc)) from None
            print(f"{session_id}  {' + '.join(str(f) for f in group.values())}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `coreg`, with every sub-command."""
    parser = argparse.ArgumentParser(
        prog="coreg",
        description="Co-regulation monitor: two heart-rate straps, one gentle prompt.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def server_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
        p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
        p.add_argument("--no-browser", action="store_true", help="do not open a browser")
        p.add_argument("--db", help="the session database (default: in your user data folder)")
        p.add_argument("--config", help="a TOML file of settings to use instead of the defaults")
        p.add_argument(
            "--lsl", action="store_true",
            help="also publish RR, 4 Hz heart rate and events as Lab Streaming Layer streams on this machine "
            "(needs pip install 'coreg[lsl]')",
        )

    p = sub.add_parser("demo", help="a bundled session replayed live into the dashboard")
    p.add_argument("--file", help="replay this recording instead of the bundled one")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    p.add_argument("--terminal", action="store_true", help="print heart rate and RR in the terminal instead")
    p.add_argument("--duration", type=float, default=None, help="with --terminal: stop after this many seconds")
    server_options(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("replay", help="replay a recording or a stored session into the dashboard")
    p.add_argument("source", metavar="FILE|SESSION_ID", help="a .jsonl/.jsonl.gz recording or a stored session id")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    p.add_argument("--terminal", action="store_true", help="print heart rate and RR in the terminal instead")
    p.add_argument("--duration", type=float, default=None, help="with --terminal: stop after this many seconds")
    server_options(p)
    p.set_defaults(func=_cmd_replay)

    p = sub.add_parser("live", help="a live session with two straps, in the dashboard")
    p.add_argument("--a", required=True, metavar="ADDR", help="partner A's strap address (see coreg scan)")
    p.add_argument("--b", required=True, metavar="ADDR", help="partner B's strap address")
    p.add_argument("--label", help="a name for this session")
    p.add_argument("--name-a", help="partner A's name, as the screen should say it")
    p.add_argument("--name-b", help="partner B's name")
    server_options(p)
    p.set_defaults(func=_cmd_live)

    p = sub.add_parser("sessions", help="list the stored sessions")
    p.add_argument("--db", help="the session database (default: in your user data folder)")
    p.set_defaults(func=_cmd_sessions)

    p = sub.add_parser("analyze", help="run the whole pipeline over recordings, as fast as it goes")
    p.add_argument("files", nargs="+", help="coreg-session recordings")
    p.add_argument("--json", action="store_true", help="one JSON object per file per line on stdout")
    p.add_argument("--config", help="a TOML file of settings to use instead of the defaults")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: one per core)")
    p.set_defaults(func=_cmd_analyze)

    p = sub.add_parser("report", help="a post-session report: one HTML page and a PNG figure")
    p.add_argument("source", metavar="FILE|SESSION_ID", help="a .jsonl/.jsonl.gz recording or a stored session id")
    p.add_argument("--out", default="report.html", help="the HTML file (default report.html; the figure goes beside it as .png)")
    p.add_argument("--db", help="the session database (default: in your user data folder)")
    p.add_argument("--config", help="a TOML file of settings to use instead of the defaults")
    p.set_defaults(func=_cmd_report)

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

    p = sub.add_parser("export", help="write a session as CSV tables, Kubios RR text or EDF+")
    p.add_argument("session", metavar="SESSION", help="a stored session id or a recording file")
    p.add_argument("--format", required=True, choices=("csv", "kubios", "edf"), help="what to write")
    p.add_argument("--out", default=".", metavar="DIR", help="folder for the files (default: here)")
    p.add_argument("--raw", action="store_true", help="kubios: the RR values as received, not corrected NN")
    p.add_argument("--db", help="the session database (default: in your user data folder)")
    p.add_argument("--config", help="a TOML file of settings to use instead of the defaults")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("import", help="store other tools' RR exports as sessions")
    p.add_argument("files", nargs="*", metavar="FILE", help="one RR export per session (one partner each)")
    p.add_argument("--a", metavar="FILE", help="partner A's export, for a session of two")
    p.add_argument("--b", metavar="FILE", help="partner B's export, with --a")
    p.add_argument("--label", help="a name for the imported session(s)")
    p.add_argument("--db", help="the session database (default: in your user data folder)")
    p.set_defaults(func=_cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `coreg` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from devices.recording import RecordingError
    from monitor.config import ConfigError
    from monitor.store import StoreError

    try:
        return args.func(args)
    except (CliError, RecordingError, StoreError, ConfigError) as exc:
        print(f"coreg {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
