"""What the bench watches while it runs: a progress line every 3 s, PostgreSQL's backends'
CPU every second, and the SQLite WAL file's size every 50 ms."""

from __future__ import annotations

import asyncio
import os
import time

from orchestrator.bench import reads
from orchestrator.bench.pg_watch import PgWatch
from orchestrator.store.db import Database


class WalWatch:
    """The largest size the SQLite WAL file reached while the bench ran."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.peak = 0

    def size(self) -> int:
        try:
            return os.path.getsize(self.path) if self.path else 0
        except OSError:
            return 0

    async def run(self) -> None:
        while self.path:
            self.peak = max(self.peak, self.size())
            await asyncio.sleep(0.05)


async def watch(
    db: Database, pg: PgWatch, state: str, sent: list[int], started: float, stop: asyncio.Event
) -> None:
    """A progress line every 3 s; PostgreSQL's backends' CPU sampled every second (a
    backend that exits between samples takes its last second with it)."""
    tick, last_done, last_time = 0, 0, started
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
        await asyncio.to_thread(pg.sample_cpu)
        tick += 1
        if tick % 3 or stop.is_set():
            continue
        done = await asyncio.to_thread(reads.count_in_state, db, state, started)
        now = time.time()
        print(
            f"progress       {now - started:5.1f}s: {sent[0]} submitted, {done} {state} "
            f"({(done - last_done) / max(now - last_time, 1e-9):.0f}/s lately)",
            flush=True,
        )
        last_done, last_time = done, now
