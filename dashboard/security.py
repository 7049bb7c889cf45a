"""The dashboard's gate: host, origin and access-token checks, bounded bodies, headers.

One small ASGI middleware in front of every route, so that no route can forget a check:

- **Host.** Without a token the dashboard listens on loopback only, and a request
  must name a loopback host; this keeps a web page on another site from reaching it
  through DNS rebinding (a hostile name re-pointed at 127.0.0.1).
- **Origin.** A WebSocket, and any request that changes something (POST, DELETE…),
  sent by a browser must come from a page of this very server (Origin equal to the
  Host header) or from an origin explicitly allowed. Browsers always send Origin for
  these, so a foreign page cannot drive the dashboard (cross-site WebSocket hijacking,
  CSRF). Clients that send no Origin (curl, scripts) are not browsers and pass.
- **Token.** When a token is set (whenever the dashboard listens beyond loopback),
  every HTTP request and WebSocket must carry it: ``?token=``, ``Authorization:
  Bearer``, or the HttpOnly, SameSite=Strict cookie set on the first request that
  carried it, so the page's own fetches and WebSocket carry it without script access.
  Missing or wrong: HTTP 401, or the WebSocket is accepted and closed with 4401 so the
  page can tell the reason.
- **Bodies** are read up to ``max_body_bytes`` (16 KiB); larger ones get 413.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Iterable
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE_NAME = "coreg_token"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
MAX_BODY_BYTES = 16 * 1024
WS_CLOSE_UNAUTHORIZED = 4401
WS_CLOSE_POLICY = 1008
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.~]{8,256}")
# What a person sees who opens the dashboard without its access code.
NEEDS_TOKEN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>coreg</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="background:#1c2230;color:#e6e9ef;font-family:system-ui,sans-serif;padding:10vh 8vw;font-size:1.3rem">
<p>This dashboard needs its access code.</p>
<p>Open the full address that coreg printed when it started; it ends in <code>?token=</code>
and a code. This browser will then remember it.</p></body></html>
"""


def check_token(token: str) -> str:
    """Refuse a token that is too short or would need quoting in a URL or cookie."""
    if not _TOKEN_CHARS.fullmatch(token):
        raise ValueError("the access token must be 8 to 256 URL-safe characters (A-Z a-z 0-9 _ - . ~)")
    return token


def host_name(host_header: str) -> str:
    """The host name of a Host header, without port or IPv6 brackets, lower case."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    if host.count(":") == 1:
        return host.rsplit(":", 1)[0]
    return host


class Guard:
    """ASGI middleware applying the checks above to every HTTP and WebSocket request.

    ``allowed_hosts`` None accepts any Host (only sensible with a token); ``allowed_origins``
    are full origins ("http://192.168.1.20:8000") accepted besides the server's own.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str | None,
        allowed_hosts: Iterable[str] | None,
        allowed_origins: Iterable[str] = (),
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.token = check_token(token) if token is not None else None
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts) if allowed_hosts is not None else None
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)
        self.max_body_bytes = max_body_bytes

    # -- the checks ---------------------------------------------------------------

    def _host_ok(self, host: str) -> bool:
        return self.allowed_hosts is None or host_name(host) in self.allowed_hosts

    def _origin_ok(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and bool(host) and parts.netloc == host.lower()

    def _presented(self, scope: Scope, headers: Headers) -> tuple[str | None, bool]:
        """The token the request carries, and whether it came by cookie."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], False
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip(), False
        cookie = cookie_parser(headers.get("cookie", "")).get(COOKIE_NAME)
        return cookie, True

    def _token_ok(self, presented: str | None) -> bool:
        assert self.token is not None
        return presented is not None and secrets.compare_digest(presented.encode(), self.token.encode())

    # -- ASGI ---------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        host, origin = headers.get("host", ""), headers.get("origin")
        if not self._host_ok(host) or (origin is not None and not self._origin_ok(origin, host)):
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": WS_CLOSE_POLICY, "reason": "origin not allowed"})
            return
        if self.token is not None and not self._token_ok(self._presented(scope, headers)[0]):
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": WS_CLOSE_UNAUTHORIZED, "reason": "access token needed"})
            return
        await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        host, origin = headers.get("host", ""), headers.get("origin")
        if not self._host_ok(host):
            await _reply(send, 400, "this dashboard only answers on its own address")
            return
        unsafe = scope["method"] not in _SAFE_METHODS
        if unsafe and origin is not None and not self._origin_ok(origin, host):
            await _reply(send, 403, "requests from other sites are not allowed")
            return
        set_cookie = False
        if self.token is not None:
            presented, by_cookie = self._presented(scope, headers)
            if not self._token_ok(presented):
                if "text/html" in headers.get("accept", ""):
                    await _page(send, 401, NEEDS_TOKEN_PAGE)
                else:
                    await _reply(
                        send, 401, "an access token is needed: open the address printed when coreg started",
                        [(b"www-authenticate", b"Bearer")],
                    )
                return
            set_cookie = not by_cookie and cookie_parser(headers.get("cookie", "")).get(COOKIE_NAME) != self.token
        if unsafe:
            declared = headers.get("content-length", "")
            too_big = declared.isdigit() and int(declared) > self.max_body_bytes
            body = None if too_big else await _read_body(receive, self.max_body_bytes)
            if body is None:
                await _reply(send, 413, f"request body larger than {self.max_body_bytes} bytes")
                return
            receive = _replay(body, receive)
        await self.app(scope, receive, self._with_headers(send, host, scope["path"], set_cookie))

    def _with_headers(self, send: Send, host: str, path: str, set_cookie: bool) -> Send:
        ws_host = host or "'self'"
        policy = (
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            f"connect-src 'self' ws://{ws_host} wss://{ws_host}; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
        )
        extra = [
            (b"content-security-policy", policy.encode("latin-1")),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"x-frame-options", b"DENY"),
        ]
        if path.startswith("/api/"):
            extra.append((b"cache-control", b"no-store"))
        if set_cookie:
            cookie = f"{COOKIE_NAME}={self.token}; HttpOnly; SameSite=Strict; Path=/"
            extra.append((b"set-cookie", cookie.encode("latin-1")))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        return send_with_headers


async def _reply(send: Send, status: int, detail: str, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    start_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": start_headers + list(headers)})
    await send({"type": "http.response.body", "body": body})


async def _page(send: Send, status: int, html: str) -> None:
    body = html.encode()
    headers = [
        (b"content-type", b"text/html; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"www-authenticate", b"Bearer"),
        (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the app will see an empty body
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the already-read body, then the real stream."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
