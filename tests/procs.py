"""Real OS processes for scale-out tests: a Twilio simulator, API servers (``serve
--no-engine``) and engine processes (``worker``), all sharing one PostgreSQL database.

Every process is ``python -m orchestrator …`` with its output in a log file under the
test's tmp_path (never an unread pipe); ``Cluster.tails()`` gives the end of every log for
assertion messages. ``Cluster.stop_all()`` ends whatever is still running (SIGTERM, then
SIGKILL after 15 s).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import Engine, text

from orchestrator.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
ACCOUNT = "AC" + "5ca1e" * 6 + "ab"  # AC + 32 hex digits
TOKEN = "scale-test-auth-token"
SECRET = "scale-test-server-secret-shared-by-every-process"
FROM = "+15005550006"
STOP_TIMEOUT = 15.0
START_TIMEOUT = 45.0


@dataclass
class Proc:
    name: str
    role: str  # sim | api | worker
    popen: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 40) -> str:
        try:
            content = [
                line
                for line in self.log_path.read_text(errors="replace").splitlines()
                if " alembic." not in line  # migration chatter of every start
            ]
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(content[-lines:])


@dataclass
class Cluster:
    db_url: str
    log_dir: Path
    lease_seconds: float = 3.0
    poll_interval: float = 0.2
    extra_env: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)
    sim_url: str = ""
    api_urls: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sim_port = free_port()
        self.first_api_port = free_port()
        self.sim_url = f"http://127.0.0.1:{self.sim_port}"
        self._counter = 0

    # -- environment -------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
        env.update(
            {
                "ORCH_DATABASE_URL": self.db_url,
                "ORCH_TWILIO_API_URL": self.sim_url,
                "TWILIO_ACCOUNT_SID": ACCOUNT,
                "TWILIO_AUTH_TOKEN": TOKEN,
                # Twilio signs the URL it was given: every process builds callback URLs
                # on the first API server (which is where all callbacks then go).
                "ORCH_PUBLIC_URL": f"http://127.0.0.1:{self.first_api_port}",
                "ORCH_SECRET": SECRET,
                "ORCH_LEASE_SECONDS": str(self.lease_seconds),
                "ORCH_POLL_INTERVAL": str(self.poll_interval),
                # The simulator answers on loopback within milliseconds. A send begun by a
                # worker that died (or lost its lease) is looked up only once its answer
                # can no longer come, a wait counted in Twilio timeouts: keep it short.
                "ORCH_TWILIO_TIMEOUT": "5",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    # -- starting ------------------------------------------------------------------------
    def _spawn(self, role: str, args: list[str]) -> Proc:
        self._counter += 1
        name = f"{role}{sum(p.role == role for p in self.procs) + 1}"
        log_path = self.log_dir / f"{self._counter:02d}-{name}.log"
        log_file = open(log_path, "wb")  # closed in stop_all
        popen = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *args],
            env=self.env(),
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        proc = Proc(name, role, popen, log_path, log_file)
        self.procs.append(proc)
        return proc

    def _wait_ready(self, proc: Proc, url: str) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if not proc.alive():
                raise AssertionError(
                    f"{proc.name} exited with {proc.popen.returncode} during startup:\n"
                    f"{proc.tail()}"
                )
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{proc.name} not ready at {url}:\n{proc.tail()}")
            time.sleep(0.1)

    def start_sim(self, *flags: str) -> Proc:
        proc = self._spawn(
            "sim",
            [
                "simulate-twilio",
                "--port",
                str(self.sim_port),
                "--callback-delay",
                "0.01",
                *flags,
            ],
        )
        proc.url = self.sim_url
        self._wait_ready(proc, f"{self.sim_url}/_sim/stats")
        return proc

    def start_api(self) -> Proc:
        port = self.first_api_port if not self.api_urls else free_port()
        proc = self._spawn(
            "api",
            ["serve", "--no-engine", "--port", str(port), "--log-level", "warning"],
        )
        proc.url = f"http://127.0.0.1:{port}"
        self._wait_ready(proc, f"{proc.url}/healthz")
        self.api_urls.append(proc.url)
        return proc

    def start_worker(self, *args: str) -> Proc:
        """A ``worker`` process, returned once its engine loop runs (and its SIGTERM
        handler is installed: before that, SIGTERM simply kills it)."""
        # -v: the engine logs "engine <owner> started" (and, per send, "Twilio message
        # created": tests/acceptance/test_scale.py counts them per worker).
        proc = self._spawn("worker", ["-v", "worker", *args])
        deadline = time.monotonic() + START_TIMEOUT
        while "orchestrator.engine: engine " not in proc.log_path.read_text(errors="replace"):
            if not proc.alive():
                raise AssertionError(
                    f"{proc.name} exited with {proc.popen.returncode} during startup:\n"
                    f"{proc.tail()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{proc.name} did not start its engine:\n{proc.tail()}")
            time.sleep(0.05)
        return proc

    def workers(self) -> list[Proc]:
        return [p for p in self.procs if p.role == "worker"]

    # -- stopping ------------------------------------------------------------------------
    def kill(self, proc: Proc) -> None:
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(STOP_TIMEOUT)

    def terminate(self, proc: Proc, timeout: float = STOP_TIMEOUT) -> tuple[int | None, float]:
        """SIGTERM; (return code or None if still running after ``timeout``, seconds)."""
        started = time.monotonic()
        proc.popen.send_signal(signal.SIGTERM)
        try:
            code: int | None = proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def stop_all(self) -> None:
        running = [p for p in self.procs if p.alive()]
        for p in running:
            p.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        for p in running:
            try:
                p.popen.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.send_signal(signal.SIGKILL)
                p.popen.wait(STOP_TIMEOUT)
        for p in self.procs:
            p.log_file.close()

    # -- reading -------------------------------------------------------------------------
    def tails(self, lines: int = 30) -> str:
        parts = []
        for p in self.procs:
            state = "running" if p.alive() else f"exited {p.popen.returncode}"
            parts.append(
                f"----- {p.name} (pid {p.pid}, {state}) {p.log_path.name}\n{p.tail(lines)}"
            )
        return "\n".join(parts)

    def count_in_logs(self, needle: str, role: str = "worker") -> int:
        return sum(
            p.log_path.read_text(errors="replace").count(needle)
            for p in self.procs
            if p.role == role
        )

    def sim_stats(self) -> dict[str, int]:
        stats: dict[str, int] = httpx.get(f"{self.sim_url}/_sim/stats", timeout=30).json()
        return stats

    def sim_messages(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = httpx.get(
            f"{self.sim_url}/_sim/messages", timeout=60
        ).json()
        return messages


def phone(i: int) -> str:
    """A distinct To number per task (i < 10**6) that no simulator rule matches: the last
    digit is always 1, so it never ends in 0000, 3003, 3005 or 3008."""
    return f"+1555{i:06d}1"


def sms_body(i: int, ref: str) -> dict[str, Any]:
    return {
        "ref": ref,
        "data": {"Number_to": phone(i), "Number_from": FROM, "Body": f"scale test {ref}"},
    }


class Submitter:
    """Submits tasks from a background thread (asyncio, bounded concurrency), alternating
    between API servers; ``done`` counts answered submissions as they happen."""

    def __init__(
        self,
        api_urls: list[str],
        path: str,
        bodies: Iterable[dict[str, Any]],
        *,
        concurrency: int = 16,
    ) -> None:
        self.api_urls = api_urls
        self.path = path
        self.bodies = list(bodies)
        self.concurrency = concurrency
        self.task_ids: dict[str, str] = {}  # ref -> task_id
        self.errors: list[str] = []
        self.retries = 0
        self.done = 0
        self._thread = threading.Thread(target=self._main, name="submitter", daemon=True)

    def start(self) -> Submitter:
        self._thread.start()
        return self

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"submission still running after {timeout} s ({self.done})")

    def wait_for(self, count: int, timeout: float, *, check: Callable[[], None]) -> None:
        deadline = time.monotonic() + timeout
        while self.done < count and self._thread.is_alive():
            check()
            if time.monotonic() > deadline:
                raise AssertionError(f"only {self.done}/{count} submitted after {timeout} s")
            time.sleep(0.05)

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        sem = asyncio.Semaphore(self.concurrency)
        limits = httpx.Limits(max_connections=self.concurrency * 2)
        clients = [
            httpx.AsyncClient(base_url=url, timeout=60, limits=limits) for url in self.api_urls
        ]
        try:

            async def one(i: int, body: dict[str, Any]) -> None:
                client = clients[i % len(clients)]
                async with sem:
                    for attempt in range(4):
                        try:
                            r = await client.post(self.path, json=body)
                        except httpx.TransportError as exc:
                            # A create repeated with the same ref and data is a retry.
                            self.retries += 1
                            if attempt == 3:
                                self.errors.append(f"{body.get('ref')}: {exc!r}")
                                return
                            await asyncio.sleep(0.5)
                            continue
                        if r.status_code in (200, 201):
                            self.task_ids[str(body.get("ref"))] = r.json()["task_id"]
                        else:
                            self.errors.append(f"{body.get('ref')}: {r.status_code} {r.text}")
                        break
                    self.done += 1

            await asyncio.gather(*(one(i, b) for i, b in enumerate(self.bodies)))
        finally:
            for c in clients:
                await c.aclose()


# -- database checks ------------------------------------------------------------------
def scalar(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def process_id(engine: Engine, slug: str) -> int:
    return int(scalar(engine, "SELECT id FROM processes WHERE slug = :slug", slug=slug))


def unfinished(engine: Engine, pid: int) -> int:
    return int(
        scalar(
            engine,
            "SELECT count(*) FROM tasks WHERE process_id = :pid AND state <> 'done'",
            pid=pid,
        )
    )


def lease_owner_pids(engine: Engine) -> set[int]:
    """PIDs of the engines holding leases right now (owner is host:pid:suffix)."""
    found = set()
    for (owner,) in rows(
        engine, "SELECT DISTINCT lease_owner FROM tasks WHERE lease_owner IS NOT NULL"
    ):
        parts = str(owner).split(":")
        if len(parts) >= 3 and parts[-2].isdigit():
            found.add(int(parts[-2]))
    return found


def transition_counts(engine: Engine, pid: int, node: str) -> dict[str, tuple[int, int]]:
    """task_id -> (transitions into ``node``, transitions out of it), every task of
    process ``pid`` included (zeros too)."""
    sql = """
        SELECT t.id,
               count(e.id) FILTER (WHERE e.to_node_id = :node),
               count(e.id) FILTER (WHERE e.node_id = :node)
        FROM tasks t
        LEFT JOIN task_events e ON e.task_id = t.id AND e.kind = 'transition'
        WHERE t.process_id = :pid
        GROUP BY t.id
    """
    return {r[0]: (int(r[1]), int(r[2])) for r in rows(engine, sql, pid=pid, node=node)}


def event_details(engine: Engine, pid: int, kind: str) -> dict[str, list[dict[str, Any]]]:
    """task_id -> details of its events of ``kind`` (oldest first), for process ``pid``."""
    sql = """
        SELECT e.task_id, e.detail FROM task_events e JOIN tasks t ON t.id = e.task_id
        WHERE t.process_id = :pid AND e.kind = :kind ORDER BY e.id
    """
    out: dict[str, list[dict[str, Any]]] = {}
    for task_id, detail in rows(engine, sql, pid=pid, kind=kind):
        out.setdefault(task_id, []).append(json.loads(detail) if detail else {})
    return out
