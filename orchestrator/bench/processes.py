"""The processes ``orchestrator bench`` starts (the simulator, ``serve``, any ``worker``),
and their CPU and peak memory, read from /proc."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

Process = subprocess.Popen[bytes]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (NaN: not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _spawn(args: list[str], env: dict[str, str], log_dir: str) -> Process:
    # Output goes to a file: an unread pipe fills up and then blocks the server.
    log = open(os.path.join(log_dir, f"{args[0]}-{time.monotonic_ns()}.log"), "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args], env=env, stdout=log, stderr=log
    )


@dataclass
class BenchProcesses:
    simulator: Process
    serve: Process
    workers: list[Process] = field(default_factory=list)

    @property
    def servers(self) -> list[Process]:
        """The orchestrator's processes: ``serve``, then any ``worker``."""
        return [self.serve, *self.workers]

    @property
    def engines(self) -> list[Process]:
        return self.workers or [self.serve]

    def server_pids(self) -> set[str]:
        return {str(p.pid) for p in self.servers}

    def cpu_groups(self) -> dict[str, float]:
        """CPU seconds so far: the orchestrator's processes, the simulator, and this
        process (the load client, plus its progress polls)."""
        return {
            "server": sum(cpu_seconds(p.pid) for p in self.servers),
            "api": cpu_seconds(self.serve.pid),
            "engine": sum(cpu_seconds(p.pid) for p in self.workers),
            "simulator": cpu_seconds(self.simulator.pid),
            "load client": time.process_time(),
        }

    def any_exited(self) -> bool:
        return any(p.poll() is not None for p in (self.simulator, *self.servers))

    def stop(self) -> None:
        every = [self.simulator, *self.servers]
        for p in every:
            p.send_signal(signal.SIGTERM)
        for p in every:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def start(
    env: dict[str, str],
    log_dir: str,
    sim_port: int,
    api_port: int,
    engine_processes: int,
    separate: bool,
) -> BenchProcesses:
    """The simulator and ``serve``; with ``separate``, the engine runs in
    ``engine_processes`` ``worker`` processes (several need PostgreSQL) and serve is the
    API only."""
    simulator = _spawn(
        ["simulate-twilio", "--port", str(sim_port), "--callback-delay", "0.01"], env, log_dir
    )
    serve = ["serve", "--port", str(api_port), "--log-level", "warning"]
    if separate:
        serve.append("--no-engine")
    procs = BenchProcesses(simulator, _spawn(serve, env, log_dir))
    if separate:
        procs.workers = [_spawn(["worker"], env, log_dir) for _ in range(engine_processes)]
    return procs
