"""Group commit: database jobs that become ready together share one COMMIT.

Under load many jobs become ready in the same loop iteration: step commits, claims,
deliveries. Each used to pay for its own BEGIN and COMMIT (on PostgreSQL a WAL flush and
several network round trips; on SQLite a rewrite of the same hot pages, the tasks table
and its indexes, into the WAL). Here they are queued and run back to back in one
transaction:

- a job that fails leaves nothing behind and the others still commit (as separate
  transactions would). SQLite: each ``Database.write()`` inside a job is a savepoint
  (cheap there, and its batches also hold jobs that cannot run twice). PostgreSQL: a
  savepoint is a network round trip, and its jobs can all run twice, so its batches are
  optimistic: no savepoints; a ``write()`` (or ``all_or_nothing``) block that raises, even
  one its job catches, or a statement that leaves the transaction aborted, poisons the
  batch, which is then rolled back; the job that poisoned it runs again alone, in
  transactions of its own (where blocks are savepoints again), and the others make up a
  new batch (and so on: a flood of failing jobs still commits the others in batches;
  ``REBATCH_RUNS`` bounds the work rolled back);
- PostgreSQL: rows that jobs defer to the COMMIT (history, tracked messages:
  ``Optimistic.defer``) are written just before it; if they cannot be, whose row failed
  is not known, so every job of the batch runs again alone (where nothing is deferred);
- a job's caller resumes only after the COMMIT that made its writes durable, so nothing
  outside (an HTTP answer, a Twilio request) ever acts on an uncommitted write;
- a job whose caller was cancelled before the batch (or a new attempt of it) ran is
  skipped, as if never called;
- if the COMMIT itself fails, every job of the batch fails with that error.

SQLite: every database job of a process runs on its event loop (one writer anyway, and a
thread hop costs more than the job), so a batch holds the loop while it runs and is
capped (``max_jobs``); what is left runs in the next loop iteration, after I/O had its
turn. Under load, batches are spaced at least ``spacing`` seconds apart: fewer, larger
batches write far less (measured: some 80 pages per round trip with a batch per loop
iteration). Spacing starts only once batches hold ``BUSY_JOBS`` jobs or more: a lightly
loaded server commits at once and adds no delay.

PostgreSQL (``executor``): a batch runs in a thread of its own, at most ``max_batches``
at once; jobs that arrive meanwhile make up the next batch. A batch holds its jobs' row
locks until its COMMIT, so batches of two processes could wait on each other; a job that
waits longer than BATCH_LOCK_WAIT_MS for a row lock rolls its batch back; that job runs
again alone (waiting as long as it takes) and the others in a new batch, as after a
poisoned batch. Batches run on connections opened with that lock_timeout (Database.batch): a
clean batch costs BEGIN, its jobs' statements and COMMIT, nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from orchestrator.store.db import Database, sqlstate
from orchestrator.store.savepoint import DeferredWriteFailed

T = TypeVar("T")
log = logging.getLogger("orchestrator.store")

Job = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any], "asyncio.Future[Any]"]
# Per job: (True, its result) or (False, its exception; None for a skipped job).
Outcomes = list[tuple[bool, Any]]


# Batches this large mean jobs are arriving faster than single commits suit.
BUSY_JOBS = 4


# PostgreSQL: a job of a batch that waits longer than this for a row lock (another
# process's transaction holds it) rolls its batch back; it runs again alone, the others
# in a new batch. A batch holds its jobs' row locks until its COMMIT, so two processes' batches
# that wait on each other would otherwise deadlock (PostgreSQL breaks a deadlock only
# after deadlock_timeout, 1 s, and a retry inside the batch meets the same cycle).
BATCH_LOCK_WAIT_MS = 100

# PostgreSQL: a batch rolled back by one job runs again without it; such attempts stop
# (the jobs left run one by one) once this many job runs per job of the batch were
# rolled back. A flood of failing jobs costs about one run per job (the jobs that had not
# run yet go first in each new attempt); this bounds the rest.
REBATCH_RUNS = 2  # at least 1


def contended(exc: BaseException) -> bool:
    """Whether a database error is a lock wait that timed out or a deadlock."""
    return sqlstate(exc) in ("55P03", "40P01")


class _RolledBack(Exception):
    """An optimistic batch was rolled back: its ``index``-th job waited for a row lock
    (``contended``) or poisoned it (a failed block, an aborted transaction)."""

    def __init__(self, index: int, *, contended: bool) -> None:
        super().__init__(index, contended)
        self.index = index
        self.contended = contended


def _outcome(job: Job) -> tuple[bool, Any]:
    """Run one job: (True, its result), (False, its exception), or (False, None) when its
    caller was cancelled while the batch waited (for the loop or a thread)."""
    fn, args, kwargs, future = job
    if future.done():
        return False, None
    try:
        return True, fn(*args, **kwargs)
    except Exception as exc:
        return False, exc


class TransactionLost(RuntimeError):
    """SQLite rolled the batch's transaction back by itself; nothing of it was stored."""


