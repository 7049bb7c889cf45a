"""Helper for test_crash.py (not collected): a live session from two fake straps
that replay a fixture 20 times faster than real time, until it is killed."""

import asyncio
import sys

from devices.fakeble import fake_client_factory, load_notifications
from monitor.sessions import SessionManager
from monitor.store import Store


async def main(db: str, fixture: str) -> None:
    store = Store(db)
    manager = SessionManager(store)
    notes = {"AA:01": load_notifications(fixture, "a"), "BB:02": load_notifications(fixture, "b")}
    radio = fake_client_factory(notes, speed=20.0, connect_delay_s=0.05)
    runner = await manager.start_live("AA:01", "BB:02", label="crash test", client_factory=radio)
    print(runner.id, flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
