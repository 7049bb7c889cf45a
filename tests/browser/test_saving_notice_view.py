"""The saving notice in Chromium: both views show it while a ``storage`` message says
saving is paused and hide it when saving works again.

The demo server replays a recording, whose saving never pauses, so the test stands
between page and server (Playwright's WebSocket routing): every server message passes
through, and the test adds the two ``storage`` messages a live runner would send.
"""

from __future__ import annotations

import json
import re

import pytest
from browser_pages import expect

VIEWPORT = {"width": 1280, "height": 800}  # as the other browser tests

PAUSED = {"type": "storage", "state": "paused", "reason": "full", "held_rows": 120}
RESUMED = {"type": "storage", "state": "ok"}


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/", "Saving is paused for now. The session goes on and will be saved when it can."),
        ("/practitioner", "Saving is paused: the disk is full. The session goes on and will be saved when it can."),
    ],
)
def test_the_notice_shows_while_saving_is_paused(chromium, demo_server, path, words):
    context = chromium.new_context(viewport=VIEWPORT, device_scale_factor=1)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        sockets = []

        def relay(route) -> None:
            route.connect_to_server()  # the server's messages reach the page unchanged
            sockets.append(route)

        page.route_web_socket(re.compile(r"/ws(\?|$)"), relay)
        page.goto(demo_server.base_url + path)
        notice = page.locator("#saving")
        # The snapshot has arrived once the page shows the session (saving works: no notice).
        if path == "/":
            expect(page.locator("#mood")).not_to_have_text("waiting to begin")
        else:
            expect(page.locator("#session-title")).not_to_have_text(re.compile("^no session"))
        expect(notice).to_be_hidden()
        assert sockets, "the page opened no WebSocket"
        sockets[-1].send(json.dumps(PAUSED))
        expect(notice).to_be_visible()
        expect(notice).to_have_text(words)
        sockets[-1].send(json.dumps(RESUMED))
        expect(notice).to_be_hidden()
        assert errors == []
    finally:
        context.close()
