"""One WebSocket viewer: the snapshot first, then every live message, until it leaves.

A viewer either follows one session (``/ws?session=ID``) or, by default, whatever the
manager runs now: when a newer session starts, the viewer is sent that session's
snapshot and follows it (so the couple's screen follows the practitioner's "start").
With nothing running it is sent ``{"type": "idle"}`` and waits. A session that is only
stored (finished earlier) is sent as a snapshot of its events, without ticks.

Messages from the viewer are small JSON objects; the couple view sends
``{"type": "ack", "prompt_t": t}`` when a prompt card is acknowledged, which is logged.

``ViewerEndpoint`` is the ``/ws`` route as a plain ASGI app (still behind the app's
middleware, so the token and Origin checks of dashboard.security apply): Starlette's
``WebSocket`` handles the handshake, the viewer's messages and the close, while live
frames go straight to the server's ASGI ``send``. With 200 viewers every message is
sent 200 times, and the wrapper's state checks and layers per frame cost about 5-10 %
of the server's CPU per viewer and message (bench/fanout.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from typing import Any

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from dashboard.hub import DEFAULT_QUEUE_SIZE, ViewerFeed
from monitor.store import StoreError
from monitor.events import json_safe

log = logging.getLogger("coreg.dashboard.viewer")

MAX_CLIENT_MESSAGE_CHARS = 4096
WS_CLOSE_UNKNOWN_SESSION = 4404
WS_CLOSE_POLICY_VIOLATION = 1008  # what FastAPI answers a query parameter it refuses
IDLE = {"type": "idle"}


def dumps(message: Any) -> str:
    """JSON for a browser: a stray NaN or infinity (which JSON.parse refuses) becomes null."""
    try:
        return json.dumps(message, allow_nan=False, separators=(",", ":"))
    except ValueError:
        return json.dumps(json_safe(message), allow_nan=False, separators=(",", ":"))


class SharedText:
    """The JSON text of recent live messages, kept by identity.

    A runner hands the very same message object to every viewer, so with this each
    message is encoded once however many viewers send it (with 200 viewers on one
    session, encoding per viewer was a fifth of the send path). Snapshots and resyncs
    are made for one viewer and are encoded directly. The object is held with its
    text, so its id cannot be reused while the entry lives; the oldest entries go
    first beyond ``size``. Messages must not change once published (none do).
    """

    def __init__(self, size: int = 1024) -> None:
        self._texts: OrderedDict[int, tuple[Any, str]] = OrderedDict()
        self._size = size

    def text(self, message: dict) -> str:
        """The JSON text of ``message``, encoded once while it is recent."""
        if message.get("type") in ("snapshot", "resync"):
            return dumps(message)
        key = id(message)
        held = self._texts.get(key)
        if held is not None and held[0] is message:
            return held[1]
        text = dumps(message)
        self._texts[key] = (message, text)
        if len(self._texts) > self._size:
            self._texts.popitem(last=False)
        return text


SHARED_TEXT = SharedText()


def stored_snapshot(store: Any, session_id: str) -> dict:
    """The snapshot of a session no runner holds: its summary and stored events."""
    info = {**store.get_session(session_id).to_json(), "running": False}
    return {"type": "snapshot", "session": info, "ticks": [], "events": store.events(session_id), "replay": None}


class ViewerEndpoint:
    """The ``/ws`` route: one viewer per connection, ``?session=ID`` to pin a session.

    A plain ASGI app (mount it with ``add_websocket_route``). A ``session`` that does not
    match ``session_pattern`` is refused before the handshake with 1008, as FastAPI
    refuses a query parameter that fails its pattern.
    """

    def __init__(
        self, manager: Any, *, session_pattern: str, queue_size: int = DEFAULT_QUEUE_SIZE, follow_poll_s: float = 1.0
    ) -> None:
        self.manager = manager
        self.session_re = re.compile(session_pattern)
        self.queue_size = queue_size
        self.follow_poll_s = follow_poll_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        session_id = websocket.query_params.get("session")
        if session_id is not None and not self.session_re.fullmatch(session_id):
            await websocket.close(WS_CLOSE_POLICY_VIOLATION, reason="malformed session id")
            return
        await serve_viewer(
            websocket, self.manager, session_id, send=send, queue_size=self.queue_size, follow_poll_s=self.follow_poll_s
        )


async def serve_viewer(
    websocket: WebSocket,
    manager: Any,
    session_id: str | None,
    *,
    send: Send,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    follow_poll_s: float = 1.0,
) -> None:
    """Accept the WebSocket and feed it until the viewer disconnects.

    ``send``: the ASGI ``send`` under ``websocket``, for the live frames (Starlette's
    ``WebSocket`` checks its state on every frame; the live ones need none of that).
    """
    await websocket.accept()
    if session_id is not None and manager.get(session_id) is None:
        try:
            snapshot = stored_snapshot(manager.store, session_id)
        except StoreError:
            await websocket.close(WS_CLOSE_UNKNOWN_SESSION, reason="no such session")
            return
        try:
            await websocket.send_text(dumps(snapshot))
            await _receive(websocket)
        except (WebSocketDisconnect, OSError):
            pass  # gone already
        return
    sender = asyncio.create_task(_send(websocket, send, manager, session_id, queue_size, follow_poll_s))
    receiver = asyncio.create_task(_receive(websocket))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
        for task in (sender, receiver):
            try:
                await task
            except (asyncio.CancelledError, WebSocketDisconnect, OSError):
                pass  # the viewer went away (uvicorn's ClientDisconnected is an OSError)
            except Exception:
                log.exception("a dashboard viewer failed")
    both_open = WebSocketState.CONNECTED == websocket.client_state == websocket.application_state
    if both_open:
        try:
            await websocket.close()
        except (RuntimeError, OSError):
            pass  # the client closed at the same moment


async def _receive(websocket: WebSocket) -> None:
    """Read the viewer's messages until it disconnects; only acks mean something."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if not text or len(text) > MAX_CLIENT_MESSAGE_CHARS:
            continue
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("type") == "ack":
            prompt_t = data.get("prompt_t")
            if isinstance(prompt_t, (int, float)) and not isinstance(prompt_t, bool):
                log.info("a viewer acknowledged the prompt at t=%.1f s", prompt_t)


async def _send(
    websocket: WebSocket, send: Send, manager: Any, session_id: str | None, queue_size: int, poll_s: float
) -> None:
    """Send one runner's messages (pinned), or follow the manager's current runner;
    the live ones straight through ``send``."""
    follow = session_id is None
    idle_sent = False
    while True:
        runner = manager.current() if follow else manager.get(session_id)
        if runner is None:
            if not idle_sent:
                await websocket.send_text(dumps(IDLE))
                idle_sent = True
            await asyncio.sleep(poll_s)
            continue
        feed = ViewerFeed(runner, queue_size=queue_size, poll_s=poll_s if follow else None)
        try:
            try:
                first = feed.open()
            except StoreError:
                # The session was deleted while a runner still held it: nothing to show.
                feed.close()
                if not idle_sent:
                    await websocket.send_text(dumps(IDLE))
                    idle_sent = True
                await asyncio.sleep(poll_s)
                continue
            idle_sent = False
            await websocket.send_text(dumps(first))
            while not (follow and _replaced(manager, runner)):
                message = await feed.next()
                if message is not None:
                    await send({"type": "websocket.send", "text": SHARED_TEXT.text(message)})
        finally:
            feed.close()


def _replaced(manager: Any, runner: Any) -> bool:
    current = manager.current()
    return current is not None and current is not runner
