"""tasks.held_callbacks: whether a callback may be waiting in the inbox for the task

A task entering a wait node, or finishing, looked in the callbacks table for callbacks
that came early (two SELECTs per round trip and wait node); the flag says when there can
be none. Set when a callback is kept pending for the task, and for a task with a ref from
its creation (a callback for the ref may have come before it); cleared by the look that
finds none (engine/deliveries.py). Unfinished tasks of an upgraded database may have some
already: they start with it set.

Revision ID: 0010_held_callbacks
Revises: 0009_task_lineage
Create Date: 2026-12-05 13:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_held_callbacks"
down_revision: str | None = "0009_task_lineage"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("held_callbacks", sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    op.execute("UPDATE tasks SET held_callbacks = 1 WHERE state <> 'done'")


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("held_callbacks")
