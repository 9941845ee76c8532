"""Covering indexes of the non-additive case rates' reads (ticketing/figures, issue 12 item 3):
a period's callback attempts with their state and case from the index alone (replaces the index
on `finished_at` only), and on PostgreSQL the repeat-caller look-up's `id` in its index (SQLite's
indexes hold the rowid already).

Revision ID: 0027
Revises: 0026
"""
from __future__ import annotations

from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

CALLER = ["citizen_phone", "category_code", "accepted_at"]


def upgrade() -> None:
    op.create_index("ix_callback_finished_cover", "callback_attempts", ["finished_at", "state", "case_id"])
    op.drop_index("ix_callback_finished_at", table_name="callback_attempts")
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_cases_caller_category", table_name="cases")
        op.create_index("ix_cases_caller_category", "cases", CALLER, postgresql_include=["id"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_cases_caller_category", table_name="cases")
        op.create_index("ix_cases_caller_category", "cases", CALLER)
    op.create_index("ix_callback_finished_at", "callback_attempts", ["finished_at"])
    op.drop_index("ix_callback_finished_cover", table_name="callback_attempts")
