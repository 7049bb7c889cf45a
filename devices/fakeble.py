"""A stand-in for bleak's client and scanner, for tests, fault drills and benchmarks.

``fake_client_factory`` builds a ``FakeRadio``: a callable with BleakClient's signature
that hands out ``FakeBleakClient`` objects talking to simulated chest straps. Each strap
("peripheral") replays a list of ``(t_s, payload)`` Heart Rate Measurement notifications
on its own timeline, which starts at its first successful connect and runs on whether or
not anyone is connected (a strap keeps beating while out of range; what it sends then
is lost). All durations given to the fake are strap seconds; ``speed`` divides them into
event-loop seconds, so ``speed=10`` replays ten times faster than life.

Cues (a ``FakeCue`` per strap) make the radio misbehave the way real straps and BlueZ
do: the link drops at given strap times and the strap stays out of range for a while
(connects fail with ``BleakError``), the first N connects fail, and a connect started
while another client of the same radio is still connecting fails at once with BlueZ's
``org.bluez.Error.InProgress``. The radio counts what happened (``connect_attempts``,
``in_progress_errors``) so tests can check it.

``VirtualTimeLoop`` / ``run_virtual`` run a coroutine on an event loop whose clock jumps
straight to the next timer whenever nothing is ready: a ten-minute replay with
reconnects takes milliseconds and every timestamp is exact, with no real waiting.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import selectors
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, Iterable, Mapping, Sequence, TypeVar

from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakCharacteristicNotFoundError, BleakDBusError, BleakDeviceNotFoundError, BleakError

from devices.hrs import (
    BATTERY_LEVEL_UUID,
    BODY_SENSOR_LOCATION_UUID,
    HEART_RATE_MEASUREMENT_UUID,
    HEART_RATE_SERVICE_UUID,
)
from devices.records import Notification
from devices.recording import open_recording

T = TypeVar("T")

# Attribute handles the fake reports; real straps use whatever their GATT table says.
_HANDLES = {0x10: HEART_RATE_MEASUREMENT_UUID, 0x13: BODY_SENSOR_LOCATION_UUID, 0x20: BATTERY_LEVEL_UUID}


@dataclass(frozen=True, slots=True)
class FakeCue:
    """How one simulated strap behaves.

    ``drop_at_s``: strap times (s after its first connect) at which the link drops;
    ``drop_for_s``: how long it then stays out of range (connects fail meanwhile);
    ``fail_first_connects``: this many connects fail before any succeeds;
    ``name``: advertised name (None: the client reports the address with dashes, as
    bleak does for a nameless device); ``body_location``/``battery_pct``: the raw values
    of 0x2A38 / 0x2A19, None when the strap lacks the characteristic.
    """

    drop_at_s: Sequence[float] = ()
    drop_for_s: float = 0.0
    fail_first_connects: int = 0
    name: str | None = "Polar H10 FAKE0001"
    rssi_dbm: int = -60
    body_location: int | None = 1
    battery_pct: int | None = 87


@dataclass(frozen=True, slots=True)
class FakeCharacteristic:
    """What the fake passes as the first argument of a notification callback."""

    uuid: str
    handle: int


@dataclass(eq=False)
class _Peripheral:
    """One simulated strap: its notifications, cue, and where its timeline stands."""

    address: str
    notes: list[tuple[float, bytes]]
    cue: FakeCue
    t0: float | None = None  # loop time of the first successful connect
    next_i: int = 0
    pending_drops_s: list[float] = field(default_factory=list)
    out_of_range_until_s: float = float("-inf")
    failures_left: int = 0
    client: FakeBleakClient | None = None

    def strap_time_s(self, loop_now: float, speed: float) -> float:
        return 0.0 if self.t0 is None else (loop_now - self.t0) * speed


def _normalise_uuid(char_specifier: Any) -> str:
    """A full lower-case UUID from a characteristic object, a handle, or a short/long UUID."""
    specifier = getattr(char_specifier, "uuid", char_specifier)
    if isinstance(specifier, int):
        return _HANDLES.get(specifier, f"handle {specifier}")
    text = str(specifier).lower()
    if len(text) == 4:
        return f"0000{text}-0000-1000-8000-00805f9b34fb"
    return text


class FakeRadio:
    """Simulated straps plus the shared adapter state; call it like ``BleakClient``.

    ``notifications_by_address`` maps each strap address to its ``(t_s, payload)``
    list (t_s in strap seconds, ascending). ``cues`` maps an address to its FakeCue;
    others get ``default_cue``. ``connect_delay_s`` is how long a connect takes.
    """

    def __init__(
        self,
        notifications_by_address: Mapping[str, Iterable[tuple[float, bytes]]],
        *,
        speed: float = 1.0,
        connect_delay_s: float = 0.5,
        cues: Mapping[str, FakeCue] | None = None,
        default_cue: FakeCue = FakeCue(),
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be a positive factor, got {speed!r}")
        self.speed = speed
        self.connect_delay_s = connect_delay_s
        self.connect_attempts: Counter[str] = Counter()
        self.in_progress_errors = 0
        self.clients: list[FakeBleakClient] = []
        self._connecting: set[FakeBleakClient] = set()
        self._peripherals: dict[str, _Peripheral] = {}
        for address, notes in notifications_by_address.items():
            cue = (cues or {}).get(address, default_cue)
            self._peripherals[address] = _Peripheral(
                address=address,
                notes=sorted((float(t), bytes(p)) for t, p in notes),
                cue=cue,
                pending_drops_s=sorted(float(t) for t in cue.drop_at_s),
                failures_left=cue.fail_first_connects,
            )

    def __call__(
        self,
        address_or_ble_device: BLEDevice | str,
        disconnected_callback: Callable[[Any], None] | None = None,
        services: Iterable[str] | None = None,
        *,
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> FakeBleakClient:
        return FakeBleakClient(
            address_or_ble_device, disconnected_callback, services, timeout=timeout, radio=self, **kwargs
        )

    def strap_time_s(self, address: str) -> float:
        """Seconds on a strap's timeline now (0 before its first connect)."""
        return self._peripherals[address].strap_time_s(asyncio.get_running_loop().time(), self.speed)

    def drop(self, address: str, for_s: float = 0.0) -> None:
        """Drop a strap's link now and keep it out of range for ``for_s`` strap seconds."""
        peripheral = self._peripherals[address]
        peripheral.out_of_range_until_s = self.strap_time_s(address) + for_s
        if peripheral.client is not None:
            peripheral.client._lose_link()

    def scanner(self) -> FakeBleakScanner:
        """A scanner that sees every strap of this radio, advertising the HR service."""
        return FakeBleakScanner(
            [advert(p.address, p.cue.name, p.cue.rssi_dbm) for p in self._peripherals.values()]
        )


