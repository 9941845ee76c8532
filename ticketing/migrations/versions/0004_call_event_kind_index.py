"""Index call events by kind and time: at start-up call control reads back the recent call-control
steps (who held which conference room) from the call log; without it that scans every event.

Revision ID: 0004
Revises: 0003
"""
from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_call_events_kind_at", "call_events", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_call_events_kind_at", table_name="call_events")
