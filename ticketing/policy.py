"""The hotline's time limits and operating hours, from `config/policy.yaml`.

Every default is the number in the 2011 Yixing regulation (see the requirement IDs on each field),
so an empty or missing file gives a compliant policy; the file changes only what it names (T2).
Unknown keys and bad values are rejected with the dotted key path, so a typo cannot silently fall
back to a default.

Pure Python: no web, telephony or database imports.
"""
from __future__ import annotations

import dataclasses
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    TypeAdapter,
    ValidationError,
)
from pydantic.dataclasses import dataclass

from ticketing.calendar import CalendarOverrides, WorkCalendar
from ticketing.cityconfig import CASE_KINDS

__all__ = [
    "CASE_KINDS",
    "WEEKDAYS",
    "AccountPolicy",
    "CallbackPolicy",
    "IvrPolicy",
    "Limits",
    "Policy",
    "PolicyError",
    "PortalPolicy",
    "RecordingPolicy",
    "ReportLimits",
    "ServiceHoursAnswer",
    "TimeWindow",
    "UrgePolicy",
    "WeeklyHours",
    "load_policy",
    "load_work_calendar",
    "policy_from_mapping",
]

POLICY_FILE = "policy.yaml"
CALENDAR_OVERRIDES_FILE = "calendar_overrides.yaml"
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = date.weekday()

_CONFIG = ConfigDict(extra="forbid")


class PolicyError(ValueError):
    """The policy file is unreadable or has a bad value; the message names the key."""


# -- value parsing ---------------------------------------------------------------------------

def _parse_clock(value: Any) -> time:
    if isinstance(value, time):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 17:30 as the base-60 number 1050.
        raise ValueError("write clock times in quotes, e.g. '17:30' (unquoted, YAML reads them as numbers)")
    if isinstance(value, str):
        text = value.strip()
        if text == "24:00":
            return time.max
        try:
            hh, mm = text.split(":")
            if len(mm) == 2:
                return time(int(hh), int(mm))
        except ValueError:
            pass
    raise ValueError(f"expected a clock time 'HH:MM', got {value!r}")


Clock = Annotated[time, BeforeValidator(_parse_clock)]


def _parse_month_day(value: Any) -> tuple[int, int]:
    if isinstance(value, tuple):  # already parsed (a policy copied with dataclasses.replace)
        value = f"{value[0]:02d}-{value[1]:02d}" if len(value) == 2 else value
    if isinstance(value, str):
        month, sep, day = value.strip().partition("-")
        if sep and month.isdigit() and day.isdigit():
            try:
                datetime(2023, int(month), int(day))  # not a leap year: the day must exist every year
                return int(month), int(day)
            except ValueError:
                pass
    raise ValueError(f"expected a day of the year 'MM-DD' in quotes, e.g. '11-01'; got {value!r}")


MonthDay = Annotated[tuple[int, int], PlainValidator(_parse_month_day)]
NonNegInt = Annotated[int, Field(ge=0, strict=True)]
PosInt = Annotated[int, Field(ge=1, strict=True)]


@dataclass(frozen=True, config=_CONFIG)
class TimeWindow:
    """A daily opening window [start, end); written 'HH:MM-HH:MM' in YAML ('24:00' = midnight)."""

    start: Clock
    end: Clock

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"window {self} ends before it starts")

    def contains(self, t: time) -> bool:
        if self.end == time.max:
            return t >= self.start
        return self.start <= t < self.end

    def __str__(self) -> str:
        end = "24:00" if self.end == time.max else self.end.strftime("%H:%M")
        return f"{self.start.strftime('%H:%M')}-{end}"


def _parse_window(value: Any) -> Any:
    if isinstance(value, str):
        start, sep, end = value.partition("-")
        if not sep:
            raise ValueError(f"expected a window 'HH:MM-HH:MM', got {value!r}")
        return {"start": start, "end": end}
    return value


