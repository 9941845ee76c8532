"""Provisional deadlines (T1): a deadline counted over a year whose holiday arrangement is not
published yet keeps its basis (start and steps) here, column name -> basis, until it is counted
again on the official calendar. NULL for everything else, so the partial indexes stay tiny.

Revision ID: 0005
Revises: 0004
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_MARKED = "provisional_deadlines IS NOT NULL"


def upgrade() -> None:
    for table in ("cases", "work_orders"):
        op.add_column(table, sa.Column("provisional_deadlines", sa.JSON(none_as_null=True), nullable=True))
        op.create_index(f"ix_{table}_provisional", table, ["id"],
                        postgresql_where=sa.text(_MARKED), sqlite_where=sa.text(_MARKED))


def downgrade() -> None:
    for table in ("cases", "work_orders"):
        op.drop_index(f"ix_{table}_provisional", table_name=table)
        op.drop_column(table, "provisional_deadlines")
