"""Callbacks for sids no task has (orphans) are kept briefly and in bounded number.

A Twilio callback can legitimately arrive a moment before its task records the sid
(the early-callback case): it waits as ``pending`` and is applied when the task reaches
its wait node. One that never finds a task (a stray or forged sid: the JSON form needs
only the URL hash) is deleted after ``ORCH_ORPHAN_CALLBACK_TTL`` seconds (default one
hour, at least MIN_TTL: far beyond the seconds an early callback waits; 0 keeps them
until the cap), and beyond the newest
``ORCH_ORPHAN_CALLBACK_MAX`` the oldest go at once, so a flood cannot grow the table.
The sweep deletes in batches until nothing is left to delete, every SWEEP_INTERVAL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from orchestrator.engine.runtime import Runtime
from orchestrator.store import callbacks as inbox

log = logging.getLogger("orchestrator.engine")

SWEEP_INTERVAL = 10.0
BATCH = 1000
# A shorter lifetime could drop early callbacks still waiting for their task.
MIN_TTL = 60.0


class OrphanSweeper:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.purged = 0  # orphans this process deleted (a metrics counter)

    def purge_batch(self, now: float) -> int:
        """One transaction: up to BATCH expired orphans, or beyond the cap."""
        s = self.rt.settings
        with self.rt.db.write() as conn:
            n = 0
            if s.orphan_callback_ttl > 0:
                ttl = max(s.orphan_callback_ttl, MIN_TTL)
                n = inbox.purge_old_orphans(conn, now - ttl, BATCH)
            if n < BATCH and s.orphan_callback_max > 0:
                n += inbox.trim_orphans(conn, s.orphan_callback_max, BATCH - n)
        self.purged += n
        if n:
            self.rt.metrics.orphans_purged.inc(n)
        return n

    async def sweep_once(self) -> int:
        """Batches until a short one (nothing starves: steps run in between)."""
        total = 0
        while True:
            n = await self.rt.run_db(self.purge_batch, time.time())
            total += n
            if n < BATCH:
                return total
            await asyncio.sleep(0)

    async def run(self, stopping: Callable[[], bool]) -> None:
        while not stopping():
            try:
                purged = await self.sweep_once()
                if purged:
                    log.info("deleted %d callback(s) that never found a task", purged)
            except Exception:
                log.exception("purging orphan callbacks failed; retrying later")
            await asyncio.sleep(SWEEP_INTERVAL)
