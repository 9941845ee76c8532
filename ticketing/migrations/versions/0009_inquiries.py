"""Inquiries (调查, R6.1): supervision asks a unit to explain a case or its work, the unit explains,
supervision records its findings and the accountability decision (过错问责).

Revision ID: 0009
Revises: 0008
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inquiries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("unit_id", sa.Integer(), sa.ForeignKey("member_units.id"), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("work_order_id", sa.Integer(), sa.ForeignKey("work_orders.id"), nullable=True),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("explanation_due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("explanation", sa.Text(), nullable=True),
        sa.Column("explained_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("explained_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("explanation_met", sa.Boolean(), nullable=True),
        sa.Column("findings", sa.Text(), nullable=True),
        sa.Column("decision", sa.String(32), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("urge_count", sa.Integer(), nullable=False),
        sa.Column("last_urged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("urged_thresholds", sa.JSON(), nullable=False),
        sa.Column("provisional_deadlines", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_inquiries_unit_status", "inquiries", ["unit_id", "status"])
    op.create_index("ix_inquiries_status_due", "inquiries", ["status", "explanation_due_at"])


def downgrade() -> None:
    op.drop_index("ix_inquiries_status_due", table_name="inquiries")
    op.drop_index("ix_inquiries_unit_status", table_name="inquiries")
    op.drop_table("inquiries")
