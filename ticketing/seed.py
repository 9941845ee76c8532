"""Load the city's units and duty roster from config/ into the store. Running it twice changes nothing."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.audit import SYSTEM
from ticketing.cityconfig import CityConfig
from ticketing.enums import Duty, UnitType
from ticketing.models import MemberUnit, RosterEntry
from ticketing.roster import on_duty


@dataclass
class SeedReport:
    units_added: int = 0
    units_updated: int = 0
    roster_changes: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.units_added or self.units_updated or self.roster_changes)


def seed_units(session: Session, city: CityConfig, now: datetime) -> SeedReport:
    report = SeedReport()
    existing = {u.code: u for u in session.execute(select(MemberUnit)).scalars()}
    for cfg in city.units:
        unit = existing.get(cfg.code)
        fields = {"name": cfg.name, "type": UnitType(cfg.type), "joined": cfg.joined, "phone": cfg.phone,
                  "report_approval": cfg.report_approval}
        if unit is None:
            unit = MemberUnit(code=cfg.code, **fields)
            session.add(unit)
            session.flush()
            report.units_added += 1
        elif any(getattr(unit, k) != v for k, v in fields.items()):
            for k, v in fields.items():
                setattr(unit, k, v)
            report.units_updated += 1
        wanted = {Duty.LEADER.value: (cfg.leader.name, cfg.leader.phone)}
        for member in cfg.staff:
            if member.duty in (Duty.A.value, Duty.B.value):
                wanted[member.duty] = (member.name, member.phone)
        current = on_duty(session, unit.id, now)
        for duty, (name, phone) in wanted.items():
            held = current.get(duty)
            if held is not None and (held.name, held.phone) == (name, phone):
                continue
            if held is not None:
                held.valid_to = now
            session.add(RosterEntry(unit_id=unit.id, duty=Duty(duty), name=name, phone=phone, valid_from=now,
                                    valid_to=None, reported_at=now, report_due_at=now, reported_late=False))
            report.roster_changes += 1
    if report.changed:
        audit.record(session, SYSTEM, "seed_units", at=now,
                     data={"added": report.units_added, "updated": report.units_updated,
                           "roster_changes": report.roster_changes})
    return report
