"""The knowledge base's life and search (issue 13): entries get a state (draft → submitted →
published → expired/withdrawn), variants, categories, legal basis, sources, validity and a review
interval; every saved version is a revision; the cases answered with an entry and operators' flags
are kept. Search terms (jieba-segmented, ticketing.knowledge_text) are indexed by FTS5 on SQLite and
by a tsvector built from the same terms on PostgreSQL (no server extension).

Existing entries become published revision 1 (inactive ones withdrawn); `callcenter seed` fills
their search terms (and the term counts, knowledge_terms) with the city's dictionary.

Revision ID: 0015
Revises: 0014
"""
from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

FTS_TRIGGERS = {
    "knowledge_fts_ai": "AFTER INSERT ON knowledge_entries BEGIN "
                        "INSERT INTO knowledge_fts(rowid, search_terms, search_body) "
                        "VALUES (new.id, new.search_terms, new.search_body); END",
    "knowledge_fts_ad": "AFTER DELETE ON knowledge_entries BEGIN "
                        "INSERT INTO knowledge_fts(knowledge_fts, rowid, search_terms, search_body) "
                        "VALUES ('delete', old.id, old.search_terms, old.search_body); END",
    "knowledge_fts_au": "AFTER UPDATE OF search_terms, search_body ON knowledge_entries BEGIN "
                        "INSERT INTO knowledge_fts(knowledge_fts, rowid, search_terms, search_body) "
                        "VALUES ('delete', old.id, old.search_terms, old.search_body); "
                        "INSERT INTO knowledge_fts(rowid, search_terms, search_body) "
                        "VALUES (new.id, new.search_terms, new.search_body); END",
}


