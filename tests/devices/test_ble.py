"""The bleak strap layer against the fake radio, on virtual time.

Every test runs on devices.fakeble's VirtualTimeLoop with the session clock reading the
loop's time, so arrival timestamps and backoff waits are exact and hand-computable:
the fake's connect takes 0.5 s, a strap's timeline starts at its first connect, and a
notification recorded at t_s arrives at (first connect + t_s).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from pathlib import Path

import pytest
from bleak.exc import BleakError

from devices.ble import RecordSummary, Strap, StrapError, StrapInfo, connect_pair, record_pair, scan
from devices.fakeble import (
    FakeBleakScanner,
    FakeCue,
    advert,
    fake_client_factory,
    load_notifications,
    run_virtual,
)
from devices.hrs import HEART_RATE_SERVICE_UUID, encode_hrm
from devices.records import BeatSource, Notification, PartnerInfo, SessionClock, StatusChange
from devices.recording import open_recording

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
POLAR = load_notifications(FIXTURES / "polar_h10_pvc.jsonl", "a")  # 600 notifications, 0-599 s
POLAR_B = [(t + 1.3, payload) for t, payload in POLAR]  # partner b: same beats, interleaved in time
ADDR_A = "C0:FF:EE:00:00:0A"
ADDR_B = "C0:FF:EE:00:00:0B"


class RecordingSleep:
    """asyncio.sleep that remembers every backoff it was asked for (s)."""

    def __init__(self) -> None:
        self.delays_s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.delays_s.append(delay_s)
        await asyncio.sleep(delay_s)


def loop_clock() -> SessionClock:
    return SessionClock(monotonic=asyncio.get_running_loop().time)


async def drain(strap: Strap) -> list:
    return [record async for record in strap]


def notes_of(records: list) -> list[Notification]:
    return [r for r in records if isinstance(r, Notification)]


def statuses_of(records: list) -> list[tuple[float, str]]:
    return [(r.t_s, r.status) for r in records if isinstance(r, StatusChange)]


# -- scan ----------------------------------------------------------------------------


def test_scan_keeps_heart_rate_straps_strongest_first():
    scanner = FakeBleakScanner(
        [
            advert("AA:00:00:00:00:01", "Polar H10 1111", -71),
            advert("AA:00:00:00:00:02", "Headphones", -30, service_uuids=["0000110b-0000-1000-8000-00805f9b34fb"]),
            advert("AA:00:00:00:00:03", "Garmin HRM", -48, service_uuids=[HEART_RATE_SERVICE_UUID.upper()]),
            advert("AA:00:00:00:00:04", None, -60),
        ]
    )
    straps = run_virtual(scan(3.0, scanner=scanner))
    assert straps == [
        StrapInfo(name="Garmin HRM", address="AA:00:00:00:00:03", rssi_dbm=-48),
        StrapInfo(name="", address="AA:00:00:00:00:04", rssi_dbm=-60),
        StrapInfo(name="Polar H10 1111", address="AA:00:00:00:00:01", rssi_dbm=-71),
    ]
    assert scanner.last_kwargs == {"timeout": 3.0, "return_adv": True, "service_uuids": [HEART_RATE_SERVICE_UUID]}


def test_scan_failure_is_a_strap_error_naming_the_cause():
    scanner = FakeBleakScanner([], error=BleakError("No Bluetooth adapters found."))
    with pytest.raises(StrapError, match="Bluetooth scan failed: No Bluetooth adapters found"):
        run_virtual(scan(scanner=scanner))


# -- streaming -----------------------------------------------------------------------


def test_two_straps_yield_every_payload_unchanged_at_arrival_time():
    radio = fake_client_factory({ADDR_A: POLAR, ADDR_B: POLAR_B})

    async def main():
        a, b = await connect_pair(ADDR_A, ADDR_B, clock=loop_clock(), client_factory=radio)
        assert isinstance(a, BeatSource)
        await asyncio.sleep(700.0)
        await a.close()
        await b.close()
        return a, b, await drain(a), await drain(b)

    a, b, records_a, records_b = run_virtual(main())
    # a connects at 0.5 s; b's connect starts once a is up, so b connects at 1.0 s.
    assert records_a == [StatusChange(0.5, "a", "connected")] + [
        Notification(round(0.5 + t, 6), "a", payload) for t, payload in POLAR
    ]
    assert records_b == [StatusChange(1.0, "b", "connected")] + [
        Notification(round(1.0 + t, 6), "b", payload) for t, payload in POLAR_B
    ]
    assert (a.body_location, a.battery_pct, a.device_name) == ("chest", 87, "Polar H10 FAKE0001")
    assert a.notifications == b.notifications == 600
    # The PVC recording is well formed: nothing counted as malformed.
    assert a.malformed == Counter() and b.malformed == Counter()
    assert radio.in_progress_errors == 0


def test_speed_factor_compresses_the_strap_timeline():
    radio = fake_client_factory({ADDR_A: POLAR[:50]}, speed=4.0)

    async def main():
        strap = Strap(ADDR_A, "a", clock=loop_clock(), client_factory=radio)
        await strap.connect()
        await asyncio.sleep(20.0)
        await strap.close()
        return await drain(strap)

    records = run_virtual(main())
    assert records[0] == StatusChange(0.125, "a", "connected")  # the 0.5 s connect, 4x faster
    assert records[1:] == [Notification(round(0.125 + t / 4, 6), "a", p) for t, p in POLAR[:50]]


def test_drop_backs_off_1_2_4_to_30_reconnects_and_leaves_the_other_strap_alone(caplog):
    cue_a = FakeCue(drop_at_s=(100.0, 400.0), drop_for_s=120.0)
    radio = fake_client_factory({ADDR_A: POLAR, ADDR_B: POLAR_B}, per_address={ADDR_A: cue_a})
    sleep_a, sleep_b = RecordingSleep(), RecordingSleep()

    async def main():
        lock, clock = asyncio.Lock(), loop_clock()
        a = Strap(ADDR_A, "a", clock=clock, client_factory=radio, connect_lock=lock, sleep=sleep_a)
        b = Strap(ADDR_B, "b", clock=clock, client_factory=radio, connect_lock=lock, sleep=sleep_b)
        await a.connect()
        await b.connect()
        await asyncio.sleep(700.0)
        await a.close()
        await b.close()
        return a, await drain(a), await drain(b)

    with caplog.at_level(logging.INFO, logger="coreg.ble"):
        a, records_a, records_b = run_virtual(main())

    # Out of range for 120 s after each drop: attempts (0.5 s each) after waits of
    # 1, 2, 4, 8, 16, 30, 30 fail; the one after the third 30 s wait lands at strap time 225.
    assert sleep_a.delays_s == [1, 2, 4, 8, 16, 30, 30, 30] * 2
    assert statuses_of(records_a) == [
        (0.5, "connected"),
        (100.5, "disconnected"),
        (225.5, "connected"),
        (400.5, "disconnected"),
        (525.5, "connected"),
    ]
    assert (a.connects, a.disconnects) == (3, 2)
    # Notifications sent while out of range are lost; the rest arrive unchanged.
    kept = [(t, p) for t, p in POLAR if t < 100 or 225 <= t < 400 or t >= 525]
    assert notes_of(records_a) == [Notification(round(0.5 + t, 6), "a", p) for t, p in kept]
    # b never waited, never dropped, and got every notification on time.
    assert sleep_b.delays_s == []
    assert records_b == [StatusChange(1.0, "b", "connected")] + [
        Notification(round(1.0 + t, 6), "b", p) for t, p in POLAR_B
    ]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("the link dropped; reconnecting in 1 s" in m for m in messages) == 2
    assert any("could not connect (attempt 7): " in m and "out of range (fake); retrying in 30 s" in m for m in messages)


@pytest.mark.parametrize("shared_lock", [False, True])
def test_connect_lock_prevents_bluez_in_progress(shared_lock, caplog):
    radio = fake_client_factory({ADDR_A: POLAR[:5], ADDR_B: POLAR_B[:5]})
    sleep_a, sleep_b = RecordingSleep(), RecordingSleep()

    async def main():
        clock = loop_clock()
        lock_a = asyncio.Lock()
        lock_b = lock_a if shared_lock else asyncio.Lock()
        a = Strap(ADDR_A, "a", clock=clock, client_factory=radio, connect_lock=lock_a, sleep=sleep_a)
        b = Strap(ADDR_B, "b", clock=clock, client_factory=radio, connect_lock=lock_b, sleep=sleep_b)
        await asyncio.gather(a.connect(), b.connect())  # both start at the same moment
        await a.close()
        await b.close()
        return statuses_of(await drain(a)), statuses_of(await drain(b))

    with caplog.at_level(logging.WARNING, logger="coreg.ble"):
        status_a, status_b = run_virtual(main())
    assert status_a == [(0.5, "connected")]
    assert sleep_a.delays_s == []
    if shared_lock:
        assert radio.in_progress_errors == 0
        assert sleep_b.delays_s == []
        assert status_b == [(1.0, "connected")]  # waited its turn behind a
        assert caplog.records == []
    else:
        assert radio.in_progress_errors == 1
        assert sleep_b.delays_s == [1.0]  # refused at 0, retried at 1.0, connected at 1.5
        assert status_b == [(1.5, "connected")]
        assert "org.bluez.Error.InProgress" in caplog.records[0].getMessage()


def test_failed_first_connects_are_retried_with_backoff(caplog):
    radio = fake_client_factory({ADDR_A: POLAR[:3]}, fail_first_connects=3)
    sleep = RecordingSleep()

    async def main():
        strap = Strap(ADDR_A, "a", clock=loop_clock(), client_factory=radio, sleep=sleep)
        await strap.connect()
        await asyncio.sleep(5.0)
        await strap.close()
        return await drain(strap)

    with caplog.at_level(logging.WARNING, logger="coreg.ble"):
        records = run_virtual(main())
    # Attempts end at 0.5, 2.0 (after 1 s), 4.5 (after 2 s); the fourth, after 4 s, at 9.0.
    assert sleep.delays_s == [1, 2, 4]
    assert records == [StatusChange(9.0, "a", "connected")] + [
        Notification(round(9.0 + t, 6), "a", p) for t, p in POLAR[:3]
    ]
    assert radio.connect_attempts[ADDR_A] == 4
    assert len(caplog.records) == 3 and "fake: cued failure" in caplog.records[0].getMessage()


def test_malformed_payloads_are_recorded_raw_and_counted():
    payloads = [
        encode_hrm(72, [850]),
        b"",  # no flags byte
        b"\x10\x5a\x01",  # RR flagged, one stray byte
        b"\x00\x00",  # HR 0 and no RR
        b"\x10\x5a",  # RR flagged but none sent: well formed
        encode_hrm(73, [830, 840]),
    ]
    radio = fake_client_factory({ADDR_A: [(float(i), p) for i, p in enumerate(payloads)]})

    async def main():
        strap = Strap(ADDR_A, "a", clock=loop_clock(), client_factory=radio)
        await strap.connect()
        await asyncio.sleep(10.0)
        await strap.close()
        return strap, await drain(strap)

    strap, records = run_virtual(main())
    assert [n.payload for n in notes_of(records)] == payloads
    assert strap.malformed == Counter({"truncated": 1, "odd_rr_bytes": 1, "hr_zero_no_rr": 1})
    assert strap.notifications == 6


def test_missing_or_bad_optional_characteristics_are_not_fatal():
    radio = fake_client_factory({ADDR_A: POLAR[:2]}, body_location=None, battery_pct=150, name=None)

    async def main():
        strap = Strap(ADDR_A, "a", clock=loop_clock(), client_factory=radio)
        await strap.connect()
        await asyncio.sleep(2.0)
        await strap.close()
        return strap, await drain(strap)

    strap, records = run_virtual(main())
    assert (strap.body_location, strap.battery_pct, strap.device_name) == (None, None, "")
    assert len(notes_of(records)) == 2


def test_close_unsubscribes_disconnects_and_ends_iteration_without_a_drop_record():
    radio = fake_client_factory({ADDR_A: POLAR})

    async def main():
        strap = Strap(ADDR_A, "a", clock=loop_clock(), client_factory=radio)
        reader = asyncio.create_task(drain(strap))
        await asyncio.sleep(10.0)
        await strap.close()
        await strap.close()  # idempotent
        records = await reader  # iteration ended by close()
        await asyncio.sleep(10.0)  # nothing more arrives after close
        return strap, records, await drain(strap)

    strap, records, after = run_virtual(main())
    assert statuses_of(records) == [(0.5, "connected")]
    assert len(notes_of(records)) == sum(1 for t, _ in POLAR if 0.5 + t < 10.0)
    assert after == []
    assert not radio.clients[-1].is_connected
    assert strap.disconnects == 0


# -- record_pair ---------------------------------------------------------------------


def test_record_pair_writes_both_partners_in_time_order(tmp_path):
    out = tmp_path / "session.jsonl"
    radio = fake_client_factory(
        {ADDR_A: POLAR, ADDR_B: POLAR_B + [(300.5, b"\x10")]},
        per_address={
            ADDR_A: FakeCue(name="Polar H10 A1B2C3D4", drop_at_s=(100.0,), drop_for_s=20.0),
            ADDR_B: FakeCue(name=None),
        },
    )

    async def main():
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(310.0, stop.set)
        return await record_pair(
            ADDR_A, ADDR_B, out, names=("Ana", "Ben"), client_factory=radio, stop=stop, clock=loop_clock()
        )

    summary = run_virtual(main())
    with open_recording(out) as reader:
        header, records, warnings = reader.header, list(reader), reader.warnings
    assert warnings == []
    assert header.partners == {
        "a": PartnerInfo(name="Ana", device="Polar H10 A1B2C3D4"),
        "b": PartnerInfo(name="Ben", device=ADDR_B),  # no advertised name: the address
    }
    times = [r.t_s for r in records]
    assert times == sorted(times)
    a_records = [r for r in records if r.partner == "a"]
    b_records = [r for r in records if r.partner == "b"]
    # a drops at 100 s; out of range until 120 s; waits 1, 2, 4, 8, 16 s: back at 133.5 s.
    assert statuses_of(a_records) == [(0.5, "connected"), (100.5, "disconnected"), (134.0, "connected")]
    kept_a = [(t, p) for t, p in POLAR if (t < 100 or t >= 133.5) and 0.5 + t < 310]
    assert notes_of(a_records) == [Notification(round(0.5 + t, 6), "a", p) for t, p in kept_a]
    assert statuses_of(b_records) == [(1.0, "connected")]
    kept_b = [(t, p) for t, p in POLAR_B + [(300.5, b"\x10")] if 1.0 + t < 310]
    assert notes_of(b_records) == [Notification(round(1.0 + t, 6), "b", p) for t, p in sorted(kept_b)]
    assert summary == RecordSummary(
        path=str(out),
        duration_s=max(times),
        notifications={"a": len(kept_a), "b": len(kept_b)},
        disconnects={"a": 1, "b": 0},
        malformed={"a": {}, "b": {"truncated": 1}},
    )


def test_record_pair_leaves_a_complete_file_when_cancelled(tmp_path):
    out = tmp_path / "cancelled.jsonl"
    radio = fake_client_factory({ADDR_A: POLAR, ADDR_B: POLAR_B})

    async def main():
        task = asyncio.create_task(record_pair(ADDR_A, ADDR_B, out, client_factory=radio, clock=loop_clock()))
        await asyncio.sleep(50.0)
        task.cancel()  # what Ctrl-C does in the CLI
        with pytest.raises(asyncio.CancelledError):
            await task
        return radio

    run_virtual(main())
    assert out.read_text(encoding="utf-8").endswith("\n")
    with open_recording(out) as reader:
        records, warnings = list(reader), reader.warnings
    assert warnings == []
    assert [n.payload for n in notes_of(records) if n.partner == "a"] == [p for t, p in POLAR if 0.5 + t < 50]
    assert [n.payload for n in notes_of(records) if n.partner == "b"] == [p for t, p in POLAR_B if 1.0 + t < 50]
    assert statuses_of(records) == [(0.5, "connected"), (1.0, "connected")]
    assert all(not client.is_connected for client in radio.clients)


def test_record_pair_cancelled_while_connecting_still_writes_a_header(tmp_path):
    out = tmp_path / "early.jsonl"
    radio = fake_client_factory({ADDR_A: POLAR, ADDR_B: POLAR_B}, per_address={ADDR_B: FakeCue(fail_first_connects=99)})

    async def main():
        task = asyncio.create_task(
            record_pair(ADDR_A, ADDR_B, out, names=("Ana", "Ben"), client_factory=radio, clock=loop_clock())
        )
        await asyncio.sleep(20.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main())
    with open_recording(out) as reader:
        header, records, warnings = reader.header, list(reader), reader.warnings
    assert warnings == []
    assert header.partners["a"] == PartnerInfo(name="Ana", device="Polar H10 FAKE0001")
    assert header.partners["b"] == PartnerInfo(name="Ben", device=ADDR_B)
    assert statuses_of(records) == [(0.5, "connected")]
    assert len(notes_of(records)) == sum(1 for t, _ in POLAR if 0.5 + t < 20)


def test_record_pair_refuses_an_existing_file_before_connecting(tmp_path):
    out = tmp_path / "taken.jsonl"
    out.write_text("keep me\n", encoding="utf-8")
    radio = fake_client_factory({ADDR_A: POLAR, ADDR_B: POLAR_B})
    with pytest.raises(FileExistsError):
        run_virtual(record_pair(ADDR_A, ADDR_B, out, client_factory=radio))
    assert radio.connect_attempts == Counter()
    assert out.read_text(encoding="utf-8") == "keep me\n"


def test_connect_pair_shares_one_lock_so_simultaneous_reconnects_do_not_clash():
    # Both links drop at the same moment (virtual 50.5 s) and both retry 1 s later.
    radio = fake_client_factory(
        {ADDR_A: POLAR[:100], ADDR_B: POLAR_B[:100]},
        per_address={ADDR_A: FakeCue(drop_at_s=(50.0,)), ADDR_B: FakeCue(drop_at_s=(49.5,))},
    )

    async def main():
        a, b = await connect_pair(ADDR_A, ADDR_B, clock=loop_clock(), client_factory=radio)
        await asyncio.sleep(60.0)
        await a.close()
        await b.close()
        return statuses_of(await drain(a)), statuses_of(await drain(b))

    status_a, status_b = run_virtual(main())
    assert radio.in_progress_errors == 0
    assert status_a[:2] == [(0.5, "connected"), (50.5, "disconnected")]
    assert status_b[:2] == [(1.0, "connected"), (50.5, "disconnected")]
    # One reconnect finishes at 52.0, the other waits for the lock and finishes at 52.5.
    assert sorted([status_a[2], status_b[2]]) == [(52.0, "connected"), (52.5, "connected")]


def test_a_hung_connect_times_out_and_is_retried_until_closed(caplog):
    radio = fake_client_factory({ADDR_A: POLAR[:3]}, connect_delay_s=100.0)
    sleep = RecordingSleep()

    async def main():
        strap = Strap(ADDR_A, "a", clock=loop_clock(), client_factory=radio, sleep=sleep, connect_timeout_s=1.0)
        waiter = asyncio.create_task(strap.connect())
        await asyncio.sleep(40.0)
        await strap.close()
        with pytest.raises(StrapError, match="closed before it connected"):
            await waiter
        return await drain(strap)

    with caplog.at_level(logging.WARNING, logger="coreg.ble"):
        records = run_virtual(main())
    # Each attempt is abandoned after 1 + 10 s: at 11, 23 and 36 s, then waits 1, 2, 4 s.
    assert sleep.delays_s == [1, 2, 4]
    assert records == []
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        f"could not connect (attempt {n}): timed out; retrying in {d} s" for n, d in ((1, 1), (2, 2), (3, 4))
    ]


def test_records_of_both_straps_are_merged_in_time_order(tmp_path):
    # White-box: a batch drained from both queues at once must be sorted by t.
    from devices.ble import _Tally, _write_pending
    from devices.records import SessionHeader
    from devices.recording import RecordingWriter, read_records

    async def main():
        clock = loop_clock()
        a = Strap(ADDR_A, "a", clock=clock, client_factory=fake_client_factory({}))
        b = Strap(ADDR_B, "b", clock=clock, client_factory=fake_client_factory({}))
        for strap, t_s in ((a, 5.0), (a, 7.0), (b, 6.0), (b, 7.0)):
            strap._push(Notification(t_s, strap.partner, bytes([0x10, int(t_s)])))
        header = SessionHeader(started_at="2025-01-01T00:00:00Z", partners={"a": PartnerInfo(), "b": PartnerInfo()})
        with RecordingWriter(tmp_path / "m.jsonl", header) as writer:
            tally = _Tally()
            ended = _write_pending((a, b), writer, tally)
        return ended, tally

    ended, tally = run_virtual(main())
    _, records = read_records(tmp_path / "m.jsonl")
    assert [(r.t_s, r.partner) for r in records] == [(5.0, "a"), (6.0, "b"), (7.0, "a"), (7.0, "b")]
    assert (ended, tally.notifications, tally.last_t_s) == (False, {"a": 2, "b": 2}, 7.0)


def test_an_unexpected_error_stops_the_strap_and_says_so():
    def broken_factory(address, disconnected_callback=None, services=None, *, timeout=30.0):
        raise TypeError("factory bug")

    async def main():
        strap = Strap(ADDR_A, "a", clock=loop_clock(), client_factory=broken_factory)
        with pytest.raises(StrapError, match="stopped: TypeError") as connect_error:
            await strap.connect()
        with pytest.raises(StrapError, match="factory bug"):
            await drain(strap)
        await strap.close()
        return connect_error.value

    error = run_virtual(main())
    assert isinstance(error.__cause__, TypeError) and error.address == ADDR_A


def test_an_unreachable_bluetooth_service_is_retried_with_a_plain_message(caplog):
    def no_daemon(address, disconnected_callback=None, services=None, *, timeout=30.0):
        raise FileNotFoundError(2, "No such file or directory")

    async def main():
        strap = Strap(ADDR_A, "a", clock=loop_clock(), client_factory=no_daemon)
        reader = asyncio.create_task(drain(strap))  # iterating starts the strap
        await asyncio.sleep(4.0)  # attempts at 0, 1 and 3 s
        await strap.close()
        assert await reader == []

    with caplog.at_level(logging.WARNING, logger="coreg.ble"):
        run_virtual(main())
    assert [r.getMessage().split(": ", 1)[1] for r in caplog.records] == [
        f"could not connect (attempt {n}): the Bluetooth service cannot be reached "
        f"([Errno 2] No such file or directory); retrying in {d} s"
        for n, d in ((1, 1), (2, 2), (3, 4))
    ]
