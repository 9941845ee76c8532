"""The answer as published (R7.6): the back office's reviewed text, stored with the summary, instead
of the unit's answer scrubbed each time the public page is read.

Revision ID: 0006
Revises: 0005
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("cases", sa.Column("public_answer", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("cases", "public_answer")
