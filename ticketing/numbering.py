"""Human-readable case numbers: the local acceptance date and a per-day sequence (20261125-000123)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ticketing.models import CaseCounter
from ticketing.writer import Run, runner


def _upsert(dialect_name: str):
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    table = CaseCounter.__table__
    stmt = insert(table).values(day=bindparam("day"), last=1)
    stmt = stmt.on_conflict_do_update(index_elements=[table.c.day], set_={"last": table.c.last + 1})
    return stmt.returning(table.c.last)


_UPSERTS = {name: _upsert(name) for name in ("postgresql", "sqlite")}


def next_case_number(where: Session | Run, local_now: datetime) -> str:
    """The next number of `local_now`'s day, on a Session or a prepared cursor (ticketing.writer).
    One atomic upsert: two operators accepting at the same instant never share a number."""
    day = local_now.strftime("%Y%m%d")
    run = runner(where)
    seq = run(_UPSERTS[run.dialect.name], {"day": day}).fetchone()[0]
    return f"{day}-{seq:06d}"


def normalize_case_number(text: str) -> str | None:
    """Accept 20261125-000123, 20261125000123 or with spaces; None if it cannot be a case number."""
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) != 14:
        return None
    return f"{digits[:8]}-{digits[8:]}"


def current_max(session: Session, day: str) -> int:
    row = session.execute(select(CaseCounter.last).where(CaseCounter.day == day)).scalar_one_or_none()
    return row or 0
