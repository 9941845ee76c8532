"""Policy defaults and validation (R7.3, R7.4, R7.5, R8.2, R8.3, R8.6, R9.1, T2, T4) and the
city's units and categories (R3.1(6), R5.3, R7.3c-h)."""
from __future__ import annotations

import copy
from datetime import datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from ticketing.calendar import WorkCalendar
from ticketing.deadlines import Deadlines, Due
from ticketing.cityconfig import (
    UNIT_TYPES,
    CityConfig,
    CityConfigError,
    load_categories,
    load_units,
)
from ticketing.policy import (
    Policy,
    PolicyError,
    load_policy,
    load_work_calendar,
)

SH = ZoneInfo("Asia/Shanghai")
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"


def at(y: int, m: int, d: int, hh: int = 10, mm: int = 0) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=SH)


def write_policy(tmp_path: Path, text: str) -> Path:
    (tmp_path / "policy.yaml").write_text(text, encoding="utf-8")
    return tmp_path


# -- policy ----------------------------------------------------------------------------------

def test_policy_defaults_match_the_regulation() -> None:
    p = Policy()
    assert p.limits.notify_working_days == 2  # R8.2
    r = p.limits.report_working_days  # R8.3
    assert (r.consultation, r.suggestion, r.complaint, r.urgent_help) == (5, 10, 10, 0)
    assert p.limits.return_working_days == 2  # R8.6
    assert p.limits.back_office_dispatch_days == 3  # R7.3
    assert p.limits.callback_days_after_deadline == 2  # R7.4
    assert p.limits.close_days_after_deadline == 2  # R7.5
    assert p.limits.roster_change_working_days == 2  # R9.1
    assert p.office_day_end == time(17, 30) and p.timezone == "Asia/Shanghai"  # T4
    assert p.callback.concurrency == 4 and p.callback.max_attempts == 3
    assert p.callback.retry_backoff_minutes == (30, 120)
    assert p.recordings.retention_days == 180 and p.due_soon_hours == 24


def test_t2_shipped_policy_file_equals_the_regulation_defaults() -> None:
    assert load_policy(CONFIG_DIR) == Policy()


def test_missing_or_empty_policy_file_gives_defaults(tmp_path: Path) -> None:
    assert load_policy(tmp_path) == Policy()
    assert load_policy(write_policy(tmp_path, "# nothing set\n")) == Policy()


def test_t2_policy_file_changes_only_what_it_names(tmp_path: Path) -> None:
    p = load_policy(write_policy(tmp_path, "limits:\n  report_working_days:\n    complaint: 15\n"))
    assert p.limits.report_working_days.complaint == 15
    assert p.limits.report_working_days.consultation == 5
    assert p.limits.notify_working_days == 2


@pytest.mark.parametrize(
    "text, key",
    [
        ("limits:\n  report_working_days:\n    complaint: -1\n", "limits.report_working_days.complaint"),
        ("limits:\n  notify_working_days: two\n", "limits.notify_working_days"),
        ("limits:\n  notfy_working_days: 3\n", "limits.notfy_working_days"),
        ("office_day_end: 17:30\n", "office_day_end"),  # unquoted: YAML reads a number
        ("timezone: Asia/Shanghia\n", "timezone"),
        ("callback:\n  calling_hours: ['14:00-09:00']\n", "callback.calling_hours"),
        ("callback:\n  calling_hours: ['09:00-12:00', '11:00-13:00']\n", "callback.calling_hours"),
        ("callback:\n  calling_days: weekdays\n", "callback.calling_days"),
        ("callback:\n  concurrency: 0\n", "callback.concurrency"),
        ("ivr:\n  service_hours:\n    funday: ['08:00-20:00']\n", "ivr.service_hours.funday"),
        ("urge:\n  overdue: maybe\n", "urge.overdue"),
        ("- just\n- a list\n", "mapping"),
    ],
)
def test_bad_policy_value_is_a_clear_error_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(PolicyError) as exc:
        load_policy(write_policy(tmp_path, text))
    assert key in str(exc.value)
    assert "policy.yaml" in str(exc.value)


