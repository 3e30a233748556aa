"""``orchestrator bench`` runs end to end and reports its numbers (no timing asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("layout", [[], ["--separate-engine"]], ids=["serve", "api+worker"])
def test_bench_reports_throughput_latency_cpu_and_memory(tmp_path: Path, layout: list[str]) -> None:
    db = f"sqlite:///{tmp_path}/bench.db"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "--database-url",
            db,
            "bench",
            "-n",
            "20",
            "--concurrency",
            "4",
            "--timeout",
            "60",
            *layout,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for label in ("throughput", "latency", "server cpu", "peak memory"):
        assert label in result.stdout
    # CPU per round trip for each process group sharing the cores.
    assert re.search(
        r"cpu per rt     server \d+\.\d ms, simulator \d+\.\d ms, load client \d+\.\d ms",
        result.stdout,
    ), result.stdout
    # Statements and transactions per round trip, counted in the server processes.
    counted = re.search(r"sql per rt     (\d+\.\d) statements", result.stdout)
    assert counted and float(counted.group(1)) > 10, result.stdout
    assert re.search(r"by kind      .*UPDATE tasks \d+\.\d", result.stdout), result.stdout
    # and the transactions by shape (the kinds of their statements)
    assert re.search(r"transaction +\d+\.\d x write: .*INSERT task_events", result.stdout)
    assert ("server split   api" in result.stdout) == bool(layout), result.stdout
    assert "done           20 of 20" in result.stdout
    assert "messages       20 created" in result.stdout


def test_statement_kinds_name_verb_and_first_table() -> None:
    from orchestrator.store.sqlcount import kind_of

    assert kind_of('SELECT tasks.id FROM "tasks" WHERE id = 1') == "SELECT tasks"
    assert kind_of("INSERT INTO task_events (a) VALUES (1)") == "INSERT task_events"
    assert kind_of("  update callbacks SET x = 1") == "UPDATE callbacks"
    assert kind_of("DELETE FROM reply_listeners WHERE 1") == "DELETE reply_listeners"
    assert kind_of("SELECT pg_notify('c', '')") == "SELECT"
    assert kind_of("SAVEPOINT w1") == "SAVEPOINT"
