"""Replaying a recording: pacing, pause, seek and speed, checked on a fake clock.

Times and sleeps are asserted on a fake clock whose readings the test controls, so
the expected values are exact (all chosen as binary fractions) and nothing depends
on how fast this machine is.
"""

import asyncio
import math
from pathlib import Path

import pytest

from devices.recording import RecordingError, RecordingWriter
from devices.records import Annotation, BeatSource, Notification, PartnerInfo, SessionHeader, StatusChange
from devices.replay import RecordingSource

POLAR = Path(__file__).resolve().parents[2] / "fixtures" / "polar_h10_pvc.jsonl"
HEADER = SessionHeader("2024-05-05T15:00:00Z", {"a": PartnerInfo("Ann"), "b": PartnerInfo("Bea")})
NOTE = Annotation(2.0, "pursuit starts", "practitioner")
RECORDS = [
    Notification(0.0, "a", b"\x10\x3c\x00\x04"),
    Notification(1.0, "b", b"\x10\x46\x00\x03"),
    Notification(1.5, "a", b"\x10\x3d"),
    NOTE,
    StatusChange(3.0, "b", "disconnected"),
    Notification(4.0, "a", b"\x10\x3e"),
]
PLAYED = [r for r in RECORDS if not isinstance(r, Annotation)]


@pytest.fixture
def session(tmp_path):
    path = tmp_path / "session.jsonl"
    with RecordingWriter(path, HEADER) as writer:
        for record in RECORDS:
            writer.write(record)
    return path


class FakeClock:
    """A monotonic clock and a matching sleep.

    With ``auto`` each sleep moves the clock forward by its delay (plus ``overshoot``,
    like a loaded machine waking late). Otherwise sleeps wait until advance() passes
    their wake-up time.
    """

    def __init__(self, *, auto: bool = True, overshoot: float = 0.0) -> None:
        self.now = 0.0
        self.auto = auto
        self.overshoot = overshoot
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future]] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, delay_s: float) -> None:
        self.sleeps.append(delay_s)
        if self.auto:
            self.now += delay_s + self.overshoot
            await asyncio.sleep(0)
            return
        future = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay_s, future))
        await future

    async def advance(self, dt_s: float) -> None:
        self.now += dt_s
        for wake_s, future in list(self._sleepers):
            if wake_s <= self.now and not future.done():
                future.set_result(None)
        self._sleepers = [(w, f) for w, f in self._sleepers if not f.done()]
        await settle()


async def settle() -> None:
    """Let every ready task run until it waits again."""
    for _ in range(20):
        await asyncio.sleep(0)


async def play(source: RecordingSource, clock: FakeClock) -> list[tuple[float, object]]:
    return [(clock.now, record) async for record in source]


def test_polar_file_replays_600_notifications_without_sleeping():
    async def main():
        clock = FakeClock()
        source = RecordingSource(POLAR, speed=math.inf, sleep=clock.sleep, clock=clock.time)
        records = [r async for r in source]
        return records, clock.sleeps

    records, sleeps = asyncio.run(main())
    assert len(records) == 600
    assert all(isinstance(r, Notification) and r.partner == "a" for r in records)
    assert records[0].t_s == 0.0 and records[1].t_s == 1.1216
    assert sleeps == []


def test_the_source_is_a_beat_source(session):
    source = RecordingSource(session)
    assert isinstance(source, BeatSource)
    assert source.header == HEADER
    asyncio.run(source.close())


@pytest.mark.parametrize("speed, start_at_s, expected", [
    (1.0, 0.0, [(0.0, 0), (1.0, 1), (1.5, 2), (3.0, 3), (4.0, 4)]),
    (2.0, 0.0, [(0.0, 0), (0.5, 1), (0.75, 2), (1.5, 3), (2.0, 4)]),
    (0.5, 1.25, [(0.5, 2), (3.5, 3), (5.5, 4)]),
    (0.0, 0.0, [(0.0, i) for i in range(5)]),
])
def test_each_record_plays_at_its_time_over_the_speed(session, speed, start_at_s, expected):
    async def main():
        clock = FakeClock()
        source = RecordingSource(session, speed=speed, start_at_s=start_at_s, sleep=clock.sleep, clock=clock.time)
        return await play(source, clock)

    played = asyncio.run(main())
    assert played == [(now, PLAYED[i]) for now, i in expected]


def test_late_wake_ups_do_not_add_up(session):
    # Every sleep wakes 0.125 s late; each record is then 0.125 s late, never more.
    async def main():
        clock = FakeClock(overshoot=0.125)
        source = RecordingSource(session, sleep=clock.sleep, clock=clock.time)
        return await play(source, clock), clock.sleeps

    played, sleeps = asyncio.run(main())
    assert played == [(0.0, PLAYED[0])] + [(r.t_s + 0.125, r) for r in PLAYED[1:]]
    # After the annotation at 2.0 (reached at 2.125), the status change waits 0.875 s.
    assert sleeps == [1.0, 0.375, 0.375, 0.875, 0.875]


def test_annotations_are_collected_when_playback_reaches_them(session):
    async def main():
        clock = FakeClock()
        source = RecordingSource(session, sleep=clock.sleep, clock=clock.time)
        seen = []
        async for record in source:
            seen.append((record.t_s, list(source.annotations)))
        return seen

    assert asyncio.run(main()) == [(0.0, []), (1.0, []), (1.5, []), (3.0, [NOTE]), (4.0, [NOTE])]


