"""Per-viewer fan-out: one bounded queue per WebSocket viewer, fed by the runner.

The runner calls every subscriber synchronously in the event loop, once per message,
and must never wait for a viewer. So each viewer owns a bounded queue that the
runner's callback appends to, waking the viewer's sender if it waits. A viewer that
falls behind (a slow tablet, a stalled network) overflows only its own queue: the queue
is emptied, the viewer stops collecting, and the next thing it is sent is a ``resync``
message holding the runner's whole snapshot, after which it follows live messages
again. Other viewers and the runner never notice.

The queue is a deque with one waiter future rather than an ``asyncio.Queue``, and a
following viewer's periodic look-around is one repeating timer rather than a timeout
per message: with 200 viewers on a session every message wakes 200 senders, and for a
following viewer ``asyncio.wait_for`` around ``Queue.get`` made a task and a timer per
message (bench/fanout.py, 200 viewers: the server's CPU per viewer and message fell by
8-13 % for viewers pinned to a session, and by half for viewers following one).

A late joiner subscribes *before* it takes the snapshot, so nothing published in
between can be lost; messages the snapshot already covers (ticks at or before its last
tick, events it already lists) are dropped when they come out of the queue, so nothing
is shown twice either.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Callable, Protocol

log = logging.getLogger("coreg.dashboard.hub")

Message = dict[str, Any]
DEFAULT_QUEUE_SIZE = 256

# Put in the queue in place of the dropped messages; taking it out triggers a resync.
_RESYNC = {"type": "_resync"}


class Publisher(Protocol):
    """What a viewer feed needs from a session runner (monitor.runner)."""

    def subscribe(self, callback: Callable[[Message], None]) -> Callable[[], None]: ...

    def snapshot(self) -> Message: ...


class _Covered:
    """What a snapshot already showed, to drop queued messages it includes."""

    def __init__(self, snapshot: Message) -> None:
        ticks = snapshot.get("ticks") or []
        events = snapshot.get("events") or []
        self.last_tick_t = ticks[-1]["t"] if ticks else None
        self.last_event_t = max((e["t"] for e in events), default=None)
        # Events at the snapshot's last event time may or may not be in it: compare them.
        self.tail_events = [e for e in events if e["t"] == self.last_event_t]

    def includes(self, message: Message) -> bool:
        kind = message.get("type")
        if kind == "tick":
            return self.last_tick_t is not None and message["t"] <= self.last_tick_t
        if kind == "event" and self.last_event_t is not None:
            event = message["event"]
            if event["t"] < self.last_event_t:
                return True
            return event["t"] == self.last_event_t and event in self.tail_events
        return False


class ViewerFeed:
    """The messages one viewer should get from one runner, in order, never blocking it.

    Call ``open()`` once (it subscribes and returns the first message, a snapshot),
    then ``await next()`` repeatedly, and ``close()`` when the viewer leaves.
    ``queue_size`` bounds how many messages may wait for a slow viewer. One task at a
    time may wait in ``next()`` (the viewer's sender). With ``poll_s``, a waiting sender
    is also woken every ``poll_s`` seconds, ``next()`` returning None, so that it can look
    around (a viewer following "the current session" checks for a newer one); one
    repeating timer per feed does it, not one per message.
    """

    def __init__(
        self, runner: Publisher, *, queue_size: int = DEFAULT_QUEUE_SIZE, poll_s: float | None = None
    ) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        if poll_s is not None and not poll_s > 0:
            raise ValueError(f"poll_s must be positive seconds or None, got {poll_s}")
        self.runner = runner
        self.queue_size = queue_size
        self._queue: deque[Message] = deque()
        self._waiter: asyncio.Future[None] | None = None  # the sender's, while it waits
        self.poll_s = poll_s
        self._poll_timer: asyncio.TimerHandle | None = None
        self.resyncs = 0  # how often this viewer fell behind (for logs and tests)
        self._dropping = False
        self._covered: _Covered | None = None
        self._unsubscribe: Callable[[], None] | None = None

    # -- the runner's side ---------------------------------------------------------

    def _on_message(self, message: Message) -> None:
        """The runner's callback: queue without waiting; on overflow, plan a resync."""
        if self._dropping:
            return  # the coming resync snapshot covers this message
        if len(self._queue) < self.queue_size:
            self._queue.append(message)
        else:
            self._dropping = True
            self.resyncs += 1
            self._queue.clear()
            self._queue.append(_RESYNC)
            log.info("a viewer fell behind; it will be sent a fresh snapshot")
        _wake(self._waiter)

    @property
    def pending(self) -> int:
        """How many messages wait in this viewer's queue (a planned resync counts one)."""
        return len(self._queue)

    # -- the viewer's side ---------------------------------------------------------

    def _take_snapshot(self, kind: str) -> Message:
        snapshot = self.runner.snapshot()
        self._covered = _Covered(snapshot)
        return {**snapshot, "type": kind}

    def open(self) -> Message:
        """Subscribe, then return the snapshot message the viewer must be sent first."""
        if self._unsubscribe is not None:
            raise RuntimeError("this viewer feed is already open")
        self._unsubscribe = self.runner.subscribe(self._on_message)
        return self._take_snapshot("snapshot")

    async def next(self) -> Message | None:
        """The next message for this viewer: a live one, or a ``resync`` after overflow;
        None when the poll timer (``poll_s``) woke the sender with nothing to send."""
        queue = self._queue
        while True:
            if not queue:
                await self._wait()
                if not queue:
                    return None
            message = queue.popleft()
            if message is _RESYNC:
                # Taking the snapshot and re-opening the queue happen in one step of the
                # event loop, so no message can fall between them.
                self._dropping = False
                return self._take_snapshot("resync")
            kind = message.get("type")
            if kind in ("snapshot", "resync"):
                # The runner itself restarted the story (a replay seek): follow it.
                self._covered = _Covered(message)
                return message
            if self._covered is not None:
                if self._covered.includes(message):
                    continue
                if kind == "tick":
                    # Past the snapshot now; a later seek may legitimately go back in time.
                    self._covered = None
            return message

    async def _wait(self) -> None:
        """Until a message is queued or the poll timer fires."""
        if self._waiter is not None:
            raise RuntimeError("another task already waits for this viewer's messages")
        loop = asyncio.get_running_loop()
        if self.poll_s is not None and self._poll_timer is None:
            self._poll_timer = loop.call_later(self.poll_s, self._poll)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _poll(self) -> None:
        """The poll timer: wake a waiting sender, and come again while the feed is open."""
        self._poll_timer = None
        if self._unsubscribe is not None:
            self._poll_timer = asyncio.get_running_loop().call_later(self.poll_s, self._poll)
        _wake(self._waiter)

    def close(self) -> None:
        """Unsubscribe from the runner; safe to call more than once."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None


def _wake(waiter: asyncio.Future[None] | None) -> None:
    """Let a waiting sender run (a message came, or the poll timer fired); at most once."""
    if waiter is not None and not waiter.done():
        waiter.set_result(None)
