"""partial indexes of open work orders in report-deadline order, all and per unit (T3 overdue page at scale)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Same literal predicate as ticketing.models.OPEN_WORK_ORDER_SQL (kept here: a migration must
# not change when the model does).
OPEN = "status IN ('dispatched', 'received', 'notified', 'return_requested')"


def upgrade() -> None:
    op.create_index("ix_wo_open_report_due", "work_orders", ["report_due_at", "id"], unique=False,
                    postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN))
    op.create_index("ix_wo_unit_open_report_due", "work_orders", ["unit_id", "report_due_at", "id"], unique=False,
                    postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN))


def downgrade() -> None:
    op.drop_index("ix_wo_unit_open_report_due", table_name="work_orders")
    op.drop_index("ix_wo_open_report_due", table_name="work_orders")
