"""The operator queue, one row per call (ticketing.queue_entries, issue 12 item 3): the queue
figures read it instead of grouping the call log's AMI events; filled here from the events
already logged (afterwards the call log keeps it current; `callcenter stats rebuild` recomputes it).
Also the call log's events by call (the refresh reads one call's events), and two covering
indexes of the case figures' correlated look-ups (ticketing/figures/base.py).

Revision ID: 0016
Revises: 0015
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_cases_caller_category", "cases", ["citizen_phone", "category_code", "accepted_at"])
    op.create_index("ix_wo_case_dispatched", "work_orders", ["case_id", "dispatched_at"])
    op.create_index("ix_call_events_call", "call_events", ["call_id", "kind"])
    op.create_table(
        "queue_entries",
        sa.Column("call_id", sa.Integer(), sa.ForeignKey("calls.id"), primary_key=True, autoincrement=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("queue_joins", sa.Integer(), nullable=False),
        sa.Column("connected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("holdtime", sa.Float(), nullable=True),
        sa.Column("extension", sa.String(40), nullable=True),
        sa.Column("talktime", sa.Float(), nullable=True),
        sa.Column("abandoned_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_queue_entries_queued_at", "queue_entries", ["queued_at", "call_id"])
    op.create_index("ix_queue_entries_requeued", "queue_entries", ["call_id"],
                    sqlite_where=sa.text("queue_joins > 1"), postgresql_where=sa.text("queue_joins > 1"))
    from ticketing.queue_entries import fill_all  # the one definition of an entry
    fill_all(op.get_bind())


def downgrade() -> None:
    op.drop_index("ix_queue_entries_requeued", table_name="queue_entries")
    op.drop_index("ix_queue_entries_queued_at", table_name="queue_entries")
    op.drop_table("queue_entries")
    op.drop_index("ix_call_events_call", table_name="call_events")
    op.drop_index("ix_wo_case_dispatched", table_name="work_orders")
    op.drop_index("ix_cases_caller_category", table_name="cases")
