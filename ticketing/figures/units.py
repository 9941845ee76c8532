"""Rates per member unit: every named rate of ticketing/figures for a set of units at once, the
one place that reads figures unit by unit (the assessment, the statistics page and the monthly
report all ask here). `Figures.rate_by_unit` answers it in one grouped query where a reader has
it; otherwise one `rate` per unit."""
from __future__ import annotations

from sqlalchemy.orm import Session

from ticketing.figures.base import Figures, Period, Rate, Thresholds
from ticketing.figures.cases import CaseFigures
from ticketing.figures.work_orders import WorkOrderFigures

__all__ = ["figure_readers", "unit_rates"]


def figure_readers(session: Session, thresholds: Thresholds) -> dict[str, Figures]:
    """Figure name -> the reader that defines it."""
    readers: dict[str, Figures] = {}
    for reader in (WorkOrderFigures(session, thresholds), CaseFigures(session, thresholds)):
        readers.update(dict.fromkeys(reader.definitions, reader))
    return readers


def unit_rates(session: Session, names, period: Period, codes: list[str],
               thresholds: Thresholds | None = None) -> dict[str, dict[str, Rate]]:
    """unit code -> figure name -> Rate: `Figures.rate_by_unit` where the reader has it, else one
    `rate` per unit."""
    readers = figure_readers(session, thresholds or Thresholds())
    out: dict[str, dict[str, Rate]] = {code: {} for code in codes}
    for name in names:
        reader = readers[name]
        by_unit = getattr(reader, "rate_by_unit", None)
        if by_unit is not None and len(codes) > 1:
            every = by_unit(name, period)
            for code in codes:
                out[code][name] = every.get(code, Rate(0, 0))
        else:
            for code in codes:
                out[code][name] = reader.rate(name, period, code)
    return out
