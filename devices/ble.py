"""Real chest straps over Bluetooth LE (bleak): scan, connect, stream raw notifications,
reconnect, and record a pair of straps to a coreg-session file.

Follows the Heart Rate Service 1.0 (service 0x180D; Heart Rate Measurement 0x2A37 by
notification, Body Sensor Location 0x2A38 and Battery Level 0x2A19 by read). Payloads
are timestamped on arrival and kept raw (DESIGN.md: raw notifications are the ground
truth); they are parsed here only to count malformed ones.

bleak is reached only through ``client_factory`` (called like ``bleak.BleakClient``) and
``scanner`` (``discover`` like ``bleak.BleakScanner``), so everything here runs against
``devices.fakeble`` in tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Mapping

from bleak import BleakClient, BleakScanner
from bleak.exc import BleakError

from devices.hrs import (
    BATTERY_LEVEL_UUID,
    BODY_SENSOR_LOCATION_UUID,
    HEART_RATE_MEASUREMENT_UUID,
    HEART_RATE_SERVICE_UUID,
    MalformedPayload,
    parse_battery_level,
    parse_body_sensor_location,
    parse_hrm,
)
from devices.records import Notification, PartnerInfo, SessionClock, SessionHeader, SourceRecord, StatusChange
from devices.recording import RecordingWriter

log = logging.getLogger("coreg.ble")

ClientFactory = Callable[..., Any]
Sleep = Callable[[float], Awaitable[Any]]

# Failures after which a later attempt may well succeed: bleak's own errors (BlueZ
# "InProgress", device not found, link lost during setup), a timed-out attempt, and
# socket errors on the way to the Bluetooth daemon.
RETRYABLE_ERRORS = (BleakError, TimeoutError, OSError)
# Reading two characteristics and subscribing takes well under a second on a Polar H10;
# this only keeps a stuck attempt from holding the shared connect lock forever.
SETUP_TIMEOUT_S = 10.0
HANG_UP_TIMEOUT_S = 5.0


class StrapError(Exception):
    """A strap or the Bluetooth stack could not do what was asked; ``address`` says which."""

    def __init__(self, address: str | None, detail: str) -> None:
        super().__init__(f"{address}: {detail}" if address else detail)
        self.address = address
        self.detail = detail


@dataclass(frozen=True, slots=True)
class StrapInfo:
    """A strap found by ``scan``: advertised name, address and signal strength (dBm)."""

    name: str
    address: str
    rssi_dbm: int


async def scan(timeout_s: float = 5.0, *, scanner: Any = None) -> list[StrapInfo]:
    """Devices advertising the Heart Rate Service (0x180D), strongest signal first.

    ``timeout_s`` is how long to listen (s). ``scanner`` defaults to bleak's BleakScanner.
    Raises StrapError when Bluetooth cannot scan (no adapter, powered off, no daemon).
    """
    scanner = BleakScanner if scanner is None else scanner
    try:
        found = await scanner.discover(timeout_s, return_adv=True, service_uuids=[HEART_RATE_SERVICE_UUID])
    except RETRYABLE_ERRORS as exc:
        raise StrapError(None, f"Bluetooth scan failed: {_describe(exc)}") from exc
    straps = [
        StrapInfo(name=adv.local_name or device.name or "", address=device.address, rssi_dbm=adv.rssi)
        for device, adv in found.values()
        # Not every backend applies the service filter, so check the advertisement too.
        if HEART_RATE_SERVICE_UUID in (uuid.lower() for uuid in adv.service_uuids)
    ]
    return sorted(straps, key=lambda s: (-s.rssi_dbm, s.name, s.address))


class _End:
    """Queue marker: the strap is closed (or its supervisor failed with ``error``)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class _Link:
    """One connection attempt: its client and whether it has been announced/lost."""

    def __init__(self) -> None:
        self.client: Any = None
        self.lost = asyncio.Event()
        self.announced = False


def _describe(exc: BaseException) -> str:
    """An exception as a log phrase; asyncio timeouts carry no text of their own."""
    if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
        # On Linux this is the D-Bus socket of bluetoothd (missing daemon or adapter).
        return f"the Bluetooth service cannot be reached ({exc})"
    if str(exc):
        return str(exc)
    return "timed out" if isinstance(exc, TimeoutError) else type(exc).__name__


def _advertised_name(client: Any, address: str) -> str:
    """The strap's own name, or "" where bleak only knows the address (dashed form)."""
    name = getattr(client, "name", "") or ""
    return "" if name.replace("-", ":").lower() == address.lower() else name


