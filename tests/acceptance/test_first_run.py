"""A first run without ORCH_PUBLIC_URL: callback URLs name the port serve really binds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from firstrun import clean_env, sms_round_trip

from orchestrator.cli import main

ORCHESTRATOR = [str(Path(sys.executable).parent / "orchestrator")]


def test_serve_on_its_own_port_without_public_url_completes_an_sms(tmp_path: Path) -> None:
    result = sms_round_trip(ORCHESTRATOR, tmp_path)
    task, url = result["task"], result["url"]
    assert (task["outcome"], task["node"]["title"]) == ("success", "SMS delivered"), task
    assert not url.endswith(":8000")
    # README's first-run lines are the ones the simulator prints (copy-paste works).
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name, value in result["exports"].items():
        if name != "ORCH_TWILIO_API_URL":  # the test's simulator is on a free port
            assert f"export {name}={value}\n" in readme, name
    # The API shows the URLs the server really uses...
    wait = [n for n in result["process"]["nodes"] if n.get("callback_urls")]
    assert wait and wait[0]["callback_urls"]["twilio"].startswith(f"{url}/api/1/json/plugins/")
    # ...and so does `process show`, run afterwards from the same directory.
    shown = subprocess.run(
        [*ORCHESTRATOR, "process", "show", "getting-callback"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert f"{url}/api/1/json/plugins/twilio/" in shown.stdout


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_on_every_interface_without_public_url_refuses_in_one_line(
    host: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.delenv("ORCH_PUBLIC_URL", raising=False)
    db = f"sqlite:///{tmp_path / 'never.db'}"
    assert main(["--database-url", db, "serve", "--host", host, "--port", "9000"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "set ORCH_PUBLIC_URL" in err, err
    assert not (tmp_path / "never.db").exists()


def test_a_second_engine_on_one_sqlite_file_is_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from orchestrator.engine.lock import SqliteEngineLock

    monkeypatch.delenv("ORCH_PUBLIC_URL", raising=False)
    path = tmp_path / "busy.db"
    running = SqliteEngineLock(str(path))  # the engine of a server already running
    running.acquire()
    try:
        db = f"sqlite:///{path}"
        assert main(["--database-url", db, "serve", "--port", "9000"]) == 2
    finally:
        running.release()
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: another engine is already running"), err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
