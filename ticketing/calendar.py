"""Working-day calendar and deadline arithmetic (T1, T2, T4).

T1: a working day is a working day of the official Chinese calendar: weekends off, public holidays
off, make-up working weekends (调休) on. The `chinesecalendar` library carries the State Council's
arrangements for the years it knows; `config/calendar_overrides.yaml` carries the rest (and wins
over the library). A date in a year neither knows raises `CalendarUnknownYear`: a weekends-only
guess would silently put deadlines on public holidays.

T4: the day a period starts is not counted; a calendar-day period whose last day is not a working
day ends on the next working day; every deadline falls at the office-day end (17:30 local).

Pure Python: no web, telephony or database imports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml

__all__ = [
    "CalendarError",
    "CalendarOverrides",
    "CalendarUnknownYear",
    "DEFAULT_OVERRIDES_FILE",
    "WorkCalendar",
    "YearOverride",
]

# Shown in error messages when no override file was loaded, so the administrator knows where to write.
DEFAULT_OVERRIDES_FILE = "config/calendar_overrides.yaml"

# No official arrangement has more than ~10 consecutive days off; a longer gap means the override
# data is wrong, and scanning on would hide it.
_MAX_DAYS_OFF_IN_A_ROW = 31


class CalendarError(ValueError):
    """Bad calendar input or override data."""


class CalendarUnknownYear(CalendarError):
    """No official working-day arrangement is known for this year."""

    def __init__(self, year: int, overrides_file: str | Path = DEFAULT_OVERRIDES_FILE) -> None:
        self.year = year
        self.overrides_file = str(overrides_file)
        super().__init__(
            f"no official working-day calendar for {year}: the chinesecalendar library does not "
            f"cover it and {self.overrides_file} has no entry for {year}. Add the State Council's "
            f"{year} holiday arrangement (holidays and make-up working days) to {self.overrides_file}."
        )


@dataclass(frozen=True)
class YearOverride:
    """One year's official arrangement: days off that are not weekends, and working weekends."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()


@dataclass(frozen=True)
class CalendarOverrides:
    """Holiday arrangements added by the administrator, keyed by year."""

    years: dict[int, YearOverride] = field(default_factory=dict)
    source: str = DEFAULT_OVERRIDES_FILE

    @classmethod
    def load(cls, path: str | Path) -> CalendarOverrides:
        """Read the overrides YAML: `{year: {holidays: [date | "a..b" | {from, to}], workdays: [date]}}`.

        A missing file means no overrides.
        """
        path = Path(path)
        if not path.exists():
            return cls(source=str(path))
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, ValueError) as exc:  # PyYAML raises ValueError for 2027-13-01
            raise CalendarError(f"{path}: not valid YAML or a bad date: {exc}") from exc
        return cls.from_mapping(data, source=str(path))

    @classmethod
    def from_mapping(cls, data: Any, source: str = DEFAULT_OVERRIDES_FILE) -> CalendarOverrides:
        if data is None:
            return cls(source=source)
        if not isinstance(data, dict):
            raise CalendarError(f"{source}: expected a mapping of year -> {{holidays, workdays}}")
        years: dict[int, YearOverride] = {}
        for key, entry in data.items():
            try:
                year = int(key)
            except (TypeError, ValueError):
                raise CalendarError(f"{source}: key {key!r} is not a year") from None
            where = f"{source}: {year}"
            if not isinstance(entry, dict):
                raise CalendarError(f"{where}: expected a mapping with 'holidays' and 'workdays'")
            unknown = set(entry) - {"holidays", "workdays"}
            if unknown:
                raise CalendarError(f"{where}: unknown key(s) {sorted(unknown)}; use 'holidays' and 'workdays'")
            holidays = _parse_days(entry.get("holidays") or [], f"{where}.holidays", allow_ranges=True)
            workdays = _parse_days(entry.get("workdays") or [], f"{where}.workdays", allow_ranges=False)
            if not holidays and not workdays:
                raise CalendarError(f"{where}: empty entry; list the year's holidays and workdays")
            for d in holidays | workdays:
                if d.year != year:
                    raise CalendarError(f"{where}: {d.isoformat()} is not in {year}")
            both = holidays & workdays
            if both:
                first = min(both).isoformat()
                raise CalendarError(f"{where}: {first} is listed both as a holiday and as a workday")
            years[year] = YearOverride(frozenset(holidays), frozenset(workdays))
        return cls(years=years, source=source)


