"""Repeated requests merged (重复诉求并单): the link from a duplicate case to the case it was merged into.

Revision ID: 0011
Revises: 0010
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_merges",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("duplicate_case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False, unique=True),
        sa.Column("surviving_case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("ground", sa.String(20), nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("merged_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
    )
    op.create_index("ix_case_merges_surviving", "case_merges", ["surviving_case_id"])


def downgrade() -> None:
    op.drop_index("ix_case_merges_surviving", table_name="case_merges")
    op.drop_table("case_merges")
