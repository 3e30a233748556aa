"""The package as users get it: the wheel, installed into a fresh virtualenv outside the
checkout, run from an empty directory (no migrations/ or processes/ beside it)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import time
import venv
import zipfile
from pathlib import Path

import pytest
from firstrun import clean_env, sms_round_trip

from orchestrator.demo import CASES

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)], out)
    (built,) = out.glob("orchestrator-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ directory of a new virtualenv with the wheel and its dependencies."""
    env_dir = tmp_path_factory.mktemp("venv")
    venv.create(env_dir, with_pip=True)
    pip = [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)]
    _run(pip, env_dir)
    return env_dir / "bin"


def test_wheel_ships_migrations_processes_and_package_data(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    repo_files = [
        p.relative_to(ROOT).as_posix()
        for top in ("migrations", "processes")
        for p in (ROOT / top).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert repo_files and all(f"orchestrator/_resources/{f}" in names for f in repo_files)
    assert "orchestrator/engine/process.schema.json" in names
    assert "orchestrator/engine/process_core.schema.json" in names  # the schema is built from it
    # The queries, read with importlib.resources when the store is imported.
    assert "orchestrator/store/sql/queries.sql" in names
    assert "orchestrator/twilio/queries.sql" in names
    assert "orchestrator/http/console/static/console.js" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_installed_demo_from_an_empty_directory(installed: Path, tmp_path: Path) -> None:
    out = _run([str(installed / "orchestrator"), "demo"], tmp_path).stdout
    rows = {
        label: line
        for line in out.splitlines()
        for label, _ in CASES
        if line.startswith(label + "  ")
    }
    assert set(rows) == {label for label, _ in CASES}, out
    assert " success " in rows["delivered"] and " success " in rows["delivered (MMS)"], out
    assert all(" success " in r or " escalation " in r for r in rows.values()), out
    # The commands it prints work as printed (the same database, found from here).
    printed = re.search(r"^  (\S.* task history \S+)$", out, re.M)
    assert printed, out
    history = subprocess.run(
        shlex.split(printed.group(1)),
        cwd=tmp_path,
        env={**clean_env(), "PATH": f"{installed}:{clean_env()['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert history.returncode == 0 and "-> delivered" in history.stdout, history


def test_installed_serve_and_simulator_round_trip(installed: Path, tmp_path: Path) -> None:
    result = sms_round_trip([str(installed / "orchestrator")], tmp_path)
    assert result["task"]["outcome"] == "success", result["task"]
    assert result["task"]["node"]["title"] == "SMS delivered"


def test_installed_db_upgrade_deploy_and_process_list(installed: Path, tmp_path: Path) -> None:
    cli = str(installed / "orchestrator")
    assert "latest schema" in _run([cli, "db", "upgrade"], tmp_path).stdout
    listed = _run([cli, "process", "list"], tmp_path).stdout
    assert "sending-sms" in listed and "getting-callback" in listed
    (tmp_path / "hello.yaml").write_text(
        (ROOT / "processes" / "getting-callback.yaml")
        .read_text()
        .replace("slug: getting-callback", "slug: hello-copy", 1)
    )
    assert "hello-copy" in _run([cli, "deploy", "hello.yaml"], tmp_path).stdout
    # The engine alone starts, runs, and stops cleanly on SIGTERM.
    worker = subprocess.Popen(
        [cli, "worker"], cwd=tmp_path, env=clean_env(), stderr=subprocess.PIPE, text=True
    )
    try:
        time.sleep(3)
        assert worker.poll() is None, worker.communicate()[1]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.communicate()[1]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
