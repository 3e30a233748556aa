"""tasks.root_id and tasks.generation: the task chain a task belongs to, and how deep

A task created over the API is the root of its chain (root_id NULL, generation 0); a task
created by copy_task, call_process or a Twilio follow gets its creator's root and one more
generation. Quotas on both stop a process that copies itself without end
(engine/quotas.py); the index counts a chain's tasks.

Revision ID: 0009_task_lineage
Revises: 0008_two_way
Create Date: 2026-12-05 07:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_task_lineage"
down_revision: str | None = "0008_two_way"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("root_id", sa.String(length=24), nullable=True))
        batch_op.add_column(
            sa.Column("generation", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.create_index("ix_tasks_root_id", ["root_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_root_id")
        batch_op.drop_column("generation")
        batch_op.drop_column("root_id")