def _check_windows(windows: tuple[TimeWindow, ...]) -> tuple[TimeWindow, ...]:
    ordered = sorted(windows, key=lambda w: w.start)
    for a, b in zip(ordered, ordered[1:]):
        if b.start < a.end:
            raise ValueError(f"windows {a} and {b} overlap")
    return tuple(ordered)


Window = Annotated[TimeWindow, BeforeValidator(_parse_window)]
Windows = Annotated[tuple[Window, ...], AfterValidator(_check_windows)]


# -- policy sections -------------------------------------------------------------------------

@dataclass(frozen=True, config=_CONFIG)
class ReportLimits:
    """R8.3: working days from receipt to report back, by case kind (0 = handled live in the call)."""

    consultation: NonNegInt = 5
    suggestion: NonNegInt = 10
    complaint: NonNegInt = 10
    urgent_help: NonNegInt = 0

    def for_kind(self, kind: str) -> int:
        if kind not in CASE_KINDS:
            raise ValueError(f"unknown case kind {kind!r}; expected one of {', '.join(CASE_KINDS)}")
        return getattr(self, kind)


@dataclass(frozen=True, config=_CONFIG)
class Limits:
    notify_working_days: NonNegInt = 2  # R8.2
    report_working_days: ReportLimits = dataclasses.field(default_factory=ReportLimits)  # R8.3
    return_working_days: NonNegInt = 2  # R8.6
    back_office_dispatch_days: NonNegInt = 3  # R7.3, calendar days (T2)
    callback_days_after_deadline: NonNegInt = 2  # R7.4, calendar days (T2)
    close_days_after_deadline: NonNegInt = 2  # R7.5, calendar days (T2)
    roster_change_working_days: NonNegInt = 2  # R9.1


@dataclass(frozen=True, config=_CONFIG)
class WeeklyHours:
    """Opening windows per weekday; a weekday not given uses `default`, an empty list = closed.
    Default: around the clock (GB/T 33358-2016 asks 12345 for 7x24 service)."""

    default: Windows = (TimeWindow(time(0, 0), time.max),)
    mon: Windows | None = None
    tue: Windows | None = None
    wed: Windows | None = None
    thu: Windows | None = None
    fri: Windows | None = None
    sat: Windows | None = None
    sun: Windows | None = None

    def windows_for(self, weekday: int) -> tuple[TimeWindow, ...]:
        specific = getattr(self, WEEKDAYS[weekday])
        return self.default if specific is None else specific

    def is_open(self, weekday: int, t: time) -> bool:
        return any(w.contains(t) for w in self.windows_for(weekday))


@dataclass(frozen=True, config=_CONFIG)
class IvrPolicy:
    service_hours: WeeklyHours = dataclasses.field(default_factory=WeeklyHours)
    # What a caller meets in service hours: "menu" (keys 1-5, 0) or "direct" (the greeting, then
    # an operator: GB/T 33358-2016 advises against a voice menu before acceptance). ivr_flows/main.yaml
    # reads it as the flow variable `mode`; after hours both offer a message and the progress enquiry.
    mode: Literal["menu", "direct"] = "menu"


def _parse_calling_days(value: Any) -> str | tuple[str, ...]:
    if value in ("every_day", "working_days"):
        return value
    if isinstance(value, (list, tuple)) and value and all(v in WEEKDAYS for v in value):
        return tuple(dict.fromkeys(value))
    raise ValueError(
        f"expected 'every_day', 'working_days' or a non-empty list of {', '.join(WEEKDAYS)}; got {value!r}"
    )


CallingDays = Annotated[str | tuple[str, ...], PlainValidator(_parse_calling_days)]


