"""Helper for test_store.py: record a fixture into a store, slowly, until killed.

usage: python store_writer.py DB FIXTURE COMMIT_INTERVAL_S

Prints "session <id>", then "committed <n>" whenever a second, independent connection
to the database sees more records of the session (so <n> records were committed). It
never finishes the session: after the last record it waits to be killed.
"""

import sqlite3
import sys
import time

from devices.recording import read_records
from monitor.store import Store


def main() -> None:
    db, fixture, commit_interval_s = sys.argv[1], sys.argv[2], float(sys.argv[3])
    header, records = read_records(fixture)
    store = Store(db, commit_interval_s=commit_interval_s)
    session_id = store.create_session(header, label="killed mid-session", kind="demo", config={})
    print(f"session {session_id}", flush=True)
    observer = sqlite3.connect(db)
    seen = 0
    for record in records:
        store.add_record(session_id, record)
        count = observer.execute("SELECT count(*) FROM records WHERE session_id = ?", (session_id,)).fetchone()[0]
        if count != seen:
            seen = count
            print(f"committed {count}", flush=True)
        time.sleep(0.001)  # about 2.5 s for the whole fixture
    print("all added", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    main()
