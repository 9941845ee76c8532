"""漏接回拨 by the scheduler (issue 14 item 4): its automatic callbacks of missed callers, at most one
open per number (a partial unique index; its result is a missed_callbacks row).

Revision ID: 0017
Revises: 0016
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

_OPEN = "state in ('scheduled', 'dialing', 'answered')"


def upgrade() -> None:
    op.create_table(
        "missed_callback_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("caller_number", sa.String(40), nullable=False),
        sa.Column("idempotency_key", sa.String(60), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("operator_extension", sa.String(20), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("callback_id", sa.Integer(), sa.ForeignKey("missed_callbacks.id"), nullable=True),
    )
    op.create_index("uq_missed_callback_attempts_open_number", "missed_callback_attempts", ["caller_number"],
                    unique=True, sqlite_where=sa.text(_OPEN), postgresql_where=sa.text(_OPEN))
    op.create_index("ix_missed_callback_attempts_state", "missed_callback_attempts", ["state", "scheduled_for"])


def downgrade() -> None:
    op.drop_index("ix_missed_callback_attempts_state", table_name="missed_callback_attempts")
    op.drop_index("uq_missed_callback_attempts_open_number", table_name="missed_callback_attempts")
    op.drop_table("missed_callback_attempts")
