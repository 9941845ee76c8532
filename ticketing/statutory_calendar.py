"""The public holidays the law itself fixes, for any year (T1 where no arrangement is published).

《全国年节及纪念日放假办法》 as amended in 2024 gives every citizen these days off: 元旦 1 day
(01-01), 春节 4 days (New Year's Eve and the first three days of the first lunar month), 清明 1 (the
day of the 清明 solar term), 劳动节 2 (05-01, 05-02), 端午 1 (5th of the 5th lunar month), 中秋 1
(15th of the 8th lunar month), 国庆 3 (10-01..10-03). Lunar dates and the solar term come from
`lunar_python`, a maintained lunar-calendar library.

What the law does not fix is left out on purpose: where the State Council's yearly notice moves
days off together and sets make-up working weekends (调休), and the weekday it gives for a holiday
that falls on a weekend. Deadlines computed from this calendar are therefore provisional: the
workflow marks them and corrects them once the year's arrangement is entered. Leaving those days out
counts fewer days off than the notice will, so a provisional deadline tends to fall early, not late:
a unit is not told it has more time than it will have.

Pure Python: no web, telephony or database imports.
"""
from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

from lunar_python import Lunar, Solar

__all__ = ["FIRST_YEAR", "LAST_YEAR", "statutory_holidays"]

# lunar_python's tables cover these years safely (its own range is wider).
FIRST_YEAR = 1901
LAST_YEAR = 2099


def _solar(lunar: Lunar) -> date:
    s = lunar.getSolar()
    return date(s.getYear(), s.getMonth(), s.getDay())


@lru_cache(maxsize=64)
def statutory_holidays(year: int) -> frozenset[date]:
    """Every day off the law fixes in `year` (weekends not included)."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"the statutory calendar covers {FIRST_YEAR}-{LAST_YEAR}, not {year}")
    days: set[date] = {date(year, 1, 1), date(year, 5, 1), date(year, 5, 2),
                       date(year, 10, 1), date(year, 10, 2), date(year, 10, 3)}
    new_year = _solar(Lunar.fromYmd(year, 1, 1))  # 春节 always falls in January or February
    days.update(new_year + timedelta(days=k) for k in (-1, 0, 1, 2))
    qingming = Solar.fromYmd(year, 4, 15).getLunar().getJieQiTable()["清明"]
    days.add(date(qingming.getYear(), qingming.getMonth(), qingming.getDay()))
    days.add(_solar(Lunar.fromYmd(year, 5, 5)))
    days.add(_solar(Lunar.fromYmd(year, 8, 15)))
    return frozenset(days)
