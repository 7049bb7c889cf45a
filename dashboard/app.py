"""The dashboard's web app: two pages, a small JSON API and one WebSocket per viewer.

``create_app(manager)`` builds it around a session manager (monitor.sessions); the CLI
serves it with uvicorn. Pages and scripts are static files (no build step); the API is
described at /openapi.json. Holds no signal logic: it starts, stops and annotates
sessions through the manager and passes the runners' messages on.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any, Iterable

from fastapi import FastAPI, HTTPException, Path as PathParam, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask

from dashboard.hub import DEFAULT_QUEUE_SIZE
from dashboard.models import (
    AnnotationIn, Control, EventOut, Problem, RecordingOut, ReplayState, SessionDetail, SessionOut, StartSession,
)
from dashboard.recordings import list_recordings, recording_for_request, recordings_dir
from dashboard.security import LOOPBACK_HOSTS, MAX_BODY_BYTES, Guard, check_token
from dashboard.viewer import ViewerEndpoint
from devices.recording import RecordingError
from monitor.store import StoreError

log = logging.getLogger("coreg.dashboard")

STATIC_DIR = Path(__file__).resolve().parent / "static"
_ERRORS = {404: {"model": Problem}, 409: {"model": Problem}, 422: {"model": Problem}}
_LIVE_STATUSES = ("running", "paused")
# Store ids are short hex; anything else never reaches the store (or a file name).
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
SessionId = Annotated[str, PathParam(pattern=SESSION_ID_PATTERN)]


def create_app(
    manager: Any,
    *,
    token: str | None = None,
    allowed_origins: Iterable[str] = (),
    allowed_hosts: Iterable[str] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    follow_poll_s: float = 1.0,
) -> FastAPI:
    """The dashboard around ``manager`` (a monitor.sessions.SessionManager).

    ``token``: when set, required on every request (see dashboard.security).
    ``allowed_hosts``: Host names accepted; default loopback only without a token, any
    with one. ``allowed_origins``: extra browser origins allowed to use the API and the
    WebSocket. ``queue_size``: messages buffered per viewer before it is resynced.
    ``follow_poll_s``: how often a viewer following "the current session" looks for a
    newer one, in seconds.
    """
    if token is not None:
        check_token(token)  # now, not at the first request
    if allowed_hosts is None and token is None:
        allowed_hosts = LOOPBACK_HOSTS
    app = FastAPI(
        title="coreg dashboard",
        version="1",
        summary="Sessions, annotations and replay control of the coreg co-regulation monitor.",
        # The interactive docs pages load their scripts from a CDN; the dashboard works
        # offline and never links outside, so only the machine-readable spec is served.
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        Guard, token=token, allowed_hosts=allowed_hosts, allowed_origins=allowed_origins, max_body_bytes=max_body_bytes
    )
    store = manager.store

    # -- errors as {"detail": ...} ----------------------------------------------------

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [{"loc": e.get("loc"), "msg": e.get("msg"), "type": e.get("type")} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(Exception)
    async def _crashed(request: Request, exc: Exception) -> JSONResponse:
        log.exception("the dashboard failed on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    # -- helpers ------------------------------------------------------------------------

    def held(session_id: str) -> Any:
        return manager.get(session_id)

    def is_running(runner: Any) -> bool:
        return runner is not None and runner.state()["status"] in _LIVE_STATUSES

    def held_flags(session_id: str) -> dict:
        """``running`` and, while held, the runner's own status (a replay may be paused)."""
        runner = held(session_id)
        running = is_running(runner)
        return {"running": running, "runner_status": runner.state()["status"] if running else None}

    def info(session_id: str) -> dict:
        try:
            summary = store.get_session(session_id).to_json()
        except StoreError:
            raise HTTPException(404, f"no session {session_id}") from None
        return {**summary, **held_flags(session_id)}

    def runner_or_409(session_id: str) -> Any:
        info(session_id)  # 404 first
        runner = held(session_id)
        if runner is None:
            raise HTTPException(409, f"session {session_id} is not running")
        return runner

    # -- pages --------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def couple_view() -> FileResponse:
        return FileResponse(STATIC_DIR / "couple.html", headers={"cache-control": "no-cache"})

    @app.get("/practitioner", include_in_schema=False)
    async def practitioner_view() -> FileResponse:
        return FileResponse(STATIC_DIR / "practitioner.html", headers={"cache-control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    # -- sessions -----------------------------------------------------------------------

    @app.get("/api/sessions", response_model=list[SessionOut])
    async def list_sessions() -> list[dict]:
        """Every stored session, newest as the store orders them, with a running flag."""
        return [{**s.to_json(), **held_flags(s.id)} for s in store.list_sessions()]

    @app.get("/api/sessions/{session_id}", response_model=SessionDetail, responses=_ERRORS)
    async def get_session(session_id: SessionId) -> dict:
        """One session, its events so far and, while a runner holds it, its state."""
        summary = info(session_id)
        runner = held(session_id)
        return {"session": summary, "events": store.events(session_id), "state": runner.state() if runner else None}

    @app.post("/api/sessions", response_model=SessionOut, status_code=201, responses=_ERRORS)
    async def start_session(body: StartSession) -> dict:
        """Start the demo, a replay of a file or stored session, or a live session."""
        try:
            if body.kind == "demo":
                runner = await manager.start_demo(speed=body.speed)
            elif body.kind == "replay":
                runner = await manager.start_replay(replay_source(body.source), speed=body.speed)
            else:
                extra = {"names": (body.name_a or "", body.name_b or "")} if (body.name_a or body.name_b) else {}
                runner = await manager.start_live(body.addr_a, body.addr_b, label=body.label, **extra)
        except (StoreError, RecordingError, ValueError, OSError) as exc:
            raise HTTPException(422, f"could not start the {body.kind} session: {exc}") from None
        return info(runner.id)

    def replay_source(source: str) -> str:
        """A stored session id as it is, or a recording's name in the data folder as
        its full path; never a path the request chose (dashboard.recordings)."""
        try:
            return store.get_session(source).id
        except StoreError:
            return str(recording_for_request(recordings_dir(store.path), source))

    @app.get("/api/recordings", response_model=list[RecordingOut])
    async def recordings() -> list[dict]:
        """The recordings the replay form offers: files in the data folder's recordings/."""
        return list_recordings(recordings_dir(store.path))

    @app.post("/api/sessions/{session_id}/stop", response_model=SessionOut, responses=_ERRORS)
    async def stop_session(session_id: SessionId) -> dict:
        """Stop a running session (a live one is finished and committed)."""
        runner = runner_or_409(session_id)
        if runner.state()["status"] == "stopped":
            raise HTTPException(409, f"session {session_id} is already stopped")
        await manager.stop(session_id)
        return info(session_id)

    @app.delete("/api/sessions/{session_id}", status_code=204, responses=_ERRORS)
    async def delete_session(session_id: SessionId) -> None:
        """Delete a stored session; a running one must be stopped first."""
        info(session_id)
        if is_running(held(session_id)):
            raise HTTPException(409, f"session {session_id} is running; stop it first")
        manager.forget(session_id)
        store.delete_session(session_id)

    @app.post("/api/sessions/{session_id}/annotations", response_model=EventOut, status_code=201, responses=_ERRORS)
    async def annotate(session_id: SessionId, body: AnnotationIn) -> dict:
        """Mark the present moment of a held session; returns the annotation event."""
        runner = runner_or_409(session_id)
        if runner.state()["status"] == "stopped":
            raise HTTPException(409, f"session {session_id} has stopped; annotations go to a running session")
        try:
            return runner.annotate(body.text, body.author)
        except StoreError as exc:
            raise HTTPException(422, str(exc)) from None

    @app.post("/api/sessions/{session_id}/control", response_model=ReplayState, responses=_ERRORS)
    async def control(session_id: SessionId, body: Control) -> dict:
        """Play, pause, seek or change the speed of a replay; returns its new state."""
        runner = runner_or_409(session_id)
        if not runner.state().get("can_seek"):
            raise HTTPException(409, f"session {session_id} is live: it cannot be paused, sought or sped up")
        try:
            if body.action == "play":
                runner.resume()
            elif body.action == "pause":
                runner.pause()
            elif body.action == "seek":
                runner.seek(body.value)
            else:
                runner.set_speed(body.value)
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from None
        return runner.state()

    @app.get(
        "/api/sessions/{session_id}/export",
        response_class=FileResponse,
        responses={200: {"content": {"application/x-ndjson": {}}}, **_ERRORS},
    )
    async def export(session_id: SessionId) -> FileResponse:
        """The session as a coreg-session v1 recording (JSON Lines) to download."""
        summary = info(session_id)
        day = str(summary.get("started_at", ""))[:10] or "session"
        filename = f"coreg-{day}-{session_id}.jsonl"
        # A private folder (mode 0700) beside the store: the file holds health data, and
        # the store's export never overwrites, so the name inside must not exist yet.
        folder = Path(tempfile.mkdtemp(prefix=".export-", dir=Path(store.path).parent))
        try:
            path = store.export(session_id, folder / filename)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileResponse(
            path,
            media_type="application/x-ndjson",
            filename=filename,
            background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True),
        )

    @app.get(
        "/api/sessions/{session_id}/report",
        response_class=HTMLResponse,
        responses={200: {"content": {"text/html": {}}}, **_ERRORS},
    )
    def report(session_id: SessionId) -> HTMLResponse:
        """The post-session report (monitor.report): one self-contained HTML page.

        A plain ``def``: FastAPI runs it in its thread pool, so the seconds of analysis
        and plotting never stall the event loop and the viewers' WebSockets.
        """
        from monitor.config import Config
        from monitor.report import report_html

        summary = info(session_id)
        header, records = store.header(session_id), list(store.records(session_id))
        label = summary.get("label") or ""
        cfg = Config.stored(summary.get("config") or {}, f"session {session_id}: stored config")
        page, _ = report_html(header, records, cfg, title=f"coreg session report: {label}" if label else "")
        return HTMLResponse(page, headers={"cache-control": "no-store"})

    # -- live messages ------------------------------------------------------------------

    # A plain ASGI route, behind the same middleware: see dashboard.viewer.
    app.router.add_websocket_route(
        "/ws",
        ViewerEndpoint(
            manager, session_pattern=SESSION_ID_PATTERN, queue_size=queue_size, follow_poll_s=follow_poll_s
        ),
        name="viewer",
    )

    return app
