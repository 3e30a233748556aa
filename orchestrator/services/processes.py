"""Processes as the API, console and CLI see them: the list with counts, one process
with its nodes, versions and callback URLs, the inputs each declares; deploying new
versions; the opt-outs. The base of ``Service`` (services/tasks.py): its entry points are
coroutines that run their database part where the runtime runs database work."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection

from orchestrator.engine import opt_outs
from orchestrator.engine.definition import DefinitionError
from orchestrator.engine.runtime import NotFound, Runtime
from orchestrator.services import errors
from orchestrator.services.callbacks import storable
from orchestrator.services.deploy import DeployResult, deploy_definitions
from orchestrator.store import processes as process_store
from orchestrator.store import tasks as task_store
from orchestrator.store.records import ProcessRecord


def iso(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC, to the millisecond (None stays None)."""
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


class Processes:
    """The process half of ``Service``."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    # -- processes -----------------------------------------------------------------
    def _process(self, conn: Connection, key: str | int) -> ProcessRecord:
        if isinstance(key, str):
            storable(key, "the process")
        try:
            return self.rt.process(conn, key)
        except NotFound as exc:
            raise errors.NotFound("PROCESS_NOT_FOUND", f"no process {key!r}") from exc

    async def list_processes(self) -> list[dict[str, Any]]:
        return await self.rt.run_db(self._list_processes)

    def _list_processes(self) -> list[dict[str, Any]]:
        with self.rt.db.read() as conn:
            return [self._process_summary(conn, p) for p in process_store.list_processes(conn)]

    def _process_summary(self, conn: Connection, p: ProcessRecord) -> dict[str, Any]:
        return {
            "conv_id": p.id,
            "slug": p.slug,
            "title": p.title,
            "version": p.current_version,
            "counts": task_store.state_counts(conn, p.id),
        }

    async def process_inputs(self) -> list[dict[str, Any]]:
        """Every process with its declared inputs (for the API description)."""
        return await self.rt.run_db(self._process_inputs)

    def _process_inputs(self) -> list[dict[str, Any]]:
        with self.rt.db.read() as conn:
            records = process_store.list_processes(conn)
        out = []
        for p in records:
            definition = self.rt.definition(p.version_id)[2]
            out.append(
                {
                    "slug": p.slug,
                    "title": p.title,
                    "description": definition.description,
                    "inputs": list(definition.inputs),
                }
            )
        return out

    async def process_view(self, key: str) -> dict[str, Any]:
        return await self.rt.run_db(self._process_view, key)

    def _process_view(self, key: str) -> dict[str, Any]:
        with self.rt.db.read() as conn:
            p = self._process(conn, key)
            counts = task_store.node_counts(conn, p.id)
            versions = process_store.list_versions(conn, p.id)
            summary = self._process_summary(conn, p)
        _pid, _v, definition = self.rt.definition(p.version_id)
        node_list = []
        for node in definition.nodes.values():
            item: dict[str, Any] = {
                "id": node.id,
                "title": node.title,
                "kind": node.kind,
                "count": counts.get(node.id, 0),
                "exits": node.exits(),
            }
            if node.kind == "wait":
                item["callback_urls"] = self.rt.callback_urls(p.id, node.id)
            elif node.kind == "start" and definition.incoming_sms is not None:
                # Twilio's incoming-message webhook (SPEC §10): only the plugin form.
                item["callback_urls"] = {"twilio": self.rt.callback_urls(p.id, node.id)["twilio"]}
            node_list.append(item)
        return {
            **summary,
            "description": definition.description,
            "inputs": list(definition.inputs),
            "nodes": node_list,
            "versions": [
                {"version": v["version"], "created_at": iso(v["created_at"]), "source": v["source"]}
                for v in versions
            ],
        }

    async def deploy(self, items: list[tuple[dict[str, Any], str | None]]) -> list[DeployResult]:
        """Deploy definitions (services/deploy.py) as new versions; INVALID_PROCESS names
        what is wrong with one, and none is deployed then."""
        try:
            return await self.rt.run_db(deploy_definitions, self.rt, items)
        except DefinitionError as exc:
            raise errors.Invalid("INVALID_PROCESS", str(exc), exc.as_dict()) from exc

    def callback_urls(self, conv_id: int, node_id: str) -> dict[str, str]:
        """The callback URLs of a process's node (SPEC §5)."""
        return self.rt.callback_urls(conv_id, node_id)

    async def opt_outs(
        self, *, recipient: str | None = None, sender: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Recipients who opted out of a sender (SPEC §10), newest first."""
        return await self.rt.run_db(
            opt_outs.list_view, self.rt, recipient=recipient, sender=sender, limit=limit
        )
