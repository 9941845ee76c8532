"""Working-day calendar and deadline counting (T1, T2, T4).

Expected dates are worked out by hand from the State Council's 2026 arrangement:
Spring Festival 02-15..02-23 off, Sat 02-14 and Sat 02-28 working; National Day 10-01..10-07 off,
Sun 09-20 and Sat 10-10 working; Sun 01-04 and Sat 05-09 make-up working days.
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays
import pytest

from ticketing.calendar import (
    CalendarError,
    CalendarOverrides,
    CalendarUnknownYear,
    WorkCalendar,
    YearSource,
)
from ticketing.statutory_calendar import statutory_holidays

SH = ZoneInfo("Asia/Shanghai")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


def end_of(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 17, 30, tzinfo=SH)


@pytest.fixture(scope="module")
def cal() -> WorkCalendar:
    return WorkCalendar(CalendarOverrides.load(CONFIG_DIR / "calendar_overrides.yaml"))


# -- T1: which days are working days ---------------------------------------------------------

@pytest.mark.parametrize(
    "day, working",
    [
        (date(2026, 2, 13), True),   # Fri before Spring Festival
        (date(2026, 2, 14), True),   # Sat make-up day
        (date(2026, 2, 15), False),  # Spring Festival starts (Sun)
        (date(2026, 2, 17), False),  # 初一, a Tuesday
        (date(2026, 2, 23), False),  # Mon, last day off
        (date(2026, 2, 24), True),
        (date(2026, 2, 28), True),   # Sat make-up day
        (date(2026, 3, 7), False),   # ordinary Saturday
        (date(2026, 1, 4), True),    # Sun make-up day
        (date(2026, 5, 9), True),    # Sat make-up day
        (date(2026, 9, 20), True),   # Sun make-up day
        (date(2026, 10, 1), False),
        (date(2026, 10, 7), False),
        (date(2026, 10, 10), True),  # Sat make-up day
    ],
)
def test_t1_official_2026_calendar(cal: WorkCalendar, day: date, working: bool) -> None:
    assert cal.is_working_day(day) is working


def test_t1_next_working_day_skips_spring_festival(cal: WorkCalendar) -> None:
    assert cal.next_working_day(date(2026, 2, 14)) == date(2026, 2, 24)
    assert cal.next_working_day(date(2026, 2, 27)) == date(2026, 2, 28)


def test_t4_working_days_between_excludes_start_day(cal: WorkCalendar) -> None:
    assert cal.working_days_between(date(2026, 2, 13), date(2026, 2, 24)) == 2
    assert cal.working_days_between(date(2026, 3, 2), date(2026, 3, 2)) == 0
    assert cal.working_days_between(date(2026, 3, 2), date(2026, 3, 3)) == 1
    assert cal.working_days_between(date(2026, 9, 30), date(2026, 10, 10)) == 3


# -- T4: working-day deadlines ---------------------------------------------------------------

def test_t1_spring_festival_2026_make_up_saturday_counts(cal: WorkCalendar) -> None:
    # R8.2 notify within 2 working days of a Friday receipt: Sat 02-14 is day 1, Tue 02-24 day 2.
    assert cal.add_working_days(at(2026, 2, 13), 2) == end_of(2026, 2, 24)


def test_r8_3_consultation_and_complaint_across_spring_festival(cal: WorkCalendar) -> None:
    assert cal.add_working_days(at(2026, 2, 13), 5) == end_of(2026, 2, 27)
    # 10 working days: 02-14, 24, 25, 26, 27, 28 (Sat make-up), 03-02, 03, 04, 05.
    assert cal.add_working_days(at(2026, 2, 13), 10) == end_of(2026, 3, 5)


def test_t1_national_day_2026_make_up_sunday_and_saturday(cal: WorkCalendar) -> None:
    # Fri 09-18: Sat 09-19 off, Sun 09-20 make-up = day 1, Mon 09-21 = day 2.
    assert cal.add_working_days(at(2026, 9, 18), 2) == end_of(2026, 9, 21)
    assert cal.add_working_days(at(2026, 9, 30, 16), 2) == end_of(2026, 10, 9)
    # 10-08, 09, 10 (Sat make-up), 12..16, 19, 20.
    assert cal.add_working_days(at(2026, 9, 30, 16), 10) == end_of(2026, 10, 20)


def test_t1_new_year_and_may_day_make_up_days(cal: WorkCalendar) -> None:
    assert cal.add_working_days(at(2026, 1, 2), 1) == end_of(2026, 1, 4)
    assert cal.add_working_days(at(2026, 5, 8), 1) == end_of(2026, 5, 9)
    assert cal.add_working_days(at(2026, 4, 30), 2) == end_of(2026, 5, 7)  # 05-01..05-05 off


def test_t4_start_day_not_counted_even_when_received_early(cal: WorkCalendar) -> None:
    # Received Monday 09:00: the Monday is not counted; 2 working days end Wednesday.
    assert cal.add_working_days(at(2026, 3, 2, 9), 2) == end_of(2026, 3, 4)
    # Received on a Saturday: counting starts Monday.
    assert cal.add_working_days(at(2026, 3, 7), 1) == end_of(2026, 3, 9)


def test_t4_deadline_is_1730_shanghai_for_utc_input(cal: WorkCalendar) -> None:
    # Sunday 23:30 UTC is Monday 07:30 in Shanghai: the start day is the Monday.
    received = datetime(2026, 3, 1, 23, 30, tzinfo=timezone.utc)
    due = cal.add_working_days(received, 2)
    assert due == end_of(2026, 3, 4)
    assert due.tzinfo == SH and due.timetz() == time(17, 30, tzinfo=SH)
    assert due.astimezone(timezone.utc) == datetime(2026, 3, 4, 9, 30, tzinfo=timezone.utc)


def test_t4_office_day_end_is_configurable() -> None:
    cal = WorkCalendar(office_day_end=time(18, 0))
    assert cal.add_working_days(at(2026, 3, 2), 1) == datetime(2026, 3, 3, 18, 0, tzinfo=SH)


def test_r8_3_urgent_help_zero_days_is_same_working_day(cal: WorkCalendar) -> None:
    assert cal.add_working_days(at(2026, 3, 2), 0) == end_of(2026, 3, 2)
    assert cal.add_working_days(at(2026, 2, 16), 0) == end_of(2026, 2, 24)  # holiday -> next working day
    # after the office day ended, "at once" means the next working day, never a deadline in the past
    late = datetime(2026, 3, 6, 19, 0, tzinfo=SH)  # Friday evening
    assert cal.add_working_days(late, 0) == end_of(2026, 3, 9)


def test_t4_deadline_counts_back_to_n_working_days(cal: WorkCalendar) -> None:
    start = date(2026, 1, 1)
    for offset in range(0, 340, 3):
        d = start + timedelta(days=offset)
        for n in (2, 5, 10):
            due = cal.add_working_days(datetime.combine(d, time(9), tzinfo=SH), n)
            assert cal.is_working_day(due.date())
            assert cal.working_days_between(d, due.date()) == n


# -- T2/T4: calendar-day periods -------------------------------------------------------------

def test_t4_calendar_days_ending_on_national_day_roll_to_next_working_day(cal: WorkCalendar) -> None:
    # R7.4 callback within 2 days after a 09-29 deadline: 10-01 is a holiday -> 10-08.
    assert cal.add_calendar_days(end_of(2026, 9, 29), 2) == end_of(2026, 10, 8)


def test_t4_calendar_days_ending_in_spring_festival_roll(cal: WorkCalendar) -> None:
    # R7.3 back office: 3 days from Thu 02-12 is Sun 02-15 (holiday) -> Tue 02-24.
    assert cal.add_calendar_days(at(2026, 2, 12), 3) == end_of(2026, 2, 24)


def test_t4_calendar_days_ending_on_plain_weekend_roll_to_monday(cal: WorkCalendar) -> None:
    assert cal.add_calendar_days(at(2026, 3, 4), 3) == end_of(2026, 3, 9)


def test_t4_calendar_days_ending_on_make_up_saturday_do_not_roll(cal: WorkCalendar) -> None:
    # Sat 02-14 is a working day, not a rest day: the period ends there.
    assert cal.add_calendar_days(at(2026, 2, 11), 3) == end_of(2026, 2, 14)


def test_t2_calendar_days_count_weekends_inside_the_period(cal: WorkCalendar) -> None:
    # Fri 03-06 + 3 calendar days = Mon 03-09 (the weekend counts), unlike 3 working days.
    assert cal.add_calendar_days(at(2026, 3, 6), 3) == end_of(2026, 3, 9)
    assert cal.add_working_days(at(2026, 3, 6), 3) == end_of(2026, 3, 11)


# -- input checks ----------------------------------------------------------------------------

def test_t4_naive_datetime_rejected(cal: WorkCalendar) -> None:
    with pytest.raises(CalendarError, match="naive"):
        cal.add_working_days(datetime(2026, 3, 2, 9, 0), 2)
    with pytest.raises(CalendarError, match="naive"):
        cal.add_calendar_days(datetime(2026, 3, 2, 9, 0), 2)


def test_negative_period_rejected(cal: WorkCalendar) -> None:
    with pytest.raises(CalendarError):
        cal.add_working_days(at(2026, 3, 2), -1)


# -- unknown years and the override file -----------------------------------------------------

def test_t1_2027_without_arrangement_is_counted_on_the_statutory_calendar(cal: WorkCalendar) -> None:
    # No 2027 notice yet: the law's days off (2027 Spring Festival = Fri 02-05 .. Mon 02-08) and
    # weekends; no guess at the notice's extra days off or make-up Saturdays.
    assert cal.year_source(2027) is YearSource.PROVISIONAL and not cal.is_year_known(2027)
    assert cal.year_source(2026) is YearSource.OFFICIAL and cal.is_year_known(2026)
    assert cal.is_working_day(date(2027, 1, 1)) is False   # 元旦
    assert cal.is_working_day(date(2027, 2, 5)) is False   # 除夕, a Friday
    assert cal.is_working_day(date(2027, 2, 8)) is False   # 初三, a Monday
    assert cal.is_working_day(date(2027, 2, 9)) is True    # the notice may add it; the law does not
    assert cal.is_working_day(date(2027, 2, 20)) is False  # a Saturday: no make-up day guessed
    assert cal.is_working_day(date(2027, 6, 9)) is False   # 端午
    assert cal.is_working_day(date(2027, 9, 15)) is False  # 中秋


def test_t1_deadline_into_unpublished_year_is_counted_and_said_provisional(cal: WorkCalendar) -> None:
    # 12-29, 30, 31 (3), 01-01 off, 01-04..08 (8), 01-11, 12 (10).
    assert cal.add_working_days(at(2026, 12, 28), 10) == end_of(2027, 1, 12)
    # 12-30 + 5 calendar days = Mon 01-04, a working day.
    assert cal.add_calendar_days(at(2026, 12, 30), 5) == end_of(2027, 1, 4)
    assert cal.is_provisional(at(2026, 12, 28), end_of(2027, 1, 12))
    assert not cal.is_provisional(at(2026, 3, 2), end_of(2026, 12, 31))


@pytest.mark.parametrize("year", range(2027, 2100))
def test_t1_statutory_days_match_an_independent_computation(year: int) -> None:
    # The `holidays` package computes the 2024 law's days from its own lunar tables; without its
    # "observed" rule (not the law's: the notice decides where a weekend holiday is made up).
    expected = set(holidays.China(years=year, observed=False))
    assert statutory_holidays(year) == expected


def test_t1_year_outside_every_calendar_is_refused() -> None:
    with pytest.raises(CalendarUnknownYear) as exc:
        WorkCalendar().is_working_day(date(2100, 3, 1))
    assert exc.value.year == 2100 and "2100" in str(exc.value)


OVERRIDE_2027 = """\
2027:
  holidays:
    - 2027-01-01
    - 2027-02-06..2027-02-12
    - {from: 2027-10-01, to: 2027-10-07}
  workdays:
    - 2027-02-20
    - '2027-10-09'
