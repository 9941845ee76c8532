"""The monthly report's content (issue 12 items 7, 8), pure: one `View` per sheet, every number
read from the figure functions of this package (never counted a second way). The XLSX, the CSV
and `callcenter stats report` print the same `Report`.

With `unit=CODE` the report holds that member unit's own figures only: no call figures (calls
belong to the center), no city totals, no other unit. R7.3c cases appear only as the totals'
`confidential` count (the figure functions leave them out of every breakdown and unit figure).

A cell is an int, a float (seconds), a str, None (nothing counted) or a `Rate` (the writers show
it as a percentage; its numerator and denominator stand in columns of their own where they matter).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing.figures.base import Period, Rate, Thresholds
from ticketing.figures.calls import CallFigures, MenuFigures, QueueFigures
from ticketing.figures.cases import CaseFigures, ClosingFigures, IntakeFigures
from ticketing.figures.concurrent import side_by_side
from ticketing.figures.units import unit_rates
from ticketing.figures.work_orders import UnitWorkFigures, WorkOrderFigures
from ticketing.models import MemberUnit, User

__all__ = ["Report", "View", "monthly_report"]

FIGURE_COLUMNS = ["指标", "数值", "分子", "分母", "比率"]


@dataclass(frozen=True)
class View:
    """One table of the report (one sheet of the XLSX): `name` is its sheet name (ASCII, short),
    `title` what a reader sees, `rows` cells under `columns`."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    period: Period
    unit: str | None
    views: list[View]

    def view(self, name: str) -> View:
        return next(v for v in self.views if v.name == name)


def _figure(label: str, value: float | Rate | None) -> list[Any]:
    """A row of a figure table: a count or a time in 数值; a rate as 分子, 分母, 比率."""
    if isinstance(value, Rate):
        return [label, None, value.numerator, value.denominator, value]
    return [label, value, None, None, None]


# ---- calls (the center's, so the city report only) --------------------------------------------

def _calls_view(calls: CallFigures, period: Period, m: MenuFigures) -> View:
    q = calls.queue(period)
    t = calls.thresholds
    return View("calls", "话务", FIGURE_COLUMNS, [
        _figure("进入人工队列 (offered)", q.offered),
        _figure("人工接通 (answered)", q.answered),
        _figure("接通率", q.answer_rate),
        _figure(f"{t.answer_within_s:g}秒内接通率", q.answered_within),
        _figure("队列中放弃", q.abandoned),
        _figure("放弃率", q.abandon_rate),
        _figure(f"{t.short_abandon_s:g}秒内放弃", q.abandoned_short),
        _figure("平均等待 (秒)", q.wait.average),
        _figure("等待P90 (秒)", q.wait.p90),
        _figure("放弃前平均等待 (秒)", q.abandoned_wait.average),
        _figure("平均通话 (秒)", q.talk.average),
        _figure("通话P90 (秒)", q.talk.p90),
        _figure("热线呼入 (语音导航)", m.inbound),
        _figure("自助服务", m.self_served),
        _figure("非工作时间留言", m.after_hours_messages),
    ])


def _queue_columns(t: Thresholds) -> list[str]:
    return ["接通", "接通率", f"{t.answer_within_s:g}秒内接通率", "放弃", "平均等待 (秒)", "等待P90 (秒)", "平均通话 (秒)"]


def _queue_cells(q: QueueFigures) -> list[Any]:
    return [q.answered, q.answer_rate, q.answered_within, q.abandoned, q.wait.average, q.wait.p90, q.talk.average]


def _hours_view(calls: CallFigures, period: Period) -> View:
    return View("calls_by_hour", "分时话务", ["小时", "进入队列", *_queue_columns(calls.thresholds)],
                [[f"{hour:02d}:00", q.offered, *_queue_cells(q)] for hour, q in calls.by_hour(period).items()])


def _operators_view(session: Session, calls: CallFigures, period: Period) -> View:
    per = calls.by_operator(period)
    ids = [int(key) for key in per if key.isdigit()]
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
    rows = []
    for key, q in per.items():
        name = names.get(int(key), key) if key.isdigit() else f"分机 {key.removeprefix('ext:')}"
        rows.append([name, *_queue_cells(q), q.talk.p90])
    return View("operators", "坐席", ["坐席", *_queue_columns(calls.thresholds), "通话P90 (秒)"], rows)


# ---- cases -------------------------------------------------------------------------------------

def _cases_view(cases: CaseFigures, period: Period, unit: str | None, intake: IntakeFigures,
                closing: ClosingFigures) -> View:
    rows = [
        _figure("收到诉求", intake.received),
        _figure("受理", intake.accepted),
        _figure("不予受理 (R3.1)", intake.rejected),
        *(_figure(f"不予受理: {reason or '未注明'}", n) for reason, n in intake.rejected_by_reason.items()),
    ]
    if unit is None:  # R7.3c: in the totals, as a count only
        rows.append(_figure("其中纪检监察件 (R7.3c, 仅计总数)", intake.confidential))
    rows += [
        _figure("直接答复 (R7.2)", intake.direct_answer),
        _figure("当日派单 (R7.3)", cases.rate("dispatched_same_day", period, unit)),
        _figure("后台3日内派单", cases.rate("back_office_on_time", period, unit)),
        _figure("办结", closing.closed),
        _figure("暂结 (R7.5)", closing.closed_provisionally),
        _figure("满意率", closing.satisfaction),
        *(_figure(f"评价: {rating}", n) for rating, n in closing.ratings.items()),
        _figure("一次办结率", closing.first_time_closed),
        _figure(f"重复来电 ({cases.thresholds.repeat_within_days}日内)", cases.rate("repeat_caller", period, unit)),
    ]
    return View("cases", "诉求受理与办结", FIGURE_COLUMNS, rows)


