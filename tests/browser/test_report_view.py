"""The report opened from disk in headless Chromium: it renders offline, figure included.

Uses the module-scoped ``chromium`` fixture of conftest.py (Playwright's sync API is
closed at the end of this module; skipped without Chromium or Playwright unless $CI).
With COREG_SCREENSHOTS=1 the report's summary figure of the divergence fixture is also
copied to docs/screenshots/report.png for the README.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devices.recording import read_records
from monitor.report import write_report

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "sim_divergence.jsonl.gz"


@pytest.fixture(scope="module")
def report_files(tmp_path_factory) -> tuple[Path, Path]:
    header, records = read_records(FIXTURE)
    return write_report(header, records, tmp_path_factory.mktemp("report") / "report.html")


def test_report_opens_offline_with_its_figure(chromium, report_files, tmp_path, screenshot_dir):
    html_path, png_path = report_files
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        requests: list[str] = []
        page.on("request", lambda req: requests.append(req.url))
        page.goto(html_path.as_uri())
        assert page.title() == "coreg session report 2025-01-01"
        img = page.locator("#summary-figure")
        img.scroll_into_view_if_needed()
        page.wait_for_function("document.getElementById('summary-figure').complete")
        width, height = img.evaluate("i => [i.naturalWidth, i.naturalHeight]")
        assert (width, height) == (1200, 650)
        assert page.locator("#for-you p").first.inner_text() == "Your hearts moved apart twice."
        shot = tmp_path / "report-page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        # Only the page itself and its embedded image: nothing fetched from anywhere.
        assert all(url.startswith(("file://", "data:")) for url in requests), requests
    finally:
        context.close()
    if screenshot_dir is not None:
        shutil.copyfile(png_path, screenshot_dir / "report.png")
