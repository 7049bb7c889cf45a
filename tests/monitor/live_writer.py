"""Helper for test_crash.py (not collected): a live session from two fake straps
that replay a fixture 20 times faster than real time, until it is killed.

Usage: live_writer.py DB FIXTURE DELIVERY_LOG. Before each notification reaches the
strap, the fake radio appends "address monotonic-seconds" to DELIVERY_LOG (unbuffered),
so the test can tell which notifications were delivered before the kill.
"""

import asyncio
import os
import sys
import time

from devices.fakeble import fake_client_factory, load_notifications
from monitor.sessions import SessionManager
from monitor.store import Store


def logged(radio, log_fd: int):
    """A client factory like ``radio`` whose clients log every delivery first."""

    def factory(*args, **kwargs):
        client = radio(*args, **kwargs)
        start_notify = client.start_notify

        async def start_logged(char, callback, **options):
            def deliver(characteristic, data):
                os.write(log_fd, f"{client.address} {time.monotonic():.6f}\n".encode())
                return callback(characteristic, data)

            await start_notify(char, deliver, **options)

        client.start_notify = start_logged
        return client

    return factory


async def main(db: str, fixture: str, log_path: str) -> None:
    store = Store(db)
    manager = SessionManager(store)
    notes = {"AA:01": load_notifications(fixture, "a"), "BB:02": load_notifications(fixture, "b")}
    radio = fake_client_factory(notes, speed=20.0, connect_delay_s=0.05)
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    runner = await manager.start_live("AA:01", "BB:02", label="crash test", client_factory=logged(radio, log_fd))
    print(runner.id, flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
