"""Notices delivered, not only recorded (issue 14 item 5): a unit notice's delivery by voice call
(later SMS), its tries and the acknowledgement.

Revision ID: 0022
Revises: 0021
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("notification_id", sa.Integer(), sa.ForeignKey("unit_notifications.id"), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("idempotency_key", sa.String(60), nullable=False, unique=True),
        sa.Column("tries", sa.Integer(), nullable=False),
        sa.Column("scheduled_for", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("target_role", sa.String(10), nullable=False),
        sa.Column("phone", sa.String(40), nullable=False),
        sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.UniqueConstraint("notification_id", "channel", name="uq_notification_deliveries_channel"),
    )
    op.create_index("ix_notification_deliveries_state", "notification_deliveries", ["state"])


def downgrade() -> None:
    op.drop_index("ix_notification_deliveries_state", table_name="notification_deliveries")
    op.drop_table("notification_deliveries")