class Strap:
    """One chest strap as a beat source (devices.records.BeatSource).

    Iterating yields a Notification (``t_s`` = ``clock.now_s()`` at arrival, payload
    untouched) per Heart Rate Measurement notification and a StatusChange "connected"
    after each successful (re)connect / "disconnected" when the link drops. A dropped
    or failed connection is retried after ``backoff_initial_s``, doubling up to
    ``backoff_max_s`` (s), reset by a successful connect, until ``close()``. Connect
    attempts hold ``connect_lock``; give every strap of a session the same lock, since
    BlueZ refuses overlapping connects (org.bluez.Error.InProgress).
    """

    def __init__(
        self,
        address: str,
        partner: str,
        *,
        clock: SessionClock,
        client_factory: ClientFactory = BleakClient,
        connect_lock: asyncio.Lock | None = None,
        sleep: Sleep = asyncio.sleep,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 30.0,
        connect_timeout_s: float = 20.0,
    ) -> None:
        if not 0 < backoff_initial_s <= backoff_max_s:
            raise ValueError(
                f"need 0 < backoff_initial_s <= backoff_max_s, got {backoff_initial_s!r} and {backoff_max_s!r}"
            )
        self.address = address
        self.partner = partner
        self.body_location: str | None = None
        self.battery_pct: int | None = None
        self.device_name = ""
        self.malformed: Counter[str] = Counter()
        self.notifications = 0
        self.connects = 0
        self.disconnects = 0
        self.failure: BaseException | None = None
        self._clock = clock
        self._client_factory = client_factory
        self._connect_lock = connect_lock if connect_lock is not None else asyncio.Lock()
        self._sleep = sleep
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._connect_timeout_s = connect_timeout_s
        self._queue: asyncio.Queue[SourceRecord | _End] = asyncio.Queue()
        self._listeners: list[asyncio.Event] = []
        self._settled = asyncio.Event()  # first connect, failure or close
        self._link: _Link | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._finished = False

    def __repr__(self) -> str:
        return f"strap {self.partner} ({self.address})"

    @property
    def connected(self) -> bool:
        link = self._link
        return link is not None and link.announced and not link.lost.is_set()

    # -- records -------------------------------------------------------------------

    def _push(self, record: SourceRecord | _End) -> None:
        if self._finished:
            return
        if isinstance(record, _End):
            self._finished = True
        self._queue.put_nowait(record)
        for event in self._listeners:
            event.set()

    def _on_notify(self, _characteristic: Any, data: bytearray) -> None:
        # Runs inside bleak's dispatch: must never raise.
        t_s = self._clock.now_s()
        payload = bytes(data)
        self._push(Notification(t_s=t_s, partner=self.partner, payload=payload))
        self.notifications += 1
        try:
            parse_hrm(payload)
        except MalformedPayload as exc:
            self.malformed[exc.reason] += 1
            log.debug("%r: malformed notification %s: %s", self, payload.hex(), exc)

    def _on_disconnected(self, link: _Link) -> None:
        if link.lost.is_set():
            return
        link.lost.set()
        if link.announced and not self._closing:
            self.disconnects += 1
            self._push(StatusChange(t_s=self._clock.now_s(), partner=self.partner, status="disconnected"))

    def __aiter__(self) -> AsyncIterator[SourceRecord]:
        return self._records()

    async def _records(self) -> AsyncIterator[SourceRecord]:
        self._start()
        while True:
            item = await self._queue.get()
            if isinstance(item, _End):
                self._queue.put_nowait(item)  # later readers see the end too
                if item.error is not None:
                    raise StrapError(self.address, f"stopped: {item.error!r}") from item.error
                return
            yield item

    def _drain(self) -> tuple[list[SourceRecord], bool]:
        """Everything queued now, and whether the strap has ended (for merging straps)."""
        records: list[SourceRecord] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return records, False
            if isinstance(item, _End):
                self._queue.put_nowait(item)
                return records, True
            records.append(item)

    # -- connection ----------------------------------------------------------------

    def _start(self) -> None:
        if self._task is None and not self._closing:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=f"strap-{self.partner}")
            self._task.add_done_callback(self._on_supervisor_done)

    def _on_supervisor_done(self, task: asyncio.Task) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self.failure = task.exception()
        log.error("%r stopped: %r", self, self.failure)
        self._push(_End(self.failure))
        self._settled.set()

    async def connect(self) -> None:
        """Start the strap and wait until it is first connected (retrying as needed).

        Raises StrapError if the strap is closed or fails before it ever connects.
        """
        self._start()
        await self._settled.wait()
        if self.failure is not None:
            raise StrapError(self.address, f"stopped: {self.failure!r}") from self.failure
        if self.connects == 0:
            raise StrapError(self.address, "closed before it connected")

    async def _supervise(self) -> None:
        backoff_s = self._backoff_initial_s
        delay_s: float | None = None  # no wait before the very first attempt
        attempt = 0
        while True:
            if delay_s is not None:
                await self._sleep(delay_s)
            attempt += 1
            try:
                link = await self._attempt()
            except RETRYABLE_ERRORS as exc:
                log.warning(
                    "%r: could not connect (attempt %d): %s; retrying in %g s",
                    self, attempt, _describe(exc), backoff_s,
                )
                delay_s, backoff_s = backoff_s, min(2 * backoff_s, self._backoff_max_s)
                continue
            attempt = 0
            backoff_s = self._backoff_initial_s
            self.connects += 1
            link.announced = True
            self._push(StatusChange(t_s=self._clock.now_s(), partner=self.partner, status="connected"))
            log.info(
                "%r connected (%s, sensor location %s, battery %s %%)",
                self, self.device_name or "no name", self.body_location, self.battery_pct,
            )
            self._settled.set()
            await link.lost.wait()
            log.warning("%r: the link dropped; reconnecting in %g s", self, backoff_s)
            delay_s, backoff_s = backoff_s, min(2 * backoff_s, self._backoff_max_s)

    async def _attempt(self) -> _Link:
        """One connect + read + subscribe, under the shared connect lock."""
        link = _Link()
        self._link = link
        async with self._connect_lock:
            link.client = self._client_factory(
                self.address,
                disconnected_callback=lambda _client: self._on_disconnected(link),
                timeout=self._connect_timeout_s,
            )
            try:
                async with asyncio.timeout(self._connect_timeout_s + SETUP_TIMEOUT_S):
                    await link.client.connect()
                    self.device_name = _advertised_name(link.client, self.address)
                    await self._read_details(link.client)
                    await link.client.start_notify(HEART_RATE_MEASUREMENT_UUID, self._on_notify)
                if link.lost.is_set():
                    raise BleakError("the link dropped while it was being set up")
            except RETRYABLE_ERRORS:
                await self._hang_up(link, stop_notify=False)
                raise
        return link

    async def _read_details(self, client: Any) -> None:
        """Body Sensor Location and Battery Level, when the strap has them (optional)."""
        for uuid, parse, attribute in (
            (BODY_SENSOR_LOCATION_UUID, parse_body_sensor_location, "body_location"),
            (BATTERY_LEVEL_UUID, parse_battery_level, "battery_pct"),
        ):
            try:
                setattr(self, attribute, parse(await client.read_gatt_char(uuid)))
            except (BleakError, MalformedPayload) as exc:
                log.info("%r: no %s: %s", self, attribute.replace("_", " "), exc)

    async def _hang_up(self, link: _Link, *, stop_notify: bool) -> None:
        client = link.client
        if client is None:
            return
        steps: list[tuple[str, Callable[[], Awaitable[Any]]]] = []
        if stop_notify:
            steps.append(("stopping notifications", lambda: client.stop_notify(HEART_RATE_MEASUREMENT_UUID)))
        steps.append(("disconnecting", client.disconnect))
        for what, step in steps:
            try:
                async with asyncio.timeout(HANG_UP_TIMEOUT_S):
                    await step()
            except RETRYABLE_ERRORS as exc:
                log.info("%r: %s failed: %s", self, what, _describe(exc))

    async def close(self) -> None:
        """Stop reconnecting, unsubscribe, disconnect and end iteration; idempotent."""
        if self._closing:
            return
        self._closing = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        link = self._link
        if link is not None:
            await self._hang_up(link, stop_notify=link.announced and not link.lost.is_set())
        self._push(_End())
        self._settled.set()