def test_ivr_service_hours_per_weekday(tmp_path: Path) -> None:
    p = load_policy(write_policy(tmp_path, "ivr:\n  service_hours:\n    default: ['08:00-20:00']\n    sun: []\n"))
    assert not p.ivr_open_at(at(2026, 3, 2, 7, 59))
    assert p.ivr_open_at(at(2026, 3, 2, 8, 0))
    assert not p.ivr_open_at(at(2026, 3, 2, 20, 0))
    assert not p.ivr_open_at(at(2026, 3, 8, 12, 0))  # Sunday closed
    # 00:00 UTC is 08:00 in Shanghai.
    assert p.ivr_open_at(datetime(2026, 3, 2, 0, 0, tzinfo=ZoneInfo("UTC")))


def test_ivr_round_the_clock_with_2400(tmp_path: Path) -> None:
    p = load_policy(write_policy(tmp_path, "ivr:\n  service_hours:\n    default: ['00:00-24:00']\n"))
    assert p.ivr_open_at(at(2026, 3, 2, 23, 59)) and p.ivr_open_at(at(2026, 3, 2, 0, 0))


def test_gb_t_33358_the_hotline_answers_7x24_out_of_the_box() -> None:
    """GB/T 33358-2016: 7x24 service. Without configuration and with the shipped config/ alike, a
    call at 03:00 on a Sunday meets operators, not the after-hours branch; the menu mode is kept."""
    from tests.conftest import CONFIG_DIR

    for p in (Policy(), load_policy(CONFIG_DIR)):
        assert p.ivr_open_at(at(2026, 3, 8, 3, 0)) and p.ivr_open_at(at(2026, 3, 2, 23, 59))
        assert p.ivr.mode == "menu"
    assert load_policy(write_policy(Path(__import__("tempfile").mkdtemp()), "ivr:\n  mode: direct\n")).ivr.mode == "direct"


def test_r7_4_callback_calling_hours_and_next_slot() -> None:
    p = Policy()
    assert not p.callback_may_call_at(at(2026, 3, 2, 8, 59))
    assert p.callback_may_call_at(at(2026, 3, 2, 9, 0))
    assert not p.callback_may_call_at(at(2026, 3, 2, 12, 30))  # lunch break
    assert p.next_callback_slot(at(2026, 3, 2, 12, 30)) == at(2026, 3, 2, 14, 0)
    assert p.next_callback_slot(at(2026, 3, 2, 15, 0)) == at(2026, 3, 2, 15, 0)
    assert p.next_callback_slot(at(2026, 3, 2, 20, 30)) == at(2026, 3, 3, 9, 0)
    assert p.callback_may_call_at(at(2026, 2, 17, 10, 0))  # every day, holidays included


def test_r7_4_callback_on_working_days_only(tmp_path: Path) -> None:
    p = load_policy(write_policy(tmp_path, "callback:\n  calling_days: working_days\n"))
    cal = WorkCalendar()
    assert not p.callback_may_call_at(at(2026, 2, 17, 10, 0), cal)  # Spring Festival
    assert p.callback_may_call_at(at(2026, 2, 14, 10, 0), cal)  # make-up Saturday
    assert p.next_callback_slot(at(2026, 2, 14, 21, 0), cal) == at(2026, 2, 24, 9, 0)
    with pytest.raises(ValueError):
        p.callback_may_call_at(at(2026, 2, 17, 10, 0))  # needs the calendar


def test_callback_retry_backoff() -> None:
    cb = Policy().callback
    assert cb.retry_delay(1) == timedelta(minutes=30)
    assert cb.retry_delay(2) == timedelta(minutes=120)
    assert cb.retry_delay(3) is None  # max_attempts reached


def test_naive_datetime_rejected_by_policy_hours() -> None:
    with pytest.raises(ValueError, match="naive"):
        Policy().ivr_open_at(datetime(2026, 3, 2, 9, 0))


