"""Console indexes: a node's tasks newest first, per-process state counts.

Revision ID: 0003_console
Revises: 0002_engine
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003_console"
down_revision: str | None = "0002_engine"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_process_node_created",
            ["process_id", "node_id", "created_at", "id"],
            unique=False,
        )
        batch_op.create_index(
            "ix_tasks_process_state_outcome", ["process_id", "state", "outcome"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_process_state_outcome")
        batch_op.drop_index("ix_tasks_process_node_created")