def _make_pair(addr_a: str, addr_b: str, *, connect_lock: asyncio.Lock | None, **kwargs: Any) -> tuple[Strap, Strap]:
    lock = connect_lock if connect_lock is not None else asyncio.Lock()
    return Strap(addr_a, "a", connect_lock=lock, **kwargs), Strap(addr_b, "b", connect_lock=lock, **kwargs)


async def connect_pair(
    addr_a: str,
    addr_b: str,
    *,
    clock: SessionClock,
    client_factory: ClientFactory = BleakClient,
    connect_lock: asyncio.Lock | None = None,
    sleep: Sleep = asyncio.sleep,
    backoff_initial_s: float = 1.0,
    backoff_max_s: float = 30.0,
    connect_timeout_s: float = 20.0,
) -> tuple[Strap, Strap]:
    """Connect partner a's strap, then b's, sharing one connect lock; both streaming.

    Waits (retrying with backoff) until both are connected; closes both if cancelled.
    """
    straps = _make_pair(
        addr_a, addr_b, connect_lock=connect_lock, clock=clock, client_factory=client_factory, sleep=sleep,
        backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, connect_timeout_s=connect_timeout_s,
    )
    try:
        for strap in straps:
            await strap.connect()
    except BaseException:
        for strap in straps:
            await strap.close()
        raise
    return straps


