"""Indexes for the figures (ticketing.figures, issue 12): every figure selects its rows by a
period on one moment column (accepted, closed, dispatched, due, started, finished, urged), and
the case and work-order figures look up a case's work orders and a work order's extensions.

Revision ID: 0008
Revises: 0007
"""
from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

INDEXES = (
    ("ix_cases_accepted_at", "cases", ["accepted_at"]),
    ("ix_cases_closed_at", "cases", ["closed_at"]),
    ("ix_cases_dispatch_due_at", "cases", ["dispatch_due_at"]),
    ("ix_wo_case", "work_orders", ["case_id"]),
    ("ix_wo_dispatched_at", "work_orders", ["dispatched_at"]),
    ("ix_wo_notify_due_at", "work_orders", ["notify_due_at"]),
    ("ix_wo_report_due_at", "work_orders", ["report_due_at"]),
    ("ix_extension_requests_wo", "extension_requests", ["work_order_id"]),
    ("ix_calls_started_at", "calls", ["started_at"]),
    ("ix_callback_finished_at", "callback_attempts", ["finished_at"]),
    ("ix_unit_notifications_kind_at", "unit_notifications", ["kind", "at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
