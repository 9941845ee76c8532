"""Hot topics and their public answers (R7.6, issue 13 item 6): the segmented terms of each case
(ticketing.hot_topics fills them as it reads cases) and the answers published for a topic.

Revision ID: 0019
Revises: 0018
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_terms",
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), primary_key=True, autoincrement=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("terms", sa.Text(), nullable=False),
    )
    op.create_table(
        "hot_topic_answers",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("category_code", sa.String(64), nullable=False),
        sa.Column("term", sa.String(64), nullable=False),
        sa.Column("place", sa.String(64), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("answer", sa.Text(), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
    )
    op.create_index("ix_hot_topic_answers_topic", "hot_topic_answers", ["category_code", "term", "place"])


def downgrade() -> None:
    op.drop_index("ix_hot_topic_answers_topic", table_name="hot_topic_answers")
    op.drop_table("hot_topic_answers")
    op.drop_table("case_terms")
