"""Screenshots of both views at a telling moment of the demo: the couple view with the
prompt card up, the practitioner view with both traces and the divergence band.

Always written under the test's tmp_path; with COREG_SCREENSHOTS=1 also written to
docs/screenshots/ for the README (so ordinary runs never touch the tree).
"""

from __future__ import annotations

import shutil
import struct

from browser_pages import divergence, expect, first_event, wait_for_drawn, wait_for_names, wait_for_position

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SETTLE_MS = 1500  # couple.css eases the shapes' size and colour over 1.2 s


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first, right after the signature)."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_screenshots_of_both_views(open_tab, demo_server, demo_analysis, tmp_path, screenshot_dir):
    prompt = first_event(demo_analysis, "prompt")
    start, end = divergence(demo_analysis)

    # The couple view a few seconds after the prompt, still playing: card and words.
    demo_server.play_from(prompt["t"] + 6.0, speed=1.0)
    couple = open_tab("/").page
    wait_for_names(couple, demo_server.names)
    expect(couple.locator("#prompt .title")).to_have_text(prompt["title"])
    expect(couple.locator("#prompt")).to_be_visible()
    expect(couple.locator("#mood")).to_have_text("your hearts are moving differently")
    couple.wait_for_timeout(SETTLE_MS)
    couple_png = tmp_path / "couple.png"
    couple.screenshot(path=str(couple_png))

    # The practitioner view well into the divergence: traces, band and prompt line.
    held = start + 0.75 * (end - start)
    demo_server.hold(held)
    practitioner = open_tab("/practitioner").page
    wait_for_position(practitioner, held)
    wait_for_names(practitioner, demo_server.names)
    wait_for_drawn(practitioner, min_trace_px=300, min_band_px=1000)
    practitioner_png = tmp_path / "practitioner.png"
    practitioner.screenshot(path=str(practitioner_png))

    for path in (couple_png, practitioner_png):
        assert png_size(path) == (1280, 800)
    if screenshot_dir is not None:
        shutil.copyfile(couple_png, screenshot_dir / "couple.png")
        shutil.copyfile(practitioner_png, screenshot_dir / "practitioner.png")
