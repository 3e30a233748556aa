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
    assert "done           20 of 20" in result.stdout
    assert "messages       20 created" in result.stdout
