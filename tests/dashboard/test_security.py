"""Token, host and origin checks on every route and the WebSocket; bounded bodies."""

from __future__ import annotations

import asyncio
import re
import warnings
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocketDisconnect

from dashboard.app import create_app
from dashboard.security import check_token, host_name
from dashboard_fakes import BASE, TOKEN, WS

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Starlette's note about the httpx2 package
    from fastapi.testclient import TestClient

BODIES = {
    "/api/sessions": {"kind": "demo"},
    "/api/sessions/{session_id}/annotations": {"text": "pursuit"},
    "/api/sessions/{session_id}/control": {"action": "pause"},
}


def every_http_request(app) -> list[tuple[str, str, dict | None]]:
    """(method, path, json body) for every HTTP route the app has, plus static and docs."""
    requests = []
    for route in app.routes:
        if isinstance(route, APIRoute):
            for method in sorted(route.methods - {"HEAD"}):
                path = route.path.replace("{session_id}", "rep1")
                requests.append((method, path, BODIES.get(route.path) if method == "POST" else None))
        elif isinstance(route, Mount):
            requests.append(("GET", f"{route.path}/feed.js", None))
        elif not isinstance(route, WebSocketRoute):  # the /ws route (a plain ASGI app)
            requests.append(("GET", route.path, None))  # openapi.json, docs, redoc
    return requests


@pytest.fixture
def guarded(make_client, manager):
    manager.add_runner("rep1")
    manager.store.add("old1")
    return make_client(token=TOKEN)


def test_the_route_list_covers_the_whole_app(guarded):
    paths = {(m, p) for m, p, _ in every_http_request(guarded.app)}
    assert {
        ("GET", "/"),
        ("GET", "/practitioner"),
        ("GET", "/static/feed.js"),
        ("GET", "/openapi.json"),
        ("GET", "/api/sessions"),
        ("POST", "/api/sessions"),
        ("GET", "/api/sessions/rep1"),
        ("DELETE", "/api/sessions/rep1"),
        ("POST", "/api/sessions/rep1/stop"),
        ("POST", "/api/sessions/rep1/annotations"),
        ("POST", "/api/sessions/rep1/control"),
        ("GET", "/api/sessions/rep1/export"),
    } <= paths


def test_every_route_needs_the_token(guarded, manager):
    for method, path, body in every_http_request(guarded.app):
        for headers in ({}, {"authorization": "Bearer wrong-token-1"}, {"cookie": "coreg_token=wrong-token-1"}):
            response = guarded.request(method, path, json=body, headers=headers)
            assert response.status_code == 401, (method, path, headers)
            assert response.json()["detail"].startswith("an access token is needed")
            assert response.headers["www-authenticate"] == "Bearer"
        response = guarded.request(method, path + "?token=wrong-token-1", json=body)
        assert response.status_code == 401, (method, path)
    assert manager.started == [] and manager.runners["rep1"].calls == []  # nothing ran


def test_every_route_works_with_the_token(guarded):
    seen = {}
    requests = every_http_request(guarded.app)
    # Stop last: annotations and controls need the session running.
    requests.sort(key=lambda r: r[1].endswith("/stop"))
    for method, path, body in requests:
        if method == "DELETE":
            continue  # the held session may not be deleted (409): checked below
        response = guarded.request(method, path, json=body, headers={"authorization": f"Bearer {TOKEN}"})
        seen[(method, path)] = response.status_code
    assert all(status < 400 for status in seen.values()), seen
    deleted = guarded.delete("/api/sessions/old1", params={"token": TOKEN})
    assert deleted.status_code == 204


def test_the_first_page_load_sets_a_strict_httponly_cookie(guarded):
    page = guarded.get("/", params={"token": TOKEN})
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"coreg_token={TOKEN};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    # The page's own fetches carry the cookie and need nothing else; none is set again.
    again = guarded.get("/api/sessions")
    assert again.status_code == 200
    assert "set-cookie" not in again.headers
    with guarded.websocket_connect(WS) as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_websocket_needs_the_token(guarded):
    for url in (WS, WS + "?token=wrong-token-1"):
        with guarded.websocket_connect(url) as ws:
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert closed.value.code == 4401
    with guarded.websocket_connect(WS + f"?token={TOKEN}") as ws:
        assert ws.receive_json()["type"] == "snapshot"
    with guarded.websocket_connect(WS, headers={"authorization": f"Bearer {TOKEN}"}) as ws:
        assert ws.receive_json()["session"]["id"] == "rep1"


def test_websocket_refuses_other_origins(client, manager):
    manager.add_runner("rep1")
    for origin in ("http://evil.example", "http://127.0.0.1:9999", "null", "https://127.0.0.1.evil.example:8000"):
        with pytest.raises(WebSocketDisconnect) as refused:
            with client.websocket_connect(WS, headers={"origin": origin}):
                pass
        assert refused.value.code == 1008, origin
    with client.websocket_connect(WS, headers={"origin": "http://127.0.0.1:8000"}) as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_allowed_origins_are_accepted(make_client, manager):
    manager.add_runner("rep1")
    client = make_client(allowed_origins=["http://127.0.0.1:5173"])
    with client.websocket_connect(WS, headers={"origin": "http://127.0.0.1:5173"}) as ws:
        assert ws.receive_json()["type"] == "snapshot"
    ok = client.post("/api/sessions/rep1/annotations", json={"text": "x"}, headers={"origin": "http://127.0.0.1:5173"})
    assert ok.status_code == 201