def _breakdown_view(intake: IntakeFigures, categories: Mapping[str, str], units: Mapping[str, str]) -> View:
    rows = []
    for dimension, counts, names in (("类型", intake.by_kind, {}), ("分类", intake.by_category, categories),
                                     ("渠道", intake.by_channel, {}), ("承办单位", intake.by_unit, units)):
        rows += [[dimension, key, names.get(key, ""), n] for key, n in counts.items()]
    return View("case_breakdown", "受理诉求分类 (不含纪检监察件)", ["维度", "代码", "名称", "件数"], rows)


# ---- unit work ---------------------------------------------------------------------------------

UNIT_COLUMNS = ["单位", "名称", "派发工单", "应告知", "按时告知", "响应率", "应报结", "按时报结", "按时办结率",
                "已评价", "满意", "满意率", "退回", "延期", "被催办工单", "催办次数", "延期批准", "延期驳回"]


def _unit_row(code: str, name: str, w: UnitWorkFigures, satisfaction: Rate) -> list[Any]:
    return [code, name, w.dispatched, w.response.denominator, w.response.numerator, w.response,
            w.on_time.denominator, w.on_time.numerator, w.on_time, satisfaction.denominator, satisfaction.numerator,
            satisfaction, w.returned.numerator, w.extended.numerator, w.urged.numerator, w.urges,
            w.extensions_approved, w.extensions_denied]


def _units_view(orders: WorkOrderFigures, cases: CaseFigures, period: Period, unit: str | None,
                names: Mapping[str, str]) -> View:
    per = {unit: orders.summary(period, unit)} if unit is not None else orders.by_unit(period)
    satisfaction = {code: rates["satisfaction"] for code, rates in
                    unit_rates(cases.session, ["satisfaction"], period, list(per), cases.thresholds).items()}
    rows = []
    if unit is None:
        rows.append(_unit_row("", "合计 (含纪检监察件)", orders.summary(period),
                              cases.rate("satisfaction", period)))
    rows += [_unit_row(code, names.get(code, ""), w, satisfaction[code]) for code, w in per.items()]
    return View("units", "承办单位办理 (响应率、按时办结率、满意率)", UNIT_COLUMNS, rows)


def _callbacks_view(cases: CaseFigures, period: Period, unit: str | None, closing: ClosingFigures) -> View:
    return View("callbacks", "回访", FIGURE_COLUMNS, [
        _figure("回访触达率 (R7.4)", cases.rate("callback_reach", period, unit)),
        _figure("已评价办结件", closing.satisfaction.denominator),
        _figure("满意率", closing.satisfaction),
    ])


def _assessment_view(session: Session, config, period: Period, unit: str | None, thresholds: Thresholds) -> View:
    """The unit assessment (考核, ticketing.assessment_report): score, band, rank (the city's report
    only) and each figure behind the score; a unit's own report has its own row, unranked."""
    from ticketing.assessment_report import (
        assess,  # the assessment reads these figures: no cycle at import
    )

    result = assess(session, config, period, unit=unit, ranked=unit is None, thresholds=thresholds)
    figures = list(config.figures)
    labels = [next((u.figures[f].label for u in result.units if f in u.figures), f) for f in figures]
    rows = [[u.code, u.name, u.score, u.band.band if u.band else None, u.rank,
             *[Rate(u.figures[f].numerator, u.figures[f].denominator) if f in u.figures else None for f in figures],
             u.deduction] for u in result.units]
    return View("assessment", "承办单位考核 (得分、等次、排名)", ["单位代码", "单位", "得分", "等次", "排名", *labels, "问责扣分"],
                rows)


def monthly_report(session: Session, period: Period, unit: str | None = None, thresholds: Thresholds | None = None,
                   *, names: Mapping[str, str] | None = None, assessment=None) -> Report:
    """The report of a period (a month: `Period.month`), of the whole hotline or of one member
    unit (its code). `names`: display names of category codes (config/categories.yaml);
    `assessment`: the AssessmentConfig (config/assessment.yaml) for the assessment's sheet."""
    cases = CaseFigures(session, thresholds)
    orders = WorkOrderFigures(session, cases.thresholds)
    t = cases.thresholds
    # the longest reads side by side on PostgreSQL (ticketing.figures.concurrent), the rest after
    jobs = {"intake": lambda s: CaseFigures(s, t).intake(period, unit),
            "closing": lambda s: CaseFigures(s, t).closing(period, unit)}
    if unit is None:
        calls = CallFigures(session, t)
        jobs.update(cases.pass_jobs(period), queue=calls.tally_job(period),
                    menu=lambda s: CallFigures(s, t).menu(period))
    first = side_by_side(session, jobs)
    views = []
    if unit is None:
        views += [_calls_view(calls, period, first["menu"]), _hours_view(calls, period),
                  _operators_view(session, calls, period)]
    intake, closing = first["intake"], first["closing"]
    unit_names = dict(session.execute(select(MemberUnit.code, MemberUnit.name)).all())
    views += [_cases_view(cases, period, unit, intake, closing),
              _breakdown_view(intake, names or {}, unit_names),
              _units_view(orders, cases, period, unit, unit_names), _callbacks_view(cases, period, unit, closing)]
    if assessment is not None:
        views.append(_assessment_view(session, assessment, period, unit, cases.thresholds))
    return Report(period=period, unit=unit, views=views)
