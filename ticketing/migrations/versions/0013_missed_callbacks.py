"""漏接回拨: the front desk's callbacks to callers who gave up in the operator queue.

Revision ID: 0013
Revises: 0012
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "missed_callbacks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("caller_number", sa.String(40), nullable=False),
        sa.Column("called_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("called_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("reached", sa.Boolean(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
    )
    op.create_index("ix_missed_callbacks_number_at", "missed_callbacks", ["caller_number", "called_at"])


def downgrade() -> None:
    op.drop_index("ix_missed_callbacks_number_at", table_name="missed_callbacks")
    op.drop_table("missed_callbacks")
