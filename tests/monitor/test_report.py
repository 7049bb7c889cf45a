"""The post-session report: numbers equal to the pipeline's, a self-contained page, escaping."""

from __future__ import annotations

import base64
import html
import math
import re
import struct
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from devices.records import Annotation, PartnerInfo
from devices.recording import read_records
from monitor.beats import beats_by_partner
from monitor.cli import main
from monitor.config import Config
from monitor.pipeline import partner_nn
from monitor.report import clock, frequency_domain_hrv, time_domain_hrv, write_report

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NOTE = '<script>alert("hi")</script> pursuit & <b>repair</b>'
AUTHOR = "<i>practitioner</i>"
IMG = re.compile(r'<img [^>]*src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the PNG signature."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def table(page: str, cls: str) -> list[list[str]]:
    """The cells of the report table with class ``cls``, row by row (unescaped)."""
    body = re.search(rf'<table class="{cls}">(.*?)</table>', page, re.S).group(1)
    return [[html.unescape(c) for c in re.findall(r"<td>(.*?)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", body)][1:]


@pytest.fixture(scope="module", params=["sim_divergence", "sim_flooding"])
def made(request, tmp_path_factory):
    """(header, records, html path, png path, page) of a fixture with one marked-up annotation
    and a marked-up partner name added."""
    header, records = read_records(FIXTURES / f"{request.param}.jsonl.gz")
    partners = dict(header.partners)
    partners["b"] = PartnerInfo("Bea <b>&</b> co", partners["b"].device)
    header = replace(header, partners=partners)
    records = sorted([*records, Annotation(500.0, NOTE, AUTHOR)], key=lambda r: r.t_s)
    out = tmp_path_factory.mktemp("report") / "session.html"
    html_path, png_path = write_report(header, records, out)
    from monitor.pipeline import analyze_records

    analysis = analyze_records(header, records)
    return header, records, analysis, html_path, png_path, html_path.read_text(encoding="utf-8")


def test_baseline_numbers_as_shown(made):
    _, _, analysis, _, _, page = made
    rows = table(page, "baseline")
    assert len(rows) == 2
    for row, res in zip(rows, analysis.partners.values()):
        b = res.baseline
        assert row[1:5] == [f"{b.hr_mean_bpm:.1f}", f"{b.hr_sd_bpm:.1f}", f"{b.ln_rmssd_mean:.2f}", f"{b.ln_rmssd_sd:.2f}"]
        assert row[5] == "3:00"  # the default 3-minute settle-in


def test_prompts_patterns_and_recovery(made):
    _, _, analysis, _, _, page = made
    prompts = [e for e in analysis.events if e.kind == "prompt"]
    recovered = {e.data["prompt_t"]: e.data["recovery_s"] for e in analysis.events if e.kind == "recovered"}
    rows = table(page, "prompts")
    assert [r[0] for r in rows] == [clock(e.t_s) for e in prompts]
    assert [r[2] for r in rows] == [e.data["pattern"] for e in prompts]
    assert [r[4] for r in rows] == [clock(recovered[e.t_s]) for e in prompts]
    for pattern in {e.data["pattern"] for e in prompts}:
        assert pattern in [r[1] for r in table(page, "shares")]


PLAIN_WORDS = {
    # sim_divergence: two divergences, recoveries 220 s and 184 s
    2: ["Your hearts moved apart twice.", "After each pause you both came back within about 4 minutes."],
    # sim_flooding: one divergence and one flooding, recoveries 389 s and 370 s
    1: ["Your hearts moved apart once.", "Once, a heart beat fast enough that a longer break was suggested.",
        "After each pause you both came back within about 7 minutes."],
}


def test_plain_words_for_the_couple(made):
    _, _, analysis, _, _, page = made
    n_apart = sum(e.kind == "pattern_start" and e.data["pattern"] == "divergence" for e in analysis.events)
    words = re.search(r'<section class="couple" id="for-you">(.*?)</section>', page, re.S).group(1)
    assert re.findall(r"<p>(.*?)</p>", words)[:-1] == PLAIN_WORDS[n_apart]


def test_pattern_shares(made):
    _, _, analysis, _, _, page = made
    shares = {r[1]: r[2] for r in table(page, "shares")}
    from monitor.summary import summarize

    for pattern, share in summarize(analysis)["pattern_share"].items():
        assert shares[pattern] == f"{100 * share:.1f} %"


def test_embedded_png_is_the_written_figure(made):
    _, _, _, _, png_path, page = made
    found = IMG.findall(page)
    assert len(found) == 1
    data = base64.b64decode(found[0], validate=True)
    assert png_size(data) == (1200, 650)
    assert png_path.exists() and png_path.name == "session.png"
    assert png_path.read_bytes() == data


def test_self_contained(made):
    page = made[-1]
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and "<script" not in page
    refs = re.findall(r'(?:src|href|action)="([^"]*)"', page)
    assert len(refs) == 1 and refs[0].startswith("data:image/png;base64,")


def test_data_text_is_escaped(made):
    page = made[-1]
    assert NOTE not in page and AUTHOR not in page and "<b>&</b>" not in page
    assert html.escape(NOTE) in page and html.escape(AUTHOR) in page
    assert "Bea &lt;b&gt;&amp;&lt;/b&gt; co" in page
    assert table(page, "annotations") == [["1", "8:20", AUTHOR, NOTE]]


def test_quality_table(made):
    _, _, analysis, _, _, page = made
    rows = table(page, "quality")
    for row, res in zip(rows, analysis.partners.values()):
        assert row[1] == str(res.n_raw_beats)
        assert row[2].startswith(f"{res.n_corrected_beats} (")
        assert row[4] == f"{float(np.sum(~res.ticks.connected)):.0f} s"


def test_hrv_against_a_hand_computation_and_neurokit(made):
    header, records, analysis, _, _, page = made
    cfg = Config()
    beats = beats_by_partner(records, ("a", "b"), cfg.beats)
    rows = table(page, "hrv")
    for row, p in zip(rows, ("a", "b")):
        nn, _ = partner_nn(beats[p], cfg)
        nn_ms = nn.nn_units * 1000.0 / 1024.0
        ok = nn.contiguous[1:]
        diffs = np.diff(nn_ms)[ok]
        want = (60_000.0 / nn_ms.mean(), nn_ms.std(ddof=1), math.sqrt(np.mean(diffs**2)))
        got = time_domain_hrv(nn, cfg.metrics)
        assert (got.mean_hr_bpm, got.sdnn_ms, got.rmssd_ms) == pytest.approx(want, rel=1e-9)
        assert row[1:5] == [str(len(nn_ms)), f"{want[0]:.1f}", f"{want[1]:.1f}", f"{want[2]:.1f}"]
        lf, hf, ratio = frequency_domain_hrv(nn.t_s, nn_ms)
        assert all(math.isfinite(x) and x > 0 for x in (lf, hf, ratio))
        assert ratio == pytest.approx(lf / hf, rel=1e-9)
        assert row[5:8] == [f"{lf:.0f}", f"{hf:.0f}", f"{ratio:.2f}"]


def test_frequency_domain_needs_two_minutes():
    t_s = np.cumsum(np.full(100, 0.8))  # 80 s of beats
    assert all(math.isnan(x) for x in frequency_domain_hrv(t_s, np.full(100, 800.0)))


def test_cli_report_from_a_file_and_a_stored_session(tmp_path, capsys):
    fixture = FIXTURES / "sim_divergence.jsonl.gz"
    assert main(["report", str(fixture), "--out", str(tmp_path / "file.html")]) == 0
    assert (tmp_path / "file.html").exists() and png_size((tmp_path / "file.png").read_bytes()) == (1200, 650)

    from monitor.store import Store

    db = tmp_path / "c.db"
    with Store(db) as store:
        session_id = store.import_recording(fixture, label="Tuesday <evening>")
    out = tmp_path / "stored.html"
    assert main(["report", session_id, "--db", str(db), "--out", str(out)]) == 0
    page = out.read_text(encoding="utf-8")
    assert "<title>coreg session report: Tuesday &lt;evening&gt;</title>" in page
    assert main(["report", "nosuchsession", "--db", str(db), "--out", str(out)]) == 2
    assert "no session" in capsys.readouterr().err


def test_dashboard_serves_the_report(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from dashboard.app import create_app
    from monitor.store import Store

    class Manager:  # what the report route needs of a session manager
        def __init__(self, store):
            self.store = store

        def get(self, session_id):
            return None

    with Store(tmp_path / "c.db") as store:
        session_id = store.import_recording(FIXTURES / "sim_flooding.jsonl.gz")
        with TestClient(create_app(Manager(store)), base_url="http://127.0.0.1:8000") as client:
            resp = client.get(f"/api/sessions/{session_id}/report")
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
            assert len(IMG.findall(resp.text)) == 1 and "flooding" in resp.text
            assert client.get("/api/sessions/nosuch/report").status_code == 404


def test_a_stored_session_is_reported_with_the_settings_it_ran_with(tmp_path):
    from devices.recording import read_records
    from monitor.store import Store

    header, records = read_records(FIXTURES / "sim_divergence.jsonl.gz")
    db = tmp_path / "c.db"
    with Store(db) as store:
        ran_with = store.create_session(header, label="", kind="live", config={"baseline": {"settle_in_s": 150.0}})
        older = store.create_session(header, label="", kind="live", config={"baseline": {"no_longer_known": 1}})
        for session_id in (ran_with, older):
            for record in records[:4000]:
                store.add_record(session_id, record)
            store.finish_session(session_id, "finished")
    for session_id, settle_in in ((ran_with, 150.0), (older, 180.0)):
        out = tmp_path / f"{session_id}.html"
        assert main(["report", session_id, "--db", str(db), "--out", str(out)]) == 0
        assert f"&quot;settle_in_s&quot;: {settle_in}" in out.read_text(encoding="utf-8")
