"""The hotline's figures, defined once (issue 12 item 1): each a function or a named rate whose
formula is in its docstring, read with indexed queries over the store for a period [since, until)
and, for case and work-order figures, one member unit. Every rate comes with its numerator and
denominator, and `Figures.rows` lists the rows behind either (the drill-down).

    from ticketing.figures import CallFigures, CaseFigures, Period, WorkOrderFigures
    period = Period.month(2026, 4)
    CaseFigures(session).rate("satisfaction", period, unit="water_supply")

Pure: no web, telephony or scheduler imports.
"""
from ticketing.figures.base import Figures, Period, Rate, RateDefinition, Thresholds
from ticketing.figures.calls import QUEUE_PARTS, CallFigures, MenuFigures, QueueCall, QueueFigures, TimeStats
from ticketing.figures.cases import CaseFigures, ClosingFigures, IntakeFigures, case_definitions
from ticketing.figures.overdue import OVERDUE_DEADLINES, OverdueCount, OverdueFigures
from ticketing.figures.work_orders import UnitWorkFigures, WorkOrderFigures, work_order_definitions

__all__ = [
    "OVERDUE_DEADLINES", "QUEUE_PARTS", "OverdueCount", "OverdueFigures",
    "CallFigures", "CaseFigures", "ClosingFigures", "Figures", "IntakeFigures", "MenuFigures", "Period",
    "QueueCall", "QueueFigures", "Rate", "RateDefinition", "Thresholds", "TimeStats", "UnitWorkFigures",
    "WorkOrderFigures", "case_definitions", "work_order_definitions",
]