"""


@pytest.fixture()
def cal_2027(tmp_path: Path) -> WorkCalendar:
    path = tmp_path / "calendar_overrides.yaml"
    path.write_text(OVERRIDE_2027, encoding="utf-8")
    return WorkCalendar(CalendarOverrides.load(path))


def test_t1_2027_override_file_makes_year_known(cal_2027: WorkCalendar) -> None:
    assert cal_2027.is_year_known(2027)
    assert cal_2027.is_working_day(date(2027, 2, 8)) is False  # listed holiday (Mon)
    assert cal_2027.is_working_day(date(2027, 2, 20)) is True  # listed make-up Saturday
    assert cal_2027.is_working_day(date(2027, 3, 1)) is True  # unlisted Monday
    assert cal_2027.is_working_day(date(2027, 3, 6)) is False  # unlisted Saturday
    # A deadline across the year end now works: 12-29, 30, 31, (01-01 off), 01-04.
    assert cal_2027.add_working_days(at(2026, 12, 28), 4) == end_of(2027, 1, 4)
    assert cal_2027.add_calendar_days(at(2027, 2, 3), 3) == end_of(2027, 2, 15)


def test_t1_override_wins_over_library(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text("2026:\n  holidays: [2026-03-09]\n  workdays: [2026-03-07]\n", encoding="utf-8")
    cal = WorkCalendar(CalendarOverrides.load(path))
    assert cal.is_working_day(date(2026, 3, 7)) is True
    assert cal.is_working_day(date(2026, 3, 9)) is False
    assert cal.is_working_day(date(2026, 2, 17)) is False  # rest of 2026 still from the library


def test_shipped_override_file_is_empty_and_loads() -> None:
    overrides = CalendarOverrides.load(CONFIG_DIR / "calendar_overrides.yaml")
    assert overrides.years == {}
    text = (CONFIG_DIR / "calendar_overrides.yaml").read_text(encoding="utf-8")
    assert "# 2027:" in text  # the commented example the administrator copies


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("2027:\n  holidays: [2026-12-31]\n", "not in 2027"),
        ("2027:\n  holidays: [2027-05-01]\n  workdays: [2027-05-01]\n", "both"),
        ("2027:\n  holidays: [2027-13-01]\n", "bad date"),
        ("2027:\n  holidays: [27.5.1]\n", "not a date"),
        ("2027:\n  holidays: ['2027-05-05..2027-05-01']\n", "ends before"),
        ("2027:\n  holiday: [2027-05-01]\n", "unknown key"),
        ("next_year:\n  holidays: [2027-05-01]\n", "not a year"),
        ("2027: {}\n", "empty entry"),
    ],
)
def test_t1_bad_override_file_is_a_clear_error(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "calendar_overrides.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CalendarError, match=fragment) as exc:
        CalendarOverrides.load(path)
    assert str(path) in str(exc.value)