class FakeBleakClient:
    """The part of ``bleak.BleakClient`` coreg uses, backed by a FakeRadio's strap."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        disconnected_callback: Callable[[Any], None] | None = None,
        services: Iterable[str] | None = None,
        *,
        timeout: float = 30.0,
        radio: FakeRadio | None = None,
        **kwargs: Any,
    ) -> None:
        self._address = getattr(address_or_ble_device, "address", address_or_ble_device)
        self._radio = radio if radio is not None else FakeRadio({self._address: []})
        self._radio.clients.append(self)
        self._disconnected_callback = disconnected_callback
        self.timeout = timeout
        self._connected = False
        self._tasks: list[asyncio.Task] = []

    @property
    def address(self) -> str:
        return self._address

    @property
    def name(self) -> str:
        peripheral = self._radio._peripherals.get(self._address)
        name = peripheral.cue.name if peripheral else None
        return name if name else self._address.replace(":", "-")

    @property
    def is_connected(self) -> bool:
        return self._connected

    async def __aenter__(self) -> FakeBleakClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.disconnect()

    async def connect(self, **kwargs: Any) -> None:
        """Connect after ``connect_delay_s``; fails as the cues and other clients dictate."""
        if self._connected:
            return
        radio = self._radio
        radio.connect_attempts[self._address] += 1
        if radio._connecting:
            # BlueZ handles one connection attempt at a time per adapter.
            radio.in_progress_errors += 1
            raise BleakDBusError("org.bluez.Error.InProgress", ["Operation already in progress"])
        radio._connecting.add(self)
        try:
            await asyncio.sleep(radio.connect_delay_s / radio.speed)
        finally:
            radio._connecting.discard(self)
        peripheral = radio._peripherals.get(self._address)
        if peripheral is None:
            raise BleakDeviceNotFoundError(self._address, f"Device with address {self._address} was not found.")
        if peripheral.failures_left > 0:
            peripheral.failures_left -= 1
            raise BleakError(f"{self._address}: connection failed (fake: cued failure)")
        loop = asyncio.get_running_loop()
        now_s = peripheral.strap_time_s(loop.time(), radio.speed)
        if peripheral.t0 is not None and now_s < peripheral.out_of_range_until_s:
            raise BleakError(f"{self._address}: device out of range (fake)")
        if peripheral.client is not None:
            raise BleakError(f"{self._address}: already connected to another client (fake)")
        if peripheral.t0 is None:
            peripheral.t0 = loop.time()
        self._connected = True
        peripheral.client = self
        self._tasks.append(loop.create_task(self._watch_drops(peripheral)))

    async def disconnect(self) -> None:
        """Hang up; like BlueZ, this also calls the disconnected callback."""
        if self._connected:
            self._lose_link()
        await asyncio.sleep(0)

    def _peripheral(self) -> _Peripheral:
        if not self._connected:
            raise BleakError("Not connected")
        return self._radio._peripherals[self._address]

    async def read_gatt_char(self, char_specifier: Any, **kwargs: Any) -> bytearray:
        """Body Sensor Location and Battery Level, as the cue says."""
        cue = self._peripheral().cue
        uuid = _normalise_uuid(char_specifier)
        value = {BODY_SENSOR_LOCATION_UUID: cue.body_location, BATTERY_LEVEL_UUID: cue.battery_pct}.get(uuid)
        if value is None:
            raise BleakCharacteristicNotFoundError(char_specifier)
        await asyncio.sleep(0)
        return bytearray([value])

    async def start_notify(self, char_specifier: Any, callback: Callable[..., Any], **kwargs: Any) -> None:
        """Start delivering Heart Rate Measurement notifications to ``callback(char, data)``."""
        peripheral = self._peripheral()
        if _normalise_uuid(char_specifier) != HEART_RATE_MEASUREMENT_UUID:
            raise BleakCharacteristicNotFoundError(char_specifier)
        await self.stop_notify(char_specifier)
        task = asyncio.get_running_loop().create_task(self._deliver(peripheral, callback))
        task.set_name("fake-notify")
        self._tasks.append(task)

    async def stop_notify(self, char_specifier: Any) -> None:
        """Stop delivering notifications."""
        self._peripheral()
        self._cancel_tasks(lambda task: task.get_name() == "fake-notify")
        await asyncio.sleep(0)

    def _cancel_tasks(self, which: Callable[[asyncio.Task], bool]) -> None:
        current = asyncio.current_task()
        for task in [t for t in self._tasks if which(t)]:
            self._tasks.remove(task)
            if task is not current:
                task.cancel()

    def _lose_link(self) -> None:
        self._connected = False
        self._cancel_tasks(lambda task: True)
        peripheral = self._radio._peripherals.get(self._address)
        if peripheral is not None and peripheral.client is self:
            peripheral.client = None
        if self._disconnected_callback is not None:
            self._disconnected_callback(self)

    async def _deliver(self, peripheral: _Peripheral, callback: Callable[..., Any]) -> None:
        loop = asyncio.get_running_loop()
        speed = self._radio.speed
        char = FakeCharacteristic(HEART_RATE_MEASUREMENT_UUID, 0x10)
        notes = peripheral.notes
        # What the strap sent while nobody listened is gone.
        now_s = peripheral.strap_time_s(loop.time(), speed)
        while peripheral.next_i < len(notes) and notes[peripheral.next_i][0] < now_s:
            peripheral.next_i += 1
        while peripheral.next_i < len(notes):
            t_s, payload = notes[peripheral.next_i]
            delay_s = peripheral.t0 + t_s / speed - loop.time()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            peripheral.next_i += 1
            result = callback(char, bytearray(payload))
            if inspect.isawaitable(result):
                await result

    async def _watch_drops(self, peripheral: _Peripheral) -> None:
        loop = asyncio.get_running_loop()
        speed = self._radio.speed
        now_s = peripheral.strap_time_s(loop.time(), speed)
        # Drops cued for while the strap was disconnected have nothing to drop.
        while peripheral.pending_drops_s and peripheral.pending_drops_s[0] < now_s:
            peripheral.pending_drops_s.pop(0)
        if not peripheral.pending_drops_s:
            return
        drop_s = peripheral.pending_drops_s.pop(0)
        await asyncio.sleep(max(0.0, peripheral.t0 + drop_s / speed - loop.time()))
        peripheral.out_of_range_until_s = drop_s + peripheral.cue.drop_for_s
        self._lose_link()


def fake_client_factory(
    notifications_by_address: Mapping[str, Iterable[tuple[float, bytes]]],
    *,
    speed: float = 1.0,
    connect_delay_s: float = 0.5,
    per_address: Mapping[str, FakeCue] | None = None,
    **cue: Any,
) -> FakeRadio:
    """A FakeRadio (callable like ``BleakClient``) replaying the given notifications.

    Keyword arguments other than ``speed``, ``connect_delay_s`` and ``per_address`` are
    FakeCue fields applied to every strap not named in ``per_address``.
    """
    return FakeRadio(
        notifications_by_address,
        speed=speed,
        connect_delay_s=connect_delay_s,
        cues=per_address,
        default_cue=FakeCue(**cue),
    )


def advert(
    address: str,
    name: str | None,
    rssi_dbm: int,
    service_uuids: Sequence[str] = (HEART_RATE_SERVICE_UUID,),
) -> tuple[BLEDevice, AdvertisementData]:
    """One discovered device as ``BleakScanner.discover(return_adv=True)`` reports it."""
    adv = AdvertisementData(
        local_name=name,
        manufacturer_data={},
        service_data={},
        service_uuids=list(service_uuids),
        tx_power=None,
        rssi=rssi_dbm,
        platform_data=(),
    )
    return BLEDevice(address, name, None), adv


class FakeBleakScanner:
    """Stands in for ``BleakScanner`` in ``discover``: returns fixed advertisements.

    Like some platform backends, it does not apply ``service_uuids`` itself; the
    arguments of the last call are kept in ``last_kwargs``. ``error`` is raised instead
    of answering when set (e.g. a BleakError for "Bluetooth is off").
    """

    def __init__(self, adverts: Iterable[tuple[BLEDevice, AdvertisementData]], error: Exception | None = None):
        self.adverts = list(adverts)
        self.error = error
        self.last_kwargs: dict[str, Any] = {}

    async def discover(self, timeout: float = 5.0, *, return_adv: bool = False, **kwargs: Any):
        self.last_kwargs = {"timeout": timeout, "return_adv": return_adv, **kwargs}
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        if return_adv:
            return {device.address: (device, adv) for device, adv in self.adverts}
        return [device for device, _ in self.adverts]


def load_notifications(path: str | os.PathLike, partner: str = "a") -> list[tuple[float, bytes]]:
    """One partner's ``(t_s, payload)`` notifications from a coreg-session recording."""
    with open_recording(path) as reader:
        return [(r.t_s, r.payload) for r in reader if isinstance(r, Notification) and r.partner == partner]


class _JumpingSelector(selectors.DefaultSelector):
    """Polls real I/O; when the loop would otherwise sleep until a timer, moves time instead."""

    advance: Callable[[float], None]

    def select(self, timeout: float | None = None):
        ready = super().select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None:  # no timer pending: only real I/O (threads, signals) can wake us
            return super().select(None)
        self.advance(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose ``time()`` is virtual and jumps to the next due timer.

    Everything scheduled through the loop (``asyncio.sleep``, timeouts, ``call_later``)
    happens in order and at its exact virtual time, without real waiting. Code that
    reads ``time.monotonic`` directly still sees real time: hand it ``loop.time``.
    """

    def __init__(self, start_s: float = 0.0) -> None:
        selector = _JumpingSelector()
        selector.advance = self._advance
        self._virtual_now_s = start_s
        super().__init__(selector)

    def time(self) -> float:
        return self._virtual_now_s

    def _advance(self, dt_s: float) -> None:
        self._virtual_now_s += dt_s


def run_virtual(main: Coroutine[Any, Any, T], *, start_s: float = 0.0) -> T:
    """Run ``main`` to completion on a fresh VirtualTimeLoop (like ``asyncio.run``)."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start_s)) as runner:
        return runner.run(main)
