"""``orchestrator demo``: the simulator and the orchestrator on loopback, a handful of
SMS through "Sending SMS", and a table of how each one ended."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shlex
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from orchestrator.config import Settings
from orchestrator.servers import free_port, start_server

DEMO_ACCOUNT = "AC" + "d" * 32
DEMO_TOKEN = "demo-auth-token"
FROM = "+15005550006"

# (what it shows, task data)
CASES: list[tuple[str, dict[str, Any]]] = [
    ("delivered", {"Number_to": "+15551230001", "Body": "Hello from the orchestrator"}),
    (
        "delivered (MMS)",
        {
            "Number_to": "+15551230002",
            "Body": "A picture",
            "MediaUrl": ["https://example.com/cat.png"],
        },
    ),
    ("undelivered by carrier", {"Number_to": "+15551233003", "Body": "Is anyone there?"}),
    ("failed in Twilio", {"Number_to": "+15551233008", "Body": "This one fails"}),
    ("Twilio refuses the number", {"Number_to": "+15005550001", "Body": "Invalid To"}),
    ("no region permission", {"Number_to": "+15005550003", "Body": "Far away"}),
    ("missing body", {"Number_to": "+15551230003"}),
    ("not a phone number", {"Number_to": "12345", "Body": "Bad number"}),
    (
        "callback lost, reconciled",
        {"Number_to": "+15551230000", "Body": "Lost callback", "status_timeout": 2},
    ),
]


# Two-way SMS (SPEC §10): the simulator plays the recipients. Recipients matching
# REPLY_PATTERN text back YES shortly after an SMS reaches them.
REPLY_PATTERN = r"^\+15551237"
ASKED = "+15551237001"
OPTED_OUT = "+15551238002"
TWO_WAY_HEADER = ("case", "to", "outcome", "node", "reply", "code", "message")


async def _two_way(
    client: httpx.AsyncClient, sim_url: str, show_url: bool
) -> list[tuple[Any, ...]]:
    """An ask answered by the recipient, and a send to a recipient who texted STOP."""
    view = (await client.get("/api/v1/processes/incoming-sms")).json()
    start = next(n for n in view["nodes"] if n["kind"] == "start")
    url = start["callback_urls"]["twilio"]
    if show_url:  # only while the servers keep running: it dies with them
        print(f"Incoming SMS, start node, Twilio incoming-message URL:\n    {url}\n")
    rule = {"pattern": REPLY_PATTERN, "body": "YES", "delay": 0.3}
    async with httpx.AsyncClient(base_url=sim_url, timeout=10) as sim:
        config = {"incoming_url": url, "reply_rules": [rule]}
        (await sim.post("/_sim/config", json=config)).raise_for_status()
        body = {"From": OPTED_OUT, "To": FROM, "Body": "STOP"}
        (await sim.post("/_sim/incoming", json=body)).raise_for_status()
    asked = {"Number_to": ASKED, "Number_from": FROM, "Body": "Confirm tomorrow 10:00? YES/NO"}
    started = time.time()
    cases = [
        ("ask, the recipient answers", "ask-sms", asked),
        ("STOP texted, then a send", "sending-sms", {**asked, "Number_to": OPTED_OUT}),
    ]
    ids = []
    for label, process, data in cases:
        resp = await client.post(f"/api/v1/processes/{process}/tasks", json={"data": data})
        resp.raise_for_status()
        ids.append((label, resp.json()["task_id"]))
    rows = []
    for label, task_id in ids:
        task = await _wait_done(client, task_id, started + 30)
        d = task["data"]
        rows.append(
            (
                label,
                d.get("Number_to", ""),
                task["outcome"] or task["state"],
                task["node"]["title"],
                d.get("reply") or "",
                str(d.get("code") or ""),
                _short(d.get("message")),
            )
        )
    return rows


async def _demo(settings: Settings, keep_running: bool) -> int:
    from orchestrator.http.app import create_app
    from orchestrator.store.db import upgrade
    from orchestrator.twilio.simulator import SimulatorConfig
    from orchestrator.twilio.simulator import create_app as create_simulator

    sim = await start_server(
        create_simulator(
            SimulatorConfig(account_sid=DEMO_ACCOUNT, auth_token=DEMO_TOKEN, callback_delay=0.2)
        )
    )
    port = free_port()
    settings = dataclasses.replace(
        settings,
        public_url=f"http://127.0.0.1:{port}",
        twilio_api_url=sim.url,
        twilio_account_sid=DEMO_ACCOUNT,
        twilio_auth_token=DEMO_TOKEN,
        poll_interval=0.2,
    )
    await asyncio.to_thread(upgrade, settings.database_url)
    orch = await start_server(create_app(settings), port=port)
    if keep_running:
        # Without --keep-running both servers end with the demo: their URLs would be dead.
        print(f"orchestrator  {orch.url}   (database {settings.database_url})")
        print(f"simulator     {sim.url}   (Twilio API stand-in, account {DEMO_ACCOUNT})\n")
    else:
        print(f"Database {settings.database_url}; the demo's servers stop when it ends.\n")
    rows: list[tuple[Any, ...]] = []
    async with httpx.AsyncClient(base_url=orch.url, timeout=10) as client:
        process = (await client.get("/api/v1/processes/getting-callback")).json()
        for node in process["nodes"]:
            if keep_running and node.get("callback_urls"):
                print(
                    f"Getting callback, node {node['id']!r}, Twilio callback URL:\n"
                    f"    {node['callback_urls']['twilio']}\n"
                )
        started = time.time()
        ids = []
        for label, data in CASES:
            resp = await client.post(
                "/api/v1/processes/sending-sms/tasks", json={"data": {"Number_from": FROM, **data}}
            )
            resp.raise_for_status()
            ids.append((label, resp.json()["task_id"]))
        for label, task_id in ids:
            task = await _wait_done(client, task_id, started + 30)
            d = task["data"]
            rows.append(
                (
                    label,
                    d.get("Number_to", ""),
                    task["outcome"] or task["state"],
                    task["node"]["title"],
                    d.get("status") or "",
                    str(d.get("code") or ""),
                    _short(d.get("message")),
                    d.get("url_more_info") or "",
                )
            )
        print()
        two_way = await _two_way(client, sim.url, keep_running)
    _print_table(("case", "to", "outcome", "node", "status", "code", "message", "more info"), rows)
    print("\nTwo-way SMS (the simulator plays the recipients):")
    _print_table(TWO_WAY_HEADER, two_way)
    rows += two_way
    cli = cli_prefix(settings)
    print("\nInspect the tasks (the database stays):")
    print(f"  {cli} task history {ids[0][1]}")
    print(f"  {cli} task list sending-sms --outcome escalation")
    if keep_running:
        print("Both servers keep running; Ctrl-C to stop.")
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass
    await orch.stop()
    await sim.stop()
    unfinished = [r for r in rows if r[2] not in ("success", "escalation")]
    return 1 if unfinished else 0


async def _wait_done(client: httpx.AsyncClient, task_id: str, deadline: float) -> dict[str, Any]:
    while True:
        task: dict[str, Any] = (await client.get(f"/api/v1/tasks/{task_id}")).json()
        if task["state"] == "done" or time.time() > deadline:
            return task
        await asyncio.sleep(0.2)


def cli_prefix(settings: Settings) -> str:
    """How to run ``orchestrator`` again, as this shell can: the same executable, and
    --database-url when the demo's database is not the one the environment names."""
    exe = sys.argv[0]
    found = shutil.which("orchestrator")
    if (
        found
        and os.path.basename(exe) == "orchestrator"
        and Path(found).resolve() == Path(exe).resolve()
    ):
        prog = "orchestrator"
    elif os.path.basename(exe) == "orchestrator":
        prog = shlex.quote(os.path.relpath(exe) if not os.path.isabs(exe) else exe)
    else:
        prog = f"{shlex.quote(sys.executable)} -m orchestrator"
    if settings.database_url != (os.environ.get("ORCH_DATABASE_URL") or Settings.database_url):
        prog += f" --database-url {shlex.quote(settings.database_url)}"
    return prog


def _short(text: Any, limit: int = 60) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _print_table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> None:
    cells = [header, *rows]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(header))]
    for i, row in enumerate(cells):
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def run_demo(settings: Settings, *, keep_running: bool = False) -> int:
    try:
        return asyncio.run(_demo(settings, keep_running))
    except KeyboardInterrupt:
        return 0
