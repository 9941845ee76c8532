"""The daily rollup of the case and work-order rates (ticketing/figure_days_model.py, issue 12
item 3) and the triggers that mark the days a change makes stale; covering indexes of the month's
intake, closing and voice-menu counts (ticketing/figures). Empty at first: every day is
read from the raw rows until `callcenter stats rebuild` (or the refresh) computes it.

Revision ID: 0021
Revises: 0020
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_accepted_cover", "cases",
                    ["accepted_at", "status", "confidential", "kind", "category_code", "channel", "reject_reason"])
    op.create_index("ix_cases_closed_cover", "cases", ["closed_at", "status", "closed_provisionally", "satisfaction"])
    op.create_index("ix_calls_started_cover", "calls", ["started_at", "direction", "purpose", "outcome"])
    op.create_index("ix_unit_notifications_wo", "unit_notifications", ["work_order_id", "kind", "at"])
    op.create_table(
        "figure_days",
        sa.Column("zone", sa.String(40), primary_key=True),
        sa.Column("figure", sa.String(40), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("unit_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("hit", sa.Integer(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
    )
    op.create_table(
        "figure_stale_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("marks", sa.Integer(), nullable=False),
    )
    from ticketing.figure_days_model import (
        trigger_ddl,  # the one definition of what goes stale
    )
    for statement in trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    from ticketing.figure_days_model import drop_trigger_ddl
    for statement in drop_trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("figure_stale_days")
    op.drop_table("figure_days")
    op.drop_index("ix_unit_notifications_wo", table_name="unit_notifications")
    op.drop_index("ix_calls_started_cover", table_name="calls")
    op.drop_index("ix_cases_closed_cover", table_name="cases")
    op.drop_index("ix_cases_accepted_cover", table_name="cases")
