"""The couple view in Chromium against the real demo server: the prompt card arrives at
the moment the batch analysis says, with that prompt's exact words, and "We paused"
puts it away for good; the names and the plain state words are shown."""

from __future__ import annotations

import numpy as np
import pytest

from browser_pages import divergence, expect, first_event, wait_for_names

STEADY_BPM = 6.0  # couple.js calls both partners "steady" within this many bpm of baseline


def test_prompt_card_shows_the_analysed_prompt_and_we_paused_dismisses_it(open_tab, demo_server, demo_analysis):
    prompt = first_event(demo_analysis, "prompt")
    t_prompt = prompt["t"]
    assert 300.0 < t_prompt < 450.0  # the demo's first divergence, a few minutes in
    demo_server.hold(t_prompt - 5.0)

    tab = open_tab("/")
    page = tab.page
    card = page.locator("#prompt")
    wait_for_names(tab.page, demo_server.names)
    expect(page.locator("#mood")).to_have_text("paused")
    expect(card).to_be_hidden()  # five seconds before the prompt: nothing to show yet

    demo_server.control("speed", 20.0)
    demo_server.control("play")
    expect(card).to_be_visible(timeout=10_000)
    expect(card.locator(".title")).to_have_text(prompt["title"])
    expect(card.locator('.side[data-partner="a"] .text')).to_have_text(prompt["text_a"])
    expect(card.locator('.side[data-partner="b"] .text')).to_have_text(prompt["text_b"])
    expect(card.locator('.side[data-partner="a"] .who')).to_have_text(demo_server.names["a"])
    expect(card.locator('.side[data-partner="b"] .who')).to_have_text(demo_server.names["b"])
    expect(page.locator("#prompt-ack")).to_have_text("We paused")

    # Hold the replay just after the prompt so every check below sees the same moment.
    state = demo_server.hold(t_prompt + 1.0)
    assert state["status"] == "paused" and state["position_s"] == pytest.approx(t_prompt + 1.0)
    expect(card).to_be_visible()
    page.locator("#prompt-ack").click()
    expect(card).to_be_hidden()

    # Reloaded, the same screen remembers the acknowledgement ...
    page.reload()
    wait_for_names(tab.page, demo_server.names)
    expect(page.locator("#mood")).to_have_text("paused")
    expect(card).to_be_hidden()
    # ... while a screen that never saw it shows the recent prompt to the late joiner.
    other = open_tab("/")
    expect(other.page.locator("#prompt .title")).to_have_text(prompt["title"])
    expect(other.page.locator("#prompt")).to_be_visible()
    assert tab.errors == [] and other.errors == []


def test_names_and_state_words(open_tab, demo_server, demo_analysis):
    start, end = divergence(demo_analysis)
    calm_t = float(max(r.settled_t_s for r in demo_analysis.partners.values())) + 60.0
    assert calm_t + 30.0 < start
    window = (demo_analysis.tick_t_s >= calm_t) & (demo_analysis.tick_t_s <= calm_t + 30.0)
    for p in ("a", "b"):
        assert np.nanmax(np.abs(demo_analysis.partners[p].delta_bpm[window])) <= STEADY_BPM

    # Calm and settled: both steady (played at real speed: "paused" would be said instead).
    demo_server.play_from(calm_t, speed=1.0)
    tab = open_tab("/")
    wait_for_names(tab.page, demo_server.names)
    expect(tab.page.locator("#mood")).to_have_text("both steady")

    # Inside the divergence: said plainly, without naming anyone as the cause.
    middle = (start + end) / 2.0
    demo_server.play_from(middle, speed=1.0)
    expect(tab.page.locator("#mood")).to_have_text("your hearts are moving differently")
    wait_for_names(tab.page, demo_server.names)

    demo_server.hold(middle)
    expect(tab.page.locator("#mood")).to_have_text("paused")
    assert tab.errors == []
