"""The engine loop: claim runnable tasks, due timers and new callbacks; run them.

Work is claimed with leases (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so several worker
processes can share a database; a worker that dies leaves its leases to expire and be
taken over. Inside one worker, tasks run concurrently as asyncio tasks, bounded by
``engine_concurrency``; database work runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection

from orchestrator import secretdata
from orchestrator.engine.attempts import followed_or_not, for_attempt
from orchestrator.engine.definition import ProcessDefinition
from orchestrator.engine.deliveries import Follow, Histories, deliver
from orchestrator.engine.interpreter import Interpreter
from orchestrator.engine.lock import SqliteEngineLock
from orchestrator.engine.orphans import OrphanSweeper
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.step_failures import record_step_failure
from orchestrator.engine.steps import Conflict, Recheck, StepDeferred, StepResult
from orchestrator.engine.transitions import commit_step, follower
from orchestrator.logs import task_fields
from orchestrator.store import callbacks as inbox
from orchestrator.store import effects as effect_store
from orchestrator.store import tasks as task_store
from orchestrator.store.aftercommit import after_commit
from orchestrator.store.notify import Listener
from orchestrator.store.records import CallbackRecord, TaskRecord
from orchestrator.store.retention import purge_batch

log = logging.getLogger("orchestrator.engine")
T = TypeVar("T")


class Worker:
    def __init__(self, rt: Runtime, *, concurrency: int | None = None) -> None:
        self.rt = rt
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFF:04x}"
        self.concurrency = concurrency or rt.settings.engine_concurrency
        self.interpreter = Interpreter(rt, rt.plugins.step_handlers(rt))
        self._running: set[asyncio.Task[None]] = set()
        self._running_ids: dict[asyncio.Task[None], str] = {}
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = False
        self._finished: asyncio.Event | None = None
        self._lock: SqliteEngineLock | None = None
        # Database calls still running in threads: a cancelled step's commit or a claim
        # can finish after its awaiting coroutine is gone, so stop() waits for them
        # before giving the leases back.
        self._db_inflight: set[asyncio.Future[Any]] = set()
        self.steps = 0
        self._step_seconds = rt.metrics.step_seconds
        self.orphans = OrphanSweeper(rt)

    # -- lifecycle -------------------------------------------------------------------
    def wake(self) -> None:
        """Thread-safe: new work may be there."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    def acquire_lock(self) -> None:
        """On SQLite, become the file's only engine or raise EngineLockError."""
        path = self.rt.db.sqlite_path()
        if self._lock is None and path and path != ":memory:":
            lock = SqliteEngineLock(path)
            lock.acquire()
            self._lock = lock

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        finished = self._finished = asyncio.Event()
        self.acquire_lock()
        await asyncio.to_thread(self.rt.prepare)
        self.rt.wake_listeners.append(self.wake)
        listener = Listener(self.rt.db.url, self.wake) if self.rt.db.is_postgres else None
        if listener is not None:
            listener.start()
        housekeeping = asyncio.create_task(self._housekeeping())
        # Plugins' jobs beside the loop (Twilio's reconciliation sweep).
        jobs = [asyncio.create_task(job(self.rt, self)) for job in self.rt.plugins.jobs()]
        orphans = asyncio.create_task(self.orphans.run(lambda: self._stopping))
        heartbeat = asyncio.create_task(self._heartbeat())
        log.info("engine %s started (concurrency %d)", self.owner, self.concurrency)
        try:
            while not self._stopping:
                try:
                    found = await self._poll_once()
                except Exception:
                    # The database went away or refused a connection: keep the engine
                    # alive and try again shortly; leases protect the work meanwhile.
                    log.exception("claiming work failed; retrying in %ss", CLAIM_RETRY_DELAY)
                    await asyncio.sleep(CLAIM_RETRY_DELAY)
                    continue
                if not found:
                    self._wake.clear()
                    try:
                        await asyncio.wait_for(self._wake.wait(), self.rt.settings.poll_interval)
                        # Let a burst of wake-ups (API calls, webhooks) land in one claim.
                        await asyncio.sleep(WAKE_COALESCE_SECONDS)
                    except TimeoutError:
                        pass
        finally:
            # Nothing here awaits: a cancel arriving now must not skip any of it.
            housekeeping.cancel()
            for job in jobs:
                job.cancel()
            orphans.cancel()
            heartbeat.cancel()
            if listener is not None:
                listener.stop(wait=False)
            self.rt.wake_listeners.remove(self.wake)
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            finished.set()

    async def _housekeeping(self) -> None:
        """Purge finished tasks past the retention period, a batch at a time."""
        days = self.rt.settings.retention_days
        if days <= 0:
            return
        while not self._stopping:
            try:
                while await self._db(self._purge_batch, time.time() - days * 86400):
                    await asyncio.sleep(0)  # let steps run between batches
            except Exception:
                log.exception("retention purge failed; retrying later")
            await asyncio.sleep(RETENTION_INTERVAL)

    def _purge_batch(self, cutoff: float) -> bool:
        with self.rt.db.write() as conn:
            return purge_batch(conn, cutoff, RETENTION_BATCH) == RETENTION_BATCH

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, let running steps finish (up to ``timeout``), release leases."""
        self._stopping = True
        self.wake()
        deadline = time.monotonic() + timeout
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout)
        for task in list(self._running):
            task.cancel()
        # A claim or commit already in a thread still lands: release after it, or the
        # leases it takes would outlive this worker.
        while self._db_inflight and time.monotonic() < deadline + 5:
            await asyncio.wait(set(self._db_inflight), timeout=deadline + 5 - time.monotonic())
        await self.rt.run_db(self._release_all)
        if self._finished is not None:  # the claim loop notices _stopping at once
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._finished.wait(), 5)

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def db(self, fn: Callable[..., T], *args: Any) -> T:
        """For plugins' jobs (engine/plugins.JobHost): database work stop() waits for."""
        return await self._db(fn, *args)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        """``rt.run_db``, tracked so stop() can wait for threads a cancel cannot stop."""
        if self.rt.db.is_sqlite:  # runs inline: nothing outlives the caller
            return await self.rt.run_db(fn, *args)
        future = asyncio.ensure_future(self.rt.run_db_grouped(fn, *args))
        self._db_inflight.add(future)
        future.add_done_callback(self._db_inflight.discard)
        return await asyncio.shield(future)

    def _release_all(self) -> None:
        with self.rt.db.write() as conn:
            task_store.release_leases(conn, self.owner)

    # -- claiming --------------------------------------------------------------------
    async def _poll_once(self) -> bool:
        free = self.concurrency - len(self._running)
        if free <= 0:
            await asyncio.wait(set(self._running), return_when=asyncio.FIRST_COMPLETED)
            return True
        claimed = await self._db(self._claim, free)
        # Steps that ended meanwhile may have filled the room with their copies.
        await self._take_on(claimed)
        return bool(claimed)

    def _claim(self, limit: int) -> list[TaskRecord]:
        """Callbacks first (they finish work already in flight), then due timers, then
        new runnable tasks: under load, finishing beats starting."""
        out: list[TaskRecord] = []
        with self.rt.db.read() as conn:
            new = inbox.new_callbacks(conn, CALLBACK_BATCH)
            # Most polls find nothing to claim: a read says so without a write
            # transaction. Work that appears after it wakes the engine (or the next poll).
            due, runnable = task_store.claimable(conn, time.time())
        for cb in new:
            try:
                out += self.rt.db.retry(functools.partial(self._deliver, cb))
            except Conflict:
                # Its task changed under it: the callback stays new for the next poll,
                # and the others (and the claims below) go on.
                log.warning("callback %s met a changed task; delivered later", cb.id)
        if len(out) < limit and (due or runnable):
            now = time.time()
            lease = self.rt.settings.lease_seconds
            with self.rt.db.write() as conn:
                if due:
                    out += task_store.claim_due_timers(
                        conn, self.owner, limit - len(out), now, lease
                    )
                if runnable and len(out) < limit:
                    out += task_store.claim_runnable(conn, self.owner, limit - len(out), now, lease)
        return out

    def _deliver(self, cb: CallbackRecord) -> list[TaskRecord]:
        """``cb`` as the claim read it (new then), not read again: another worker may
        have settled it since, and deliver() then changes nothing (every move of a
        callback is conditional on it being unsettled, store/callbacks.set_status).
        The task it releases takes its next step here when it can (follower)."""

        def attempt(follows: bool) -> list[TaskRecord]:
            now = time.time()
            with self.rt.db.write() as conn:
                sink: Histories = []
                follow = self._follower(conn, now) if follows else None
                out = deliver(conn, self.rt, cb, self.owner, now, sink=sink, follow=follow)
                task_store.add_histories(conn, sink, now)
                return out

        return followed_or_not(attempt, f"callback {cb.id}")

    def _spawn(self, task: TaskRecord) -> None:
        runner = asyncio.create_task(self._execute(task))
        self._running.add(runner)
        self._running_ids[runner] = task.id
        runner.add_done_callback(self._forget)

    async def _take_on(self, tasks: list[TaskRecord]) -> None:
        """Run the tasks leased to this worker by a claim or a step (its copies, the
        tasks it released) while fewer than OVERFLOW x ``concurrency`` run; give the
        others' leases back, so they wait their turn in the claim order instead of
        crowding out older work (a process copying itself would otherwise grow this
        worker's running set, and its memory, without end). The overflow spares a busy
        engine a transaction per copy it can still run at once."""
        room = max(0, OVERFLOW * self.concurrency - len(self._running))
        for task in tasks[:room]:
            self._spawn(task)
        if tasks[room:]:
            await self._db(self._unlease, [t.id for t in tasks[room:]])

    def _unlease(self, ids: list[str]) -> None:
        with self.rt.db.write() as conn:
            task_store.release_leases(conn, self.owner, ids)

    def _forget(self, runner: asyncio.Task[None]) -> None:
        self._running.discard(runner)
        self._running_ids.pop(runner, None)

    async def _heartbeat(self) -> None:
        """Renew the leases of tasks this worker is running, so a slow step (Twilio,
        a busy database) is not taken over by another worker while still alive."""
        lease = self.rt.settings.lease_seconds
        while not self._stopping:
            await asyncio.sleep(lease / 3)
            ids = list(set(self._running_ids.values()))
            try:
                await self._db(self._renew, ids, time.time() + lease)
            except Exception:
                log.exception("renewing leases failed")

    def _renew(self, ids: list[str], until: float) -> None:
        for i in range(0, len(ids), 500):
            with self.rt.db.write() as conn:
                task_store.renew_leases(conn, self.owner, ids[i : i + 500], until)

    # -- running ---------------------------------------------------------------------
    async def _execute(self, task: TaskRecord) -> None:
        try:
            while task.state == "active" and not self._stopping:
                started = time.perf_counter()
                process_id, _version, definition = self.rt.definition(task.version_id)
                result = await self.interpreter.run(task, process_id, definition)
                try:
                    runnable = await self._db(self._commit, task, definition, result)
                except Recheck as exc:
                    # Nothing was written: what Twilio answered is kept, so the step run
                    # again resolves its sends from their records and sends nothing new.
                    if exc.effects:
                        await self._db(self._keep_effects, task.id, exc.step, exc.effects)
                    result = await self.interpreter.run(task, process_id, definition, careful=True)
                    runnable = await self._db(self._commit, task, definition, result)
                self._stepped(time.perf_counter() - started)
                if not runnable or runnable[0].id != task.id:
                    await self._take_on(runnable)
                    return
                task = runnable[0]
                await self._take_on(runnable[1:])
        except StepDeferred as exc:
            await self._db(self._defer, task.id, exc.until)
        except Conflict as exc:
            log.warning(
                "task %s changed under this worker (lease lost); step dropped",
                task.id,
                extra=task_fields(task.id, node=task.node_id),
            )
            if exc.effects:
                # What Twilio answered is kept, so the worker that took over uses it.
                await self._db(self._keep_effects, task.id, exc.step, exc.effects)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A bug or a database outage: keep the worker alive, retry the step later
            # (backing off), and escalate the task once it has failed too often.
            log.exception(
                "step of task %s failed", task.id, extra=task_fields(task.id, node=task.node_id)
            )
            try:
                await self._db(
                    record_step_failure, self.rt, self.owner, task.id, type(exc).__name__
                )
            except Exception:
                log.exception("recording the failure of task %s failed", task.id)

    def _defer(self, task_id: str, until: float) -> None:
        with self.rt.db.write() as conn:
            task_store.defer(conn, task_id, self.owner, until)

    def _keep_effects(
        self, task_id: str, step: int, done: list[tuple[int, dict[str, Any]]]
    ) -> None:
        with self.rt.db.write() as conn:
            for index, outcome in done:
                sealed = secretdata.seal(self.rt.vault, outcome)
                effect_store.finish(conn, task_id, step, index, sealed, time.time())

    def _stepped(self, seconds: float) -> None:
        self.steps += 1
        self._step_seconds.observe(seconds)

    def _follower(self, conn: Connection, now: float) -> Follow:
        def run_now(
            task: TaskRecord, process_id: int, definition: ProcessDefinition
        ) -> StepResult | None:
            # A followed step is a step: counted and timed as the worker's own are, once
            # the transaction it runs in commits (an attempt rolled back is not).
            started = time.perf_counter()
            result = self.interpreter.run_now(task, process_id, definition)
            if result is not None:
                seconds = time.perf_counter() - started
                after_commit(conn, lambda: self._stepped(seconds))
            return result

        return follower(conn, self.rt, run_now, self.owner, now)

    def _commit(self, task: TaskRecord, definition: Any, result: Any) -> list[TaskRecord]:
        """commit_step updates its arguments' attributes. PostgreSQL may run the
        transaction again (a deadlock; a group-commit batch rolled back and run job by
        job), and a followed step that fails is left out in another attempt: each
        attempt gets its own shallow copies (``attempts.for_attempt``)."""
        step, effects_done = task.step, list(result.effects_done)

        def attempt(follows: bool) -> list[TaskRecord]:
            def once() -> list[TaskRecord]:
                with self.rt.db.write() as conn:
                    mine, outcome = for_attempt(task, result)
                    now = time.time()
                    follow = self._follower(conn, now) if follows else None
                    return commit_step(
                        conn, self.rt, mine, definition, outcome, self.owner, now, follow=follow
                    )

            return once() if self.rt.db.is_sqlite else self.rt.db.retry(once)

        try:
            return followed_or_not(attempt, f"a step of task {task.id}")
        except Conflict as exc:
            exc.effects, exc.step = effects_done, step
            raise


WAKE_COALESCE_SECONDS = 0.002
# Tasks leased to a worker beyond its concurrency (callbacks and copies) still run at
# once up to this multiple of it; further ones are handed back to the claim order.
OVERFLOW = 2
CALLBACK_BATCH = 200
CLAIM_RETRY_DELAY = 1.0
RETENTION_INTERVAL = 60.0
RETENTION_BATCH = 500
