"""The unit assessment (考核, R5.2, R6.1): its weights and bands from `config/assessment.yaml`,
and the score of one unit from its figures.

    score = sum over the figures counted of  points_i,
    points_i = 100 * weight_i * r_i / (sum of the weights of the figures counted),
    r_i = rate_i for a figure where higher is better, 1 - rate_i where lower is better,

less the deductions for accountability decisions (过错问责) made in the period, never below 0.
A figure is "counted" when its denominator is not 0. A figure with nothing to count (denominator 0)
earns no points and its weight goes to the others, so a unit is judged on what it had to do; a unit
with nothing to count at all has no score, no band and no rank (not 0, not 100).
The band is the first (highest) one whose `min_score` the score reaches (国办函〔2025〕66号:
grading in bands, not by ranking alone).

Unknown keys and bad values are refused with the dotted key path, as in `config/policy.yaml`.
No web, telephony or database access here; ticketing.assessment_report reads the figures.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from ticketing.enums import AccountabilityDecision
from ticketing.figures import Rate, Thresholds, case_definitions, work_order_definitions

__all__ = [
    "ASSESSED_FIGURES",
    "ASSESSMENT_FILE",
    "AssessmentConfig",
    "AssessmentError",
    "Band",
    "FigureScore",
    "FigureWeight",
    "InquiryDeductions",
    "UnitScore",
    "assessment_from_mapping",
    "load_assessment",
    "rank",
    "score_unit",
]

ASSESSMENT_FILE = "assessment.yaml"
# The rates a unit can be assessed on: every work-order and case rate that ticketing.figures reads
# per member unit (R7.3c excluded there), less those measuring the center's own steps on the unit's
# cases (the front desk's direct answer, the back office's dispatch, the callback survey).
CENTER_FIGURES = frozenset({"direct_answer", "dispatched_same_day", "back_office_on_time", "callback_reach"})
ASSESSED_FIGURES = tuple(sorted({*work_order_definitions(), *case_definitions(Thresholds())} - CENTER_FIGURES))

_CONFIG = ConfigDict(extra="forbid")
Weight = Annotated[float, Field(ge=0, le=1000, allow_inf_nan=False)]
Deduction = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Score = Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=40)]


class AssessmentError(ValueError):
    """The assessment file is unreadable or has a bad value; the message names the key."""


@dataclass(frozen=True, config=_CONFIG)
class FigureWeight:
    """One figure of the score: its weight, which way is better, and its name shown to people."""

    weight: Weight
    better: Literal["higher", "lower"] = "higher"
    label: Name | None = None


@dataclass(frozen=True, config=_CONFIG)
class Band:
    band: Name
    label: Name
    min_score: Score


@dataclass(frozen=True, config=_CONFIG)
class InquiryDeductions:
    """Points taken off for each accountability decision (R6.1, 过错问责) made in the period."""

    none: Deduction = 0
    criticism: Deduction = 1
    notice: Deduction = 2
    referral: Deduction = 5

    def total(self, by_decision: Mapping[str, int]) -> float:
        return sum(getattr(self, AccountabilityDecision(k).value) * n for k, n in by_decision.items())


def _default_figures() -> dict[str, FigureWeight]:
    return {
        "response": FigureWeight(20, "higher", "响应率"),
        "on_time": FigureWeight(35, "higher", "按时办结率"),
        "satisfaction": FigureWeight(35, "higher", "满意率"),
        "returned": FigureWeight(5, "lower", "退单率"),
        "urged_overdue": FigureWeight(5, "lower", "督办率"),
    }


def _default_bands() -> tuple[Band, ...]:
    return (Band("A", "好", 90), Band("B", "较好", 80), Band("C", "一般", 60), Band("D", "差", 0))


@dataclass(frozen=True, config=_CONFIG)
class AssessmentConfig:
    figures: dict[str, FigureWeight] = dataclasses.field(default_factory=_default_figures)
    bands: tuple[Band, ...] = dataclasses.field(default_factory=_default_bands)
    inquiries: InquiryDeductions = dataclasses.field(default_factory=InquiryDeductions)

    def __post_init__(self) -> None:
        for name in self.figures:
            if name not in ASSESSED_FIGURES:
                raise ValueError(f"figures.{name}: unknown figure (known: {', '.join(ASSESSED_FIGURES)})")
        if not any(f.weight > 0 for f in self.figures.values()):
            raise ValueError("figures: give at least one figure a weight above 0")
        if not self.bands:
            raise ValueError("bands: give at least one band")
        seen: set[str] = set()
        for i, band in enumerate(self.bands):
            if band.band in seen:
                raise ValueError(f"bands.{i}.band: {band.band!r} named twice")
            seen.add(band.band)
            if i and band.min_score >= self.bands[i - 1].min_score:
                raise ValueError(f"bands.{i}.min_score: list the bands from the highest min_score down "
                                 f"({band.min_score:g} is not below {self.bands[i - 1].min_score:g})")
        if self.bands[-1].min_score != 0:
            raise ValueError(f"bands.{len(self.bands) - 1}.min_score: the lowest band starts at 0, "
                             "so every score has a band")

    def label(self, name: str) -> str:
        return self.figures[name].label or name

    def band_of(self, score: float | None) -> Band | None:
        if score is None:
            return None
        return next(b for b in self.bands if score >= b.min_score)


# -- scoring (pure) ----------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FigureScore:
    """A figure as the score read it: rate None and points None when nothing was counted."""

    name: str
    label: str
    numerator: int
    denominator: int
    rate: float | None
    weight: float
    better: str
    points: float | None


@dataclasses.dataclass(frozen=True)
class UnitScore:
    figures: dict[str, FigureScore]
    deduction: float
    score: float | None           # rounded to 2 decimals; None: nothing to count
    band: Band | None


def score_unit(config: AssessmentConfig, rates: Mapping[str, Rate],
               by_decision: Mapping[str, int] | None = None) -> UnitScore:
    """The score of one unit from its rates (one per configured figure) and the accountability
    decisions made about it in the period (see the module's docstring)."""
    counted = {n: f for n, f in config.figures.items() if rates[n].denominator}
    total_weight = sum(f.weight for f in counted.values())
    figures: dict[str, FigureScore] = {}
    for name, fw in config.figures.items():
        r = rates[name]
        points = None
        if name in counted:
            good = r.rate if fw.better == "higher" else 1 - r.rate
            # all the figures counted may weigh 0: then none earns anything
            points = 100 * fw.weight * good / total_weight if total_weight else 0.0
        figures[name] = FigureScore(name, config.label(name), r.numerator, r.denominator, r.rate, fw.weight,
                                    fw.better, points)
    deduction = config.inquiries.total(by_decision or {})
    score = None
    if counted:
        score = round(max(0.0, sum(f.points for f in figures.values() if f.points is not None) - deduction), 2)
    return UnitScore(figures, deduction, score, config.band_of(score))


def rank(scores: Mapping[str, float | None]) -> dict[str, int | None]:
    """Rank by score, highest first; equal scores share a rank (1, 2, 2, 4); no score, no rank."""
    ordered = sorted((s for s in scores.values() if s is not None), reverse=True)
    first = {}
    for i, s in enumerate(ordered, 1):
        first.setdefault(s, i)
    return {code: None if s is None else first[s] for code, s in scores.items()}


# -- loading -------------------------------------------------------------------------------------

_ADAPTER = TypeAdapter(AssessmentConfig)


def assessment_from_mapping(data: Any, source: str = ASSESSMENT_FILE) -> AssessmentConfig:
    """Validate a parsed assessment mapping; errors name the dotted key and the file."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise AssessmentError(f"{source}: expected a mapping of assessment keys, got {type(data).__name__}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "unexpected_keyword_argument":
                msg = "unknown key (misspelt?)"
            problems.append(f"{key}: {msg}" if key else msg)  # a whole-file check names its key itself
        raise AssessmentError(f"{source}: " + "; ".join(problems)) from None


def load_assessment(config_dir: str | Path) -> AssessmentConfig:
    """Load `<config_dir>/assessment.yaml`; a missing file gives the defaults above."""
    path = Path(config_dir) / ASSESSMENT_FILE
    if not path.exists():
        return AssessmentConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, ValueError) as exc:
        raise AssessmentError(f"{path}: not valid YAML: {exc}") from exc
    return assessment_from_mapping(data, source=str(path))
