"""Notices to citizens delivered (issue 14; R8.2 and the portal's confirmation): `citizen_notices`,
and a delivery that carries either a unit's notice or a citizen's (`notification_id` optional,
`citizen_notice_id`); an index for the planner's scan of work orders notified by the hotline's call.

Revision ID: 0024
Revises: 0023
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "citizen_notices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("origin", sa.String(40), nullable=False, unique=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("work_order_id", sa.Integer(), sa.ForeignKey("work_orders.id"), nullable=True),
        sa.Column("unit_id", sa.Integer(), sa.ForeignKey("member_units.id"), nullable=True),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_citizen_notices_case_id", "citizen_notices", ["case_id"])
    op.create_index("ix_citizen_notices_unit_id", "citizen_notices", ["unit_id"])
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.alter_column("notification_id", existing_type=sa.Integer(), nullable=True)
        batch.add_column(sa.Column("citizen_notice_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_notification_deliveries_citizen_notice", "citizen_notices",
                                 ["citizen_notice_id"], ["id"])
        batch.create_unique_constraint("uq_notification_deliveries_citizen", ["citizen_notice_id", "channel"])
    op.create_index("ix_wo_notify_channel_at", "work_orders", ["notify_channel", "notified_at"])


def downgrade() -> None:
    op.drop_index("ix_wo_notify_channel_at", table_name="work_orders")
    op.execute("DELETE FROM notification_deliveries WHERE citizen_notice_id IS NOT NULL")
    with op.batch_alter_table("notification_deliveries") as batch:
        batch.drop_constraint("uq_notification_deliveries_citizen", type_="unique")
        batch.drop_constraint("fk_notification_deliveries_citizen_notice", type_="foreignkey")
        batch.drop_column("citizen_notice_id")
        batch.alter_column("notification_id", existing_type=sa.Integer(), nullable=False)
    op.drop_index("ix_citizen_notices_unit_id", table_name="citizen_notices")
    op.drop_index("ix_citizen_notices_case_id", table_name="citizen_notices")
    op.drop_table("citizen_notices")
