"""A new user's first SMS, as README tells it: ``simulate-twilio`` in one shell, its printed
``export`` lines and ``serve --port N`` in another (no ORCH_PUBLIC_URL), then one POST.

Used with the checkout's ``orchestrator`` and with one installed from the wheel."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from orchestrator.servers import free_port

START_TIMEOUT = 60.0


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any orchestrator or Twilio setting of the test run."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ORCH_", "TWILIO_")) and k not in ("PYTHONPATH",)
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@contextmanager
def started(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> Iterator[Any]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        try:
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_for(pattern: str, log: Path, proc: Any) -> re.Match[str]:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")
        found = re.search(pattern, text, re.M)
        if found:
            return found
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never appeared:\n{log.read_text(errors='replace')}")


def wait_healthy(url: str, proc: Any, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} never answered:\n{log.read_text(errors='replace')}")


def exports(sim_log_text: str) -> dict[str, str]:
    """The ``export NAME=value`` lines the simulator printed, as it printed them."""
    return dict(re.findall(r"^\s*export (\w+)=(\S+)$", sim_log_text, re.M))


def sms_round_trip(
    orchestrator: list[str],
    cwd: Path,
    *,
    serve_args: tuple[str, ...] = (),
    during: Callable[[str], None] | None = None,
    **env: str,
) -> dict[str, Any]:
    """Start both servers from ``cwd`` as README says; one SMS. Returns the task once
    done ("task"), the server's view of Getting callback ("process") and its "url".
    ``during(url)`` runs after the round trip, while both servers still run; the
    server's output is in ``cwd / "serve.log"``."""
    sim_port, port = free_port(), free_port()
    base_env = clean_env(**env)
    with started(
        [*orchestrator, "simulate-twilio", "--port", str(sim_port)],
        cwd,
        base_env,
        cwd / "sim.log",
    ) as sim:
        wait_for(r"export TWILIO_AUTH_TOKEN=", cwd / "sim.log", sim)
        printed = exports((cwd / "sim.log").read_text())
        assert set(printed) == {"ORCH_TWILIO_API_URL", "TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN"}
        with started(
            [*orchestrator, "serve", "--port", str(port), *serve_args],
            cwd,
            {**base_env, **printed},
            cwd / "serve.log",
        ) as serve:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, serve, cwd / "serve.log")
            resp = httpx.post(
                f"{url}/api/v1/processes/sending-sms/tasks",
                json={
                    "ref": "order-42",
                    "data": {
                        "Number_to": "+15551230001",
                        "Number_from": "+15005550006",
                        "Body": "Your order shipped",
                    },
                },
                timeout=10,
            )
            assert resp.status_code in (200, 201), resp.text
            task_id = resp.json()["task_id"]
            deadline = time.monotonic() + 30
            while True:
                task: dict[str, Any] = httpx.get(f"{url}/api/v1/tasks/{task_id}", timeout=10).json()
                if task["state"] == "done" or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert task["state"] == "done", (
                f"{task}\n{(cwd / 'serve.log').read_text(errors='replace')}"
            )
            process = httpx.get(f"{url}/api/v1/processes/getting-callback", timeout=10).json()
            if during is not None:
                during(url)
            return {"task": task, "process": process, "url": url, "exports": printed}
