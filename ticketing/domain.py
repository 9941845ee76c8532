"""The city's configuration loaded once: policy, working-day calendar, units and categories, and
the unit assessment's weights and bands.

Telephony, web and the scheduler build a `Workflow` from this for each unit of work.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from ticketing.assessment import AssessmentConfig, load_assessment
from ticketing.calendar import CalendarOverrides, WorkCalendar
from ticketing.cityconfig import CityConfig
from ticketing.policy import (
    CALENDAR_OVERRIDES_FILE,
    Policy,
    load_policy,
    load_work_calendar,
)
from ticketing.workflow import Workflow, utcnow


@dataclass
class Domain:
    policy: Policy
    calendar: WorkCalendar
    city: CityConfig
    clock: Callable[[], datetime] = field(default=utcnow)
    config_dir: Path | None = None
    assessment: AssessmentConfig = field(default_factory=AssessmentConfig)  # config/assessment.yaml
    # The calendar revision whose provisional deadlines were last counted again (None: not yet).
    corrected_revision: int | None = None
    _overrides_stamp: tuple[int, int] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, config_dir: str | Path, clock: Callable[[], datetime] = utcnow) -> Domain:
        config_dir = Path(config_dir)
        policy = load_policy(config_dir)
        calendar = load_work_calendar(config_dir, policy)
        domain = cls(policy=policy, calendar=calendar, city=CityConfig.load(config_dir), clock=clock,
                     config_dir=config_dir, assessment=load_assessment(config_dir))
        domain._overrides_stamp = domain._stamp()
        return domain

    @property
    def overrides_file(self) -> Path | None:
        return None if self.config_dir is None else self.config_dir / CALENDAR_OVERRIDES_FILE

    def _stamp(self) -> tuple[int, int] | None:
        path = self.overrides_file
        if path is None or not path.exists():
            return None
        st = path.stat()
        return st.st_mtime_ns, st.st_size

    def set_arrangement(self, year: int, holidays: list, workdays: list) -> None:
        """Enter `year`'s holiday arrangement into the override file and the calendar in use.
        Checked first (CalendarError names the bad date); the file's comment block is kept."""
        path = self.overrides_file
        if path is None:
            raise ValueError("this domain was not loaded from a config directory")
        self.reload_calendar()  # start from the file as it is now, not as it was at start
        updated = self.calendar.overrides.with_year(year, holidays, workdays)
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(updated.to_yaml(header), encoding="utf-8")
        os.replace(tmp, path)  # a reader never sees half a file
        self.calendar.set_overrides(updated)
        self._overrides_stamp = self._stamp()

    def reload_calendar(self) -> bool:
        """Take an override file changed since it was read (an arrangement entered by another
        process); True when the calendar changed. A file with an error keeps the old calendar
        and raises, so the caller logs it."""
        stamp = self._stamp()
        if stamp == self._overrides_stamp:
            return False
        self.calendar.set_overrides(CalendarOverrides.load(self.overrides_file))
        self._overrides_stamp = stamp
        return True

    @property
    def categories(self):
        return {c.code: c for c in self.city.categories}

    def workflow(self, session: Session) -> Workflow:
        return Workflow(session, calendar=self.calendar, policy=self.policy, categories=self.categories,
                        clock=self.clock)


__all__ = ["Domain", "CalendarOverrides"]