def test_pause_holds_playback_until_resume(session):
    async def main():
        clock = FakeClock(auto=False)
        source = RecordingSource(session, sleep=clock.sleep, clock=clock.time)
        assert await source.__anext__() == PLAYED[0]
        waiting = asyncio.ensure_future(source.__anext__())
        await settle()
        assert clock.sleeps == [1.0]
        await clock.advance(0.25)
        source.pause()  # during the wait for t = 1.0
        assert source.paused and source.position_s == 0.25
        await clock.advance(100.0)
        assert not waiting.done() and source.position_s == 0.25
        source.resume()
        await settle()
        assert clock.sleeps == [1.0, 0.75]  # the rest of the wait
        await clock.advance(0.75)
        assert waiting.done() and waiting.result() == PLAYED[1]
        await source.close()
        return clock.now

    assert asyncio.run(main()) == 101.0


def test_pause_between_records_waits_before_the_next(session):
    async def main():
        clock = FakeClock(auto=False)
        source = RecordingSource(session, sleep=clock.sleep, clock=clock.time)
        assert await source.__anext__() == PLAYED[0]
        await clock.advance(0.5)
        source.pause()
        waiting = asyncio.ensure_future(source.__anext__())
        await clock.advance(30.0)
        assert not waiting.done() and clock.sleeps == []
        source.resume()
        await settle()
        assert clock.sleeps == [0.5]
        await clock.advance(0.5)
        assert waiting.result() == PLAYED[1]
        await source.close()

    asyncio.run(main())


def test_a_new_speed_applies_at_once_even_during_a_wait(session):
    async def main():
        clock = FakeClock(auto=False)
        source = RecordingSource(session, sleep=clock.sleep, clock=clock.time)
        assert await source.__anext__() == PLAYED[0]
        waiting = asyncio.ensure_future(source.__anext__())
        await settle()
        await clock.advance(0.5)  # half-way to t = 1.0
        source.set_speed(4.0)
        await settle()
        assert clock.sleeps == [1.0, 0.125]  # the remaining 0.5 s of recording at 4x
        await clock.advance(0.125)
        assert waiting.result() == PLAYED[1] and source.position_s == 1.0
        source.set_speed(math.inf)
        rest = [r async for r in source]
        return rest, clock.sleeps

    rest, sleeps = asyncio.run(main())
    assert rest == PLAYED[2:]
    assert sleeps == [1.0, 0.125]


def test_seek_forward_and_back_re_bases_pacing(session):
    async def main():
        clock = FakeClock()
        source = RecordingSource(session, sleep=clock.sleep, clock=clock.time)
        first = await source.__anext__()
        played = [(clock.now, first)]
        source.seek(2.5)  # jumps over t = 1.0, 1.5 and the annotation at 2.0
        after_seek = await source.__anext__()
        played.append((clock.now, after_seek))
        assert source.annotations == [NOTE]
        source.seek(1.0)  # back: t = 1.0 plays again, at once
        played += [(clock.now, r) async for r in source]
        return played, source.annotations

    played, notes = asyncio.run(main())
    assert played == [
        (0.0, PLAYED[0]),
        (0.5, PLAYED[3]),   # t = 3.0 is 0.5 s after the seek target
        (0.5, PLAYED[1]),
        (1.0, PLAYED[2]),
        (2.5, PLAYED[3]),
        (3.5, PLAYED[4]),
    ]
    assert notes == [NOTE]  # read twice, collected once


def test_seek_to_an_exact_record_time_includes_it_and_seek_past_the_end_yields_nothing(session):
    async def main():
        clock = FakeClock()
        source = RecordingSource(session, speed=0, sleep=clock.sleep, clock=clock.time)
        first = [r async for r in source]
        source.seek(4.0)
        last = [r async for r in source]
        source.seek(9.0)
        none = [r async for r in source]
        return first, last, none

    first, last, none = asyncio.run(main())
    assert first == PLAYED and last == [PLAYED[4]] and none == []


def test_start_past_the_end_yields_nothing(session):
    async def main():
        return [r async for r in RecordingSource(session, start_at_s=60.0, speed=math.inf)]

    assert asyncio.run(main()) == []


def test_close_ends_a_pending_wait(session):
    async def main():
        clock = FakeClock(auto=False)
        source = RecordingSource(session, sleep=clock.sleep, clock=clock.time)
        await source.__anext__()
        waiting = asyncio.ensure_future(source.__anext__())
        await settle()
        await source.close()
        await settle()
        with pytest.raises(StopAsyncIteration):
            waiting.result()
        with pytest.raises(StopAsyncIteration):
            await source.__anext__()

    asyncio.run(main())


def test_the_real_loop_clock_and_sleep_also_play_everything(session):
    async def main():
        return [r async for r in RecordingSource(session, speed=1000.0)]

    assert asyncio.run(main()) == PLAYED


def test_bad_arguments_and_bad_files_are_refused(session, tmp_path):
    for speed in (-1.0, math.nan):
        with pytest.raises(ValueError, match="speed"):
            RecordingSource(session, speed=speed)
    with pytest.raises(ValueError, match="start_at_s"):
        RecordingSource(session, start_at_s=-1.0)
    source = RecordingSource(session)
    with pytest.raises(ValueError, match="seek"):
        source.seek(math.inf)
    asyncio.run(source.close())
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"format": "something else"}\n')
    with pytest.raises(RecordingError) as caught:
        RecordingSource(bad)
    assert caught.value.line == 1
