"""A report's independent reads side by side (issue 12 item 3): on PostgreSQL each job runs in a
thread of its own with its own session, so its own pooled connection and server process, and the
report's wall time is that of its longest read rather than their sum (the server's cores do the
work; the figures are the same, each read by the same code as one after the other).

Elsewhere (SQLite: one file, a test's single connection) and for a session bound to one
connection rather than an engine, the jobs run one after the other on the caller's session.
Each job only reads: it sees what is committed, as a report read on its own connection does.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

__all__ = ["side_by_side"]

Job = Callable[[Session], Any]


def side_by_side(session: Session, jobs: Mapping[str, Job]) -> dict[str, Any]:
    """Each job's result by its name; the first job's error is raised once all have ended."""
    bind = session.get_bind()
    if len(jobs) < 2 or bind.dialect.name != "postgresql" or not isinstance(bind, Engine):
        return {name: job(session) for name, job in jobs.items()}
    with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="figures") as pool:
        futures = {name: pool.submit(_own_session, bind, job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def _own_session(engine: Engine, job: Job) -> Any:
    with Session(engine) as session:
        try:
            return job(session)
        finally:
            session.rollback()  # read only: end the transaction before the connection goes back
