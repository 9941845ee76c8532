"""Index callback attempts by case (the callback planner asks "does this case have an open
attempt?" for every due case; without it each question scans the whole table).

Revision ID: 0003
Revises: 0002
"""
from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_callback_case_state", "callback_attempts", ["case_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_callback_case_state", table_name="callback_attempts")
