"""Plain records passed between the store and the engine."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from orchestrator.store.tables import tasks

# One encoder for every call: json.dumps with these options builds a new one each time
# (some ten per round trip).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def loads(text: str | None) -> Any:
    return json.loads(text) if text else None


@dataclass
class TaskRecord:
    id: str
    process_id: int
    version_id: int
    node_id: str
    state: str
    data: dict[str, Any]
    created_at: float
    updated_at: float
    ref: str | None = None
    outcome: str | None = None
    secrets: str | None = None
    parent_task_id: str | None = None
    input_hash: str | None = None
    step: int = 0
    hops: int = 0
    rev: int = 0
    failures: int = 0
    entry: str = "enter"
    wake_at: float | None = None
    lease_owner: str | None = None
    lease_until: float | None = None
    finished_at: float | None = None
    # Set on a task started by call_process: "caller_task_id:caller_step:caller_node"
    # until it replies (see engine/calls.py).
    reply_to: str | None = None
    # Lineage (engine/quotas.py): the root task of its chain (None: itself) and depth.
    root_id: str | None = None
    generation: int = 0
    # Whether a callback may be held for it (store/tables.py, engine/deliveries.py).
    held_callbacks: int = 0
    # The row as the database holds it (columns()), when known: a save then writes only
    # what changed, so SQLite leaves the indexes of unchanged columns alone.
    stored: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_row(cls, row: Any) -> TaskRecord:
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Any) -> TaskRecord:
        """From a row with every column of ``tasks`` (as ``{tasks.columns}`` selects)."""
        stored = {k: m[k] for k in TASK_COLUMNS}
        values = stored.copy()
        del values["active_ref"]
        values["data"] = loads(values["data"]) or {}
        values["stored"] = stored
        # Every field is a column but ``stored`` (checked below the class): the values
        # are the instance's attributes as they are, without __init__'s keyword
        # matching, which took as long again (twice per step, on the hot path).
        record = object.__new__(cls)
        record.__dict__ = values
        return record

    def changed_columns(self, data_text: str | None = None) -> dict[str, Any]:
        """columns(), less those the stored row already has (all of them if unknown)."""
        values = self.columns(data_text)
        if self.stored is None:
            return values
        return {k: v for k, v in values.items() if self.stored.get(k, _MISSING) != v}

    def columns(self, data_text: str | None = None) -> dict[str, Any]:
        """The row of ``tasks`` (every column of store/tables.py; a test checks so).
        ``data_text``: ``dumps(self.data)`` when the caller has it already (a step's size
        check encoded the same data), so it is not encoded again."""
        return {
            "id": self.id,
            "process_id": self.process_id,
            "version_id": self.version_id,
            "ref": self.ref,
            "active_ref": self.ref if self.state != "done" else None,
            "node_id": self.node_id,
            "state": self.state,
            "outcome": self.outcome,
            "data": dumps(self.data) if data_text is None else data_text,
            "secrets": self.secrets,
            "parent_task_id": self.parent_task_id,
            "input_hash": self.input_hash,
            "step": self.step,
            "hops": self.hops,
            "rev": self.rev,
            "failures": self.failures,
            "entry": self.entry,
            "wake_at": self.wake_at,
            "lease_owner": self.lease_owner,
            "lease_until": self.lease_until,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "finished_at": self.finished_at,
            "reply_to": self.reply_to,
            "root_id": self.root_id,
            "generation": self.generation,
            "held_callbacks": self.held_callbacks,
        }


_MISSING = object()
# The columns, from the table: the one list besides migrations.
TASK_COLUMNS = tuple(tasks.columns.keys())
# Every field of the record is a column, but ``stored``; every column is a field, but
# active_ref (derived from ref and state). TaskRecord.from_mapping relies on it.
if {f.name for f in fields(TaskRecord)} != {*TASK_COLUMNS, "stored"} - {"active_ref"}:
    raise TypeError("TaskRecord's fields must be the columns of tasks (store/tables.py)")


@dataclass
class Event:
    kind: str
    node_id: str | None = None
    to_node_id: str | None = None
    detail: dict[str, Any] | None = None
    at: float | None = None


@dataclass
class CallbackRecord:
    id: int
    process_id: int
    node_id: str
    form: str
    payload: dict[str, Any]
    received_at: float
    status: str
    ref: str | None = None
    task_id: str | None = None
    source_ip: str | None = None
    dedupe_key: str | None = None

    @classmethod
    def from_row(cls, row: Any) -> CallbackRecord:
        return cls.from_mapping(row._mapping)

    @classmethod
    def from_mapping(cls, m: Any) -> CallbackRecord:
        values = {k: m[k] for k in _CALLBACK_FIELDS}
        values["payload"] = loads(values["payload"]) or {}
        return cls(**values)


_CALLBACK_FIELDS = tuple(f.name for f in fields(CallbackRecord))


@dataclass
class ProcessRecord:
    id: int
    slug: str
    title: str
    current_version: int
    version_id: int
    definition: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