@dataclass(frozen=True, slots=True)
class RecordSummary:
    """What ``record_pair`` wrote: counts per partner ("a", "b") and the last ``t`` (s)."""

    path: str
    duration_s: float
    notifications: Mapping[str, int]
    disconnects: Mapping[str, int]
    malformed: Mapping[str, Mapping[str, int]]


class _Tally:
    def __init__(self) -> None:
        self.notifications = {"a": 0, "b": 0}
        self.disconnects = {"a": 0, "b": 0}
        self.last_t_s = 0.0


def _write_pending(straps: tuple[Strap, Strap], writer: RecordingWriter, tally: _Tally) -> bool:
    """Write everything the straps have queued, in arrival order; True if both ended."""
    batch: list[SourceRecord] = []
    ended = True
    for strap in straps:
        records, strap_ended = strap._drain()
        batch.extend(records)
        ended = ended and strap_ended
    # Each record is stamped as it is queued, so whatever arrives later is no earlier
    # than this batch: sorting the batch keeps the file ordered by t.
    batch.sort(key=lambda r: r.t_s)
    for record in batch:
        writer.write(record)
        tally.last_t_s = record.t_s
        if isinstance(record, Notification):
            tally.notifications[record.partner] += 1
        elif record.status == "disconnected":
            tally.disconnects[record.partner] += 1
    return ended


async def _copy_until_stop(
    straps: tuple[Strap, Strap], writer: RecordingWriter, tally: _Tally, stop: asyncio.Event | None
) -> None:
    doorbell = asyncio.Event()
    for strap in straps:
        strap._listeners.append(doorbell)
    stop_waiter = None
    if stop is not None:
        stop_waiter = asyncio.ensure_future(stop.wait())
        stop_waiter.add_done_callback(lambda _: doorbell.set())
    try:
        while True:
            doorbell.clear()
            ended = _write_pending(straps, writer, tally)
            for strap in straps:
                if strap.failure is not None:
                    raise StrapError(strap.address, f"stopped: {strap.failure!r}") from strap.failure
            if ended or (stop is not None and stop.is_set()):
                return
            await doorbell.wait()
    finally:
        if stop_waiter is not None:
            stop_waiter.cancel()


def _utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def record_pair(
    addr_a: str,
    addr_b: str,
    out_path: str | os.PathLike,
    *,
    names: tuple[str, str] = ("", ""),
    devices: tuple[str, str] | None = None,
    client_factory: ClientFactory = BleakClient,
    stop: asyncio.Event | None = None,
    clock: SessionClock | None = None,
    sleep: Sleep = asyncio.sleep,
    backoff_initial_s: float = 1.0,
    backoff_max_s: float = 30.0,
    connect_timeout_s: float = 20.0,
    fsync_interval_s: float = 1.0,
) -> RecordSummary:
    """Record both straps to a coreg-session v1 file until ``stop`` is set or cancelled.

    Connects a then b, then writes the header (partner names from ``names``; device =
    ``devices`` if given, else each strap's advertised name, else its address) and
    every record of both straps in arrival order. On cancel (Ctrl-C) the file is still
    finished and closed, header and all records written, before CancelledError goes
    on. An existing ``out_path`` is refused (FileExistsError) before connecting.
    """
    path = Path(out_path)
    if path.exists():
        raise FileExistsError(f"{path}: refusing to overwrite an existing recording")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"{path.parent}: no such directory for the recording")
    clock = clock if clock is not None else SessionClock()
    started_at = _utc_now_iso()
    straps = _make_pair(
        addr_a, addr_b, connect_lock=None, clock=clock, client_factory=client_factory, sleep=sleep,
        backoff_initial_s=backoff_initial_s, backoff_max_s=backoff_max_s, connect_timeout_s=connect_timeout_s,
    )

    def open_writer() -> RecordingWriter:
        partners = {
            strap.partner: PartnerInfo(
                name=name, device=(devices[i] if devices else "") or strap.device_name or strap.address
            )
            for i, (strap, name) in enumerate(zip(straps, names))
        }
        log.info("recording to %s", path)
        return RecordingWriter(path, SessionHeader(started_at=started_at, partners=partners),
                               fsync_interval_s=fsync_interval_s)

    tally = _Tally()
    writer: RecordingWriter | None = None
    try:
        for strap in straps:
            await strap.connect()
        writer = open_writer()
        await _copy_until_stop(straps, writer, tally, stop)
    finally:
        try:
            for strap in straps:
                await strap.close()
        finally:
            if writer is None:  # cancelled or failed while connecting
                writer = open_writer()
            try:
                _write_pending(straps, writer, tally)
            finally:
                writer.close()
    return RecordSummary(
        path=str(path),
        duration_s=tally.last_t_s,
        notifications=dict(tally.notifications),
        disconnects=dict(tally.disconnects),
        malformed={strap.partner: dict(strap.malformed) for strap in straps},
    )
