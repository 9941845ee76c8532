"""Working-day calendar and deadline arithmetic (T1, T2, T4).

T1: a working day is a working day of the official Chinese calendar: weekends off, public holidays
off, make-up working weekends (调休) on. The `chinesecalendar` library carries the State Council's
arrangements for the years it knows; `config/calendar_overrides.yaml` carries the rest (and wins
over the library). A year neither knows yet -- normal every December, when January's deadlines are
needed before the next year's notice is out -- is counted on the statutory calendar
(`ticketing.statutory_calendar`: the holidays the law fixes, plus weekends) and said to be
*provisional* (`year_source`, `is_provisional`): a deadline counted over such a year is stored with a
marker and corrected when the arrangement is entered, never silently passed off as official.

T4: the day a period starts is not counted; a calendar-day period whose last day is not a working
day ends on the next working day; every deadline falls at the office-day end (17:30 local).

Pure Python: no web, telephony or database imports.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import chinese_calendar
import yaml

from ticketing import statutory_calendar

__all__ = [
    "CalendarError",
    "CalendarOverrides",
    "CalendarUnknownYear",
    "DEFAULT_OVERRIDES_FILE",
    "WorkCalendar",
    "YearOverride",
    "YearSource",
    "calendar_status",
    "CalendarStatus",
]

# Shown in error messages when no override file was loaded, so the administrator knows where to write.
DEFAULT_OVERRIDES_FILE = "config/calendar_overrides.yaml"

# No official arrangement has more than ~10 consecutive days off; a longer gap means the override
# data is wrong, and scanning on would hide it.
_MAX_DAYS_OFF_IN_A_ROW = 31


class CalendarError(ValueError):
    """Bad calendar input or override data."""


class CalendarUnknownYear(CalendarError):
    """No calendar at all for this year: not official, not overridden, outside the statutory one."""

    def __init__(self, year: int, overrides_file: str | Path = DEFAULT_OVERRIDES_FILE) -> None:
        self.year = year
        self.overrides_file = str(overrides_file)
        super().__init__(
            f"no working-day calendar for {year}: the chinesecalendar library does not cover it, "
            f"{self.overrides_file} has no entry for {year}, and the statutory calendar covers only "
            f"{statutory_calendar.FIRST_YEAR}-{statutory_calendar.LAST_YEAR}."
        )


class YearSource(StrEnum):
    """Where a year's working days come from."""

    OFFICIAL = "official"        # the chinesecalendar library (the State Council's notice)
    OVERRIDE = "override"        # entered by the administrator (calendar_overrides.yaml)
    PROVISIONAL = "provisional"  # not published yet: statutory holidays and weekends only


@dataclass(frozen=True)
class YearOverride:
    """One year's official arrangement: days off that are not weekends, and working weekends."""

    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()

    def as_mapping(self) -> dict[str, list[str]]:
        """As the file writes it: runs of holidays as 'first..last' ranges, dates as text."""
        runs: list[list[date]] = []
        for d in sorted(self.holidays):
            if runs and d - runs[-1][-1] == timedelta(days=1):
                runs[-1].append(d)
            else:
                runs.append([d])
        holidays = [r[0].isoformat() if len(r) == 1 else f"{r[0].isoformat()}..{r[-1].isoformat()}" for r in runs]
        return {"holidays": holidays, "workdays": [d.isoformat() for d in sorted(self.workdays)]}


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
            weekdays = sorted(d for d in workdays if d.weekday() < 5)
            if weekdays:
                raise CalendarError(f"{where}.workdays: {weekdays[0].isoformat()} is a weekday; list only the "
                                    "Saturdays and Sundays worked to make up for a holiday (调休)")
            years[year] = YearOverride(frozenset(holidays), frozenset(workdays))
        return cls(years=years, source=source)


    def with_year(self, year: int, holidays: list[Any], workdays: list[Any]) -> CalendarOverrides:
        """These overrides with `year`'s arrangement set (checked as the file is)."""
        data = {y: entry.as_mapping() for y, entry in self.years.items()}
        data[year] = {"holidays": list(holidays), "workdays": list(workdays)}
        return CalendarOverrides.from_mapping(data, source=self.source)

    def to_yaml(self, header: str = "") -> str:
        """The file's text: `header` (the comment block an administrator reads) and every year."""
        body = {y: self.years[y].as_mapping() for y in sorted(self.years)}
        return header + (yaml.safe_dump(body, allow_unicode=True, sort_keys=False) if body else "{}\n")


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
        self._working: dict[date, bool] = {}  # answers change only with set_overrides
        self._sources: dict[int, YearSource] = {}
        self.revision = 0  # counts set_overrides: what was corrected for which calendar

    # -- days ---------------------------------------------------------------------------------

    def set_overrides(self, overrides: CalendarOverrides) -> None:
        """Take a new override file's content (an arrangement entered while running)."""
        self.overrides = overrides
        self._working = {}
        self._sources = {}
        self.revision += 1

    def year_source(self, year: int) -> YearSource:
        """Whether `year`'s working days are official, entered by the administrator, or provisional."""
        known = self._sources.get(year)
        if known is None:
            known = self._sources[year] = self._year_source(year)
        return known

    def _year_source(self, year: int) -> YearSource:
        if year in self.overrides.years:
            return YearSource.OVERRIDE
        try:
            chinese_calendar.is_workday(date(year, 6, 1))
        except NotImplementedError:
            return YearSource.PROVISIONAL
        return YearSource.OFFICIAL

    def is_year_known(self, year: int) -> bool:
        """True when `year`'s arrangement is published (library or override), not provisional."""
        return self.year_source(year) is not YearSource.PROVISIONAL

    def is_provisional(self, a: date | datetime, b: date | datetime) -> bool:
        """Does counting from `a` to `b` (either order) touch a year whose arrangement is unknown?"""
        first, last = sorted((self._as_date(a), self._as_date(b)))
        return any(not self.is_year_known(y) for y in range(first.year, last.year + 1))

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
            pass
        if override is not None:
            # A year only the override file knows: what it does not list follows the week.
            return d.weekday() < 5
        try:
            holidays = statutory_calendar.statutory_holidays(d.year)
        except ValueError:
            raise CalendarUnknownYear(d.year, self.overrides.source) from None
        return d.weekday() < 5 and d not in holidays

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



@dataclass(frozen=True)
class CalendarStatus:
    """Which years are official, entered, or provisional; and what back office and admin must hear."""

    years: tuple[tuple[int, YearSource], ...]
    missing_year: int | None  # the year whose arrangement should be entered now, if any

    @property
    def warning(self) -> str | None:
        if self.missing_year is None:
            return None
        y = self.missing_year
        return (f"{y}年节假日安排尚未录入：落在{y}年的期限按法定节假日暂定计算（暂定），"
                f"录入国务院办公厅{y}年部分节假日安排后自动更正。")


def calendar_status(calendar: WorkCalendar, today: date, warn_from: tuple[int, int] = (11, 1)) -> CalendarStatus:
    """The years around `today` (and every entered one) with their source; the year to enter:
    this year if it is still provisional, next year from `warn_from` (month, day) on."""
    years = sorted({today.year - 1, today.year, today.year + 1, *calendar.overrides.years})
    missing = None
    if not calendar.is_year_known(today.year):
        missing = today.year
    elif today >= date(today.year, *warn_from) and not calendar.is_year_known(today.year + 1):
        missing = today.year + 1
    return CalendarStatus(tuple((y, calendar.year_source(y)) for y in years), missing)
