"""The schema, as SQLAlchemy Core tables. Alembic migrations are the only way it changes.

Times are Unix seconds (float): cheap to compare on both SQLite and PostgreSQL and free of
time-zone surprises; the API renders them as ISO 8601.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# SQLite only auto-increments an INTEGER PRIMARY KEY.
Serial = BigInteger().with_variant(Integer(), "sqlite")

settings = Table(
    "settings",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

processes = Table(
    "processes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the conv_id
    Column("slug", String(100), nullable=False, unique=True),
    Column("title", String(200), nullable=False),
    Column("current_version", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

process_versions = Table(
    "process_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("process_id", Integer, ForeignKey("processes.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("definition", Text, nullable=False),  # canonical JSON of the process file
    Column("checksum", String(64), nullable=False),
    Column("source", String(500), nullable=True),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("process_id", "version"),
)

nodes = Table(
    "nodes",
    metadata,
    Column("version_id", Integer, ForeignKey("process_versions.id"), primary_key=True),
    Column("node_id", String(100), primary_key=True),
    Column("title", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
)


def _partial(name: str, *columns: str, where: str) -> Index:
    """An index of the rows meeting ``where`` only (on PostgreSQL and SQLite alike)."""
    return Index(name, *columns, postgresql_where=text(where), sqlite_where=text(where))


tasks = Table(
    "tasks",
    metadata,
    Column("id", String(24), primary_key=True),
    Column("process_id", Integer, ForeignKey("processes.id"), nullable=False),
    Column("version_id", Integer, ForeignKey("process_versions.id"), nullable=False),
    Column("ref", String(255), nullable=True),
    # Equal to ref while the task is not in a final node, NULL after: the unique index
    # below makes a ref unique among a process's unfinished tasks, as Corezoid does.
    Column("active_ref", String(255), nullable=True),
    Column("node_id", String(100), nullable=False),
    Column("state", String(10), nullable=False),  # active | waiting | done
    Column("outcome", String(10), nullable=True),  # success | escalation
    Column("data", Text, nullable=False),
    Column("secrets", Text, nullable=True),  # encrypted JSON of secret parameters
    Column("parent_task_id", String(24), nullable=True),
    # HMAC of the submitted data: a create repeated with the same ref and data is a retry.
    Column("input_hash", String(64), nullable=True),
    Column("step", Integer, nullable=False, server_default=text("0")),
    Column("hops", Integer, nullable=False, server_default=text("0")),
    Column("rev", Integer, nullable=False, server_default=text("0")),
    # Consecutive attempts of the current step that failed unexpectedly (engine/step_failures.py).
    Column("failures", Integer, nullable=False, server_default=text("0")),
    # How the node is run next: "enter" runs its logics from the top, "resume" continues
    # after the wait logic that released it, "timeout" follows the node's time limit.
    Column("entry", String(10), nullable=False, server_default=text("'enter'")),
    Column("wake_at", Float, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", Float, nullable=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("finished_at", Float, nullable=True),
    # A task started by call_process: where its reply goes, "task_id:step:node_id".
    Column("reply_to", String(140), nullable=True),
    # The chain it belongs to: the API-created task at its root (NULL: this is the root)
    # and how many creations away from it (copy_task, call_process, follows). See
    # engine/quotas.py.
    Column("root_id", String(24), nullable=True),
    Column("generation", Integer, nullable=False, server_default=text("0")),
    # 1: a callback may be held for the task (pending: it came before the task was ready
    # for it, or by the task's ref before the task existed); 0: none is, and the next
    # wait node or finish need not look in the inbox (engine/deliveries.py).
    Column("held_callbacks", Integer, nullable=False, server_default=text("0")),
    UniqueConstraint("process_id", "active_ref"),
    # Every UPDATE that is not HOT (most change state or updated_at) adds an entry to each
    # index whose predicate the new row meets, so the indexes below are partial where
    # their queries allow it: those of a state hold only that state's rows, those of an
    # optional column only the rows that have it. Each query's WHERE implies the predicate
    # ("state = 'done'" as such; "x = :v" or "x <= :v" implies "x IS NOT NULL"), which is
    # what lets PostgreSQL and SQLite use them (tests/unit/store/test_task_indexes.py).
    _partial("ix_tasks_ref", "process_id", "ref", where="ref IS NOT NULL"),
    # The console: a node's tasks newest first, paged without sorting the node, and the
    # per-process state counts answered from the index alone.
    Index("ix_tasks_process_node_created", "process_id", "node_id", "created_at", "id"),
    Index("ix_tasks_process_state_outcome", "process_id", "state", "outcome"),
    # A process's tasks newest first (the console's task list, filtered by state, outcome
    # or a time range); created_at never changes, so only inserts maintain it.
    Index("ix_tasks_process_created", "process_id", "created_at", "id"),
    # Claims: runnable tasks oldest first, read in index order (no sort of the backlog).
    _partial("ix_tasks_runnable", "updated_at", "lease_until", where="state = 'active'"),
    # Due timers: waiting tasks by wake time.
    _partial("ix_tasks_timers", "wake_at", where="state = 'waiting' AND wake_at IS NOT NULL"),
    _partial("ix_tasks_parent_id", "parent_task_id", where="parent_task_id IS NOT NULL"),
    # Retention: finished tasks by age.
    _partial("ix_tasks_finished", "finished_at", where="state = 'done'"),
    _partial("ix_tasks_root", "root_id", where="root_id IS NOT NULL"),
)

task_events = Table(
    "task_events",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("task_id", String(24), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(30), nullable=False),
    Column("node_id", String(100), nullable=True),
    Column("to_node_id", String(100), nullable=True),
    Column("detail", Text, nullable=True),  # JSON
    Index("ix_task_events_task_id_id", "task_id", "id"),
)

callbacks = Table(
    "callbacks",
    metadata,
    Column("id", Serial, primary_key=True, autoincrement=True),
    Column("process_id", Integer, nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("form", String(10), nullable=False),  # json | twilio | nvp
    Column("ref", String(255), nullable=True),
    Column("task_id", String(24), nullable=True),
    Column("dedupe_key", String(200), nullable=True),
    Column("idem_token", String(200), nullable=True),
    Column("payload", Text, nullable=False),
    # Who sent it: webhook form or API key, and the client address (audit trail).
    Column("source_ip", String(200), nullable=True),
    Column("received_at", Float, nullable=False),
    # new (not yet looked at) | pending (its task is not waiting yet) | applied | ignored
    Column("status", String(10), nullable=False),
    Column("applied_at", Float, nullable=True),
    Column("applied_task_id", String(24), nullable=True),
    UniqueConstraint("process_id", "dedupe_key"),
    UniqueConstraint("idem_token"),
    Index("ix_callbacks_status_id", "status", "id"),
    Index("ix_callbacks_process_ref_status", "process_id", "ref", "status"),
    Index("ix_callbacks_task_id_status", "task_id", "status"),
)

# An external side effect (a Twilio create) is recorded before it is attempted, so a
# worker that dies between the call and the commit never repeats it blindly.
effects = Table(
    "effects",
    metadata,
    Column("task_id", String(24), primary_key=True),
    Column("step", Integer, primary_key=True),
    Column("logic_index", Integer, primary_key=True),
    Column("kind", String(40), nullable=False),
    Column("status", String(10), nullable=False),  # started | done
    Column("request", Text, nullable=True),  # JSON, secrets removed
    Column("result", Text, nullable=True),  # JSON
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Auth tokens of accounts that sent messages, kept encrypted to verify their callbacks.
twilio_accounts = Table(
    "twilio_accounts",
    metadata,
    Column("account_sid", String(64), primary_key=True),
    Column("token_encrypted", Text, nullable=False),
    Column("updated_at", Float, nullable=False),
)

# Outbound pacing: the earliest time the next message from a sender (a number or a
# messaging service) may go out. Shared by every worker process through the database.
sender_slots = Table(
    "sender_slots",
    metadata,
    Column("sender", String(64), primary_key=True),
    Column("next_at", Float, nullable=False),
    # The last turn handed to a send deferred because its slot was too far away.
    Column("queued_until", Float, nullable=False, server_default=text("0")),
)

# Messages sent with a status callback into a wait node, until a final status is known;
# the reconciliation sweep fetches those still open at ``check_at``.
twilio_messages = Table(
    "twilio_messages",
    metadata,
    Column("sid", String(64), primary_key=True),
    Column("account_sid", String(64), nullable=False),
    Column("process_id", Integer, nullable=False),
    Column("node_id", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("final", Integer, nullable=False, server_default=text("0")),
    Column("created_at", Float, nullable=False),
    Column("check_at", Float, nullable=False),
    Index("ix_twilio_messages_final_check_at", "final", "check_at"),
)

# API keys (login id + secret). The secret is stored twice, for two checks: a SHA-256
# hash finds the key behind a Bearer token; an encrypted copy (vault, from ORCH_SECRET)
# verifies Corezoid signatures, which are keyed with the plain secret.
api_keys = Table(
    "api_keys",
    metadata,
    Column("login", String(64), primary_key=True),
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("secret_encrypted", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    # "read": GET only; "operate": everything (submit, modify, repair, deploy).
    Column("role", String(10), nullable=False, server_default=text("'operate'")),
)

# Logged-in console sessions: the cookie carries a random id, stored here as its SHA-256.
# Logging out deletes the row, which ends the session at once (not when the cookie expires).
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("login", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Index("ix_console_sessions_expires_at", "expires_at"),
)

# Signatures of Corezoid API requests seen within the clock-skew window: a request
# replayed inside the window is refused. Rows older than the window are deleted.
seen_requests = Table(
    "seen_requests",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("seen_at", Float, nullable=False),
    Index("ix_seen_requests_seen_at", "seen_at"),
)

# Two-way SMS (SPEC §10). Tasks listening for the next message of a conversation: the
# person ``from_number`` texting our ``to_number``; the oldest listener takes it.
reply_listeners = Table(
    "reply_listeners",
    metadata,
    Column("task_id", String(24), primary_key=True),
    Column("from_number", String(64), nullable=False),
    Column("to_number", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_reply_listeners_pair_created", "from_number", "to_number", "created_at"),
)

# Recipients who texted an opt-out keyword (or whom Twilio refused with 21610) to one of
# our senders: nothing more is sent on that pair until they opt in again.
sms_opt_outs = Table(
    "sms_opt_outs",
    metadata,
    Column("recipient", String(64), primary_key=True),
    Column("sender", String(64), primary_key=True),
    Column("source", String(40), nullable=False),  # keyword:STOP | twilio:21610
    Column("created_at", Float, nullable=False),
)
