"""Tests for monitor/store.py: the SQLite session store."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

import monitor.store as store_module
import monitor.store_reading as store_reading
from devices.recording import RecordingError, RecordingWarning, read_records
from devices.records import Annotation, Notification, PartnerInfo, SessionHeader, StatusChange
from monitor.events import Event
from monitor.store import HEARTBEAT_STALE_S, SessionInfo, Store, StoreError, default_db_path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
DIVERGENCE = FIXTURES / "sim_divergence.jsonl.gz"
CALM = FIXTURES / "sim_calm.jsonl.gz"
PVC = FIXTURES / "polar_h10_pvc.jsonl"
HEADER = SessionHeader(
    "2025-03-01T18:30:00Z", {"a": PartnerInfo("Ana", "Polar H10"), "b": PartnerInfo("Ben", "Garmin HRM-Pro")}
)
CONFIG = {"baseline": {"settle_s": 180.0}, "detector": {"hold_s": 20.0}}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def committed(db: Path, table: str, session_id: str) -> int:
    """Rows of a session that another connection can see, i.e. committed rows."""
    with sqlite3.connect(db) as conn:
        return conn.execute(f"SELECT count(*) FROM {table} WHERE session_id = ?", (session_id,)).fetchone()[0]


def raw(db: Path, sql: str, args: tuple = ()) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        with conn:
            return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def divergence():
    return read_records(DIVERGENCE)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "data" / "coreg.db"


EVENTS = [
    Event(12.0, "connected", "a"),
    Event(181.5, "settled", "a", {"baseline_hr_bpm": 64.2}),
    Event(380.0, "prompt", "a", {"pattern": "divergence", "title": "A pause", "text_a": "x", "text_b": "y"}),
    Event(512.25, "pattern_end", "a", {"pattern": "divergence", "nested": {"k": [1, None, "ü"]}}),
]


# -- writing and reading back ---------------------------------------------------------


def test_a_session_round_trips_records_events_and_summary(db, divergence):
    header, records = divergence
    with Store(db) as store:
        sid = store.create_session(header, label="evening talk", kind="replay", config=CONFIG, source=str(DIVERGENCE))
        assert len(sid) == 12 and int(sid, 16) >= 0
        assert store.get_session(sid).status == "live"
        for record in records:
            store.add_record(sid, record)
        for event in EVENTS:
            store.add_event(sid, event)
        store.finish_session(sid)
        info = store.get_session(sid)
        assert list(store.records(sid)) == records
        assert store.events(sid) == [event.to_json() for event in EVENTS]
        assert store.header(sid) == header
    n_hrm = sum(isinstance(r, Notification) for r in records)
    assert n_hrm == 2399 and len(records) == 2401  # 2399 notifications and two status records
    assert (info.id, info.label, info.kind, info.status) == (sid, "evening talk", "replay", "finished")
    assert (info.n_notifications, info.n_events) == (n_hrm, len(EVENTS))
    assert info.duration_s == max(r.t_s for r in records) == 1199.567255
    assert info.started_at == "2025-01-01T19:00:00Z"
    assert datetime.fromisoformat(info.ended_at).tzinfo is not None
    assert info.partners == header.to_json()["partners"] and info.config == CONFIG
    assert info.source == str(DIVERGENCE)
    assert info.to_json() == {
        "id": sid, "label": "evening talk", "kind": "replay", "status": "finished",
        "started_at": "2025-01-01T19:00:00Z", "ended_at": info.ended_at, "partners": info.partners,
        "config": CONFIG, "source": str(DIVERGENCE), "duration_s": 1199.567255,
        "n_notifications": 2399, "n_events": 4,
    }


def test_duration_counts_events_after_the_last_record(db):
    with Store(db) as store:
        sid = store.create_session(HEADER, label="", kind="demo", config={})
        store.add_record(sid, Notification(3.5, "a", b"\x00\x48"))
        store.add_record(sid, StatusChange(4.0, "b", "disconnected"))
        store.add_event(sid, Event(9.25, "disconnected", "b"))
        store.finish_session(sid)
        info = store.get_session(sid)
    assert (info.duration_s, info.n_notifications, info.n_events) == (9.25, 1, 1)


def test_two_sessions_interleaved_do_not_mix(db, divergence):
    _, div_records = divergence
    calm_header, calm_records = read_records(CALM)
    with Store(db) as store:
        s1 = store.create_session(calm_header, label="one", kind="demo", config={})
        s2 = store.create_session(HEADER, label="two", kind="live", config={})
        for r1, r2 in zip(calm_records, div_records[:500]):
            store.add_record(s1, r1)
            store.add_record(s2, r2)
        store.add_event(s1, EVENTS[0])
        store.add_event(s2, EVENTS[1])
        store.add_event(s2, EVENTS[2])
        store.add_annotation(s2, 400.0, "pursuit starts", "practitioner")
        store.finish_session(s1)
        store.finish_session(s2)
        assert list(store.records(s1)) == calm_records[:500]
        assert list(store.records(s2)) == div_records[:500] + [Annotation(400.0, "pursuit starts", "practitioner")]
        assert store.events(s1) == [EVENTS[0].to_json()]
        assert [e["kind"] for e in store.events(s2)] == ["settled", "prompt", "annotation"]
        assert store.header(s1) == calm_header and store.header(s2) == HEADER
        one, two = store.get_session(s1), store.get_session(s2)
        assert {info.id for info in store.list_sessions()} == {s1, s2}
    assert one.n_notifications == sum(isinstance(r, Notification) for r in calm_records[:500])
    assert two.n_notifications == sum(isinstance(r, Notification) for r in div_records[:500])
    assert (one.n_events, two.n_events) == (1, 3)


def test_records_are_streamed_in_chunks_in_time_order(db, monkeypatch):
    monkeypatch.setattr(store_reading, "CHUNK_ROWS", 4)
    # Equal times across chunk boundaries, and one record added out of time order.
    records = [Notification(t, "a" if i % 2 else "b", bytes([0x00, 60 + i])) for i, t in
               enumerate([0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 3.0])]
    late = Notification(0.5, "a", b"\x00\x99")
    with Store(db) as store:
        sid = store.create_session(HEADER, label="", kind="demo", config={})
        for record in records:
            store.add_record(sid, record)
        store.add_record(sid, late)
        stream = store.records(sid)
        assert not isinstance(stream, list)
        assert next(stream) == records[0]
        assert list(stream) == [late] + records[1:]


def test_the_listing_is_newest_first(db):
    with Store(db) as store:
        old = store.create_session(SessionHeader("2024-01-01T10:00:00Z"), label="old", kind="demo", config={})
        new = store.create_session(SessionHeader("2025-06-01T10:00:00Z"), label="new", kind="demo", config={})
        assert [info.id for info in store.list_sessions()] == [new, old]


# -- crash safety ---------------------------------------------------------------------


def test_records_are_committed_once_the_interval_has_passed(db):
    clock = FakeClock()
    store = Store(db, commit_interval_s=1.0, clock=clock)
    sid = store.create_session(HEADER, label="", kind="live", config={})
    for i in range(3):
        clock.now_s += 0.25  # steps exact in binary, so 4 of them make exactly 1 s
        store.add_record(sid, Notification(i, "a", b"\x00\x40"))
    assert committed(db, "records", sid) == 0  # 0.75 s since the last commit
    clock.now_s += 0.25
    store.add_event(sid, Event(3.0, "connected", "b"))
    assert (committed(db, "records", sid), committed(db, "events", sid)) == (3, 1)
    store.add_record(sid, Notification(4.0, "a", b"\x00\x40"))
    assert committed(db, "records", sid) == 3
    store.flush()
    assert committed(db, "records", sid) == 4
    assert raw(db, "SELECT n_notifications, n_events, duration_s FROM sessions")[0] == (4, 1, 4.0)
    store.close()


def test_each_commit_stamps_the_heartbeat(db):
    clock = FakeClock()
    with Store(db, clock=clock) as store:
        sid = store.create_session(HEADER, label="", kind="live", config={})
        ((pid, heartbeat),) = raw(db, "SELECT writer_pid, heartbeat FROM sessions")
        assert pid == os.getpid() and abs(heartbeat - time.time()) < 3600
        raw(db, "UPDATE sessions SET heartbeat = 5")
        store.add_record(sid, Notification(0.0, "a", b"\x00\x40"))  # no commit yet
        assert raw(db, "SELECT heartbeat FROM sessions")[0][0] == 5
        clock.now_s += 1.0
        store.add_record(sid, Notification(1.0, "a", b"\x00\x40"))
        assert raw(db, "SELECT heartbeat FROM sessions")[0][0] > 5
        raw(db, "UPDATE sessions SET heartbeat = 5")
        store.flush()  # nothing new, stamped a moment ago: the row is left alone
        assert raw(db, "SELECT heartbeat FROM sessions")[0][0] == 5
        clock.now_s += HEARTBEAT_STALE_S / 5
        store.flush()  # with nothing buffered, still a sign of life
        assert raw(db, "SELECT heartbeat FROM sessions")[0][0] > 5


def test_a_session_killed_with_sigkill_is_recovered_with_every_committed_record(db, divergence):
    header, records = divergence
    db.parent.mkdir(mode=0o700)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    writer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("store_writer.py")), str(db), str(DIVERGENCE), "0.2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    watchdog = threading.Timer(60, writer.kill)
    watchdog.start()
    try:
        first = writer.stdout.readline()
        assert first.startswith("session "), writer.stderr.read()
        sid = first.split()[1]
        reported = 0
        while reported < len(records) // 2:  # kill it halfway through the fixture
            line = writer.stdout.readline()
            assert line, f"the writer stopped early: {writer.stderr.read()}"
            if line.startswith("committed "):
                reported = int(line.split()[1])
        os.kill(writer.pid, signal.SIGKILL)
        assert writer.wait() == -signal.SIGKILL
        # Lines it printed before dying may still sit in the pipe.
        for line in writer.stdout.read().splitlines():
            if line.startswith("committed "):
                reported = max(reported, int(line.split()[1]))
    finally:
        watchdog.cancel()
        writer.kill()
        writer.wait()
        writer.stdout.close()
        writer.stderr.close()

    with Store(db) as store:
        assert store.get_session(sid).status == "live"
        assert store.recover_interrupted() == [sid]
        assert store.recover_interrupted() == []
        info = store.get_session(sid)
        kept = list(store.records(sid))
        exported = store.export(sid, db.parent / "killed.jsonl")
    print(f"\nSIGKILL: {reported} records reported committed, {len(kept)} present, of {len(records)}")
    assert info.status == "interrupted" and info.ended_at is not None
    assert reported <= len(kept) <= len(records)
    assert kept == records[: len(kept)]
    assert info.n_notifications == sum(isinstance(r, Notification) for r in kept)
    assert info.duration_s == kept[-1].t_s
    assert read_records(exported) == (header, kept)


def test_a_stale_heartbeat_or_a_dead_writer_makes_a_session_interrupted(db):
    writer = Store(db)
    other = Store(db)
    try:
        fresh = writer.create_session(HEADER, label="fresh", kind="live", config={})
        stale = writer.create_session(HEADER, label="stale", kind="live", config={})
        dead = writer.create_session(HEADER, label="dead", kind="live", config={})
        finished = writer.create_session(HEADER, label="done", kind="live", config={})
        writer.finish_session(finished)
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        raw(db, "UPDATE sessions SET heartbeat = ? WHERE id = ?", (time.time() - 60, stale))
        raw(db, "UPDATE sessions SET writer_pid = ? WHERE id = ?", (int(gone.stdout), dead))
        assert writer.recover_interrupted() == []  # its own sessions are never orphans
        assert sorted(other.recover_interrupted()) == sorted([stale, dead])
        status = {info.id: info.status for info in other.list_sessions()}
        assert status == {fresh: "live", stale: "interrupted", dead: "interrupted", finished: "finished"}
        assert other.get_session(stale).ended_at == store_module._utc_iso(
            datetime.fromtimestamp(raw(db, "SELECT heartbeat FROM sessions WHERE id = ?", (stale,))[0][0])
        )
        # The writer was alive all along: its next commit takes the session back.
        writer.add_record(stale, Notification(1.0, "a", b"\x00\x40"))
        writer.flush()
        assert other.get_session(stale).status == "live" and other.get_session(stale).ended_at is None
    finally:
        writer.close()
        other.close()


def test_closing_with_a_live_session_leaves_it_interrupted_and_readable(db):
    store = Store(db)
    sid = store.create_session(HEADER, label="", kind="live", config={})
    store.add_record(sid, Notification(0.25, "b", b"\x00\x50"))
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_sessions()
    with Store(db) as again:
        assert again.get_session(sid).status == "interrupted"
        assert list(again.records(sid)) == [Notification(0.25, "b", b"\x00\x50")]


def test_a_reopened_store_sees_what_was_committed(db):
    clock = FakeClock()
    first = Store(db, clock=clock)
    sid = first.create_session(HEADER, label="kept", kind="live", config=CONFIG)
    first.add_record(sid, Notification(0.5, "a", b"\x00\x40"))
    first.add_event(sid, EVENTS[0])
    first.flush()
    first.add_record(sid, Notification(0.9, "a", b"\x00\x41"))  # buffered, not committed
    with Store(db) as second:
        info = second.get_session(sid)
        assert (info.status, info.n_notifications, info.n_events, info.config) == ("live", 1, 1, CONFIG)
        assert list(second.records(sid)) == [Notification(0.5, "a", b"\x00\x40")]
        assert second.events(sid) == [EVENTS[0].to_json()]
    first.close()


# -- annotations, deletion ------------------------------------------------------------


def test_an_annotation_is_a_record_and_an_event_committed_at_once(db):
    clock = FakeClock()
    with Store(db, commit_interval_s=1.0, clock=clock) as store:
        sid = store.create_session(HEADER, label="", kind="live", config={})
        store.add_record(sid, Notification(10.0, "a", b"\x00\x40"))
        note = store.add_annotation(sid, 12.5, "pursuit starts", "practitioner")
        assert note == Annotation(12.5, "pursuit starts", "practitioner")
        assert (committed(db, "records", sid), committed(db, "events", sid)) == (2, 1)
        assert store.events(sid) == [
            {"t": 12.5, "kind": "annotation", "partner": None, "text": "pursuit starts", "author": "practitioner"}
        ]
        store.add_annotation(sid, 13.0, "x" * 2000)
        for text in ("x" * 2001, "   ", 42):
            with pytest.raises(StoreError, match=sid):
                store.add_annotation(sid, 14.0, text)
        with pytest.raises(StoreError, match="finite"):
            store.add_annotation(sid, float("nan"), "repair")
        store.finish_session(sid)
        # Marking a moment while reviewing a finished session: it lands in time order.
        store.add_annotation(sid, 11.0, "repair", "Ana")
        assert list(store.records(sid)) == [
            Notification(10.0, "a", b"\x00\x40"), Annotation(11.0, "repair", "Ana"),
            Annotation(12.5, "pursuit starts", "practitioner"), Annotation(13.0, "x" * 2000),
        ]
        assert [e["t"] for e in store.events(sid)] == [11.0, 12.5, 13.0]
        assert store.get_session(sid).n_events == 3
        assert read_records(store.export(sid, db.parent / "annotated.jsonl"))[1] == list(store.records(sid))


def test_deleting_a_session_removes_its_records_and_events_only(db, divergence):
    _, records = divergence
    with Store(db) as store:
        keep = store.create_session(HEADER, label="keep", kind="demo", config={})
        drop = store.create_session(HEADER, label="drop", kind="demo", config={})
        for sid in (keep, drop):
            for record in records[:50]:
                store.add_record(sid, record)
            store.add_event(sid, EVENTS[0])
        with pytest.raises(StoreError, match=f"{drop}.*still being recorded"):
            store.delete_session(drop)
        store.finish_session(keep)
        store.finish_session(drop)
        store.delete_session(drop)
        assert [info.id for info in store.list_sessions()] == [keep]
        assert list(store.records(keep)) == records[:50]
        with pytest.raises(StoreError, match=drop):
            store.get_session(drop)
    assert raw(db, "SELECT session_id, count(*) FROM records GROUP BY session_id") == [(keep, 50)]
    assert raw(db, "SELECT session_id, count(*) FROM events GROUP BY session_id") == [(keep, 1)]


def test_unknown_session_ids_raise_a_store_error_naming_them(db, tmp_path):
    ghost = "0123456789ab"
    with Store(db) as store:
        calls = [
            lambda: store.get_session(ghost), lambda: store.header(ghost), lambda: store.records(ghost),
            lambda: store.events(ghost), lambda: store.add_record(ghost, Notification(0.0, "a", b"\x00\x40")),
            lambda: store.add_event(ghost, EVENTS[0]), lambda: store.add_annotation(ghost, 1.0, "note"),
            lambda: store.delete_session(ghost), lambda: store.finish_session(ghost),
            lambda: store.export(ghost, tmp_path / "ghost.jsonl"),
        ]
        for call in calls:
            with pytest.raises(StoreError, match=ghost):
                call()
    assert not (tmp_path / "ghost.jsonl").exists()


def test_what_a_recording_could_not_hold_is_refused(db):
    with Store(db) as store:
        sid = store.create_session(SessionHeader("2025-03-01T18:30:00Z", {"a": PartnerInfo()}), label="",
                                   kind="live", config={})
        bad = [
            Notification(-1.0, "a", b"\x00\x40"), Notification(float("inf"), "a", b"\x00\x40"),
            Notification(1.0, "b", b"\x00\x40"), Notification(1.0, "a", "0040"),
            StatusChange(1.0, "a", "lost"), Annotation(1.0, "x" * 2001), "hrm",
        ]
        for record in bad:
            with pytest.raises(StoreError, match=sid):
                store.add_record(sid, record)
        with pytest.raises(StoreError, match="JSON"):
            store.add_event(sid, Event(1.0, "settled", "a", {"r": float("nan")}))
        with pytest.raises(StoreError, match="partner"):
            store.add_event(sid, Event(1.0, "settled", "c"))
        store.finish_session(sid)
        with pytest.raises(StoreError, match=f"{sid}.*finished"):
            store.add_record(sid, Notification(2.0, "a", b"\x00\x40"))
        assert list(store.records(sid)) == [] and store.events(sid) == []
        with pytest.raises(StoreError, match="kind"):
            store.create_session(HEADER, label="", kind="party", config={})
        with pytest.raises(StoreError, match="partner"):
            store.create_session(SessionHeader("2025-03-01T18:30:00Z", {"c": PartnerInfo()}), label="", kind="live",
                                 config={})
        with pytest.raises(StoreError, match="config"):
            store.create_session(HEADER, label="", kind="live", config={"x": object()})
        with pytest.raises(StoreError, match="finished or interrupted"):
            store.finish_session(store.create_session(HEADER, label="", kind="live", config={}), "paused")


# -- export and import ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_export_then_read_records_gives_the_same_session(db, divergence, name):
    header, records = divergence
    with Store(db) as store:
        sid = store.create_session(header, label="", kind="demo", config={})
        for record in records:
            store.add_record(sid, record)
        store.add_annotation(sid, 600.0, "a long silence", "Ben")
        store.finish_session(sid)
        path = store.export(sid, db.parent / name)
        with pytest.raises(FileExistsError):
            store.export(sid, path)
    expected = sorted(records + [Annotation(600.0, "a long silence", "Ben")], key=lambda r: r.t_s)
    assert read_records(path) == (header, expected)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")


@pytest.mark.parametrize("fixture", [PVC, DIVERGENCE])
def test_import_then_export_keeps_every_record_and_payload_byte(db, fixture):
    header, records = read_records(fixture)
    with Store(db) as store:
        sid = store.import_recording(fixture)
        info = store.get_session(sid)
        out = store.export(sid, db.parent / "again.jsonl")
    assert (info.kind, info.status, info.label, info.source) == ("import", "finished", fixture.name.split(".")[0],
                                                                 str(fixture))
    assert info.n_notifications == sum(isinstance(r, Notification) for r in records) and info.n_events == 0
    assert info.duration_s == records[-1].t_s
    again_header, again = read_records(out)
    assert again_header == header and again == records
    assert [r.payload for r in again if isinstance(r, Notification)] == [
        r.payload for r in records if isinstance(r, Notification)
    ]
    if fixture == PVC:  # a plain file: the export is line for line the same text
        assert out.read_text() == fixture.read_text()


def test_import_ended_at_is_start_plus_duration(db):
    with Store(db) as store:
        info = store.get_session(store.import_recording(PVC, label="pvc", kind="replay"))
    # polar_h10_pvc starts 2024-05-05T15:00:00Z and its last record is 598.98 s later;
    # the end time is kept to the whole second.
    assert (info.label, info.kind, info.started_at) == ("pvc", "replay", "2024-05-05T15:00:00Z")
    assert info.duration_s == 598.9823 and info.ended_at == "2024-05-05T15:09:58Z"


def test_a_broken_recording_is_refused_and_stores_nothing(db, tmp_path):
    lines = PVC.read_text().splitlines()
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(lines[:5] + ['{"t": 9.0, "partner": "a", "hrm": "zz"}'] + lines[5:]) + "\n")
    with Store(db) as store:
        with pytest.raises(RecordingError, match="line 6"):
            store.import_recording(broken)
        assert store.list_sessions() == []
        cut = tmp_path / "cut.jsonl"
        cut.write_text("\n".join(lines[:11]) + "\n" + lines[11][:10])
        with pytest.warns(RecordingWarning, match="incomplete last line"):
            sid = store.import_recording(cut)
        assert list(store.records(sid)) == read_records(PVC)[1][:10]
    assert raw(db, "SELECT count(*) FROM records")[0][0] == 10


# -- the file ----------------------------------------------------------------------------


def test_the_database_file_and_folder_are_private_and_configured(db):
    with Store(db) as store:
        sid = store.create_session(HEADER, label="", kind="live", config={})
        store.add_record(sid, Notification(0.0, "a", b"\x00\x40"))
        store.flush()
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(f"{db}-wal").stat().st_mode) == 0o600
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store_module.SCHEMA_VERSION == 1
        indexes = dict(raw(db, "SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'"))
        assert indexes["records_by_time"] == "records"
        pk = {table: [r[1] for r in sorted(raw(db, f"PRAGMA table_info({table})"), key=lambda r: r[5]) if r[5]]
              for table in ("records", "events")}
        assert pk == {"records": ["session_id", "seq"], "events": ["session_id", "seq"]}


def test_files_that_are_not_this_store_are_refused(tmp_path):
    newer = tmp_path / "newer.db"
    Store(newer).close()
    raw(newer, "PRAGMA user_version = 7")
    with pytest.raises(StoreError, match=f"{newer}.*newer coreg"):
        Store(newer)
    foreign = tmp_path / "foreign.db"
    raw(foreign, "CREATE TABLE notes (x)")
    with pytest.raises(StoreError, match=f"{foreign}.*not a coreg session store"):
        Store(foreign)
    text = tmp_path / "text.db"
    text.write_text("this is not a database, just a long enough line of text to be read as a header")
    with pytest.raises(StoreError, match=str(text)):
        Store(text)


def test_default_db_path_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("COREG_DATA_DIR", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "coreg" / "coreg.db"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/ignored")
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "coreg" / "coreg.db"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_db_path() == tmp_path / "xdg" / "coreg" / "coreg.db"
    monkeypatch.setenv("COREG_DATA_DIR", str(tmp_path / "mine"))
    assert default_db_path() == tmp_path / "mine" / "coreg.db"
    for folder in (tmp_path / "home" / ".local" / "share" / "coreg", tmp_path / "xdg" / "coreg", tmp_path / "mine"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    with Store() as store:
        assert store.path == tmp_path / "mine" / "coreg.db" and store.path.exists()


def test_the_store_can_be_called_from_another_thread(db):
    with Store(db) as store:
        sid = store.create_session(HEADER, label="", kind="live", config={})
        seen: list[SessionInfo] = []
        worker = threading.Thread(target=lambda: seen.extend(store.list_sessions()))
        worker.start()
        worker.join()
        assert [info.id for info in seen] == [sid]