class GroupCommit:
    """Queues database jobs per event loop and runs those ready together in one
    transaction. With ``executor`` (PostgreSQL: its transactions wait on the network) a
    batch runs in that pool's thread while the loop goes on, at most ``max_batches`` at
    once; jobs that arrive meanwhile make up the next batch. Without it (SQLite) a batch
    runs on the loop itself.

    With an executor, a job may run more than once: a batch that waits on another
    process's row lock, or in which a job's write block fails (optimistic batches take no
    savepoints), is rolled back; that job runs again on its own, the others in a new
    batch. Only jobs that can start
    over (they keep no state of a first run) belong in such a GroupCommit."""

    def __init__(
        self,
        db: Database,
        max_jobs: int = 64,
        spacing: float = 0.0,
        *,
        executor: Executor | None = None,
        max_batches: int = 2,
    ) -> None:
        self.db = db
        self.max_jobs = max(1, max_jobs)
        self.spacing = max(0.0, spacing)
        self.executor = executor
        self.max_batches = max(1, max_batches)
        self._last_batch = float("-inf")
        self._last_size = 0
        self._queues: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        self._running: dict[asyncio.AbstractEventLoop, int] = {}
        self.batches = 0  # transactions committed (a lone job's too)
        self.jobs = 0  # ...and the jobs in them
        self.contended = 0  # optimistic batches rolled back for a row lock
        self.poisoned = 0  # optimistic batches rolled back for a failed block
        self.alone = 0  # jobs run alone after that (the one that failed it, or all left)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
            if self.executor is not None:
                if self._running.get(loop, 0) < self.max_batches:
                    loop.call_soon(self._flush, loop)
                # else: the batch that ends next starts this queue
            else:
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
            if self.executor is None:
                loop.call_soon(self._flush, loop)
        batch = [job for job in batch if not job[3].done()]  # cancelled callers
        self._last_size = len(batch)
        if not batch:
            self._next(loop)
            return
        if self.executor is None:
            try:
                outcomes = self._run_batch(batch)
            except BaseException as exc:  # KeyboardInterrupt, SystemExit: callers hear too
                self._settle(batch, [(False, RuntimeError(repr(exc)))] * len(batch))
                raise
            self._settle(batch, outcomes)
            return
        self._running[loop] = self._running.get(loop, 0) + 1
        running = loop.run_in_executor(self.executor, self._run_batch, batch)
        running.add_done_callback(lambda done: self._batch_done(loop, batch, done))
        self._next(loop)

    def _next(self, loop: asyncio.AbstractEventLoop) -> None:
        """With an executor: start the queued jobs if a batch may start now."""
        if self.executor is None or loop not in self._queues:
            return
        if self._running.get(loop, 0) < self.max_batches:
            loop.call_soon(self._flush, loop)

    def _batch_done(
        self, loop: asyncio.AbstractEventLoop, batch: list[Job], done: asyncio.Future[Outcomes]
    ) -> None:
        self._running[loop] -= 1
        exc = done.exception() if not done.cancelled() else asyncio.CancelledError()
        self._settle(batch, [(False, exc)] * len(batch) if exc else done.result())
        self._next(loop)

    def _run_batch(self, batch: list[Job]) -> Outcomes:
        """Each job's outcome; if the transaction fails as a whole, every job fails."""
        if self.executor is None:
            return self._run_locked(batch)
        if len(batch) == 1:
            # Alone, a job is a plain transaction: no lock wait limit.
            self.batches += 1
            self.jobs += 1
            return [_outcome(batch[0])]
        return self._run_optimistic(batch)

    def _run_locked(self, batch: list[Job]) -> Outcomes:
        """SQLite: one transaction, each job's blocks savepoints of it."""
        outcomes: Outcomes = []
        try:
            with self.db.batch() as conn:
                for job in batch:
                    outcomes.append(_outcome(job))
                    if not self.db.batch_alive(conn):
                        raise TransactionLost(
                            "the database ended the transaction; nothing was stored"
                        )
        except Exception as exc:
            # Nothing of the batch is stored: every caller hears so.
            return [(False, exc)] * len(batch)
        self.batches += 1
        self.jobs += len(batch)
        return outcomes

    def _run_optimistic(self, batch: list[Job]) -> Outcomes:
        """PostgreSQL: the batch in one transaction without savepoints. When a job rolls
        it back (a failed block, a row lock), that job runs alone, in transactions of its
        own, and the others make up a new batch: the jobs that had not run yet first
        (the next failure is among them, if any), then those that ran well. Every failed
        attempt takes a job out, so this ends; and once REBATCH_RUNS job runs per job
        of the batch were rolled back, what is left runs job by job."""
        outcomes: list[tuple[bool, Any] | None] = [None] * len(batch)
        order = list(range(len(batch)))
        budget = REBATCH_RUNS * len(batch)
        while True:
            order = [i for i in order if not batch[i][3].done()]  # cancelled callers
            if len(order) < 2 or budget <= 0:
                break  # (REBATCH_RUNS >= 1: a batch is tried at least once)
            try:
                done = self._attempt([batch[i] for i in order])
            except DeferredWriteFailed:
                # Whose deferred rows failed is not known: every job runs alone.
                self.poisoned += 1
                break
            except _RolledBack as failed:
                if failed.contended:
                    self.contended += 1
                else:
                    self.poisoned += 1
                budget -= failed.index + 1
                culprit = order[failed.index]
                outcomes[culprit] = self._alone(batch[culprit])
                order = order[failed.index + 1 :] + order[: failed.index]
                continue
            except Exception as exc:
                # Nothing of the batch is stored: every caller hears so.
                done = [(False, exc)] * len(order)
            for i, outcome in zip(order, done, strict=True):
                outcomes[i] = outcome
            order = []
        for i in order:
            outcomes[i] = self._alone(batch[i])
        return [(False, None) if o is None else o for o in outcomes]

    def _attempt(self, batch: list[Job]) -> Outcomes:
        """One optimistic batch: committed with every job's outcome, or rolled back
        (``_RolledBack``, naming the job that failed it)."""
        outcomes: Outcomes = []
        with self.db.batch(lock_timeout_ms=BATCH_LOCK_WAIT_MS, optimistic=True) as conn:
            for index, job in enumerate(batch):
                ok, value = _outcome(job)
                if self.db.batch_deferred_failed():
                    raise DeferredWriteFailed("rows deferred in the batch were not written")
                if not ok and contended(value):
                    raise _RolledBack(index, contended=True) from value
                if self.db.batch_poisoned(conn):
                    raise _RolledBack(index, contended=False)
                outcomes.append((ok, value))
        self.batches += 1
        self.jobs += len(batch)
        return outcomes

    def _alone(self, job: Job) -> tuple[bool, Any]:
        """A job of a rolled-back batch, again, in transactions of its own that wait for
        locks as usual and take savepoints where they ask for them."""
        self.alone += 1
        return _outcome(job)

    @staticmethod
    def _settle(batch: list[Job], outcomes: Outcomes) -> None:
        for (_fn, _args, _kwargs, future), (ok, value) in zip(batch, outcomes, strict=True):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            elif isinstance(value, BaseException):
                future.set_exception(value)
