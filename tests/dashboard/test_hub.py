"""The per-viewer fan-out: snapshot first, no gap, no duplicate, slow viewers resynced."""

from __future__ import annotations

import asyncio

import pytest

from dashboard.hub import ViewerFeed
from dashboard_fakes import FakeRunner, event, tick


@pytest.fixture
def runner(store):
    return FakeRunner(store, "r1")


def run(coro):
    return asyncio.run(coro)


def test_snapshot_first_then_live_messages_in_order(runner):
    for t in (1.0, 2.0, 3.0):
        runner.publish(tick(t))
    runner.publish(event(2.5, "settled", "a"))

    async def main():
        feed = ViewerFeed(runner)
        first = feed.open()
        assert first["type"] == "snapshot"
        assert [m["t"] for m in first["ticks"]] == [1.0, 2.0, 3.0]
        assert first["events"] == [event(2.5, "settled", "a")["event"]]
        assert first["session"]["id"] == "r1"
        runner.publish(tick(4.0))
        runner.publish(event(4.0, "prompt", "a", pattern="divergence"))
        runner.publish({"type": "state", **runner.state()})
        got = [await feed.next() for _ in range(3)]
        assert got == [tick(4.0), event(4.0, "prompt", "a", pattern="divergence"), {"type": "state", **runner.state()}]
        assert feed.pending == 0
        feed.close()
        assert runner.subscribers == []

    run(main())


def test_messages_published_while_the_snapshot_is_taken_are_neither_lost_nor_repeated(runner):
    """Subscribe-then-snapshot: what the snapshot already holds is dropped from the queue."""
    runner.publish(tick(1.0))
    runner.publish(tick(2.0))

    def meanwhile():
        # Arrives after subscribing but before the snapshot copies the ticks: covered.
        runner.on_snapshot = None
        runner.publish(tick(3.0))
        runner.publish(event(3.0, "settled", "b"))

    runner.on_snapshot = meanwhile

    async def main():
        feed = ViewerFeed(runner)
        first = feed.open()
        assert [m["t"] for m in first["ticks"]] == [1.0, 2.0, 3.0]
        assert first["events"] == [event(3.0, "settled", "b")["event"]]
        assert feed.pending == 2  # both were queued, and both are duplicates
        runner.publish(event(3.0, "settled", "a"))  # same time, not in the snapshot: kept
        runner.publish(tick(4.0))
        assert await feed.next() == event(3.0, "settled", "a")
        assert await feed.next() == tick(4.0)
        assert feed.pending == 0

    run(main())


def test_a_viewer_that_never_reads_does_not_delay_another(runner):
    async def main():
        slow = ViewerFeed(runner, queue_size=4)
        fast = ViewerFeed(runner, queue_size=4)
        slow.open()
        fast.open()
        for i in range(1, 11):
            runner.publish(tick(float(i)))  # returns at once: nothing awaits a viewer
            assert fast.pending == 1  # the message is already there for the fast one
            assert await fast.next() == tick(float(i))
        assert fast.resyncs == 0
        # The slow viewer's queue overflowed on the 5th message: emptied, one resync pending.
        assert slow.resyncs == 1
        assert slow.pending == 1
        resync = await slow.next()
        assert resync["type"] == "resync"
        assert [m["t"] for m in resync["ticks"]] == [float(i) for i in range(1, 11)]
        assert resync["session"]["id"] == "r1"
        runner.publish(tick(11.0))
        assert await slow.next() == tick(11.0)
        assert await fast.next() == tick(11.0)

    run(main())


def test_resync_snapshot_holds_what_arrived_while_dropping(runner):
    async def main():
        slow = ViewerFeed(runner, queue_size=2)
        slow.open()
        for t in (1.0, 2.0, 3.0):  # the third overflows
            runner.publish(tick(t))
        runner.publish(event(3.5, "prompt", "b", pattern="divergence"))  # dropped: the resync covers it
        assert slow.pending == 1
        resync = await slow.next()
        assert [m["t"] for m in resync["ticks"]] == [1.0, 2.0, 3.0]
        assert resync["events"][-1]["kind"] == "prompt"
        assert resync["replay"]["status"] == "running"
        runner.publish(tick(4.0))
        assert await slow.next() == tick(4.0)
        assert slow.resyncs == 1

    run(main())


def test_a_seek_resync_from_the_runner_is_passed_on_and_earlier_ticks_follow(runner):
    """After a replay seeks backwards, ticks before the old snapshot are new again."""
    for t in (1.0, 2.0, 3.0, 4.0, 5.0):
        runner.publish(tick(t))

    async def main():
        feed = ViewerFeed(runner)
        feed.open()
        sought = {"type": "resync", "session": {}, "ticks": [tick(1.0)], "events": [], "replay": None}
        runner.publish(sought)
        runner.publish(tick(2.0))
        assert await feed.next() == sought
        assert await feed.next() == tick(2.0)

    run(main())


def test_open_twice_and_bad_queue_size_are_refused(runner):
    async def main():
        feed = ViewerFeed(runner)
        feed.open()
        with pytest.raises(RuntimeError, match="already open"):
            feed.open()
        feed.close()
        feed.close()

    run(main())
    with pytest.raises(ValueError, match="queue_size"):
        ViewerFeed(runner, queue_size=0)


def test_the_poll_timer_wakes_a_waiting_sender_with_none_and_messages_still_come_first(runner):
    async def main():
        feed = ViewerFeed(runner, poll_s=0.01)
        feed.open()
        assert await feed.next() is None  # nothing published: the poll woke it
        assert await feed.next() is None  # and again: the timer repeats while open
        # A message published while the sender waits wakes it with that message.
        asyncio.get_running_loop().call_later(0.001, runner.publish, tick(5.0))
        got = await feed.next()
        while got is None:  # a poll may fall first; the message is not lost
            got = await feed.next()
        assert got == tick(5.0)
        # Already queued: returned without waiting.
        runner.publish(tick(6.0))
        runner.publish(tick(7.0))
        assert feed.pending == 2
        assert [await feed.next(), await feed.next()] == [tick(6.0), tick(7.0)]
        feed.close()
        assert feed._poll_timer is None  # closed: no timer left behind

    run(main())
    with pytest.raises(ValueError, match="poll_s"):
        ViewerFeed(runner, poll_s=0.0)


def test_only_one_task_may_wait_and_a_cancelled_wait_leaves_the_feed_usable(runner):
    async def main():
        feed = ViewerFeed(runner)
        feed.open()
        waiting = asyncio.create_task(feed.next())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already waits"):
            await feed.next()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        # Published after the cancelled wait: kept, and handed to the next caller.
        runner.publish(tick(8.0))
        assert await feed.next() == tick(8.0)
        feed.close()

    run(main())
