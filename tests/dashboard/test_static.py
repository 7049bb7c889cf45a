"""The static pages: vendored, offline, no HTML built from data, ids that exist."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dashboard.app import STATIC_DIR

OWN_JS = sorted(p for p in STATIC_DIR.glob("*.js"))
OWN_FILES = sorted(p for p in STATIC_DIR.iterdir() if p.suffix in (".html", ".js", ".css"))
PAGES = {"couple.html": ["couple.js", "feed.js"], "practitioner.html": ["practitioner.js", "charts.js", "feed.js"]}


def text(name: str) -> str:
    return (STATIC_DIR / name).read_text(encoding="utf-8")


def test_upot_is_vendored_with_its_licence():
    vendor = STATIC_DIR / "vendor"
    script = (vendor / "uPlot.iife.min.js").read_text(encoding="utf-8")
    assert script.startswith("/*! https://github.com/leeoniya/uPlot (v1.6.")
    assert "var uPlot=" in script
    assert (vendor / "uPlot.min.css").read_text(encoding="utf-8").startswith(".uplot")
    licence = (vendor / "uPlot.LICENSE").read_text(encoding="utf-8")
    assert "The MIT License" in licence and "Leon Sorokin" in licence


def test_the_files_the_views_need_exist():
    assert {p.name for p in OWN_FILES} >= {
        "couple.html", "couple.js", "couple.css", "practitioner.html", "practitioner.js", "practitioner.css",
        "charts.js", "feed.js",
    }


def test_no_script_builds_html_from_strings():
    """Everything a person typed or a session holds is set as text, never parsed as HTML."""
    forbidden = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|srcdoc")
    for path in OWN_JS:
        source = path.read_text(encoding="utf-8")
        assert not forbidden.search(source), path.name
        assert not re.search(r"setAttribute\(\s*[\"']on", source), path.name
        assert "textContent" in source or path.name == "charts.js", path.name


def test_nothing_is_loaded_from_outside():
    for path in OWN_FILES:
        source = path.read_text(encoding="utf-8")
        assert not re.search(r"https?://", source), path.name
        assert not re.search(r"(src|href)=[\"']//", source), path.name
        assert "@import" not in source, path.name
    for page in PAGES:
        html = text(page)
        refs = re.findall(r"(?:src|href)=\"([^\"]*)\"", html)
        assert refs and all(r.startswith("/static/") for r in refs), refs
        for ref in refs:
            assert (STATIC_DIR / ref.removeprefix("/static/")).is_file(), ref
        # Scripts only from files (the Content-Security-Policy forbids inline ones).
        assert re.findall(r"<script(?![^>]*\ssrc=)", html) == []
        assert not re.search(r"\son[a-z]+=", html)


def test_modules_import_only_files_that_exist():
    for path in OWN_JS:
        for target in re.findall(r"from\s+\"(\./[^\"]+)\"", path.read_text(encoding="utf-8")):
            assert (STATIC_DIR / target).is_file(), (path.name, target)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_every_element_a_script_looks_up_is_on_its_page(page):
    html = text(page)
    ids = set(re.findall(r"\sid=\"([\w-]+)\"", html))
    classes = set(c for group in re.findall(r"\sclass=\"([^\"]+)\"", html) for c in group.split())
    for script in PAGES[page]:
        source = text(script)
        for wanted in re.findall(r"\$\(\"#([\w-]+)\"", source):
            assert wanted in ids, (script, wanted)
        for wanted in re.findall(r"\$\(\"\.([\w-]+)\"", source):
            assert wanted in classes, (script, wanted)


def test_the_couple_view_stays_gentle():
    source = text("couple.js")
    shown = re.findall(r"return \"([^\"]+)\"", source)
    assert "settling in…" in shown and "both steady" in shown
    for word in ("alarm", "danger", "warning", "wrong", "fault", "blame", "stop", "!"):
        assert all(word not in s.lower() for s in shown), word
    assert '"We paused"' in source and '"Thanks"' in source
    css = re.sub(r"/\*.*?\*/", "", text("couple.css").lower(), flags=re.S)
    for red in (r"\bred\b", "#f00\\b", "#ff0000", "crimson", r"rgb\(255[ ,]+0[ ,]+0"):
        assert not re.search(red, css), red
    # Activation mixes the shapes from sea-green towards apricot, nothing warmer.
    assert "--calm: #8fd3c9;" in css and "--warmth: #f0b48a;" in css
    assert "color-mix(in oklab, var(--calm), var(--warmth) calc(var(--warm) * 100%))" in css
    source = text("couple.js")
    assert "const CALM_RGB = [143, 211, 201];" in source and "const WARM_RGB = [240, 180, 138];" in source


NODE_CHECK = """
import { SessionModel, clock } from %s;
const m = new SessionModel();
const tick = (t, extra = {}) => ({ type: "tick", t, partners: { a: {}, b: {} }, linkage: {}, patterns: [], ...extra });
const out = {};
out.idle = m.idle;
m.apply({ type: "snapshot", session: { id: "s1", partners: { a: { name: "Ana" }, b: { name: "" } } },
          ticks: [tick(1), tick(2)], events: [], replay: { status: "running", can_seek: true } });
out.afterSnapshot = [m.ticks.length, m.idle, m.name("a"), m.name("b")];
out.duplicate = m.apply(tick(2));
out.fresh = m.apply(tick(3));
for (const e of [
  { t: 180, kind: "settled", partner: "a", baseline: { hr_mean_bpm: 70 } },
  { t: 300, kind: "pattern_start", partner: "a", pattern: "divergence" },
  { t: 350, kind: "pattern_start", partner: null, pattern: "escalation" },
  { t: 400, kind: "pattern_end", partner: "a", pattern: "divergence" },
]) m.apply({ type: "event", event: e });
out.spans = m.patternSpans();
out.baselines = m.baselines();
out.state = [m.apply({ type: "state", status: "paused", position_s: 3, can_seek: true }), m.state.status, m.running()];
out.now = m.now();
m.apply({ type: "resync", session: { id: "s1" }, ticks: [tick(1)], events: [], replay: null });
out.afterResync = [m.ticks.length, m.events.length, m.state];
out.unknown = m.apply({ type: "mystery" });
out.idleAgain = [m.apply({ type: "idle" }), m.idle, m.session];
out.clock = [clock(0), clock(65.9), clock(3725)];
console.log(JSON.stringify(out));
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_session_model_in_the_browser_script():
    """feed.js's SessionModel, run by node: duplicates dropped, spans, baselines, resets."""
    module = json.dumps((STATIC_DIR / "feed.js").as_uri())
    result = subprocess.run(
        ["node", "--input-type=module", "-e", NODE_CHECK % module], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["idle"] is True
    assert out["afterSnapshot"] == [2, False, "Ana", "Partner B"]
    assert out["duplicate"] is None and out["fresh"] == "tick"
    assert out["spans"] == [
        {"pattern": "divergence", "partner": "a", "start": 300, "end": 400},
        {"pattern": "escalation", "partner": None, "start": 350, "end": None},
    ]
    assert out["baselines"] == {"a": {"hr_mean_bpm": 70}}
    assert out["state"] == ["state", "paused", True]
    assert out["now"] == 3
    assert out["afterResync"] == [1, 0, None]
    assert out["unknown"] is None
    assert out["idleAgain"] == ["reset", True, None]
    assert out["clock"] == ["0:00", "1:05", "1:02:05"]


def test_docs_pages_that_need_a_cdn_are_not_served(client):
    assert client.get("/docs").status_code == 404
    assert client.get("/redoc").status_code == 404
    assert client.get("/openapi.json").status_code == 200
