"""Operators on Twilio (issue 15): the operator queue's state of a Twilio call (`carrier_calls`:
queue_state, operator, room, queued_at) and the operators answering it (`carrier_agents`), so a
restarted process rebuilds the queue from the store and the carrier's API.

Revision ID: 0023
Revises: 0022
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("carrier_calls", sa.Column("queue_state", sa.String(16), nullable=True))
    op.add_column("carrier_calls", sa.Column("operator", sa.String(16), nullable=True))
    op.add_column("carrier_calls", sa.Column("room", sa.String(64), nullable=True))
    op.add_column("carrier_calls", sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_carrier_calls_queue_state", "carrier_calls", ["queue_state"])
    op.create_table(
        "carrier_agents",
        sa.Column("extension", sa.String(16), primary_key=True),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("logged_in", sa.Boolean(), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("pause_reason", sa.String(40), nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=True),
        sa.Column("leg_sid", sa.String(64), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("carrier_agents")
    op.drop_index("ix_carrier_calls_queue_state", table_name="carrier_calls")
    with op.batch_alter_table("carrier_calls") as batch:
        for name in ("queued_at", "room", "operator", "queue_state"):
            batch.drop_column(name)
