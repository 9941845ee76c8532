"""The daily rollup of the queue figures (ticketing/queue_days_model.py, issue 12 item 3) and the
triggers that mark the days a change makes stale; covering indexes of the non-additive rates' reads. Empty at first: every day is read from the queue
entries until `callcenter stats rebuild` (or the API's background refresh) computes it.

Revision ID: 0025
Revises: 0024
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # the non-additive rates' one-pass reads (ticketing/figures/base.py)
    op.create_index("ix_cases_accepted_caller", "cases",
                    ["accepted_at", "status", "citizen_phone", "category_code", "confidential", "id"])
    op.create_index("ix_wo_case_unit", "work_orders", ["case_id", "unit_id"])
    op.create_table(
        "queue_days",
        sa.Column("params", sa.String(80), primary_key=True),
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("hour", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("operator", sa.String(60), primary_key=True),
        *(sa.Column(c, sa.Integer(), nullable=False) for c in ("offered", "answered", "fast", "abandoned", "short")),
        *(col for m in ("wait", "abandoned", "talk") for col in (
            sa.Column(f"{m}_n", sa.Integer(), nullable=False), sa.Column(f"{m}_ms", sa.BigInteger(), nullable=False),
            sa.Column(f"{m}_hist", sa.Text(), nullable=False))),
    )
    op.create_table(
        "queue_stale_days",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("marks", sa.Integer(), nullable=False),
    )
    from ticketing.queue_days_model import (
        queue_trigger_ddl,  # the one definition of what goes stale
    )
    for statement in queue_trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    from ticketing.queue_days_model import queue_drop_trigger_ddl
    for statement in queue_drop_trigger_ddl(op.get_bind().dialect.name):
        op.execute(statement)
    op.drop_table("queue_stale_days")
    op.drop_table("queue_days")
    op.drop_index("ix_wo_case_unit", table_name="work_orders")
    op.drop_index("ix_cases_accepted_caller", table_name="cases")
