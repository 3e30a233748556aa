"""Metrics and logs as an operator sees them: /metrics (prometheus-client), JSON logs with
task fields, refused callbacks logged and counted, an access log without credentials."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import httpx
from firstrun import sms_round_trip
from prometheus_client.parser import text_string_to_metric_families
from stack import ACCOUNT, running_stack

from orchestrator.store.db import upgrade
from orchestrator.twilio.signature import compute_signature

ORCHESTRATOR = [str(Path(sys.executable).parent / "orchestrator")]
HEX40 = re.compile(r"[0-9a-f]{40}")


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /metrics answer, parsed by prometheus-client's own parser."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(found: dict[tuple[str, Any], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0.0)


def test_operator_view_json_logs_refused_callbacks_and_metrics(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def operate(url: str) -> None:
        process = httpx.get(f"{url}/api/v1/processes/getting-callback").json()
        (twilio_url,) = [
            n["callback_urls"]["twilio"] for n in process["nodes"] if n.get("callback_urls")
        ]
        seen["hash"] = HEX40.search(twilio_url).group(0)  # type: ignore[union-attr]
        form = {
            "AccountSid": "AC" + "0" * 32,
            "MessageSid": "SM" + "1" * 32,
            "MessageStatus": "delivered",
        }
        forged = httpx.post(twilio_url, data=form, headers={"X-Twilio-Signature": "Zm9yZ2Vk"})
        assert forged.status_code == 403, forged.text
        wrong_hash = twilio_url.replace(seen["hash"], "0" * 40)
        signed = compute_signature(wrong_hash, list(form.items()), "simulator-auth-token")
        unknown = httpx.post(wrong_hash, data=form, headers={"X-Twilio-Signature": signed})
        assert unknown.status_code == 404, unknown.text
        seen["metrics"] = samples(httpx.get(f"{url}/metrics").text)

    result = sms_round_trip(
        ORCHESTRATOR,
        tmp_path,
        serve_args=("--access-log",),
        during=operate,
        ORCH_LOG_FORMAT="json",
        ORCH_LOG_LEVEL="INFO",
    )
    assert result["task"]["outcome"] == "success"
    log_text = (tmp_path / "serve.log").read_text()
    lines = [json.loads(line) for line in log_text.splitlines() if line.strip()]  # every line

    # The refusals: one WARNING each, with the reason, the path without its hash.
    refused = [e for e in lines if e.get("logger") == "orchestrator.webhooks"]
    assert [(e["level"], e["reason"]) for e in refused] == [
        ("WARNING", "signature"),
        ("WARNING", "hash"),
    ], refused
    assert all("/<hash>" in e["path"] and "<hash>" in e["message"] for e in refused)
    # The access log names every request, and no callback hash (nor any other).
    access = [e["message"] for e in lines if e.get("logger") == "uvicorn.access"]
    assert any("/api/1/json/plugins/twilio/" in a and "<hash>" in a for a in access), access
    assert seen["hash"] not in log_text and not HEX40.search(log_text)

    # Engine events carry the task's fields.
    finished = [e for e in lines if e.get("message", "").startswith("task finished")]
    sms = [e for e in finished if e.get("process") == "sending-sms"]
    assert sms and sms[0]["task_id"] == result["task"]["task_id"]
    assert sms[0]["node"] == "delivered" and sms[0]["sid"].startswith("SM")
    assert any(e.get("sid") == sms[0]["sid"] for e in lines if "callback applied" in e["message"])

    m = seen["metrics"]
    assert value(m, "orchestrator_callbacks_rejected_total", form="twilio", reason="signature") == 1
    assert value(m, "orchestrator_callbacks_rejected_total", form="twilio", reason="hash") == 1


def test_metrics_parse_and_move_with_work_per_app(db_url: str, tmp_path: Path) -> None:
    other_db = f"sqlite:///{tmp_path / 'other.db'}"
    upgrade(other_db)
    with running_stack(db_url) as s, running_stack(other_db) as quiet:
        before = samples(s.client.get("/metrics").text)
        task = s.wait(s.sms("+15551230001")["task_id"])
        assert task["outcome"] == "success"
        failed = s.wait(s.sms("+15005550001")["task_id"])  # Twilio refuses the number: 21211
        assert failed["outcome"] == "escalation"
        url = s.callback_url("getting-callback", "twilio")
        forged = httpx.post(url, data={"AccountSid": ACCOUNT, "MessageSid": "SM1"})
        assert forged.status_code == 403
        after = samples(s.client.get("/metrics").text)
        quiet_after = samples(quiet.client.get("/metrics").text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    twilio = "orchestrator_twilio_requests_total"
    assert moved(twilio, action="create_message", outcome="ok", code="") == 1
    assert moved(twilio, action="create_message", outcome="error", code="21211") == 1
    assert moved("orchestrator_twilio_request_duration_seconds_count", action="create_message") == 2
    assert moved("orchestrator_callbacks_total", form="twilio", result="received") >= 2
    assert moved("orchestrator_callbacks_total", form="twilio", result="applied") >= 2
    assert moved("orchestrator_callbacks_rejected_total", form="twilio", reason="signature") == 1
    done = "orchestrator_task_duration_seconds_count"
    assert moved(done, process="sending-sms", outcome="success") == 1
    assert moved(done, process="sending-sms", outcome="escalation") == 1
    assert moved("orchestrator_engine_step_duration_seconds_count") >= 4
    assert moved("orchestrator_engine_steps_total") >= 4
    route = "/api/v1/processes/{process}/tasks"
    assert (
        moved(
            "orchestrator_http_request_duration_seconds_count",
            route=route,
            method="POST",
            status="201",
        )
        == 2
    )
    assert (
        moved(
            "orchestrator_http_request_duration_seconds_count",
            route="/api/1/json/plugins/twilio/{conv_id}/{hash}",
            method="POST",
            status="403",
        )
        == 1
    )
    assert value(after, "orchestrator_tasks", process="sending-sms", state="success") >= 1
    assert ("orchestrator_runnable_tasks", (("process", "sending-sms"),)) in after
    assert ("orchestrator_pending_callbacks", (("process", "getting-callback"),)) in after
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_cpu_seconds_total") > 0
    # The other app in this Python process has metrics of its own.
    assert value(quiet_after, twilio, action="create_message", outcome="ok", code="") == 0
    assert (
        value(
            quiet_after, "orchestrator_callbacks_rejected_total", form="twilio", reason="signature"
        )
        == 0
    )
