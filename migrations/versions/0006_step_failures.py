"""tasks.failures: consecutive failed attempts of the current step; one index fewer

ix_tasks_process_node_state served no query that ix_tasks_process_node_created (same
leading columns) does not, and every change of a task's node or state rewrote it.

Revision ID: 0006_step_failures
Revises: 0005_security
Create Date: 2026-11-24 03:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_step_failures"
down_revision: str | None = "0005_security"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("failures", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.drop_index("ix_tasks_process_node_state")


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_process_node_state", ["process_id", "node_id", "state"], unique=False
        )
        batch_op.drop_column("failures")
