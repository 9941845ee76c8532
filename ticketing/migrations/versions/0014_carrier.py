"""A cloud carrier's driver (Twilio, callcenter/twilio/): a call's voice-flow state between webhooks,
the signed requests already answered (replay guard), SMS messages both ways and SMS opt-outs.

Revision ID: 0014
Revises: 0013
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "carrier_calls",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("driver", sa.String(16), nullable=False),
        sa.Column("call_sid", sa.String(64), nullable=False),
        sa.Column("call_id", sa.Integer(), sa.ForeignKey("calls.id"), nullable=True),
        sa.Column("flow", sa.String(32), nullable=False),
        sa.Column("variables", sa.JSON(), nullable=False),
        sa.Column("journal", sa.JSON(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=True),
        sa.Column("outbound_key", sa.String(80), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("call_sid", name="uq_carrier_calls_sid"),
    )
    op.create_index("ix_carrier_calls_outbound_key", "carrier_calls", ["outbound_key"])
    op.create_table(
        "carrier_requests",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_carrier_requests_seen_at", "carrier_requests", ["seen_at"])
    op.create_table(
        "sms_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sid", sa.String(64), nullable=True),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("phone", sa.String(40), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("segments", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("error_code", sa.String(16), nullable=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sid", name="uq_sms_messages_sid"),
    )
    op.create_index("ix_sms_messages_phone_at", "sms_messages", ["phone", "created_at"])
    op.create_table(
        "sms_opt_outs",
        sa.Column("phone", sa.String(40), primary_key=True),
        sa.Column("keyword", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sms_opt_outs")
    op.drop_index("ix_sms_messages_phone_at", table_name="sms_messages")
    op.drop_table("sms_messages")
    op.drop_index("ix_carrier_requests_seen_at", table_name="carrier_requests")
    op.drop_table("carrier_requests")
    op.drop_index("ix_carrier_calls_outbound_key", table_name="carrier_calls")
    op.drop_table("carrier_calls")
