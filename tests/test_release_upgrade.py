"""Upgrading a store of the previous release to this one, with its data (issue 19 item 5).

The fixtures were made by release ca7cffd's own code (tests/fixtures/make_release_store.py says
how): schema at migration 0004, a dozen cases across its states, calls, unkeyed audit events.
"""
from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import func, select, text

from callcenter.auth import actor_of, authenticate
from tests.conftest import PG_BASE_URL, FakeClock
from ticketing import audit
from ticketing.domain import Domain
from ticketing.enums import CaseStatus, WorkOrderStatus
from ticketing.models import AuditEvent, Call, Case, User
from ticketing.store import (alembic_config, current_revision, make_engine, make_session_factory, session_scope,
                             upgrade)

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RELEASE = "ca7cffd"
RELEASE_REVISION = "0004"
FIXTURE_PASSWORD = "release-fixture-123"
# number -> status as the release left them (make_release_store.py builds them in this order)
RELEASE_CASES = {
    "20260302-000001": "new",                  # opened from a call (key 1 in the menu)
    "20260302-000002": "rejected",
    "20260302-000003": "awaiting_close",       # answered directly
    "20260302-000004": "pending_back_office",  # escalated
    "20260302-000005": "dispatched",
    "20260302-000006": "dispatched",           # its work order: notified
    "20260302-000007": "reported",
    "20260302-000008": "closed",
    "20260302-000009": "dispatched",           # extension approved
    "20260302-000010": "pending_back_office",  # return approved
    "20260302-000011": "dispatched",           # return requested
    "20260302-000012": "dispatched",           # lead and co-unit
}
NOTIFIED_CASE = "20260302-000006"


def _load_sqlite(tmp_path: Path) -> str:
    target = tmp_path / "release.db"
    shutil.copyfile(FIXTURES / f"release_{RELEASE}.sqlite", target)
    return f"sqlite:///{target}"


@pytest.fixture(params=["sqlite", "postgresql"])
def release_url(request, tmp_path):
    """The previous release's store, at its own revision, on each backend."""
    if request.param == "sqlite":
        yield _load_sqlite(tmp_path)
        return
    schema = f"rel_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    loader = make_engine(url)
    raw = loader.raw_connection()
    try:
        with raw.cursor() as cur:  # no parameters: psycopg runs the dump's statements as one script
            cur.execute((FIXTURES / f"release_{RELEASE}.pg.sql").read_text(encoding="utf-8"))
        raw.commit()
    finally:
        raw.close()
        loader.dispose()
    yield url
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def test_previous_release_store_upgrades_to_head_and_keeps_working(release_url, base_domain):
    """Issue 19 item 5; A1 (the release's audit chain still verifies), R7.1 numbering, R8.3/R7.4/R7.5."""
    assert current_revision(release_url) == RELEASE_REVISION
    upgrade(release_url)
    assert current_revision(release_url) == ScriptDirectory.from_config(alembic_config(release_url)).get_current_head()

    engine = make_engine(release_url)
    sessions = make_session_factory(engine)
    try:
        with session_scope(sessions) as s:
            assert dict(s.execute(select(Case.number, Case.status)).all()) == \
                {n: CaseStatus(v) for n, v in RELEASE_CASES.items()}
            call = s.execute(select(Call).where(Call.uniqueid == "1772413200.1")).scalar_one()
            assert call.flow_path[-1] == "create_consultation" and s.get(Case, call.case_id).number == "20260302-000001"
            events = s.execute(select(func.count()).select_from(AuditEvent)).scalar_one()
            report = audit.verify(s)
            assert report.ok, report.problems
            assert report.checked == report.unkeyed == events > 40  # the release had no audit key yet
            # its users still log in (0007 added the login throttle's columns)
            assert authenticate(s, "op1", FIXTURE_PASSWORD) is not None

        clock = FakeClock(datetime(2026, 3, 2, 9, 0, tzinfo=UTC))  # 17:00 Shanghai, the fixture's first day
        domain = Domain(policy=base_domain.policy, calendar=base_domain.calendar, city=base_domain.city, clock=clock)

        def actor(s, name):
            return actor_of(s.execute(select(User).where(User.username == name)).scalar_one())

        with session_scope(sessions) as s:
            new = domain.workflow(s).accept(actor(s, "op1"), kind="complaint", channel="mobile", title="升级后",
                                            description="升级后第一件", citizen_phone="13800009999")
            assert new.number == "20260302-000013"  # the day's sequence follows on

        clock.set("2026-03-05T10:00:00")
        with session_scope(sessions) as s:
            wf = domain.workflow(s)
            (wo,) = wf.get_case(NOTIFIED_CASE).work_orders
            assert wo.status == WorkOrderStatus.NOTIFIED
            wf.report(actor(s, "urban1"), wo, answer="升级后办结", satisfaction="satisfied")
        with session_scope(sessions) as s:
            wf = domain.workflow(s)
            case = wf.get_case(NOTIFIED_CASE)
            assert case.status == CaseStatus.REPORTED
            wf.record_callback(actor(s, "op1"), case, satisfaction="satisfied", expected_version=case.version)
            wf.close(actor(s, "op1"), case, expected_version=case.version)
        with session_scope(sessions) as s:
            assert domain.workflow(s).get_case(NOTIFIED_CASE).status == CaseStatus.CLOSED
            report = audit.verify(s)
            assert report.ok, report.problems
            assert report.checked > report.unkeyed == events  # new events are sealed with the install's key
    finally:
        engine.dispose()