def upgrade() -> None:
    empty_list = sa.text("'[]'")
    with op.batch_alter_table("knowledge_entries") as b:
        b.add_column(sa.Column("state", sa.String(16), nullable=False, server_default="draft"))
        b.add_column(sa.Column("variants", sa.JSON(), nullable=False, server_default=empty_list))
        b.add_column(sa.Column("categories", sa.JSON(), nullable=False, server_default=empty_list))
        b.add_column(sa.Column("legal_basis", sa.Text(), nullable=False, server_default=""))
        b.add_column(sa.Column("source_links", sa.JSON(), nullable=False, server_default=empty_list))
        b.add_column(sa.Column("valid_from", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("valid_until", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("review_interval_days", sa.Integer(), nullable=False, server_default="365"))
        b.add_column(sa.Column("review_due_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("review_urged_for", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        b.add_column(sa.Column("published_at", sa.DateTime(timezone=True), nullable=True))
        b.add_column(sa.Column("seed_key", sa.String(100), nullable=True))
        b.add_column(sa.Column("search_terms", sa.Text(), nullable=False, server_default=""))
        b.add_column(sa.Column("search_body", sa.Text(), nullable=False, server_default=""))
    op.create_index("ix_knowledge_entries_state_unit", "knowledge_entries", ["state", "unit_id"])
    op.create_index("ux_knowledge_entries_seed_key", "knowledge_entries", ["seed_key"], unique=True)
    op.create_table(
        "knowledge_revisions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("knowledge_entries.id"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("content", sa.JSON(), nullable=False),
        sa.Column("changed", sa.JSON(), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("written_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reviewed_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.UniqueConstraint("entry_id", "number"),
    )
    op.create_index("ix_knowledge_revisions_state", "knowledge_revisions", ["state"])
    op.create_table(
        "knowledge_uses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("knowledge_entries.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
    )
    op.create_index("ix_knowledge_uses_entry", "knowledge_uses", ["entry_id"])
    op.create_table(
        "knowledge_flags",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("entry_id", sa.Integer(), sa.ForeignKey("knowledge_entries.id"), nullable=False),
        sa.Column("unit_id", sa.Integer(), sa.ForeignKey("member_units.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("flagged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("flagged_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("resolved_by_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=False),
    )
    op.create_index("ix_knowledge_flags_unit_open", "knowledge_flags", ["unit_id", "resolved_at"])
    op.create_table(
        "knowledge_terms",
        sa.Column("term", sa.String(100), primary_key=True),
        sa.Column("entries", sa.Integer(), nullable=False),
    )
    _existing_entries_published()
    if op.get_bind().dialect.name == "sqlite":
        op.execute("CREATE VIRTUAL TABLE knowledge_fts USING fts5(search_terms, search_body, "
                   "content='knowledge_entries', content_rowid='id', tokenize='unicode61')")
        for name, body in FTS_TRIGGERS.items():
            op.execute(f"CREATE TRIGGER {name} {body}")
        op.execute("INSERT INTO knowledge_fts(knowledge_fts) VALUES ('rebuild')")
    else:
        # The terms are already segmented: taken as lexemes as they are, whatever the server's locale.
        op.execute("ALTER TABLE knowledge_entries ADD COLUMN search_vector tsvector GENERATED ALWAYS AS "
                   "(array_to_tsvector(string_to_array(search_terms, ' ') || string_to_array(search_body, ' '))) STORED")
        op.execute("CREATE INDEX ix_knowledge_entries_search ON knowledge_entries USING gin (search_vector)")


def _existing_entries_published() -> None:
    bind = op.get_bind()
    entries = sa.table("knowledge_entries", sa.column("id", sa.Integer), sa.column("question", sa.String),
                       sa.column("answer", sa.Text), sa.column("keywords", sa.String),
                       sa.column("category_code", sa.String), sa.column("active", sa.Boolean),
                       sa.column("updated_at", sa.DateTime(timezone=True)), sa.column("updated_by_id", sa.Integer),
                       sa.column("state", sa.String), sa.column("published_at", sa.DateTime(timezone=True)))
    revisions = sa.table("knowledge_revisions", sa.column("entry_id", sa.Integer), sa.column("number", sa.Integer),
                         sa.column("state", sa.String), sa.column("content", sa.JSON), sa.column("changed", sa.JSON),
                         sa.column("written_at", sa.DateTime(timezone=True)), sa.column("written_by_id", sa.Integer),
                         sa.column("note", sa.Text))
    rows = bind.execute(sa.select(entries)).mappings().all()
    for row in rows:
        state = "published" if row["active"] else "withdrawn"
        bind.execute(entries.update().where(entries.c.id == row["id"])
                     .values(state=state, published_at=row["updated_at"]))
        content = {"question": row["question"], "answer": row["answer"], "keywords": row["keywords"],
                   "category_code": row["category_code"], "variants": [], "categories": [], "legal_basis": "",
                   "source_links": [], "valid_from": None, "valid_until": None, "review_interval_days": 365}
        bind.execute(revisions.insert().values(entry_id=row["id"], number=1, state="published", content=content,
                                               changed=sorted(content), written_at=row["updated_at"] or datetime.now(UTC),
                                               written_by_id=row["updated_by_id"], note=""))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for name in FTS_TRIGGERS:
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS knowledge_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_knowledge_entries_search")
        op.execute("ALTER TABLE knowledge_entries DROP COLUMN IF EXISTS search_vector")
    op.drop_table("knowledge_terms")
    for table, index in (("knowledge_flags", "ix_knowledge_flags_unit_open"), ("knowledge_uses", "ix_knowledge_uses_entry"),
                         ("knowledge_revisions", "ix_knowledge_revisions_state")):
        op.drop_index(index, table_name=table)
        op.drop_table(table)
    op.drop_index("ux_knowledge_entries_seed_key", table_name="knowledge_entries")
    op.drop_index("ix_knowledge_entries_state_unit", table_name="knowledge_entries")
    with op.batch_alter_table("knowledge_entries") as b:
        for name in ("search_body", "search_terms", "seed_key", "published_at", "version", "review_due_at",
                     "review_interval_days", "review_urged_for", "valid_until", "valid_from", "source_links", "legal_basis",
                     "categories", "variants", "state"):
            b.drop_column(name)
