"""Which driver carried each call (issue 15 item 5): `calls.carrier`, asterisk or twilio, written when
the call is opened (ticketing/calls.py); calls the Twilio driver logged before (a `carrier` event or a
carrier_calls row) become 'twilio', all others 'asterisk'. And `carrier_calls.room_twiml`: the
conference a call was moved into by call control on Twilio.

Revision ID: 0020
Revises: 0019
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN with a constant default (no table rebuild of the call log on SQLite)
    op.add_column("calls", sa.Column("carrier", sa.String(16), nullable=False, server_default="asterisk"))
    op.execute("UPDATE calls SET carrier = 'twilio' WHERE id IN (SELECT call_id FROM call_events WHERE kind = 'carrier')"
               " OR id IN (SELECT call_id FROM carrier_calls WHERE call_id IS NOT NULL)")
    op.add_column("carrier_calls", sa.Column("room_twiml", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("carrier_calls") as batch:
        batch.drop_column("room_twiml")
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("carrier")
