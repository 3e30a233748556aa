"""SQLite's WAL stays bounded under steady load: with a reader always inside a
transaction, passive checkpoints can never let the WAL start over, and it grew without
bound (465 MB in 21 s under the bench). The checkpointer starts it over past ``wal_limit``."""

from __future__ import annotations

import os
import threading
import time

from sqlalchemy import text

from orchestrator.store.db import Database

LIMIT = 1024 * 1024
WRITES = 2000
ROW = "x" * 4000


def test_the_wal_stays_under_its_bound_while_readers_never_stop(sqlite_url: str) -> None:
    db = Database(sqlite_url, wal_limit=LIMIT)
    wal = db.wal_path()
    assert wal is not None
    with db.write() as conn:
        conn.execute(text("CREATE TABLE load (id INTEGER PRIMARY KEY, body TEXT)"))
    stop = threading.Event()

    def reader(offset: float) -> None:
        time.sleep(offset)
        while not stop.is_set():
            with db.read() as conn:  # a snapshot held across the writer's commits
                conn.execute(text("SELECT count(*) FROM load")).scalar_one()
                time.sleep(0.002)

    readers = [threading.Thread(target=reader, args=(i * 0.001,)) for i in range(3)]
    for t in readers:
        t.start()
    peak = 0
    try:
        for i in range(WRITES):
            with db.write() as conn:
                conn.execute(text("INSERT INTO load (body) VALUES (:b)"), {"b": ROW})
                if i % 50 == 0:  # and some rewriting, as steps do
                    conn.execute(text("UPDATE load SET body = :b WHERE id % 7 = 0"), {"b": ROW})
            peak = max(peak, os.path.getsize(wal))
    finally:
        stop.set()
        for t in readers:
            t.join()
        restarts = db._checkpointer.restarts if db._checkpointer else 0
        db.dispose()
    written = WRITES * len(ROW)
    print(
        f"WAL peak {peak / 2**20:.1f} MiB for {written / 2**20:.1f} MiB written, "
        f"{restarts} restarts"
    )
    assert restarts >= 1
    assert peak < 12 * LIMIT, f"the WAL reached {peak / 2**20:.1f} MiB"
