"""One active scheduler per database (issue 5 item 1), its persistent jobs, and pause/resume.
Runs on SQLite (lease) and PostgreSQL (advisory lock). The two-process test with SIGKILL on the
real PBX is tests/live/test_callback_live.py."""
from __future__ import annotations

import asyncio
import time

from sqlalchemy import select, text

from callback import attempts as A
from callback.leader import LeaseLeadership, is_paused, leadership_for, set_paused
from callback.runner import CallbackRunner
from callback.service import JOB_TABLE
from callcenter.ami.client import AMIClient
from callcenter.callbacks import AmiCallbackPbx, callback_service
from callcenter.settings import Settings
from tests.conftest import CONFIG_DIR
from tests.live.callback_helpers import BACK_OFFICE, reported_case
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, Channel
from ticketing.models import CallbackAttempt, UnitNotification
from ticketing.store import session_scope


def _unreachable_pbx() -> AmiCallbackPbx:
    return AmiCallbackPbx(AMIClient("127.0.0.1", 9, "nobody", "x"))  # never started: nothing can be dialled


def test_issue5_only_one_holder_at_a_time(engine):
    a, b = leadership_for(engine, "a"), leadership_for(engine, "b")
    try:
        assert a.try_acquire()
        assert not b.try_acquire()
        assert a.still_held() and not b.still_held()
        a.release()
        assert b.try_acquire()
        assert not a.try_acquire()
    finally:
        a.release()
        b.release()


def test_issue5_sqlite_lease_expires_when_its_holder_stops_renewing(engine):
    if engine.dialect.name != "sqlite":
        return  # PostgreSQL: the lock goes with the holder's connection (live two-process test)
    a = LeaseLeadership(engine, "a", lease_seconds=0.3)
    b = LeaseLeadership(engine, "b", lease_seconds=0.3)
    assert a.try_acquire() and not b.try_acquire()
    time.sleep(0.4)  # a died: no renewal
    assert b.try_acquire()
    assert not a.still_held(), "the old holder notices and steps down"


def test_issue5_pause_stops_new_calls(seeded, domain, engine):
    reported_case(seeded, domain, "13800000001")
    set_paused(engine, True)
    assert is_paused(engine)
    runner = CallbackRunner(domain, seeded, _unreachable_pbx(), paused=lambda: is_paused(engine))
    assert asyncio.run(runner.sweep()) == 0
    with session_scope(seeded) as s:
        assert [a.state for a in s.execute(select(CallbackAttempt)).scalars()] == [A.SCHEDULED]
    set_paused(engine, False)
    assert not is_paused(engine)


async def test_issue5_one_service_active_with_persistent_jobs_the_other_takes_over(seeded, domain, engine, clock,
                                                                                   tmp_path):
    with session_scope(seeded) as s:  # a work order whose notification is overdue by Thursday
        wf = domain.workflow(s)
        case = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="水压低",
                         description="没水", citizen_phone="13800000001")
        wf.dispatch(BACK_OFFICE, case, units=["water_supply"])
    clock.set("2026-03-05T09:00:00")
    settings = Settings(state_dir=tmp_path, config_dir=CONFIG_DIR)

    def service(name):
        return callback_service(settings, domain=domain, engine=engine, pbx=_unreachable_pbx(), poll_seconds=0.1,
                                lease_seconds=1.0, holder=name)
    one, two = service("one"), service("two")
    await one.start()
    try:
        await _until(lambda: one.is_leader)
        await two.start()
        await asyncio.sleep(0.5)
        assert one.is_leader and not two.is_leader
        with engine.connect() as conn:
            jobs = set(conn.execute(text(f"select id from {JOB_TABLE}")).scalars())
        assert jobs == {"callback-sweep", "deadline-sweep", "recording-retention"}

        def urged():
            with session_scope(seeded) as s:
                return s.execute(select(UnitNotification)).scalars().all()
        await _until(lambda: len(urged()) == 1)  # the deadline job ran on the active one (R7.7)

        await one.stop()  # releases the lock
        await _until(lambda: two.is_leader, timeout=5)
        await asyncio.sleep(0.3)
        assert len(urged()) == 1, "the new leader does not urge again"
    finally:
        await one.stop()
        await two.stop()


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)
