"""Approval inside a unit (Article 5 (二) 6, 呈批/审结): which units put their reports back to their
leader first, which users are a unit's leader, and the reports waiting for or decided by them.

Revision ID: 0010
Revises: 0007
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing units and users: no approval step, nobody a leader -- today's behaviour.
    op.add_column("member_units", sa.Column("report_approval", sa.Boolean(), nullable=False,
                                            server_default=sa.false()))
    op.add_column("users", sa.Column("is_unit_leader", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "report_submissions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("work_order_id", sa.Integer(), sa.ForeignKey("work_orders.id"), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("satisfaction", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
    )
    op.create_index("ix_report_submissions_state_wo", "report_submissions", ["state", "work_order_id"])


def downgrade() -> None:
    op.drop_index("ix_report_submissions_state_wo", table_name="report_submissions")
    op.drop_table("report_submissions")
    with op.batch_alter_table("users") as batch_op:
        batch_op.drop_column("is_unit_leader")
    with op.batch_alter_table("member_units") as batch_op:
        batch_op.drop_column("report_approval")
