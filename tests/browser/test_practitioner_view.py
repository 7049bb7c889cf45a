"""The practitioner view in Chromium against the real demo server: the heart-rate chart
draws both partners' traces and the pattern band, annotations typed on the page are
stored and listed, and typed markup stays text."""

from __future__ import annotations

import uuid

from browser_pages import (
    count_colours,
    divergence,
    expect,
    settle_frames,
    wait_for_drawn,
    wait_for_names,
    wait_for_position,
)

MIN_TRACE_PX = 300  # a 2 px line across the ~900 px plot leaves several hundred


def test_heart_rate_chart_draws_both_traces_and_the_pattern_band(open_tab, demo_server, demo_analysis):
    start, end = divergence(demo_analysis)
    demo_server.hold(0.0)
    tab = open_tab("/practitioner")
    page = tab.page
    wait_for_position(page, 0.0)
    settle_frames(page)
    empty = count_colours(page)
    assert empty is not None and empty["size"][0] > 400
    assert (empty["a"], empty["b"], empty["band"]) == (0, 0, 0)  # no data yet, nothing drawn

    held = start + 0.6 * (end - start)
    demo_server.hold(held)
    wait_for_position(page, held)
    wait_for_drawn(page, min_trace_px=MIN_TRACE_PX, min_band_px=1000)
    drawn = count_colours(page)
    assert drawn["a"] > MIN_TRACE_PX and drawn["b"] > MIN_TRACE_PX
    assert drawn["band"] > 1000  # the divergence band from its start to the held moment

    # Before the divergence the same chart has both traces and no band.
    demo_server.hold(start - 30.0)
    wait_for_position(page, start - 30.0)
    wait_for_drawn(page, min_trace_px=MIN_TRACE_PX)
    settle_frames(page)
    assert count_colours(page)["band"] == 0

    wait_for_names(page, demo_server.names)
    for name in demo_server.names.values():
        expect(page.locator("#chart-hr .u-legend")).to_contain_text(name)
    expect(page.locator("#patterns")).to_have_text("no pattern")
    assert tab.errors == []


def annotate(page, text: str, author: str) -> None:
    page.locator("#note-text").fill(text)
    page.locator("#note-author").fill(author)
    page.locator("#annotate-form button[type=submit]").click()
    expect(page.locator("#note-text")).to_have_value("")  # cleared once the API said yes


def stored_annotations(demo_server, text: str) -> list[dict]:
    return [e for e in demo_server.session()["events"] if e["kind"] == "annotation" and e.get("text") == text]


def test_annotation_typed_on_the_page_is_stored_and_listed(open_tab, demo_server):
    demo_server.hold(500.0)
    tab = open_tab("/practitioner")
    page = tab.page
    wait_for_position(page, 500.0)
    text = f"they turned towards each other {uuid.uuid4().hex[:8]}"
    annotate(page, text, "Dr. Example")

    stored = stored_annotations(demo_server, text)
    assert len(stored) == 1
    assert stored[0]["author"] == "Dr. Example"
    assert stored[0]["t"] == 500.0  # the held replay moment
    item = page.locator("#event-log li.annotation").filter(has_text=text)
    expect(item).to_have_count(1)
    expect(item.locator(".what")).to_have_text(f"{text} — Dr. Example")
    expect(item.locator(".t")).to_have_text("8:20")

    # A new viewer gets it with the session snapshot.
    other = open_tab("/practitioner")
    expect(other.page.locator("#event-log li.annotation .what").filter(has_text=text)).to_have_count(1)
    assert tab.errors == [] and other.errors == []


def test_markup_in_an_annotation_stays_text(open_tab, demo_server):
    demo_server.hold(510.0)
    tab = open_tab("/practitioner")
    page = tab.page
    wait_for_position(page, 510.0)
    payload = "<img src=x onerror=alert(1)>"
    author = "<b>bold</b>"
    annotate(page, payload, author)

    assert [e["author"] for e in stored_annotations(demo_server, payload)] == [author]
    what = page.locator("#event-log li.annotation .what").filter(has_text=payload)
    expect(what).to_have_text(f"{payload} — {author}")
    page.reload()  # the snapshot path renders the log anew
    wait_for_position(page, 510.0)
    expect(page.locator("#event-log li.annotation .what").filter(has_text=payload)).to_have_text(f"{payload} — {author}")
    settle_frames(page)
    assert page.locator('img[src="x"]').count() == 0
    assert page.locator("#event-log b").count() == 0
    assert tab.dialogs == []
    assert tab.errors == []
