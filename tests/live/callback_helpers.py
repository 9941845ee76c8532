"""Shared set-up for the live callback tests: reported cases, a store, a domain with a test policy."""
from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from tests.conftest import CONFIG_DIR, FakeClock
from ticketing.audit import SYSTEM, Actor
from ticketing.domain import Domain
from ticketing.enums import CaseKind, Channel
from ticketing.models import MemberUnit
from ticketing.seed import seed_units
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

IN_HOURS = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 Shanghai, calling hours
BACK_OFFICE = Actor(user_id=None, name="bo-test", role="back_office")


def callback_domain(clock, **callback_policy) -> Domain:
    base = Domain.load(CONFIG_DIR)
    policy = base.policy
    if callback_policy:
        policy = dataclasses.replace(policy, callback=dataclasses.replace(policy.callback, **callback_policy))
    return Domain(policy=policy, calendar=base.calendar, city=base.city, clock=clock)


def make_store(url: str, domain: Domain):
    upgrade(url)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        seed_units(s, domain.city, domain.clock())
    return engine, sessions


def reported_case(sessions, domain: Domain, phone: str, *, unit: str = "water_supply",
                  kind: CaseKind = CaseKind.CONSULTATION, category_code: str | None = None) -> str:
    """A consultation answered by the unit: status REPORTED, callback due (R7.4). Returns its number."""
    from sqlalchemy import select

    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        case = wf.accept(SYSTEM, kind=kind, channel=Channel.MOBILE, title="水费咨询",
                         description="本月水费为何翻倍？", citizen_phone=phone, category_code=category_code)
        (wo,) = wf.dispatch(BACK_OFFICE, case, units=[unit])
        unit_id = s.execute(select(MemberUnit.id).where(MemberUnit.code == unit)).scalar_one()
        staff = Actor(user_id=None, name="unit-staff", role="unit_staff", unit_id=unit_id)
        wf.receive(staff, wo)
        wf.notify(staff, wo, channel="phone")
        wf.report(staff, wo, answer="已核实抄表有误，已更正。")
        return case.number


__all__ = ["IN_HOURS", "FakeClock", "callback_domain", "make_store", "reported_case"]
