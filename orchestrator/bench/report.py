"""The lines ``orchestrator bench`` prints after a run (tests/acceptance/test_bench.py
reads them: keep their labels and layout)."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass
from typing import Any

from orchestrator.bench.reads import Finished


@dataclass
class Measured:
    tasks: int
    failures: int
    state: str  # what a task reaches to count as done: "done", or "waiting"
    done: int
    submit_seconds: float
    finish_seconds: float
    simulator: dict[str, Any]  # the simulator's /_sim/stats
    finished: Finished | None  # None when the tasks were left waiting
    cpu: dict[str, float]  # CPU seconds per process group (processes.cpu_groups)
    workers: int  # worker processes (0: the engine runs in serve)
    pg_cpu: tuple[float, float] | None  # PostgreSQL: (this database's backends, shared)
    pg_enabled: bool

    @property
    def round_trips(self) -> int:
        return len(self.finished.latencies) if self.finished else self.done


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def results(m: Measured) -> list[str]:
    """From what was submitted down to PostgreSQL's CPU."""
    lines = [
        f"submitted      {m.tasks - m.failures} ok, {m.failures} refused, "
        f"in {m.submit_seconds:.2f}s",
        f"{m.state:<14} {m.done} of {m.tasks} after {m.finish_seconds:.2f}s",
        f"messages       {m.simulator.get('messages_created')} created in the simulator "
        f"({m.simulator.get('requests')} API requests, "
        f"{m.simulator.get('callbacks_sent')} callbacks sent)",
    ]
    if m.finished is not None:
        lat = m.finished.latencies
        span = max(m.finished.last - m.finished.first, 1e-9)
        lines.append(f"throughput     {len(lat) / span:.1f} round trips/s")
        lines.append(
            f"latency        p50 {_pct(lat, 0.50) * 1000:.0f} ms, p99 "
            f"{_pct(lat, 0.99) * 1000:.0f} ms, mean {statistics.fmean(lat) * 1000:.0f} ms"
            if lat
            else "latency        n/a"
        )
        lines.append(f"outcomes       {m.finished.outcomes}")
    rt = max(m.round_trips, 1)
    per_rt = {group: secs / rt * 1000 for group, secs in m.cpu.items()}
    lines.append(
        f"server cpu     {per_rt['server']:.1f} ms per round trip "
        "(orchestrator processes, all cores)"
    )
    lines.append(
        f"cpu per rt     server {per_rt['server']:.1f} ms, "
        f"simulator {per_rt['simulator']:.1f} ms, load client {per_rt['load client']:.1f} ms"
    )
    if m.workers:  # serve --no-engine and worker processes
        lines.append(
            f"server split   api (serve --no-engine) {per_rt['api']:.1f} ms, "
            f"engine (worker x{m.workers}) {per_rt['engine']:.1f} ms per round trip"
        )
    if m.pg_enabled:
        lines.append(
            f"postgres cpu   {m.pg_cpu[0] / rt * 1000:.1f} ms per round trip "
            f"(this database's backends), {m.pg_cpu[1] / rt * 1000:.1f} ms "
            "(WAL writer, checkpointer...: shared with any other database)"
            if m.pg_cpu
            else "postgres cpu   n/a (its processes are not readable here)"
        )
    return lines


def memory_and_wal(mems: list[float], wal_path: str | None, peak: int, size: int) -> list[str]:
    lines = ["peak memory    " + ", ".join(f"{mb:.0f} MB" for mb in mems) + " (engine/serve)"]
    if wal_path:
        limit = int(os.environ.get("ORCH_SQLITE_WAL_LIMIT") or 32 * 2**20)
        lines.append(
            f"sqlite wal     peak {peak / 2**20:.1f} MB, at the end "
            f"{size / 2**20:.1f} MB (ORCH_SQLITE_WAL_LIMIT {limit / 2**20:.0f} MB; "
            "sampled every 50 ms)"
        )
    return lines
