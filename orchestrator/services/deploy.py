"""Reading process files and deploying them as new versions."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orchestrator import resources
from orchestrator.engine import schema
from orchestrator.engine.definition import DefinitionError, ProcessDefinition, parse_definition
from orchestrator.engine.runtime import Runtime
from orchestrator.engine.templates import TemplateError, check_syntax
from orchestrator.store import processes as process_store

SHIPPED_DIR = resources.processes_dir()


def read_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    try:
        raw = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DefinitionError(
            f"not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}", file=str(path)
        ) from exc
    if not isinstance(raw, dict):
        raise DefinitionError("a process file must be a mapping", file=str(path))
    where = _non_finite(raw, [])
    if where is not None:
        # YAML's .nan/.inf (and Python's JSON NaN): set into a task, no answer about it
        # could be written any more.
        node = str(where[1]) if len(where) > 2 and where[0] == "nodes" else None
        rest = where[2:] if node else where
        field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in rest).lstrip(".")
        raise DefinitionError(
            "not a JSON number (.nan, .inf)", file=str(path), node=node, field=field
        )
    return raw


def _non_finite(value: Any, path: list[str | int]) -> list[str | int] | None:
    """The path to the first NaN or infinity in ``value``, else None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items: Any = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _non_finite(item, [*path, key])
        if found is not None:
            return found
    return None


def validate(raw: dict[str, Any], *, file: str | None = None) -> ProcessDefinition:
    definition = parse_definition(raw, file=file)
    schema.check(raw, file=file)
    for node in definition.nodes.values():
        if node.time_limit is not None and isinstance(node.time_limit.after, str):
            try:
                check_syntax(node.time_limit.after)
            except TemplateError as exc:
                raise DefinitionError(
                    exc.message, file=file, node=node.id, field="time_limit.after"
                ) from exc
        for logic in node.logics:
            try:
                check_syntax(dict(logic.spec))
            except TemplateError as exc:
                raise DefinitionError(
                    exc.message, file=file, node=node.id, field=f"logics[{logic.index}]"
                ) from exc
    return definition


def referenced_processes(definition: ProcessDefinition) -> list[tuple[str, str, str]]:
    """(node, field, process) for every other process a definition names."""
    out = []
    for node in definition.nodes.values():
        for lg in node.logics:
            if lg.type in ("copy_task", "modify_task", "call_process"):
                out.append((node.id, f"logics[{lg.index}].process", str(lg.get("process"))))
            cb = lg.get("status_callback")
            if isinstance(cb, dict):
                out.append((node.id, f"logics[{lg.index}].status_callback", cb["process"]))
    return out


@dataclass
class DeployResult:
    slug: str
    conv_id: int
    version: int
    created: bool
    changes: list[str]
    details: list[str] = field(default_factory=list)


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    """Human-readable changes between two definitions, node by node."""
    if old is None:
        return ["new process"]
    changes = []
    old_nodes, new_nodes = old.get("nodes", {}), new.get("nodes", {})
    changes += [f"+ node {n}" for n in new_nodes if n not in old_nodes]
    changes += [f"- node {n}" for n in old_nodes if n not in new_nodes]
    changes += [f"~ node {n}" for n in new_nodes if n in old_nodes and old_nodes[n] != new_nodes[n]]
    for key in ("title", "description", "inputs", "on_error"):
        if old.get(key) != new.get(key):
            changes.append(f"~ {key}")
    return changes


def diff_details(old: dict[str, Any] | None, new: dict[str, Any], limit: int = 40) -> list[str]:
    """Field by field: ``nodes.check.logics[0].to: 'ok' -> 'failed'`` (at most ``limit``)."""
    if old is None:
        return []
    out: list[str] = []
    _walk(old, new, "", out)
    return out if len(out) <= limit else [*out[:limit], f"... and {len(out) - limit} more"]


def _walk(old: Any, new: Any, path: str, out: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in new:
                out.append(f"- {sub}")
            elif key not in old:
                out.append(f"+ {sub}: {_short(new[key])}")
            else:
                _walk(old[key], new[key], sub, out)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            _walk(a, b, f"{path}[{i}]", out)
    elif old != new:
        out.append(f"~ {path}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_callback_targets(
    conn: Any,
    rt: Runtime,
    definition: ProcessDefinition,
    batch: dict[str, ProcessDefinition],
    src: str | None,
) -> None:
    """A twilio logic's status_callback must name a wait node of the target process."""
    for node in definition.nodes.values():
        for lg in node.logics:
            cb = lg.get("status_callback")
            if not isinstance(cb, dict):
                continue
            target = batch.get(cb["process"])
            if target is None:
                record = process_store.get_process(conn, cb["process"])
                assert record is not None  # checked by the caller
                target = rt.definition(record.version_id, conn)[2]
            waits = [n.id for n in target.wait_nodes()]
            if cb["node"] not in waits:
                raise DefinitionError(
                    f"names node {cb['node']!r} of {cb['process']!r}, which is not a wait node "
                    f"(wait nodes: {', '.join(waits) or 'none'})",
                    file=src,
                    node=node.id,
                    field=f"logics[{lg.index}].status_callback.node",
                )


def deploy_definitions(
    rt: Runtime, items: Iterable[tuple[dict[str, Any], str | None]]
) -> list[DeployResult]:
    """Validate every definition first, then deploy them all in one transaction."""
    parsed = [(validate(raw, file=src), raw, src) for raw, src in items]
    batch = {d.slug for d, _raw, _src in parsed}
    batch_defs = {d.slug: d for d, _raw, _src in parsed}
    now = time.time()
    results = []
    with rt.db.write() as conn:
        process_store.lock_deploys(conn)
        for definition, _raw, src in parsed:
            for node, fld, name in referenced_processes(definition):
                if name not in batch and process_store.get_process(conn, name) is None:
                    raise DefinitionError(
                        f"names process {name!r}, which is not deployed",
                        file=src,
                        node=node,
                        field=fld,
                    )
            _check_callback_targets(conn, rt, definition, batch_defs, src)
        for definition, raw, src in parsed:
            before = process_store.get_process(conn, definition.slug)
            node_rows = [
                {"node_id": n.id, "title": n.title, "kind": n.kind}
                for n in definition.nodes.values()
            ]
            record, created = process_store.deploy(
                conn, definition.slug, definition.title, raw, node_rows, source=src, now=now
            )
            previous = before.definition if before else None
            changes = diff(previous, raw) if created else []
            details = diff_details(previous, raw) if created else []
            results.append(
                DeployResult(
                    record.slug, record.id, record.current_version, created, changes, details
                )
            )
    rt.forget_processes()
    return results


def deploy_files(rt: Runtime, paths: Iterable[str | Path]) -> list[DeployResult]:
    return deploy_definitions(rt, [(read_file(p), str(p)) for p in paths])


def ensure_shipped(rt: Runtime) -> list[DeployResult]:
    """Deploy the processes shipped in processes/ that are not deployed yet."""
    files = sorted(SHIPPED_DIR.glob("*.yaml")) + sorted(SHIPPED_DIR.glob("*.json"))
    with rt.db.read() as conn:
        missing = [
            (raw, str(p))
            for p in files
            for raw in [read_file(p)]
            if process_store.get_process(conn, str(raw.get("slug", ""))) is None
        ]
    return deploy_definitions(rt, missing) if missing else []
