"""The city's member units and case categories, from `config/units.yaml` and `config/categories.yaml`.

Loaders validate the files and every cross-reference, and fail with a message naming the file and
the item, so a bad edit is caught at start-up rather than when a citizen's case is dispatched.
They return plain frozen dataclasses; the store/seed code turns them into rows.

Pure Python: no web, telephony or database imports.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CASE_KINDS",
    "Category",
    "CityConfig",
    "CityConfigError",
    "MemberUnit",
    "Person",
    "ROUTE_MODES",
    "Route",
    "StaffMember",
    "UNIT_TYPES",
    "load_categories",
    "load_units",
]

UNITS_FILE = "units.yaml"
CATEGORIES_FILE = "categories.yaml"

CASE_KINDS = ("consultation", "suggestion", "complaint", "urgent_help")  # R2.1
UNIT_TYPES = ("department", "town", "enterprise", "discipline", "convenience", "emergency")
# work_order: electronic work order (R7.3a/b/d, R7.3h); three_way: conference with the unit
# (R7.3a, R7.3e, R7.3g); transfer: hand the call to the convenience center (R7.3f);
# discipline: work order to the discipline commission, content hidden, no callback, not assessed (R7.3c).
ROUTE_MODES = ("work_order", "three_way", "transfer", "discipline")
LIVE_MODES = ("three_way", "transfer")

_CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
# Fixed line with area code (0510-87xxxxxx), 11-digit mobile, or a short service number (12388, 95598).
_PHONE_RE = re.compile(r"^(0\d{2,3}-\d{7,8}|1\d{10}|\d{3,8})$")


class CityConfigError(ValueError):
    """A city config file is invalid; the message names the file and the item."""


@dataclass(frozen=True)
class Person:
    name: str
    phone: str


@dataclass(frozen=True)
class StaffMember:
    duty: str  # "A", "B", ... (AB岗, R5.3)
    name: str
    phone: str


@dataclass(frozen=True)
class MemberUnit:
    code: str
    name: str
    type: str
    joined: bool  # False: cases for it are not accepted (R3.1(6)); it is kept for referral
    phone: str
    leader: Person
    staff: tuple[StaffMember, ...]
    description: str = ""
    # Article 5 (二) 6 (呈批): a clerk's report back goes to the unit's leader before the center
    report_approval: bool = False


@dataclass(frozen=True)
class Route:
    mode: str
    units: tuple[str, ...]
    lead: str | None = None
    # The work order goes to the unit the case is about (e.g. a complaint about its staff's
    # attitude, R7.3d), chosen at dispatch; `units` then lists the usual choices, if any.
    concerned_unit: bool = False

    @property
    def co_units(self) -> tuple[str, ...]:
        """Co-units report to the lead (R7.3h); empty when there is no lead."""
        if self.lead is None:
            return ()
        return tuple(u for u in self.units if u != self.lead)

    @property
    def each_answers(self) -> bool:
        """Several units and no lead: one work order per unit, each answering (R7.3h)."""
        return self.lead is None and len(self.units) > 1


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    kinds: tuple[str, ...]
    route: Route
    description: str = ""


@dataclass(frozen=True)
class CityConfig:
    city: str
    units: tuple[MemberUnit, ...]
    categories: tuple[Category, ...]

    @classmethod
    def load(cls, config_dir: str | Path) -> CityConfig:
        config_dir = Path(config_dir)
        city, units = _load_units_file(config_dir)
        categories = load_categories(config_dir, units)
        return cls(city=city, units=units, categories=categories)

    def unit(self, code: str) -> MemberUnit:
        for u in self.units:
            if u.code == code:
                return u
        raise KeyError(f"no member unit {code!r}")

    def category(self, code: str) -> Category:
        for c in self.categories:
            if c.code == code:
                return c
        raise KeyError(f"no category {code!r}")

    def units_of_type(self, unit_type: str) -> tuple[MemberUnit, ...]:
        if unit_type not in UNIT_TYPES:
            raise ValueError(f"unknown unit type {unit_type!r}")
        return tuple(u for u in self.units if u.type == unit_type)

    def categories_for_kind(self, kind: str) -> tuple[Category, ...]:
        return tuple(c for c in self.categories if kind in c.kinds)


# -- loading ---------------------------------------------------------------------------------

def _read_yaml(path: Path) -> Any:
    if not path.exists():
        raise CityConfigError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as exc:  # PyYAML raises ValueError for bad dates
        raise CityConfigError(f"{path}: not valid YAML or a bad date: {exc}") from exc


def _items(data: Any, key: str, source: str) -> list[Any]:
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise CityConfigError(f"{source}: expected a top-level '{key}:' list")
    return data[key]


class _Item:
    """Field access for one YAML mapping, with errors naming the item."""

    def __init__(self, raw: Any, where: str, allowed: set[str]) -> None:
        if not isinstance(raw, dict):
            raise CityConfigError(f"{where}: expected a mapping")
        unknown = set(raw) - allowed
        if unknown:
            raise CityConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
        self.raw = raw
        self.where = where

    def fail(self, msg: str) -> CityConfigError:
        return CityConfigError(f"{self.where}: {msg}")

    def text(self, key: str, *, required: bool = True) -> str:
        value = self.raw.get(key)
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"'{key}' must be a non-empty text")
        return value.strip()

    def code(self, key: str = "code") -> str:
        value = self.raw.get(key)
        if not isinstance(value, str) or not _CODE_RE.match(value):
            raise self.fail(f"'{key}' must be a lower-case ASCII slug (a-z, 0-9, _), got {value!r}")
        return value

    def phone(self, key: str = "phone") -> str:
        value = self.raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # short numbers like 12388 come unquoted
        # The number itself is personal data for staff: name the key, not the value.
        if not isinstance(value, str) or not _PHONE_RE.match(value.strip()):
            raise self.fail(f"'{key}' is not a phone number (0510-87xxxxxx, 11-digit mobile or short number)")
        return value.strip()

    def flag(self, key: str, default: bool | None = None) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"'{key}' must be true or false")
        return value


def _parse_person(raw: Any, where: str) -> Person:
    item = _Item(raw, where, {"name", "phone"})
    return Person(name=item.text("name"), phone=item.phone())


def _parse_unit(raw: Any, where: str) -> MemberUnit:
    item = _Item(raw, where, {"code", "name", "type", "joined", "phone", "leader", "staff", "description",
                                  "report_approval"})
    code = item.code()
    item.where = f"{where} ({code})"
    unit_type = item.raw.get("type")
    if unit_type not in UNIT_TYPES:
        raise item.fail(f"'type' must be one of {', '.join(UNIT_TYPES)}, got {unit_type!r}")
    if "leader" not in item.raw:
        raise item.fail("has no leader (R5.3: one leader and at least two staff)")
    leader = _parse_person(item.raw["leader"], f"{item.where}.leader")
    staff_raw = item.raw.get("staff") or []
    if not isinstance(staff_raw, list) or len(staff_raw) < 2:
        raise item.fail("needs at least two staff, duties A and B (R5.3)")
    staff = []
    for i, s in enumerate(staff_raw):
        sub = _Item(s, f"{item.where}.staff[{i}]", {"duty", "name", "phone"})
        duty = sub.text("duty").upper()
        staff.append(StaffMember(duty=duty, name=sub.text("name"), phone=sub.phone()))
    duties = [s.duty for s in staff]
    if len(set(duties)) != len(duties):
        raise item.fail(f"staff duties repeat: {duties}")
    if not {"A", "B"} <= set(duties):
        raise item.fail(f"staff must cover duties A and B (R5.3), got {duties}")
    return MemberUnit(
        code=code,
        name=item.text("name"),
        type=unit_type,
        joined=item.flag("joined", True),
        phone=item.phone(),
        leader=leader,
        staff=tuple(staff),
        description=item.text("description", required=False),
        report_approval=item.flag("report_approval", False),
    )


def _load_units_file(config_dir: Path) -> tuple[str, tuple[MemberUnit, ...]]:
    path = config_dir / UNITS_FILE
    data = _read_yaml(path)
    source = str(path)
    units = tuple(_parse_unit(raw, f"{source}: unit #{i + 1}") for i, raw in enumerate(_items(data, "units", source)))
    seen_codes: set[str] = set()
    seen_names: set[str] = set()
    for u in units:
        if u.code in seen_codes:
            raise CityConfigError(f"{source}: duplicate unit code {u.code!r}")
        if u.name in seen_names:
            raise CityConfigError(f"{source}: duplicate unit name {u.name!r} ({u.code})")
        seen_codes.add(u.code)
        seen_names.add(u.name)
    city = data.get("city", "")
    if not isinstance(city, str):
        raise CityConfigError(f"{source}: 'city' must be text")
    return city, units


def load_units(config_dir: str | Path) -> tuple[MemberUnit, ...]:
    """Load and validate `<config_dir>/units.yaml`."""
    return _load_units_file(Path(config_dir))[1]


def _parse_route(raw: Any, where: str, kinds: tuple[str, ...], units: dict[str, MemberUnit]) -> Route:
    item = _Item(raw, where, {"mode", "units", "lead", "concerned_unit"})
    mode = item.raw.get("mode")
    if mode not in ROUTE_MODES:
        raise item.fail(f"'mode' must be one of {', '.join(ROUTE_MODES)}, got {mode!r}")
    codes = item.raw.get("units") or []
    if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
        raise item.fail("'units' must be a list of unit codes")
    if len(set(codes)) != len(codes):
        raise item.fail(f"'units' repeats a unit: {codes}")
    for c in codes:
        if c not in units:
            raise item.fail(f"unknown unit {c!r}")
        if not units[c].joined:
            raise item.fail(f"unit {c!r} has not joined the platform (R3.1(6)); it cannot receive cases")
    lead = item.raw.get("lead")
    if lead is not None:
        if lead not in codes:
            raise item.fail(f"lead {lead!r} is not one of the route's units {codes}")
        if len(codes) < 2:
            raise item.fail("a lead needs at least one co-unit (R7.3h); drop 'lead' for a single unit")
    concerned = item.flag("concerned_unit", False)
    if concerned and mode != "work_order":
        raise item.fail("'concerned_unit' only applies to mode work_order")
    if not codes and not concerned:
        raise item.fail("route has no units (list them, or set concerned_unit: true)")

    if mode == "discipline":  # R7.3c
        if len(codes) != 1 or units[codes[0]].type != "discipline":
            raise item.fail("mode discipline must name exactly one unit of type discipline (R7.3c)")
        if set(kinds) != {"complaint"}:
            raise item.fail("mode discipline is for reports (kind complaint) only (R7.3c)")
    else:
        for c in codes:
            if units[c].type == "discipline" and mode != "work_order":
                raise item.fail(f"the discipline unit {c!r} only takes work orders")
    if mode in LIVE_MODES and len(codes) != 1:
        raise item.fail(f"mode {mode} connects the caller to exactly one unit")
    if mode == "transfer":  # R7.3f
        if units[codes[0]].type != "convenience":
            raise item.fail("mode transfer goes to the convenience service center (R7.3f)")
        if set(kinds) != {"urgent_help"}:
            raise item.fail("mode transfer is for urgent help (life service) only (R7.3f)")
    if mode == "three_way" and not set(kinds) <= {"consultation", "urgent_help"}:
        raise item.fail("mode three_way is for consultation or urgent help (R7.3a, R7.3e, R7.3g)")
    if "urgent_help" in kinds and mode not in LIVE_MODES:
        raise item.fail("urgent help is handled live: use mode three_way or transfer (R7.3e-g, R8.3)")
    return Route(mode=mode, units=tuple(codes), lead=lead, concerned_unit=concerned)


def _parse_category(raw: Any, where: str, units: dict[str, MemberUnit]) -> Category:
    item = _Item(raw, where, {"code", "name", "kinds", "route", "description"})
    code = item.code()
    item.where = f"{where} ({code})"
    kinds = item.raw.get("kinds")
    if not isinstance(kinds, list) or not kinds or not all(k in CASE_KINDS for k in kinds):
        raise item.fail(f"'kinds' must be a non-empty list of {', '.join(CASE_KINDS)}, got {kinds!r}")
    if len(set(kinds)) != len(kinds):
        raise item.fail(f"'kinds' repeats a kind: {kinds}")
    if "route" not in item.raw:
        raise item.fail("has no route")
    route = _parse_route(item.raw["route"], f"{item.where}.route", tuple(kinds), units)
    return Category(
        code=code,
        name=item.text("name"),
        kinds=tuple(kinds),
        route=route,
        description=item.text("description", required=False),
    )


def load_categories(
    config_dir: str | Path, units: tuple[MemberUnit, ...] | None = None
) -> tuple[Category, ...]:
    """Load and validate `<config_dir>/categories.yaml` against the units (loaded if not given)."""
    config_dir = Path(config_dir)
    if units is None:
        units = load_units(config_dir)
    by_code = {u.code: u for u in units}
    path = config_dir / CATEGORIES_FILE
    source = str(path)
    raws = _items(_read_yaml(path), "categories", source)
    categories = tuple(_parse_category(raw, f"{source}: category #{i + 1}", by_code) for i, raw in enumerate(raws))
    seen: set[str] = set()
    for c in categories:
        if c.code in seen:
            raise CityConfigError(f"{source}: duplicate category code {c.code!r}")
        seen.add(c.code)
    return categories
