"""tasks: partial indexes (an UPDATE that is not HOT writes fewer index entries)

A task's row is updated about six times per life, never HOT (state, updated_at and the
lease are indexed), and each such update added an entry to all eleven indexes of the
table. The state-specific ones now hold their state's rows only (claims: active; timers:
waiting with a wake time; retention: done) and those of optional columns (ref, parent,
root) only the rows that have one, so an update writes into the indexes its new row
belongs to. Every query using them implies the predicate (store/tables.py).

Revision ID: 0011_partial_task_indexes
Revises: 0010_held_callbacks
Create Date: 2026-12-05 14:15:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_partial_task_indexes"
down_revision: str | None = "0010_held_callbacks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (old name, old columns, new name, new columns, predicate)
_CHANGES: list[tuple[str, list[str], str, list[str], str]] = [
    (
        "ix_tasks_process_ref",
        ["process_id", "ref"],
        "ix_tasks_ref",
        ["process_id", "ref"],
        "ref IS NOT NULL",
    ),
    (
        "ix_tasks_state_updated_lease",
        ["state", "updated_at", "lease_until"],
        "ix_tasks_runnable",
        ["updated_at", "lease_until"],
        "state = 'active'",
    ),
    (
        "ix_tasks_state_wake_at",
        ["state", "wake_at"],
        "ix_tasks_timers",
        ["wake_at"],
        "state = 'waiting' AND wake_at IS NOT NULL",
    ),
    (
        "ix_tasks_parent",
        ["parent_task_id"],
        "ix_tasks_parent_id",
        ["parent_task_id"],
        "parent_task_id IS NOT NULL",
    ),
    (
        "ix_tasks_state_finished_at",
        ["state", "finished_at"],
        "ix_tasks_finished",
        ["finished_at"],
        "state = 'done'",
    ),
    ("ix_tasks_root_id", ["root_id"], "ix_tasks_root", ["root_id"], "root_id IS NOT NULL"),
]


def upgrade() -> None:
    for old, _old_columns, new, columns, where in _CHANGES:
        op.drop_index(old, table_name="tasks")
        op.create_index(
            new,
            "tasks",
            columns,
            unique=False,
            postgresql_where=sa.text(where),
            sqlite_where=sa.text(where),
        )


def downgrade() -> None:
    for old, old_columns, new, _columns, _where in reversed(_CHANGES):
        op.drop_index(new, table_name="tasks")
        op.create_index(old, "tasks", old_columns, unique=False)
