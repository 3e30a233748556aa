"""Group commit for SQLite: database jobs that become ready together share one COMMIT.

On SQLite every database job of a process runs on its event loop (one writer anyway, and
a thread hop costs more than the job). Under load many jobs become ready in the same loop
iteration: step commits, claims, webhook inserts. Each used to pay for its own BEGIN and
COMMIT, and each COMMIT wrote the same hot pages (the tasks table and its indexes) to the
WAL again. Here they are queued and run back to back in one transaction:

- each ``Database.write()`` inside a job is a savepoint, so a job that fails leaves
  nothing behind and the others still commit (as separate transactions would);
- a job's caller resumes only after the COMMIT that made its writes durable, so nothing
  outside (an HTTP answer, a Twilio request) ever acts on an uncommitted write;
- a job whose caller was cancelled before the batch ran is skipped, as if never called;
- if the COMMIT itself fails, every job of the batch fails with that error.

A batch holds the event loop while it runs, so it is capped (``max_jobs``); what is left
runs in the next loop iteration, after I/O had its turn.

Under load, batches are spaced at least ``spacing`` seconds apart: every COMMIT rewrites
the hot pages (the end of each table, the busiest index pages) into the WAL, so fewer,
larger batches write far less (measured: some 80 pages per round trip with a batch per
loop iteration). Spacing starts only once batches hold ``BUSY_JOBS`` jobs or more: a
lightly loaded server commits at once and adds no delay.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from orchestrator.store.db import Database

T = TypeVar("T")
log = logging.getLogger("orchestrator.store")

Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]


# Batches this large mean jobs are arriving faster than single commits suit.
BUSY_JOBS = 4


class TransactionLost(RuntimeError):
    """SQLite rolled the batch's transaction back by itself; nothing of it was stored."""


class GroupCommit:
    def __init__(self, db: Database, max_jobs: int = 64, spacing: float = 0.0) -> None:
        self.db = db
        self.max_jobs = max(1, max_jobs)
        self.spacing = max(0.0, spacing)
        self._last_batch = float("-inf")
        self._last_size = 0
        self._queues: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        self.batches = 0
        self.jobs = 0

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
            wait = self._last_batch + self.spacing - loop.time()
            if wait > 0 and self._last_size >= BUSY_JOBS:
                loop.call_later(wait, self._flush, loop)
            else:
                loop.call_soon(self._flush, loop)
        queue.append((fn, args, kwargs, future))
        return await future

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last_batch = loop.time()
        queue = self._queues.pop(loop, [])
        batch, rest = queue[: self.max_jobs], queue[self.max_jobs :]
        if rest:
            self._queues[loop] = rest
            loop.call_soon(self._flush, loop)
        batch = [job for job in batch if not job[3].done()]  # cancelled callers
        self._last_size = len(batch)
        if batch:
            self._run_batch(batch)

    def _run_batch(self, batch: list[Job]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.db.batch() as conn:
                for fn, args, kwargs, _future in batch:
                    try:
                        outcomes.append((True, fn(*args, **kwargs)))
                    except Exception as exc:
                        outcomes.append((False, exc))
                    if not self.db.batch_alive(conn):
                        raise TransactionLost("SQLite ended the transaction; nothing was stored")
        except BaseException as exc:
            # Nothing of the batch is stored: every caller hears so.
            for _fn, _args, _kwargs, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(exc))
            if not isinstance(exc, Exception):
                raise
            return
        self.batches += 1
        self.jobs += len(batch)
        for (_fn, _args, _kwargs, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