def _parse_day(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        raise CalendarError(f"{where}: {value!r} has a time; give a date YYYY-MM-DD")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise CalendarError(f"{where}: {value!r} is not a date YYYY-MM-DD")


def _parse_days(items: Any, where: str, *, allow_ranges: bool) -> set[date]:
    if not isinstance(items, list):
        raise CalendarError(f"{where}: expected a list of dates")
    days: set[date] = set()
    for item in items:
        first = last = None
        if allow_ranges and isinstance(item, str) and ".." in item:
            a, _, b = item.partition("..")
            first, last = _parse_day(a, where), _parse_day(b, where)
        elif allow_ranges and isinstance(item, dict):
            if set(item) != {"from", "to"}:
                raise CalendarError(f"{where}: a range is {{from: date, to: date}}, got {item!r}")
            first, last = _parse_day(item["from"], where), _parse_day(item["to"], where)
        else:
            days.add(_parse_day(item, where))
            continue
        if last < first:
            raise CalendarError(f"{where}: range {first}..{last} ends before it starts")
        d = first
        while d <= last:
            days.add(d)
            d += timedelta(days=1)
    return days


class WorkCalendar:
    """Official working days and deadline arithmetic in one timezone."""

    def __init__(
        self,
        overrides: CalendarOverrides | None = None,
        tz: str | ZoneInfo = "Asia/Shanghai",
        office_day_end: time = time(17, 30),
    ) -> None:
        self.overrides = overrides or CalendarOverrides()
        self.tz = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
        if office_day_end.tzinfo is not None:
            raise CalendarError("office_day_end is a local wall-clock time; give it without tzinfo")
        self.office_day_end = office_day_end
        self._working: dict[date, bool] = {}  # answers never change for a loaded calendar

    # -- days ---------------------------------------------------------------------------------

    def is_year_known(self, year: int) -> bool:
        """True when deadlines can be computed for dates in `year` (library or override)."""
        if year in self.overrides.years:
            return True
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return False
        return True

    def is_working_day(self, d: date | datetime) -> bool:
        d = self._as_date(d)
        known = self._working.get(d)
        if known is None:
            known = self._working[d] = self._is_working_day(d)
        return known

    def _is_working_day(self, d: date) -> bool:
        override = self.overrides.years.get(d.year)
        if override is not None:
            if d in override.holidays:
                return False
            if d in override.workdays:
                return True
        try:
            return chinese_calendar.is_workday(d)
        except NotImplementedError:
            if override is None:
                raise CalendarUnknownYear(d.year, self.overrides.source) from None
        # A year only the override file knows: what it does not list follows the week.
        return d.weekday() < 5

    def next_working_day(self, d: date | datetime) -> date:
        """The first working day strictly after `d`."""
        d = self._as_date(d)
        for _ in range(_MAX_DAYS_OFF_IN_A_ROW):
            d += timedelta(days=1)
            if self.is_working_day(d):
                return d
        raise CalendarError(
            f"no working day in the {_MAX_DAYS_OFF_IN_A_ROW} days after {d.isoformat()}; "
            f"check {self.overrides.source}"
        )

    def working_days_between(self, a: date | datetime, b: date | datetime) -> int:
        """Working days in (a, b]: `a` not counted, `b` counted (T4). Negative when b < a."""
        a, b = self._as_date(a), self._as_date(b)
        if b < a:
            return -self.working_days_between(b, a)
        count = 0
        d = a
        while d < b:
            d += timedelta(days=1)
            if self.is_working_day(d):
                count += 1
        return count

    # -- deadlines ----------------------------------------------------------------------------

    def end_of_office_day(self, d: date) -> datetime:
        """The office-day end of local date `d`, as an aware datetime in the calendar's tz."""
        return datetime.combine(d, self.office_day_end, tzinfo=self.tz)

    def add_working_days(self, start: datetime, n: int) -> datetime:
        """Deadline of `n` working days from `start` (T4): the start day is not counted; the
        deadline is the office-day end of the n-th working day after the start day.

        n=0 (handled at once) gives the office-day end of the start day if it is a working day
        and the office day has not ended yet, else of the next working day: a deadline never
        lies before the moment it starts from.
        """
        n = self._check_n(n)
        day = self.local_date(start)
        if n == 0:
            if not self.is_working_day(day) or start > self.end_of_office_day(day):
                day = self.next_working_day(day)
            return self.end_of_office_day(day)
        for _ in range(n):
            day = self.next_working_day(day)
        return self.end_of_office_day(day)

    def add_calendar_days(self, start: datetime, n: int) -> datetime:
        """Deadline of `n` calendar days from `start` (T2, T4): the start day is not counted; if
        the last day is a weekend or public holiday the period ends on the next working day;
        the deadline is that day's office-day end.
        """
        n = self._check_n(n)
        day = self.local_date(start) + timedelta(days=n)
        if not self.is_working_day(day):
            day = self.next_working_day(day)
        return self.end_of_office_day(day)

    def local_date(self, moment: datetime) -> date:
        """The local (calendar tz) date of an aware datetime."""
        return self._require_aware(moment).astimezone(self.tz).date()

    # -- helpers ------------------------------------------------------------------------------

    def _as_date(self, d: date | datetime) -> date:
        if isinstance(d, datetime):
            return self.local_date(d)
        if isinstance(d, date):
            return d
        raise CalendarError(f"expected a date, got {type(d).__name__}")

    @staticmethod
    def _require_aware(moment: datetime) -> datetime:
        if not isinstance(moment, datetime):
            raise CalendarError(f"expected a timezone-aware datetime, got {type(moment).__name__}")
        if moment.tzinfo is None or moment.utcoffset() is None:
            # A naive time is ambiguous (server UTC vs. Beijing time) and would shift deadlines by 8 h.
            raise CalendarError(f"naive datetime {moment.isoformat()}: give a timezone-aware datetime")
        return moment

    @staticmethod
    def _check_n(n: int) -> int:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise CalendarError(f"period must be a non-negative whole number of days, got {n!r}")
        return n