@dataclass(frozen=True, config=_CONFIG)
class CallbackPolicy:
    """When and how hard the callback survey (R7.4) dials citizens."""

    calling_hours: Windows = (TimeWindow(time(9, 0), time(12, 0)), TimeWindow(time(14, 0), time(20, 0)))
    calling_days: CallingDays = "every_day"
    concurrency: PosInt = 4
    max_attempts: PosInt = 3
    # Delay before attempt k+1 is retry_backoff_minutes[k-1]; the last value repeats.
    retry_backoff_minutes: tuple[PosInt, ...] = (30, 120)

    def __post_init__(self) -> None:
        if self.max_attempts > 1 and not self.retry_backoff_minutes:
            raise ValueError("retry_backoff_minutes must list at least one delay when max_attempts > 1")
        if not self.calling_hours:
            raise ValueError("calling_hours must have at least one window")

    def retry_delay(self, attempts_made: int) -> timedelta | None:
        """Wait before the next attempt after `attempts_made` failed ones; None = give up."""
        if attempts_made < 1:
            raise ValueError("attempts_made counts the attempts already made (>= 1)")
        if attempts_made >= self.max_attempts:
            return None
        idx = min(attempts_made - 1, len(self.retry_backoff_minutes) - 1)
        return timedelta(minutes=self.retry_backoff_minutes[idx])


@dataclass(frozen=True, config=_CONFIG)
class RecordingPolicy:
    retention_days: PosInt = 180


@dataclass(frozen=True, config=_CONFIG)
class UrgePolicy:
    """When a unit gets an urge (催办, R7.7)."""

    notify_due_within_hours: NonNegInt = 4  # notification (R8.2) due within this many hours
    report_due_within_working_days: NonNegInt = 1  # report back (R8.3) due within this many working days
    overdue: StrictBool = True  # urge anything past its deadline


@dataclass(frozen=True, config=_CONFIG)
class RepeatPolicy:
    """Repeated requests (重复诉求, 国办函〔2025〕66号): how far back a new case is compared with
    earlier ones (the desk's 并单 flag and the 重复来电率 figure alike)."""

    within_days: PosInt = 30


@dataclass(frozen=True, config=_CONFIG)
class HotTopicPolicy:
    """Hot topics (R7.6, ticketing.hot_topics): the period the back office sees unless it asks for
    another, how many requests make a topic, and how many topics are shown."""

    days: PosInt = 7            # the week: today and the 6 days before
    min_cases: PosInt = 3       # requests on one topic in the period
    top: PosInt = 20
    max_days: PosInt = 92       # the longest period asked for (a month and its predecessor read fast)


@dataclass(frozen=True, config=_CONFIG)
class MissedCallPolicy:
    """漏接回拨 (国办函〔2025〕66号): which callers who gave up in the operator queue are called back."""

    min_wait_s: NonNegInt = 5      # gave up after waiting at least this long (a shorter wait: a mistake)
    within_hours: PosInt = 24      # how far back the list looks
    # the scheduler calls them back within service hours (callback/missed.py): an operator, then the citizen
    automatic: StrictBool = True
    max_tries: PosInt = 2          # automatic callbacks that miss the caller; then the desk's list alone
    retry_minutes: PosInt = 30     # between two of them
    operator_ring_s: PosInt = 20   # an operator's phone rings this long before another one is tried


@dataclass(frozen=True, config=_CONFIG)
class NotificationPolicy:
    """Notices delivered, not only recorded (issue 14 item 5): which unit notices and which notices to
    citizens the scheduler delivers by automated voice call (callback/notify.py), within the
    callback's calling hours."""

    voice_kinds: tuple[str, ...] = ("urge",)  # UnitNotification kinds called to the duty phone (R7.7)
    # R8.2: a unit's notification recorded with one of these channels is called to the citizen by the
    # hotline (callback/notices.py); other channels (phone, visit, ...) the unit carried out itself
    citizen_voice_channels: tuple[str, ...] = ("auto_voice",)
    citizen_sms_channels: tuple[str, ...] = ("auto_sms",)  # ... texted, where an SMS sender is configured
    portal_confirmation: StrictBool = True  # a portal request's phone is called with its case number
    max_tries: PosInt = 4          # calls without an acknowledgement (A, B, A, B); then recorded only
    retry_minutes: PosInt = 15     # after a round of the duty phones, before the next one
    ring_s: PosInt = 30            # a duty phone rings this long
    within_hours: PosInt = 24      # notices older than this are not called (a new install's history)