def test_changes_from_other_sites_are_refused(client, manager):
    runner = manager.add_runner("rep1")
    for method, path, body in [
        ("POST", "/api/sessions/rep1/stop", None),
        ("POST", "/api/sessions", {"kind": "demo"}),
        ("DELETE", "/api/sessions/rep1", None),
        ("POST", "/api/sessions/rep1/annotations", {"text": "x"}),
    ]:
        response = client.request(method, path, json=body, headers={"origin": "http://evil.example"})
        assert response.status_code == 403, path
    assert runner.calls == [] and manager.started == []
    same_site = client.post("/api/sessions/rep1/stop", headers={"origin": "http://127.0.0.1:8000"})
    assert same_site.status_code == 200
    # Reading is not a change: a GET with a foreign Origin is answered (no CORS headers).
    read = client.get("/api/sessions", headers={"origin": "http://evil.example"})
    assert read.status_code == 200
    assert "access-control-allow-origin" not in read.headers


def test_without_a_token_only_loopback_host_names_are_answered(make_client, manager):
    """DNS rebinding: a hostile name pointed at 127.0.0.1 must not reach the API."""
    manager.add_runner("rep1")
    client = make_client()
    assert client.get("/api/sessions", headers={"host": "localhost:8000"}).status_code == 200
    assert client.get("/api/sessions", headers={"host": "[::1]:8000"}).status_code == 200
    rebound = client.get("/api/sessions", headers={"host": "attacker.example:8000"})
    assert rebound.status_code == 400
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(
            "ws://attacker.example:8000/ws", headers={"origin": "http://attacker.example:8000"}
        ):
            pass
    assert refused.value.code == 1008
    # With a token any host name is fine: the token is the protection.
    tokened = make_client(token=TOKEN)
    assert tokened.get("/api/sessions", headers={"host": "192.168.1.20:8000", "authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_request_bodies_are_bounded(client, manager):
    runner = manager.add_runner("rep1")
    big = {"text": "x" * 20000}
    response = client.post("/api/sessions/rep1/annotations", json=big)
    assert response.status_code == 413
    assert response.json() == {"detail": "request body larger than 16384 bytes"}

    def chunks():  # no Content-Length: counted while read
        for _ in range(20):
            yield b"x" * 1000

    streamed = client.post(
        "/api/sessions/rep1/annotations", content=chunks(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    assert runner.events == []


def test_cross_site_form_posts_are_not_json(client, manager):
    runner = manager.add_runner("rep1")
    form = client.post(
        "/api/sessions/rep1/annotations", content=b'{"text": "x"}', headers={"content-type": "text/plain"}
    )
    assert form.status_code == 422
    assert runner.events == []


def test_token_and_host_helpers():
    assert check_token(TOKEN) == TOKEN
    for bad in ("short", "has space in it", "semi;colon-token", "x" * 300):
        with pytest.raises(ValueError, match="URL-safe"):
            check_token(bad)
    with pytest.raises(ValueError):
        create_app(object(), token="bad token")
    assert host_name("127.0.0.1:8000") == "127.0.0.1"
    assert host_name("[::1]:8000") == "::1"
    assert host_name("LocalHost") == "localhost"
    assert host_name("::1") == "::1"


def test_a_browser_without_the_token_gets_a_plain_page(guarded):
    page = guarded.get("/practitioner", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.status_code == 401
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "needs its access code" in page.text
    assert TOKEN not in page.text
    assert "<script" not in page.text
    assert "set-cookie" not in page.headers


# -- every route, whatever it is, for a host beyond loopback ----------------------------

LAN = "http://192.168.1.20:8000"  # the dashboard served on a home network: token required


def fill(path: str) -> str:
    """A route path with every {parameter} filled in with the held session's id."""
    return re.sub(r"\{[^}]+\}", "rep1", path)


def every_route_request(app) -> tuple[list[tuple[str, str]], list[str]]:
    """(method, path) of every HTTP route (HEAD included) and path of every WebSocket
    route in ``app.routes``. A route of a kind not known here fails the test, so that
    a new kind of route cannot slip past the token check unnoticed."""
    http, websockets = [], []
    for route in app.routes:
        if isinstance(route, WebSocketRoute):  # FastAPI's APIWebSocketRoute is one too
            websockets.append(fill(route.path))
        elif isinstance(route, Mount):
            static = Path(route.app.directory)
            http += [("GET", f"{route.path}/{name}") for name in sorted(p.name for p in static.iterdir() if p.is_file())]
            http.append(("GET", f"{route.path}/"))
        elif isinstance(route, (APIRoute, Route)):
            http += [(method, fill(route.path)) for method in sorted(route.methods or ())]
        else:
            pytest.fail(f"a route of unknown kind {type(route).__name__} at {getattr(route, 'path', '?')}")
    return http, websockets


def test_every_route_refuses_another_host_without_the_token(make_client, manager):
    manager.add_runner("rep1")
    client = make_client(token=TOKEN)
    client.base_url = LAN
    http, websockets = every_route_request(client.app)
    assert len(http) > 12 and websockets == ["/ws"]
    for method, path in http:
        body = {"text": "x"} if method == "POST" else None
        response = client.request(method, LAN + path, json=body)
        assert response.status_code == 401, (method, path, response.status_code)
        assert "coreg_token" not in response.headers.get("set-cookie", "")
        assert response.headers.get("content-type", "").startswith("application/json")
    for path in websockets:
        for url in (LAN.replace("http", "ws") + path, LAN.replace("http", "ws") + path + "?token=wrong-token-1"):
            with client.websocket_connect(url) as ws:
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
            assert closed.value.code == 4401, url
    assert manager.started == [] and manager.runners["rep1"].calls == [] and manager.runners["rep1"].events == []

    # The same routes exist and answer once the token is there (so the list is real).
    for method, path in http:
        if method in ("GET", "HEAD") and not path.endswith("/static/"):
            response = client.request(method, LAN + path, headers={"authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200, (method, path)
    with client.websocket_connect(LAN.replace("http", "ws") + f"/ws?token={TOKEN}") as ws:
        assert ws.receive_json()["type"] == "snapshot"


def test_the_token_does_not_excuse_a_foreign_origin(make_client, manager):
    manager.add_runner("rep1")
    client = make_client(token=TOKEN)
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect(f"{LAN.replace('http', 'ws')}/ws?token={TOKEN}", headers={"origin": "http://evil.example"}):
            pass
    assert refused.value.code == 1008
    posted = client.post(
        f"{LAN}/api/sessions/rep1/stop", headers={"authorization": f"Bearer {TOKEN}", "origin": "http://evil.example"}
    )
    assert posted.status_code == 403 and manager.runners["rep1"].calls == []


def test_annotations_over_their_length_bounds_are_refused(client, manager):
    runner = manager.add_runner("rep1")
    for body in ({"text": "x" * 501}, {"text": "x", "author": "y" * 61}, {"text": "   "}, {"text": "a\u0007b"}):
        response = client.post("/api/sessions/rep1/annotations", json=body)
        assert response.status_code == 422, body
    assert runner.events == []


# -- the file system ---------------------------------------------------------------------


def asgi_get(app, raw_path: bytes) -> tuple[int, bytes]:
    """GET a raw, unnormalised path straight through the ASGI app (an HTTP client would
    resolve the dot segments before sending)."""
    path = raw_path.split(b"?")[0]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": unquote_to_bytes(path).decode("latin-1"), "raw_path": path, "root_path": "", "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")], "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


TRAVERSALS = [
    b"/static/../app.py",
    b"/static/../../pyproject.toml",
    b"/static/%2e%2e/app.py",
    b"/static/%2e%2e%2fapp.py",
    b"/static/..%2f..%2fpyproject.toml",
    b"/static/..%5capp.py",
    b"/static/vendor/../../security.py",
    b"/static//etc/passwd",
    b"/static/%2fetc%2fpasswd",
    b"/static/./../app.py",
    b"/static/couple.js%00.py",
]


@pytest.mark.parametrize("raw_path", TRAVERSALS)
def test_static_files_never_leave_the_static_folder(client, raw_path):
    status, body = asgi_get(client.app, raw_path)
    assert status in (400, 404), (raw_path, status)
    for secret in (b"def create_app", b"[project]", b"root:", b"class Guard"):
        assert secret not in body


def test_a_replay_source_cannot_read_other_files(tmp_path):
    """Replaying a file by path (the practitioner view's replay form) reads only files
    named *.jsonl / *.jsonl.gz, after following links, and says nothing of what a
    file that is not a recording holds."""
    from monitor.sessions import SessionManager
    from monitor.store import Store

    data = tmp_path / "data"
    data.mkdir()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    secret = "TOPSECRET-42"
    (outside / "notes.jsonl").write_text(f'{{"password": "{secret}"}}\n')
    (outside / "notes.txt").write_text(secret)
    (outside / "link.jsonl").symlink_to(outside / "notes.txt")
    (outside / "bad.jsonl").write_bytes(b"\xff\xfe" + secret.encode())
    store = Store(data / "coreg.db")
    with TestClient(create_app(SessionManager(store)), base_url=BASE, raise_server_exceptions=False) as client:
        for source in (
            "/etc/passwd", "/etc/shadow", str(outside / "notes.txt"), str(outside / "link.jsonl"),
            str(outside / "notes.jsonl"), str(outside / "bad.jsonl"), str(data / ".." / "elsewhere" / "notes.txt"),
            str(outside / "missing.jsonl"), "~root/x.jsonl", "../../../../etc/passwd",
        ):
            response = client.post("/api/sessions", json={"kind": "replay", "source": source})
            assert response.status_code == 422, (source, response.text)
            assert secret not in response.text and "root:" not in response.text, source
        assert client.get("/api/sessions").json() == []
    store.close()
