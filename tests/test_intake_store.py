"""R7.1/R7.3/A1: the intake path writes its rows with Core statements (ticketing/writer.py, the audit
log's own statements). What callers rely on must hold all the same: the chain verifies, savepoints
take their events with them, the ORM has nothing left to write, lost races are refused, and
concurrent intakes get distinct numbers — on SQLite and on PostgreSQL."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select, text

from ticketing.errors import Conflict
from ticketing.models import AuditEvent, Case
from sqlalchemy.orm.exc import StaleDataError

from ticketing.store import session_scope

from .conftest import CONFIG_DIR, PASSWORD
from .helpers import actor_named, chain_verified, serve

CASE = {"kind": "complaint", "channel": "mobile", "title": "停水", "description": "小区停水三天",
        "citizen_phone": "13800004444"}




def test_a1_accept_and_dispatch_leave_rows_equal_to_the_objects_and_nothing_to_flush(seeded, domain, sessions):
    with session_scope(sessions) as s:
        op1 = actor_named(s, "op1")
        wf = domain.workflow(s)
        case = wf.accept(op1, **CASE)
        (wo,) = wf.dispatch(op1, case, units=["water_supply"])
        # Everything is written already: the commit sends no UPDATE or INSERT of its own.
        assert not s.new and not s.dirty
        row = s.connection().execute(select(Case.__table__).where(Case.__table__.c.id == case.id)).one()
        for column in ("version", "status", "dispatched_at", "deadline_at", "callback_due_at", "close_due_at",
                       "updated_at", "owner_id", "number"):
            assert getattr(row, column) == getattr(case, column), column
        assert case.version == 2 and case.status.value == "dispatched"
        assert case.work_orders == [wo] and wo.case is case and wo.unit.code == "water_supply"
        case_id, wo_id = case.id, wo.id
    with session_scope(sessions) as s:
        stored = s.get(Case, case_id)
        assert stored.version == 2 and stored.deadline_at == wo.report_due_at
        assert [w.id for w in stored.work_orders] == [wo_id]
        events = s.execute(select(AuditEvent.action, AuditEvent.work_order_id)
                           .where(AuditEvent.case_id == case_id).order_by(AuditEvent.id)).all()
    assert events == [("accept", None), ("dispatch", wo_id)]
    chain_verified(sessions)


def test_a1_a_savepoint_rolled_back_takes_its_events_with_it(seeded, domain, sessions):
    """The voice menu and call control try a dispatch in a savepoint first (dry run)."""
    before = chain_verified(sessions)
    with session_scope(sessions) as s:
        bo1 = actor_named(s, "bo1")
        wf = domain.workflow(s)
        case = wf.accept(bo1, **CASE)  # the chain head is now held by this transaction
        savepoint = s.begin_nested()
        wf.dispatch(bo1, case, units=["water_supply"])
        savepoint.rollback()
        wf.dispatch(bo1, case, units=["power_supply"])
        number = case.number
    assert chain_verified(sessions) == before + 2
    with session_scope(sessions) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        assert [wo.unit.code for wo in case.work_orders] == ["power_supply"]
        assert case.version == 2
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.case_id == case.id)
                            .order_by(AuditEvent.id)).scalars().all()
    assert actions == ["accept", "dispatch"]


def test_a1_events_not_yet_written_are_seen_by_queries_and_survive_a_savepoint_rollback(seeded, domain, sessions):
    """A transaction's events are written together at commit, or before any query through the
    session; a savepoint rolled back after such a query must not lose the events from before it."""
    before = chain_verified(sessions)
    with session_scope(sessions) as s:
        bo1 = actor_named(s, "bo1")
        wf = domain.workflow(s)
        case = wf.accept(bo1, **CASE)  # recorded, not yet written
        savepoint = s.begin_nested()
        seen = s.execute(select(AuditEvent.action).where(AuditEvent.case_id == case.id)).scalars().all()
        assert seen == ["accept"]  # the query wrote it first (inside the savepoint)
        wf.dispatch(bo1, case, units=["water_supply"])
        savepoint.rollback()  # takes the written accept event with it: it is pending again
        assert s.execute(select(AuditEvent.action).where(AuditEvent.case_id == case.id)).scalars().all() == ["accept"]
        wf.dispatch(bo1, case, units=["power_supply"])
        case_id = case.id
    assert chain_verified(sessions) == before + 2
    with session_scope(sessions) as s:
        rows = s.execute(select(AuditEvent.id, AuditEvent.action).where(AuditEvent.case_id == case_id)
                         .order_by(AuditEvent.id)).all()
    assert [a for _, a in rows] == ["accept", "dispatch"]
    assert [i for i, _ in rows] == [before + 1, before + 2]  # no gap where the savepoint's event was


def test_a1_dispatch_on_a_version_someone_else_moved_on_is_refused(seeded, domain, sessions):
    with session_scope(sessions) as s:
        case = domain.workflow(s).accept(actor_named(s, "bo1"), **CASE)
        case_id = case.id
    stale = sessions()
    try:
        seen = stale.get(Case, case_id)
        bo1 = actor_named(stale, "bo1")
        stale.commit()  # objects stay loaded (expire_on_commit=False): `seen` is still version 1
        with session_scope(sessions) as s:
            domain.workflow(s).dispatch(actor_named(s, "bo1"), s.get(Case, case_id), units=["water_supply"])
        with pytest.raises((StaleDataError, Conflict)):
            domain.workflow(stale).dispatch(bo1, seen, units=["power_supply"])
        stale.rollback()
    finally:
        stale.close()
    with session_scope(sessions) as s:
        case = s.get(Case, case_id)
        assert case.version == 2 and [wo.unit.code for wo in case.work_orders] == ["water_supply"]
    chain_verified(sessions)


def test_a1_a_rolled_back_transaction_leaves_no_phantom_objects(seeded, domain, sessions):
    """What the intake wrote and then lost to a rollback is gone from the session as well."""
    s = sessions()
    try:
        bo1 = actor_named(s, "bo1")
        wf = domain.workflow(s)
        case = wf.accept(bo1, **CASE)
        (wo,) = wf.dispatch(bo1, case, units=["water_supply"])
        s.rollback()
        assert case not in s and wo not in s
        assert case.number and wo.unit_id  # their values kept, as for rows the ORM's flush wrote
        assert s.execute(select(Case)).scalars().all() == []
        with s.begin_nested():  # released: its rows belong to the transaction around it
            case = wf.accept(bo1, **CASE)
        s.rollback()
        assert case not in s and s.execute(select(Case)).scalars().all() == []
    finally:
        s.close()
    with session_scope(sessions) as s:
        case = domain.workflow(s).accept(actor_named(s, "bo1"), **CASE)
        savepoint = s.begin_nested()
        (wo,) = domain.workflow(s).dispatch(actor_named(s, "bo1"), case, units=["water_supply"])
        savepoint.rollback()
        assert wo not in s  # the work order written inside the savepoint went with it
        assert case.version == 1 and case.work_orders == [] and case.status.value == "new"


def test_r7_1_concurrent_create_and_dispatch_requests_get_distinct_numbers_and_one_chain(seeded, domain, engine,
                                                                                          sessions, tmp_path):
    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    before = chain_verified(sessions)
    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine)
    n = 12
    with serve(app) as base:
        token = httpx.post(f"{base}/api/v1/auth/token",
                           json={"username": "op1", "password": PASSWORD}).json()["access_token"]
        barrier = threading.Barrier(n, timeout=30)

        def create(i):
            with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
                barrier.wait()
                return c.post("/api/v1/cases", json={**CASE, "title": f"并发 {i}",
                                                     "dispatch": {"units": ["water_supply"]}})

        with ThreadPoolExecutor(n) as pool:
            results = list(pool.map(create, range(n)))
    assert [r.status_code for r in results] == [201] * n, [r.text for r in results if r.status_code != 201]
    bodies = [r.json() for r in results]
    numbers = sorted(b["number"] for b in bodies)
    day = numbers[0][:8]
    assert numbers == [f"{day}-{i:06d}" for i in range(1, n + 1)]
    for body in bodies:
        assert body["version"] == 2 and body["status"] == "dispatched" and body["owner"] == "op1"
        assert [wo["unit_code"] for wo in body["work_orders"]] == ["water_supply"]
        assert body["deadline_at"] == body["work_orders"][0]["report_due_at"]
    assert chain_verified(sessions) == before + 1 + 2 * n  # op1's login, then accept + dispatch each
    with engine.connect() as conn:
        per_case = conn.execute(text("SELECT case_id, count(*) FROM audit_events WHERE action IN ('accept', 'dispatch')"
                                     " GROUP BY case_id")).all()
    assert sorted(c for _, c in per_case) == [2] * n