def test_r8_2_r8_3_deadlines_with_shipped_config() -> None:
    policy = load_policy(CONFIG_DIR)
    d = Deadlines(policy, load_work_calendar(CONFIG_DIR, policy))
    received = at(2026, 2, 13)  # Friday before Spring Festival
    assert d.notify_due(received).at == at(2026, 2, 24, 17, 30)  # R8.2
    assert d.report_due("consultation", received).at == at(2026, 2, 27, 17, 30)  # R8.3
    assert d.report_due("suggestion", received).at == at(2026, 3, 5, 17, 30)
    assert d.report_due("complaint", received).at == at(2026, 3, 5, 17, 30)
    assert d.return_due(received).at == at(2026, 2, 24, 17, 30)  # R8.6
    assert d.roster_change_due(received).at == at(2026, 2, 24, 17, 30)  # R9.1
    with pytest.raises(ValueError, match="case kind"):
        d.report_due("praise", received)


def test_r7_3_r7_4_r7_5_calendar_day_deadlines_roll_over_holidays() -> None:
    d = Deadlines(Policy(), WorkCalendar())
    assert d.back_office_dispatch_due(at(2026, 2, 12)).at == at(2026, 2, 24, 17, 30)  # 02-15 off
    deadline = at(2026, 9, 29, 17, 30)
    assert d.callback_due(Due.fixed(deadline)).at == at(2026, 10, 8, 17, 30)  # 10-01 off
    assert d.close_due(Due.fixed(deadline)).at == at(2026, 10, 8, 17, 30)


def test_t4_office_day_end_from_policy(tmp_path: Path) -> None:
    policy = load_policy(write_policy(tmp_path, "office_day_end: '18:00'\n"))
    d = Deadlines(policy, policy.work_calendar())
    assert d.notify_due(at(2026, 3, 2)).at == at(2026, 3, 4, 18, 0)


# -- city config: shipped files --------------------------------------------------------------

@pytest.fixture(scope="module")
def city() -> CityConfig:
    return CityConfig.load(CONFIG_DIR)


def test_shipped_units_counts_and_types(city: CityConfig) -> None:
    assert city.city == "宜兴市"
    assert len(city.units) >= 28
    assert {u.type for u in city.units} == set(UNIT_TYPES)
    assert len(city.units_of_type("town")) >= 5
    assert len({u.code for u in city.units}) == len(city.units)


def test_r5_3_every_unit_has_a_leader_and_ab_staff(city: CityConfig) -> None:
    for u in city.units:
        assert u.leader.name and u.leader.phone, u.code
        assert len(u.staff) >= 2, u.code
        assert {"A", "B"} <= {s.duty for s in u.staff}, u.code


def test_r3_1_6_some_units_have_not_joined(city: CityConfig) -> None:
    not_joined = [u for u in city.units if not u.joined]
    assert 1 <= len(not_joined) <= 3
    routed = {code for c in city.categories for code in c.route.units}
    assert not routed & {u.code for u in not_joined}


def test_shipped_categories_cover_the_routing_rules(city: CityConfig) -> None:
    assert len(city.categories) >= 25
    # R7.3c: economic reports go to the discipline commission (12388), hidden.
    econ = city.category("discipline_economic")
    assert econ.route.mode == "discipline"
    assert city.unit(econ.route.units[0]).type == "discipline"
    assert city.unit(econ.route.units[0]).phone == "12388"
    # R7.3f / R7.3g: life services transferred, emergencies three-way.
    life = city.category("life_service")
    assert life.route.mode == "transfer" and city.unit(life.route.units[0]).type == "convenience"
    disaster = city.category("natural_disaster")
    assert disaster.route.mode == "three_way" and city.unit(disaster.route.units[0]).type == "emergency"
    # R7.3h: a lead with co-units, and several units without a lead.
    ic = city.category("illegal_construction").route
    assert ic.lead == "urban_management" and ic.co_units == ("natural_resources",)
    assert any(c.route.each_answers for c in city.categories)
    # R7.3e: every urgent-help category is handled live.
    for c in city.categories_for_kind("urgent_help"):
        assert c.route.mode in ("three_way", "transfer"), c.code


