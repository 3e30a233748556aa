"""Two-way SMS: tasks listening for replies (by conversation) and opt-outs per pair.

Revision ID: 0008_two_way
Revises: 0007_console_roles
Create Date: 2026-12-05 07:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_two_way"
down_revision: str | None = "0007_console_roles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reply_listeners",
        sa.Column("task_id", sa.String(length=24), nullable=False),
        sa.Column("from_number", sa.String(length=64), nullable=False),
        sa.Column("to_number", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_reply_listeners")),
    )
    op.create_index(
        "ix_reply_listeners_pair_created",
        "reply_listeners",
        ["from_number", "to_number", "created_at"],
        unique=False,
    )
    op.create_table(
        "sms_opt_outs",
        sa.Column("recipient", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=40), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("recipient", "sender", name=op.f("pk_sms_opt_outs")),
    )


def downgrade() -> None:
    op.drop_table("sms_opt_outs")
    op.drop_index("ix_reply_listeners_pair_created", table_name="reply_listeners")
    op.drop_table("reply_listeners")
