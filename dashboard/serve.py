"""Serving the dashboard: a store, a session manager, uvicorn, and the URL to open."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import secrets
import socket
import sys
import webbrowser
from pathlib import Path
from typing import Awaitable, Callable

import uvicorn

from dashboard.app import create_app
from monitor.config import Config
from monitor.sessions import SessionManager
from monitor.store import Store

log = logging.getLogger("coreg.serve")
LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
# uvicorn settings of the dashboard (bench/load.py serves the app with the same ones).
# No per-message compression: the messages are a few hundred bytes, and compressing each
# one again for every viewer was about a third of the send path with 200 viewers.
UVICORN_OPTIONS = {"log_level": "warning", "ws_max_size": 65536, "ws_per_message_deflate": False}


class ServeError(Exception):
    """The server cannot start (port taken, bad host); says which and why."""


def is_loopback(host: str) -> bool:
    """True for localhost and the 127.0.0.0/8 and ::1 addresses."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def can_open_browser() -> bool:
    """Only where a graphical browser can appear: with no display, Python's webbrowser
    module would start a text browser inside this very terminal."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; try --port") from exc


async def serve(
    start: Callable[[SessionManager], Awaitable[object]] | None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    open_browser: bool = True,
    db_path: str | Path | None = None,
    config: Config | None = None,
    path: str = "/",
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run the dashboard until interrupted, after ``start(manager)`` (e.g. a demo).

    On any host but loopback a random access token is made; it is printed once, in
    the URL, and required on every request.
    """
    _check_port(host, port)
    store = Store(db_path)
    interrupted = store.recover_interrupted()
    if interrupted:
        log.warning("found %d interrupted session(s) from an earlier run: %s", len(interrupted), ", ".join(interrupted))
    manager = SessionManager(store, config)
    token = None if is_loopback(host) else secrets.token_urlsafe(18)
    app = create_app(manager, token=token)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **UVICORN_OPTIONS))
    try:
        if start is not None:
            await start(manager)
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{port}{path}" + (f"?token={token}" if token else "")
        print(f"coreg is running at {url}", flush=True)
        print("Everything stays on this machine. Press Ctrl-C to stop.", flush=True)
        if ready is not None:
            ready(url)
        if open_browser and can_open_browser():
            await asyncio.to_thread(webbrowser.open, url)
        await server.serve()
    finally:
        await manager.close()
        store.close()