@dataclass(frozen=True, config=_CONFIG)
class AccountPolicy:
    """Logins and passwords of staff accounts (issue 11: password guessing)."""

    max_failures_per_account: PosInt = 5     # failed logins on one account name ...
    max_failures_per_address: PosInt = 20    # ... or from one client address, within the window
    failure_window_minutes: PosInt = 15      # failures older than this are forgotten
    lockout_minutes: PosInt = 15             # then the account (or address) is locked this long
    password_min_length: Annotated[int, Field(ge=8, le=64, strict=True)] = 8


@dataclass(frozen=True, config=_CONFIG)
class PortalPolicy:
    """The citizen web portal (issue 14 item 1): how large a photo may be, and how many requests an
    address or a phone may send and how many wrong progress checks an address or a case number
    may make (callcenter/throttle.py counts them)."""

    photo_max_kb: Annotated[int, Field(ge=16, le=8192, strict=True)] = 2048
    submissions_per_address_per_hour: PosInt = 10
    submissions_per_phone_per_day: PosInt = 5
    failed_checks_per_address_per_hour: PosInt = 20  # wrong case number or phone suffix ...
    failed_checks_per_case_per_hour: PosInt = 5      # ... on one case number (guessing the suffix)


def _check_tz(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None
    return name


@dataclass(frozen=True, config=_CONFIG)
class Policy:
    timezone: Annotated[str, AfterValidator(_check_tz)] = "Asia/Shanghai"  # T4
    office_day_end: Clock = time(17, 30)  # T4
    due_soon_hours: PosInt = 24  # "due soon" queries
    # T1: from this day of the year, back office and admin are warned while next year's holiday
    # arrangement is not entered (the State Council's notice usually comes in November).
    calendar_warning_from: MonthDay = (11, 1)
    limits: Limits = dataclasses.field(default_factory=Limits)
    ivr: IvrPolicy = dataclasses.field(default_factory=IvrPolicy)
    callback: CallbackPolicy = dataclasses.field(default_factory=CallbackPolicy)
    recordings: RecordingPolicy = dataclasses.field(default_factory=RecordingPolicy)
    urge: UrgePolicy = dataclasses.field(default_factory=UrgePolicy)
    accounts: AccountPolicy = dataclasses.field(default_factory=AccountPolicy)
    repeats: RepeatPolicy = dataclasses.field(default_factory=RepeatPolicy)
    hot_topics: HotTopicPolicy = dataclasses.field(default_factory=HotTopicPolicy)
    missed_calls: MissedCallPolicy = dataclasses.field(default_factory=MissedCallPolicy)
    portal: PortalPolicy = dataclasses.field(default_factory=PortalPolicy)
    notifications: NotificationPolicy = dataclasses.field(default_factory=NotificationPolicy)

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def work_calendar(self, overrides: CalendarOverrides | None = None) -> WorkCalendar:
        """A WorkCalendar in this policy's time zone and office-day end."""
        return WorkCalendar(overrides, tz=self.timezone, office_day_end=self.office_day_end)

    def ivr_open_at(self, moment: datetime) -> bool:
        """Is the voice menu within service hours at this (aware) moment?"""
        return self.ivr_hours_at(moment).open

    def ivr_hours_at(self, moment: datetime) -> ServiceHoursAnswer:
        """The service-hours rule applied at this (aware) moment, with what it looked at (so a
        person can be told why the menu was closed)."""
        local = _local(moment, self.tzinfo)
        windows = self.ivr.service_hours.windows_for(local.weekday())
        return ServiceHoursAnswer(any(w.contains(local.time()) for w in windows), local, windows, self.timezone)

    def callback_may_call_at(self, moment: datetime, calendar: WorkCalendar | None = None) -> bool:
        """May the callback survey dial a citizen at this moment (calling days and hours)?"""
        local = _local(moment, self.tzinfo)
        if not self._is_calling_day(local, calendar):
            return False
        return any(w.contains(local.time()) for w in self.callback.calling_hours)

    def next_callback_slot(self, moment: datetime, calendar: WorkCalendar | None = None) -> datetime:
        """The earliest moment >= `moment` at which callback_may_call_at is true (aware, policy tz)."""
        local = _local(moment, self.tzinfo)
        day = local.date()
        for _ in range(31):
            start_of_day = datetime.combine(day, time(0, 0), tzinfo=self.tzinfo)
            if self._is_calling_day(start_of_day, calendar):
                for w in self.callback.calling_hours:  # sorted by start
                    opens = datetime.combine(day, w.start, tzinfo=self.tzinfo)
                    if local < opens:
                        return opens
                    if w.contains(local.time()) and local.date() == day:
                        return local
            day += timedelta(days=1)
        raise PolicyError("callback.calling_days leaves no calling day within a month")

    def _is_calling_day(self, local: datetime, calendar: WorkCalendar | None) -> bool:
        days = self.callback.calling_days
        if days == "every_day":
            return True
        if days == "working_days":
            if calendar is None:
                raise ValueError("callback.calling_days is 'working_days': pass the WorkCalendar")
            return calendar.is_working_day(local.date())
        return WEEKDAYS[local.weekday()] in days


@dataclasses.dataclass(frozen=True)
class ServiceHoursAnswer:
    open: bool
    local: datetime                    # the moment in the policy's time zone
    windows: tuple[TimeWindow, ...]    # that weekday's opening windows (empty: closed all day)
    timezone: str

    def explain(self) -> str:
        """E.g. 'closed: outside service hours 08:00–20:00 Asia/Shanghai, now 22:10 Saturday'."""
        hours = ", ".join(str(w).replace("-", "–") for w in self.windows) or "none that day"
        now = self.local.strftime("%H:%M %A")
        return f"{'open' if self.open else 'closed'}: {'within' if self.open else 'outside'} service hours " \
               f"{hours} {self.timezone}, now {now}"


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give a timezone-aware datetime")
    return moment.astimezone(tz)


_POLICY_ADAPTER = TypeAdapter(Policy)


def policy_from_mapping(data: Any, source: str = POLICY_FILE) -> Policy:
    """Validate a parsed policy mapping; errors name the dotted key and the file."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: expected a mapping of policy keys, got {type(data).__name__}")
    try:
        return _POLICY_ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "unexpected_keyword_argument":
                msg = "unknown key (misspelt?)"
            problems.append(f"{key}: {msg}")
        raise PolicyError(f"{source}: " + "; ".join(problems)) from None


def load_policy(config_dir: str | Path) -> Policy:
    """Load `<config_dir>/policy.yaml`; a missing file gives the regulation's defaults."""
    path = Path(config_dir) / POLICY_FILE
    if not path.exists():
        return Policy()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as exc:  # PyYAML raises ValueError for bad dates
        raise PolicyError(f"{path}: not valid YAML or a bad date: {exc}") from exc
    return policy_from_mapping(data, source=str(path))


def load_work_calendar(config_dir: str | Path, policy: Policy | None = None) -> WorkCalendar:
    """The WorkCalendar for this install: policy tz/office-day end + `calendar_overrides.yaml`."""
    policy = policy or load_policy(config_dir)
    overrides = CalendarOverrides.load(Path(config_dir) / CALENDAR_OVERRIDES_FILE)
    return policy.work_calendar(overrides)
