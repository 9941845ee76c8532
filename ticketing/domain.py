"""The city's configuration loaded once: policy, working-day calendar, units and categories.

Telephony, web and the scheduler build a `Workflow` from this for each unit of work.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from ticketing.calendar import CalendarOverrides, WorkCalendar
from ticketing.cityconfig import CityConfig
from ticketing.policy import Policy, load_policy, load_work_calendar
from ticketing.workflow import Workflow, utcnow


@dataclass
class Domain:
    policy: Policy
    calendar: WorkCalendar
    city: CityConfig
    clock: Callable[[], datetime] = field(default=utcnow)

    @classmethod
    def load(cls, config_dir: str | Path, clock: Callable[[], datetime] = utcnow) -> Domain:
        config_dir = Path(config_dir)
        policy = load_policy(config_dir)
        calendar = load_work_calendar(config_dir, policy)
        return cls(policy=policy, calendar=calendar, city=CityConfig.load(config_dir), clock=clock)

    @property
    def categories(self):
        return {c.code: c for c in self.city.categories}

    def workflow(self, session: Session) -> Workflow:
        return Workflow(session, calendar=self.calendar, policy=self.policy, categories=self.categories,
                        clock=self.clock)


__all__ = ["Domain", "CalendarOverrides"]
