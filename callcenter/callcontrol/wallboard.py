"""The live wallboard (issue 12 item 4): what the back office and supervision watch on one screen.

It keeps no second picture of the calls: the queue and the operators are the link's own live state
(callcontrol.state, kept from AMI events), read again after every AMI event that can change them and
pushed to the board's viewers at once (one coalesced update per burst of events, only when the
picture changed). The board adds only what that state does not keep: since when each operator has
been in their present state (free / busy / paused / unavailable).

The day's figures are never counted here: 接通率, the service level (answered within
``Thresholds.answer_within_s``) and the abandoned calls are ``ticketing.figures.CallFigures`` over
today's local day, self-served calls its ``menu``; the cases overdue now by unit are
``ticketing.figures.OverdueFigures`` (R8.3 reports and R8.2 notifications overdue now), by unit.
Those come from the database: read again after a call-end event (once the call log has written it)
and at a modest interval while someone watches.

    board = Wallboard(link, session_factory, domain)      # CallControl.create makes one
    feed = board.subscribe()                               # events {"type": "board", "state": {...}}
    state = await board.snapshot()

Times in the state are epoch seconds (``since``); the page counts the seconds itself, so nothing is
sent just because a second passed. Callers' numbers are masked (ticketing.privacy).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.ami.protocol import Message
from callcenter.callcontrol.broker import Feed
from callcenter.callcontrol.link import CallLink
from ticketing.figures import CallFigures, Period, Rate, Thresholds
from ticketing.figures.overdue import OverdueFigures
from ticketing.models import MemberUnit

log = logging.getLogger("callcenter.callcontrol.wallboard")

TOPIC = "board"
# AMI events after which the queue or an operator may look different on the board
LIVE_EVENTS = frozenset({
    "queuecallerjoin", "queuecallerleave", "queuecallerabandon", "queuememberadded", "queuememberremoved",
    "queuememberstatus", "queuememberpause", "agentcalled", "agentconnect", "agentcomplete", "agentringnoanswer",
    "newstate", "hangup", "bridgeenter", "bridgeleave", "hold", "unhold",
})
# ... and after which the day's figures may have changed (what the call log records of a call's end)
FIGURE_EVENTS = frozenset({"queuecallerjoin", "queuecallerabandon", "agentconnect", "agentcomplete"})
MENU_END_EVENT = "CallcenterHangup"  # UserEvent of the dialplan's h extension: the menu wrote its outcome
COALESCE_SECONDS = 0.05  # one update for a burst of events (a queue call is 5-10 AMI events)


def rate_out(value: Rate) -> dict[str, Any]:
    return {"numerator": value.numerator, "denominator": value.denominator, "rate": value.rate}


def today(clock_now: datetime, thresholds: Thresholds) -> Period:
    """The local calendar day (thresholds.timezone) of ``clock_now``, midnight to midnight."""
    local = clock_now.astimezone(thresholds.tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    return Period(start, start + timedelta(days=1))  # no daylight saving in China since 1991


def day_figures(session: Session, period: Period, thresholds: Thresholds) -> dict[str, Any]:
    """Today's call figures as the board shows them: CallFigures' own, nothing counted here."""
    figures = CallFigures(session, thresholds)
    queue = figures.queue(period)
    menu = figures.menu(period)
    return {
        "date": period.since.date().isoformat(),
        "offered": queue.offered, "answered": queue.answered,
        "answer_rate": rate_out(queue.answer_rate),              # 接通率
        "answered_within": rate_out(queue.answered_within),      # 15 s service level
        "answer_within_s": thresholds.answer_within_s,
        "abandoned": queue.abandoned,
        "inbound": menu.inbound, "self_served": menu.self_served.numerator,
    }


def overdue_by_unit(session: Session, now: datetime) -> dict[str, Any]:
    """Work orders overdue now, per member unit and in all: report back past R8.3, citizen not told
    within R8.2 (ticketing.figures.OverdueFigures: an R7.3c work order counts in the totals only)."""
    figures = OverdueFigures(session)
    names = dict(session.execute(select(MemberUnit.code, MemberUnit.name)).all())
    rows = [{"code": code, "name": names.get(code, code), "report": c.report, "notify": c.notify}
            for code, c in figures.by_unit(now).items()]
    rows.sort(key=lambda u: (-u["report"] - u["notify"], u["code"]))
    total = figures.count(now)
    return {"units": rows, "report": total.report, "notify": total.notify}


class Wallboard:
    """The board of one call link (see module doc)."""

    def __init__(self, link: CallLink, session_factory: sessionmaker[Session] | None,
                 clock: Callable[[], datetime], thresholds: Thresholds, *, refresh_seconds: float = 60.0) -> None:
        self.link = link
        self.session_factory = session_factory
        self.clock = clock
        self.thresholds = thresholds
        self.refresh_seconds = refresh_seconds
        self.loop: asyncio.AbstractEventLoop | None = None
        self._since: dict[str, tuple[str, float]] = {}   # interface -> (state, since when)
        self._live: dict[str, Any] | None = None          # last published live part
        self._figures: dict[str, Any] | None = None
        self._figures_at = 0.0
        self._figures_stale = True
        self._figures_task: asyncio.Task[None] | None = None
        self._figures_again = False
        self._flush_pending = False
        self._viewers: weakref.WeakSet[Feed] = weakref.WeakSet()
        self._ticker: asyncio.Task[None] | None = None
        self.published = 0
        link.on_event(self.on_event)
        link.on_resync(self._after_resync)

    @classmethod
    def for_domain(cls, link: CallLink, session_factory, domain, **kwargs: Any) -> Wallboard:
        return cls(link, session_factory, domain.clock, Thresholds.for_policy(domain.policy), **kwargs)

    # -- viewers ----------------------------------------------------------------------------------
    def subscribe(self) -> Feed:
        """A feed of board updates (and the link's up/down events); close it when done."""
        self._remember_loop()
        feed = self.link.subscribe([TOPIC, "link"], maxsize=50)
        self._viewers.add(feed)
        # what was last sent may predate this viewer's first state: the next change goes out whatever it is
        self._live = None
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.get_running_loop().create_task(self._tick())
        return feed

    @property
    def viewers(self) -> int:
        return sum(1 for f in self._viewers if not f.closed)

    async def snapshot(self) -> dict[str, Any]:
        """The whole board now (figures read again if stale or older than refresh_seconds)."""
        self._remember_loop()
        if self._figures is None or self._figures_stale or time.time() - self._figures_at >= self.refresh_seconds:
            await self.refresh_figures()
        return self._state(self._live_part())

    async def stop(self) -> None:
        for task in (self._ticker, self._figures_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- AMI events -------------------------------------------------------------------------------
    def on_event(self, msg: Message) -> None:
        """Called by the link for every AMI event, after its state was updated."""
        name = (msg.name or "").lower()
        if name in LIVE_EVENTS or name == "fullybooted":
            self._remember_loop()
            self._track_states(time.time())
            self._schedule_flush()
        if name in FIGURE_EVENTS or (name == "userevent" and msg.get_first("UserEvent") == MENU_END_EVENT):
            self._figures_stale = True
            if self.viewers:
                self._start_figures()

    def live_changed(self) -> None:
        """A change of the live state that no AMI event announced (an operator's wrap-up time)."""
        self._remember_loop()
        self._schedule_flush()

    def _after_resync(self, link: CallLink, first: bool) -> None:
        # the state was read again from Asterisk: members may have come or gone meanwhile
        self._remember_loop()
        self._track_states(time.time())
        self._schedule_flush()

    def _remember_loop(self) -> None:
        if self.loop is None:
            with contextlib.suppress(RuntimeError):
                self.loop = asyncio.get_running_loop()

    def _schedule_flush(self) -> None:
        if self._flush_pending or self.loop is None or not self.viewers:
            return
        self._flush_pending = True
        self.loop.call_later(COALESCE_SECONDS, self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        live = self._live_part()
        if live != self._live:
            self._publish(live)

    def _publish(self, live: dict[str, Any]) -> None:
        self._live = live
        self.published += 1
        self.link.publish(TOPIC, {"type": "board", "state": self._state(live)})

    # -- the live part: the link's queue state, plus since when -------------------------------------
    def _track_states(self, now: float) -> None:
        members = self.link.queue.members
        for interface in [i for i in self._since if i not in members]:
            del self._since[interface]
        for interface, member in members.items():
            state = member.availability
            known = self._since.get(interface)
            if known is None or known[0] != state:
                self._since[interface] = (state, self._first_since(member.extension, state, now)
                                          if known is None else now)

    def _first_since(self, extension: str | None, state: str, now: float) -> float:
        """An operator first seen (start, resync): on a call since it was answered; otherwise from now."""
        if state == "busy" and extension:
            legs = [c.answered_at or c.created_at for c in self.link.operator_channels(extension)]
            if legs:
                return min(legs).timestamp()
        return now

    def _live_part(self) -> dict[str, Any]:
        self._track_states(time.time())
        snap = self.link.queue_snapshot()
        joined = {uid: c.joined_at for uid, c in self.link.queue.callers.items()}
        callers = [{"position": c["position"], "caller_number": c["caller_number"],  # masked by the snapshot
                    "since": round(joined.get(c["uniqueid"], 0.0), 3)} for c in snap["callers"]]
        operators = []
        for member in snap["members"]:
            _, since = self._since.get(member["interface"], (member["state"], time.time()))
            operators.append({"extension": member["extension"], "name": member["name"], "state": member["state"],
                              "paused_reason": member["paused_reason"], "since": round(since, 3),
                              "wrap_up_until": member["wrap_up_until"],
                              "calls_taken": member["calls_taken"]})
        return {
            "queue": {"callers_waiting": snap["callers_waiting"],
                      "longest_wait_since": min((c["since"] for c in callers), default=None),
                      "callers": callers},
            "operators": {"counts": snap["operators"], "list": operators},
            "link": {"connected": self.link.connected},
        }

    def _state(self, live: dict[str, Any]) -> dict[str, Any]:
        return {"at": round(time.time(), 3), **live, "today": (self._figures or {}).get("today"),
                "overdue": (self._figures or {}).get("overdue"),
                "figures_at": round(self._figures_at, 3) if self._figures_at else None}

    # -- the figures from the database ------------------------------------------------------------
    def _start_figures(self) -> None:
        if self._figures_task is not None and not self._figures_task.done():
            self._figures_again = True  # the running read may have missed this event's rows
            return
        self._figures_task = asyncio.get_running_loop().create_task(self._figures_loop())

    async def _figures_loop(self) -> None:
        while True:
            self._figures_again = False
            before = self._figures
            try:
                await self.refresh_figures()
            except Exception:
                log.exception("wallboard: reading the day's figures failed")
                return
            live = self._live_part()
            if self._figures != before or live != self._live:
                self._publish(live)
            if not self._figures_again:
                return

    async def refresh_figures(self) -> None:
        """Read the day's figures and the overdue work again, after the call log wrote what it has."""
        if self.session_factory is None:
            self._figures, self._figures_at, self._figures_stale = None, time.time(), False
            return
        self._figures_stale = False
        await self.link.flush_log(timeout=5.0)
        self._figures = await asyncio.to_thread(self._read_figures, self.clock())
        self._figures_at = time.time()

    def _read_figures(self, now: datetime) -> dict[str, Any]:
        assert self.session_factory is not None
        with self.session_factory() as session:
            return {"today": day_figures(session, today(now, self.thresholds), self.thresholds),
                    "overdue": overdue_by_unit(session, now)}

    async def _tick(self) -> None:
        """While someone watches: the figures again every refresh_seconds (work falls overdue by the clock)."""
        while self.viewers:
            await asyncio.sleep(self.refresh_seconds)
            if self.viewers:
                self._start_figures()


__all__ = ["FIGURE_EVENTS", "LIVE_EVENTS", "TOPIC", "Wallboard", "day_figures", "overdue_by_unit", "today"]
