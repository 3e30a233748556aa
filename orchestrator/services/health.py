"""Readiness and metrics: whether the database answers, and this process's metrics with
the gauges read from the database at scrape time (orchestrator/metrics.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import Connection

from orchestrator.engine.runtime import Runtime

T = TypeVar("T")


class Health:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    async def ready(self) -> bool:
        """The database answers."""
        return await self._rt.run_db(self._rt.db.ping)

    async def metrics(self) -> bytes:
        """The metrics as Prometheus text; the database gauges are read during the
        rendering, so it runs where database work runs."""
        return await self._rt.run_db(self._rt.metrics.render)

    def track(self, steps: Callable[[], int | None]) -> None:
        """Read the database gauges at scrape time, and the engine's step count."""
        self._rt.metrics.track_database(self._read, steps)

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._rt.db.read() as conn:
            return fn(conn)
