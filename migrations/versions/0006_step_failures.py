"""tasks.failures: consecutive failed attempts of the current step; leaner task indexes

ix_tasks_process_node_state served no query that ix_tasks_process_node_created (same
leading columns) does not, and every change of a task's node or state rewrote it.
Claims read runnable tasks oldest first: (state, updated_at, lease_until) gives them in
that order, where (state, lease_until) made every claim sort the whole backlog. Due timers
get (state, wake_at) in place of (wake_at), and retention (state, finished_at) in place of
(finished_at): without statistics SQLite preferred any index starting with the state and
then read every waiting (or finished) task.

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
        batch_op.drop_index("ix_tasks_state_lease")
        batch_op.create_index(
            "ix_tasks_state_updated_lease", ["state", "updated_at", "lease_until"], unique=False
        )
        batch_op.drop_index("ix_tasks_wake_at")
        batch_op.create_index("ix_tasks_state_wake_at", ["state", "wake_at"], unique=False)
        batch_op.drop_index("ix_tasks_finished_at")
        batch_op.create_index("ix_tasks_state_finished_at", ["state", "finished_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_state_finished_at")
        batch_op.create_index("ix_tasks_finished_at", ["finished_at"], unique=False)
        batch_op.drop_index("ix_tasks_state_wake_at")
        batch_op.create_index("ix_tasks_wake_at", ["wake_at"], unique=False)
        batch_op.drop_index("ix_tasks_state_updated_lease")
        batch_op.create_index("ix_tasks_state_lease", ["state", "lease_until"], unique=False)
        batch_op.create_index(
            "ix_tasks_process_node_state", ["process_id", "node_id", "state"], unique=False
        )
        batch_op.drop_column("failures")
