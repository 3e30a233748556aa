"""``orchestrator task|process``: create and inspect tasks, list, show and export processes."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING, Any

from orchestrator import jsontext
from orchestrator.services.errors import ServiceError

from .common import print_json, runtime, table

if TYPE_CHECKING:
    from orchestrator.services.tasks import Service


def cmd_task(args: argparse.Namespace) -> int:
    from orchestrator.services.tasks import Service

    return asyncio.run(_task(Service(runtime(args)), args))


async def _task(service: Service, args: argparse.Namespace) -> int:
    try:
        if args.task_cmd == "create":
            try:
                data = jsontext.loads(args.data)  # as the API reads it: no NaN, no runaway depth
            except ValueError as exc:
                print(f"error: --data is not valid JSON: {exc}", file=sys.stderr)
                return 2
            view, created = await service.create_task(args.process, args.ref, data, source="cli")
            print_json(view)
        elif args.task_cmd == "show":
            print_json(await service.get_task(args.task_id))
        elif args.task_cmd == "history":
            for e in await service.history(args.task_id):
                detail = json.dumps(e["detail"], ensure_ascii=False) if e["detail"] else ""
                arrow = (
                    f"{e['node_id'] or ''} -> {e['to_node_id']}"
                    if e["to_node_id"]
                    else (e["node_id"] or "")
                )
                print(f"{e['at']}  {e['kind']:<16} {arrow:<40} {detail}")
        elif args.task_cmd == "list":
            page = await service.list_tasks(
                args.process,
                ref=args.ref,
                node=args.node,
                state=args.state,
                outcome=args.outcome,
                limit=args.limit,
            )
            rows = [
                (
                    t["task_id"],
                    t["ref"] or "",
                    t["node"]["id"],
                    t["state"],
                    t["outcome"] or "",
                    t["created_at"],
                )
                for t in page["tasks"]
            ]
            table(("task_id", "ref", "node", "state", "outcome", "created_at"), rows)
        elif args.task_cmd in ("retry", "cancel", "move"):
            return await _repair(service, args)
    except ServiceError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


async def _repair(service: Service, args: argparse.Namespace) -> int:
    """``task retry|cancel|move``: one task, or (--process, --in-node) a node's tasks."""
    import getpass

    from orchestrator.services.repair import Repair

    repair = Repair(service)
    who = f"cli:{getpass.getuser()}"
    params: dict[str, Any] = {"node": args.node}
    if args.task_cmd == "cancel":
        params["reason"] = args.reason
    if args.in_node or args.process:
        if not (args.in_node and args.process) or args.task_id:
            print("error: give a task id, or both --process and --in-node", file=sys.stderr)
            return 2
        result = await repair.bulk(
            args.process, args.in_node, args.task_cmd, who=who, limit=args.limit, **params
        )
        print_json(result)
        return 0
    if not args.task_id:
        print("error: give a task id, or both --process and --in-node", file=sys.stderr)
        return 2
    print_json(await repair.act(args.task_cmd, args.task_id, who=who, **params))
    return 0


def cmd_process(args: argparse.Namespace) -> int:
    from orchestrator.services.tasks import Service

    if args.process_cmd in ("export", "graph", "versions"):
        return _process_files(args)

    return asyncio.run(_process(Service(runtime(args)), args))


async def _process(service: Service, args: argparse.Namespace) -> int:
    try:
        if args.process_cmd == "list":
            rows = [
                (
                    p["conv_id"],
                    p["slug"],
                    p["title"],
                    p["version"],
                    p["counts"]["active"],
                    p["counts"]["waiting"],
                    p["counts"]["success"],
                    p["counts"]["escalation"],
                )
                for p in await service.list_processes()
            ]
            table(
                (
                    "conv_id",
                    "slug",
                    "title",
                    "version",
                    "active",
                    "waiting",
                    "success",
                    "escalation",
                ),
                rows,
            )
        else:
            view = await service.process_view(args.process)
            print(
                f"{view['title']} ({view['slug']}, conv_id {view['conv_id']}, "
                f"version {view['version']})"
            )
            table(
                ("node", "kind", "tasks", "title"),
                [(n["id"], n["kind"], n["count"], n["title"]) for n in view["nodes"]],
            )
            for n in view["nodes"]:
                for form, url in n.get("callback_urls", {}).items():
                    print(f"  {n['id']} callback ({form}): {url}")
    except ServiceError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return 1
    return 0


def _process_files(args: argparse.Namespace) -> int:
    """``process export|graph|versions``: the deployed definitions themselves."""
    from orchestrator.services import graph
    from orchestrator.services.authoring import NotDeployed, deployed_definition, versions

    rt = runtime(args)
    try:
        if args.process_cmd == "versions":
            table(
                ("version", "deployed", "source", "checksum"),
                [
                    (v["version"], v["deployed"], v["source"] or "-", v["checksum"][:12])
                    for v in versions(rt.db, args.process)
                ],
            )
            return 0
        raw, definition = deployed_definition(rt.db, args.process, args.version)
    except NotDeployed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.process_cmd == "graph":
        print(graph.dot(definition) if args.format == "dot" else graph.mermaid(definition), end="")
        return 0
    import yaml

    as_json = args.output and args.output.endswith(".json")
    text = (
        json.dumps(raw, indent=2, ensure_ascii=False) + "\n"
        if as_json
        else yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=100)
    )
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        print(text, end="")
    return 0
