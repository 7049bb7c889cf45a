"""What the browser tests share: reading the demo's analysis and looking at the pages.

Imported by the test modules (pytest puts this folder on sys.path, as for
tests/dashboard/dashboard_fakes.py). Playwright is imported lazily so collection
works without it; the fixtures skip, or fail under CI, before any of this runs.
"""

from __future__ import annotations

from typing import Any

# charts.js: each partner's stroke and the divergence band (alpha 0.22 over nothing).
STROKE_RGB = {"a": (0x5F, 0xB8, 0xB0), "b": (0xB3, 0x9D, 0xDB)}
BAND_RGB, BAND_ALPHA = (224, 194, 122), round(0.22 * 255)
HR_CANVAS = "#chart-hr canvas"

# Counts, on the uPlot canvas under `selector`, opaque pixels of each stroke colour and
# translucent pixels of the band colour. Canvas data is not premultiplied, so a band
# pixel keeps its colour to within rounding at alpha 56.
COUNT_COLOURS = """([selector, strokes, band, bandAlpha]) => {
  const canvas = document.querySelector(selector);
  if (!canvas || !canvas.width) return null;
  const px = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const near = (i, rgb, tol) =>
    Math.abs(px[i] - rgb[0]) <= tol && Math.abs(px[i + 1] - rgb[1]) <= tol && Math.abs(px[i + 2] - rgb[2]) <= tol;
  const out = { a: 0, b: 0, band: 0, size: [canvas.width, canvas.height] };
  for (let i = 0; i < px.length; i += 4) {
    if (px[i + 3] >= 250) {
      if (near(i, strokes.a, 6)) out.a++;
      else if (near(i, strokes.b, 6)) out.b++;
    } else if (Math.abs(px[i + 3] - bandAlpha) <= 3 && near(i, band, 8)) {
      out.band++;
    }
  }
  return out;
}"""


def expect(locator: Any) -> Any:
    """Playwright's auto-waiting assertions."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def first_event(analysis: Any, kind: str, **data: Any) -> dict:
    """The first analysis event of ``kind`` whose fields match ``data``, as JSON."""
    for event in analysis.events:
        js = event.to_json()
        if js["kind"] == kind and all(js.get(k) == v for k, v in data.items()):
            return js
    raise AssertionError(f"the demo analysis has no {kind} event with {data}")


def divergence(analysis: Any) -> tuple[float, float]:
    """Start and end (session seconds) of the demo's first divergence."""
    start = first_event(analysis, "pattern_start", pattern="divergence")
    end = first_event(analysis, "pattern_end", pattern="divergence", partner=start["partner"])
    return start["t"], end["t"]


def count_colours(page: Any, selector: str = HR_CANVAS) -> dict | None:
    """Pixel counts {a, b, band, size} of the chart canvas (see COUNT_COLOURS)."""
    return page.evaluate(COUNT_COLOURS, [selector, STROKE_RGB, BAND_RGB, BAND_ALPHA])


def wait_for_drawn(page: Any, *, min_trace_px: int, min_band_px: int = 0, selector: str = HR_CANVAS) -> None:
    """Until both traces (and, if asked, the band) are on the canvas."""
    page.wait_for_function(
        f"(args) => {{ const c = ({COUNT_COLOURS})(args);"
        f" return !!c && c.a > {min_trace_px} && c.b > {min_trace_px} && c.band >= {min_band_px}; }}",
        arg=[selector, STROKE_RGB, BAND_RGB, BAND_ALPHA],
    )


def settle_frames(page: Any) -> None:
    """Two animation frames: charts.js redraws on the next one after new data."""
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def clock(t_s: float) -> str:
    """m:ss as the pages write session time (whole seconds, rounded down)."""
    m, s = divmod(int(t_s), 60)
    return f"{m}:{s:02d}"


def wait_for_position(page: Any, t_s: float, status: str = "paused") -> None:
    """Until the practitioner page shows the replay at t_s (its snapshot is applied)."""
    expect(page.locator("#position")).to_contain_text(f"{clock(t_s)} /")
    expect(page.locator("#session-status")).to_contain_text(status)


def wait_for_names(page: Any, names: dict[str, str]) -> None:
    """Until a page shows the partners' names (they come with the session snapshot)."""
    for p, name in names.items():
        expect(page.locator(f'.partner[data-partner="{p}"] .name')).to_have_text(name)
