"""Console as an operator's tool: API key roles, revocable console sessions, and the
index behind a process's task list.

api_keys.role is "read" (GET only) or "operate" (everything; the default, so existing
keys keep what they could do). console_sessions holds one row per logged-in console
session (the cookie carries its id): logging out deletes it, so the cookie stops working
at once. ix_tasks_process_created lists a process's tasks newest first, filtered by state,
outcome or a time range, without sorting them; created_at never changes, so only inserts
pay for it.

Revision ID: 0007_console_roles
Revises: 0006_step_failures
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_console_roles"
down_revision: str | None = "0006_step_failures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(10), server_default=sa.text("'operate'"), nullable=False)
        )
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), nullable=False),
        sa.Column("login", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_console_sessions_expires_at", ["expires_at"], unique=False)
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_process_created", ["process_id", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_process_created")
    with op.batch_alter_table("console_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_console_sessions_expires_at")
    op.drop_table("console_sessions")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("role")