# -- city config: bad files ------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped() -> tuple[dict, dict]:
    units = yaml.safe_load((CONFIG_DIR / "units.yaml").read_text(encoding="utf-8"))
    cats = yaml.safe_load((CONFIG_DIR / "categories.yaml").read_text(encoding="utf-8"))
    return units, cats


def write_city(tmp_path: Path, units: dict, cats: dict) -> Path:
    (tmp_path / "units.yaml").write_text(yaml.safe_dump(units, allow_unicode=True), encoding="utf-8")
    (tmp_path / "categories.yaml").write_text(yaml.safe_dump(cats, allow_unicode=True), encoding="utf-8")
    return tmp_path


def _unit(units: dict, code: str) -> dict:
    return next(u for u in units["units"] if u["code"] == code)


def _cat(cats: dict, code: str) -> dict:
    return next(c for c in cats["categories"] if c["code"] == code)


def test_mutated_copy_of_shipped_files_loads(tmp_path: Path, shipped: tuple[dict, dict]) -> None:
    units, cats = copy.deepcopy(shipped)
    assert len(CityConfig.load(write_city(tmp_path, units, cats)).categories) == len(cats["categories"])


@pytest.mark.parametrize(
    "break_it, fragments",
    [
        (lambda u, c: _cat(c, "water_supply")["route"].update(units=["water_works"]),
         ["water_supply", "unknown unit 'water_works'"]),
        (lambda u, c: u["units"].append(copy.deepcopy(_unit(u, "education"))),
         ["duplicate unit code 'education'"]),
        (lambda u, c: c["categories"].append(copy.deepcopy(_cat(c, "noise_nuisance"))),
         ["duplicate category code 'noise_nuisance'"]),
        (lambda u, c: _unit(u, "gas").pop("leader"), ["gas", "leader", "R5.3"]),
        (lambda u, c: _unit(u, "gas")["staff"].pop(), ["gas", "two staff", "R5.3"]),
        (lambda u, c: _unit(u, "gas")["staff"][1].update(duty="A"), ["gas", "duties"]),
        (lambda u, c: _cat(c, "discipline_economic")["route"].update(units=["education"]),
         ["discipline_economic", "discipline", "R7.3c"]),
        (lambda u, c: _cat(c, "food_safety")["route"].update(units=["cable_tv"]),
         ["food_safety", "cable_tv", "R3.1(6)"]),
        (lambda u, c: _cat(c, "illegal_construction")["route"].update(lead="education"),
         ["illegal_construction", "lead 'education'"]),
        (lambda u, c: _cat(c, "natural_disaster")["route"].update(mode="work_order"),
         ["natural_disaster", "urgent help is handled live"]),
        (lambda u, c: _cat(c, "life_service")["route"].update(units=["emergency_office"]),
         ["life_service", "convenience", "R7.3f"]),
        (lambda u, c: _unit(u, "gas").update(type="company"), ["gas", "'type'"]),
        (lambda u, c: _unit(u, "gas").update(code="Gas Co"), ["'code'"]),
        (lambda u, c: _unit(u, "gas")["leader"].update(phone="call me"), ["gas", "leader", "phone"]),
        (lambda u, c: _cat(c, "food_safety").update(kinds=["praise"]), ["food_safety", "kinds"]),
    ],
)
def test_bad_city_config_is_rejected_naming_the_item(
    tmp_path: Path, shipped: tuple[dict, dict], break_it, fragments: list[str]
) -> None:
    units, cats = copy.deepcopy(shipped)
    break_it(units, cats)
    config_dir = write_city(tmp_path, units, cats)
    with pytest.raises(CityConfigError) as exc:
        load_categories(config_dir, load_units(config_dir))
    for fragment in fragments:
        assert fragment in str(exc.value)


def test_invalid_phone_not_echoed_in_error(tmp_path: Path, shipped: tuple[dict, dict]) -> None:
    units, cats = copy.deepcopy(shipped)
    _unit(units, "gas")["staff"][0]["phone"] = "138-5678-x"
    with pytest.raises(CityConfigError) as exc:
        load_units(write_city(tmp_path, units, cats))
    assert "5678" not in str(exc.value)
