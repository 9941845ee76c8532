"""A generated city for benchmarks/figures_month.py (and, tiny, for tests): cases, work orders,
extensions, urges, callback attempts, calls and their AMI queue events, as the workflow and the
call log leave them, bulk-loaded (COPY on PostgreSQL, executemany on SQLite).

Moments are epoch seconds while generating and stored text (UTC, as SQLAlchemy stores them on
SQLite) when written: building millions of datetime objects would cost more than the load.
"""
from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, insert, select, text

from ticketing.models import (
    Call,
    CallbackAttempt,
    CallEvent,
    Case,
    ExtensionRequest,
    MemberUnit,
    UnitNotification,
    User,
    WorkOrder,
)
from ticketing.queue_entries import fill_all

SH = ZoneInfo("Asia/Shanghai")
GENERATOR_VERSION = 2  # bump when the generated city changes (part of the cache key)
DAY = 86400.0
HOUR = 3600.0


@dataclass(frozen=True)
class Shape:
    """What to generate: cases and call records spread over `days` from `start` (local midnight)."""

    cases: int
    calls: int
    start: datetime = datetime(2024, 12, 1, tzinfo=SH)
    days: int = 730
    seed: int = 12345
    operators: int = 60

    def key(self) -> str:
        raw = json.dumps({**asdict(self), "start": self.start.isoformat(), "v": GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha1(raw.encode()).hexdigest()[:10]


_DAYS: dict[int, str] = {}


def ts(moment: float) -> str:
    """Epoch seconds as stored: 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC."""
    micros = int(moment * 1_000_000)
    day, rest = divmod(micros, 86_400_000_000)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = datetime.fromtimestamp(day * 86400, UTC).strftime("%Y-%m-%d ")
    secs, us = divmod(rest, 1_000_000)
    h, r = divmod(secs, 3600)
    m, s = divmod(r, 60)
    return f"{prefix}{h:02d}:{m:02d}:{s:02d}.{us:06d}"


def _weights(d: dict) -> tuple[list, list]:
    return list(d), list(d.values())


KINDS = _weights({"consultation": 50, "complaint": 25, "suggestion": 15, "urgent_help": 10})
CHANNELS = _weights({"landline": 45, "mobile": 30, "web": 15, "sms": 5, "fax": 5})
RATINGS = _weights({"satisfied": 78, "basically_satisfied": 10, "unsatisfied": 6, None: 6})
REJECT_REASONS = ("outside_jurisdiction", "military_or_police", "legal_proceedings", "secrets_or_privacy",
                  "unlawful_or_immoral", "unit_not_joined", "cannot_be_handled")
# calls by local hour: the hotline runs 7x24, busiest in office hours
HOURS = [1, 1, 1, 1, 1, 2, 4, 8, 14, 16, 16, 14, 10, 12, 14, 14, 12, 10, 8, 6, 5, 4, 2, 1]
CUM_HOURS = [sum(HOURS[:i + 1]) for i in range(24)]

CASE_COLS = ("id", "number", "kind", "channel", "status", "category_code", "citizen_name", "citizen_phone",
             "citizen_id_number", "title", "description", "location", "accepted_at", "reject_reason", "confidential",
             "callback_required", "assessed", "callback_manual", "answered_directly", "satisfaction",
             "dispatch_due_at", "dispatched_at", "dispatch_met", "closed_at", "closed_provisionally", "updated_at",
             "version")
WO_COLS = ("id", "case_id", "unit_id", "mode", "role", "status", "round", "instructions", "dispatched_at",
           "notify_due_at", "notified_at", "notify_met", "report_due_at", "reported_at", "report_met",
           "return_due_at", "urge_count", "urged_thresholds")
COLUMNS = {
    "cases": CASE_COLS,
    "work_orders": WO_COLS,
    "extension_requests": ("id", "work_order_id", "legal_basis", "extra_working_days", "state", "requested_at",
                           "decided_at", "old_due_at", "new_due_at"),
    "unit_notifications": ("id", "unit_id", "work_order_id", "case_id", "at", "kind", "recipient_name",
                           "recipient_phone", "message", "delivered"),
    "callback_attempts": ("id", "case_id", "attempt_no", "idempotency_key", "state", "scheduled_for", "started_at",
                          "finished_at", "result"),
    "calls": ("id", "uniqueid", "linkedid", "direction", "purpose", "caller_number", "callee_number", "started_at",
              "answered_at", "ended_at", "outcome", "flow_path", "digits", "operator_id"),
    "call_events": ("id", "call_id", "at", "kind", "data", "dedup_key"),
}
TABLES = {"cases": Case, "work_orders": WorkOrder, "extension_requests": ExtensionRequest,
          "unit_notifications": UnitNotification, "callback_attempts": CallbackAttempt, "calls": Call,
          "call_events": CallEvent}


class City:
    """Rows as the workflow and the call log leave them, generated day by day."""

    def __init__(self, shape: Shape, units: dict[str, int], categories: list[str], discipline: int,
                 operators: list[tuple[int, str]], first_ids: dict[str, int]) -> None:
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.units = [uid for uid in units.values() if uid != discipline]
        self.discipline = discipline
        self.categories = categories
        self.operators = operators
        self.ids = dict(first_ids)
        self.end = (shape.start + timedelta(days=shape.days)).timestamp()
        self.phones = [f"139{n:08d}" for n in range(max(50, shape.cases // 4))]

    def next_id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def days(self) -> Iterator[tuple[float, int, int]]:
        """(local midnight as epoch seconds, cases that day, calls that day), the totals exact."""
        n = self.shape.days
        for i in range(n):
            cases = self.shape.cases * (i + 1) // n - self.shape.cases * i // n
            calls = self.shape.calls * (i + 1) // n - self.shape.calls * i // n
            midnight = datetime.combine((self.shape.start + timedelta(days=i)).date(), datetime.min.time(), SH)
            yield midnight.timestamp(), cases, calls

    def moment(self, day: float) -> float:
        hour = self.rng.choices(range(24), cum_weights=CUM_HOURS)[0]
        return day + hour * HOUR + self.rng.random() * HOUR

    # -- cases -------------------------------------------------------------------------------

    def case(self, day: float, out: dict[str, list]) -> None:
        rng = self.rng
        cid = self.next_id("cases")
        accepted = self.moment(day)
        kind = rng.choices(*KINDS)[0]
        r = rng.random()
        phone = "" if rng.random() < 0.1 else rng.choice(self.phones)
        row = {"id": cid, "number": f"{ts(accepted)[:10].replace('-', '')}-{cid:07d}", "kind": kind,
                   "channel": rng.choices(*CHANNELS)[0], "status": "closed", "category_code": rng.choice(self.categories),
                   "citizen_name": "", "citizen_phone": phone, "citizen_id_number": "", "title": "某小区反映问题",
                   "description": "描述" * 10, "location": "", "accepted_at": ts(accepted), "reject_reason": None,
                   "confidential": False, "callback_required": True, "assessed": True, "callback_manual": False,
                   "answered_directly": False, "satisfaction": None, "dispatch_due_at": None, "dispatched_at": None,
                   "dispatch_met": None, "closed_at": None, "closed_provisionally": False, "updated_at": ts(accepted), "version": 1}
        if r < 0.04:  # R3.1 not accepted
            row.update(status="rejected", reject_reason=rng.choice(REJECT_REASONS), assessed=False,
                       closed_at=ts(accepted + 600))
        elif r < 0.20 and kind == "consultation" or r < 0.05:  # R7.2 answered in the call
            row.update(answered_directly=True, closed_at=ts(accepted + 900), satisfaction=rng.choices(*RATINGS)[0])
        else:
            self._dispatch(row, accepted, confidential=r < 0.205, out=out)
        out["cases"].append(tuple(row[c] for c in CASE_COLS))

    def _dispatch(self, case: dict, accepted: float, confidential: bool, out: dict[str, list]) -> None:
        rng = self.rng
        if confidential:  # R7.3c: to the discipline commission, never assessed, no callback
            case.update(confidential=True, assessed=False, callback_required=False)
            units = [self.discipline]
        else:
            units = rng.sample(self.units, rng.choices((1, 2, 3), weights=(85, 12, 3))[0])
        if rng.random() < 0.2:  # the back office dispatches (R7.3, 3 days)
            due = accepted + 3 * DAY
            dispatched = accepted + rng.expovariate(1 / 30) * HOUR
            if dispatched > self.end:
                case.update(status="pending_back_office", dispatch_due_at=ts(due))
                return
            case.update(dispatch_due_at=ts(due), dispatch_met=dispatched <= due)
        else:
            dispatched = accepted + 60 * (rng.randint(5, 240) if rng.random() < 0.85 else rng.randint(600, 3000))
        reported_all, last_report = True, dispatched
        for unit in units:
            status, reported = self._order(case["id"], unit, dispatched, case["kind"], 1, out)
            if status == "returned":  # R8.6: back to the center, dispatched again
                again = dispatched + rng.randint(2, 4) * DAY
                status, reported = self._order(case["id"], unit if confidential else rng.choice(self.units),
                                               again, case["kind"], 2, out)
            reported_all &= reported is not None
            last_report = max(last_report, reported or last_report)
        case["dispatched_at"] = ts(dispatched)
        if not reported_all:
            case["status"] = "dispatched"
            return
        closed = last_report + rng.uniform(0.5, 3) * DAY
        if closed > self.end:
            case["status"] = "reported"
            return
        rating = None if confidential else rng.choices(*RATINGS)[0]
        case.update(closed_at=ts(closed), satisfaction=rating, closed_provisionally=rating == "unsatisfied")
        if not confidential:
            self._callbacks(case["id"], last_report, rating, out)

    def _order(self, case_id: int, unit: int, dispatched: float, kind: str, round_: int,
               out: dict[str, list]) -> tuple[str, float | None]:
        wid = self.next_id("work_orders")
        notify_due = dispatched + 2 * DAY
        report_due = dispatched + (5 if kind == "consultation" else 10) * DAY
        wo = {"id": wid, "case_id": case_id, "unit_id": unit, "mode": "work_order", "role": "sole", "status": "dispatched",
                  "round": round_, "instructions": "", "dispatched_at": ts(dispatched), "notify_due_at": ts(notify_due),
                  "notified_at": None, "notify_met": None, "report_due_at": ts(report_due), "reported_at": None, "report_met": None,
                  "return_due_at": ts(dispatched + 2 * DAY), "urge_count": 0, "urged_thresholds": "[]"}
        status, reported = self._progress(wo, unit, dispatched, notify_due, report_due, round_, out)
        out["work_orders"].append(tuple(wo[c] for c in WO_COLS))
        return status, reported

    def _progress(self, wo: dict, unit: int, dispatched: float, notify_due: float, report_due: float, round_: int,
                  out: dict[str, list]) -> tuple[str, float | None]:
        rng = self.rng
        wid = wo["id"]
        if round_ == 1 and rng.random() < 0.03:
            wo["status"] = "returned"
            return "returned", None
        if rng.random() < 0.01:
            wo["status"] = "cancelled"
            return "cancelled", None
        notified = dispatched + rng.expovariate(1 / 20) * HOUR
        if notified <= self.end:
            wo.update(status="notified", notified_at=ts(notified), notify_met=notified <= notify_due)
        r = rng.random()
        if r < 0.04:  # R8.5: an extension, approved or denied
            approved = r < 0.03
            new_due = report_due + rng.randint(3, 10) * DAY if approved else None
            out["extension_requests"].append((
                self.next_id("extension_requests"), wid, "《条例》第九条", 3, "approved" if approved else "denied",
                ts(dispatched), ts(dispatched + rng.uniform(1, 4) * DAY), ts(report_due),
                ts(new_due) if new_due else None))
            if new_due:
                report_due = new_due
                wo["report_due_at"] = ts(new_due)
        span = report_due - dispatched
        reported = dispatched + span * (rng.uniform(0.2, 1.0) if rng.random() < 0.9 else rng.uniform(1.0, 1.6))
        if reported > report_due or rng.random() < 0.1:  # urged (R7.7)
            for k in range(rng.randint(1, 2)):
                at = dispatched + span * (0.8 + 0.2 * k)
                if at > self.end:
                    break
                wo["urge_count"] += 1
                out["unit_notifications"].append((self.next_id("unit_notifications"), unit, wid, wo["case_id"], ts(at),
                                                  "urge", "", "", "【12345催办】", True))
        if reported > self.end or wo["notified_at"] is None:
            return wo["status"], None
        wo.update(status="reported", reported_at=ts(reported), report_met=reported <= report_due)
        return "reported", reported

    def _callbacks(self, case_id: int, reported: float, rating: str | None, out: dict[str, list]) -> None:
        rng = self.rng
        at = reported + rng.uniform(2, 30) * HOUR
        states = ["no_answer"] * (rng.random() < 0.2) + ["busy"] * (rng.random() < 0.05)
        states.append("done" if rating else rng.choice(("not_rated", "no_answer", "failed")))
        for n, state in enumerate(states, 1):
            at += n * HOUR
            out["callback_attempts"].append((self.next_id("callback_attempts"), case_id, n, f"cb-{case_id}-{n}", state,
                                             ts(at), ts(at), ts(at + 120), rating if state == "done" else None))

    # -- calls -------------------------------------------------------------------------------

    def call(self, day: float, out: dict[str, list]) -> None:
        rng = self.rng
        cid = self.next_id("calls")
        started = self.moment(day)
        uid = f"b{cid:09d}"
        direction, purpose, ended, operator_id = "inbound", "hotline", None, None
        r = rng.random()
        if r < 0.05:
            direction, purpose, ended = "outbound", "callback", started + 120
            outcome = rng.choice(("answered", "no_answer", "busy"))
        elif r < 0.20:
            outcome, ended = "self_served", started + rng.randint(30, 200)
        elif r < 0.23:
            outcome, ended = "message_left", started + rng.randint(30, 90)
        elif r < 0.25:
            outcome, ended = "abandoned", started + rng.randint(3, 40)
        else:
            outcome, ended, operator_id = self._queue(cid, started + rng.randint(10, 60), out["call_events"])
        out["calls"].append((cid, uid, uid, direction, purpose, rng.choice(self.phones), "12345", ts(started),
                             ts(started), ts(ended) if ended else None, outcome, "[]", "[]", operator_id))

    def _queue(self, cid: int, queued: float, events: list) -> tuple[str, float | None, int | None]:
        """The AMI queue events of a call that reached the operator queue."""
        rng = self.rng

        def event(kind: str, at: float, data: str) -> None:
            eid = self.next_id("call_events")
            events.append((eid, cid, ts(at), kind, data, f"b:{eid:010d}"))

        event("queued", queued, "{}")
        q = rng.random()
        if q < 0.88:
            hold = int(rng.expovariate(1 / 12)) if rng.random() < 0.85 else rng.randint(15, 300)
            operator_id, ext = rng.choice(self.operators)
            connected = queued + hold
            event("operator_connected", connected, f'{{"holdtime": {hold}, "operator": "{ext}"}}')
            ended = None
            if rng.random() < 0.98:
                talk = int(rng.lognormvariate(5, 0.7))
                event("operator_completed", connected + talk, f'{{"holdtime": {hold}, "talktime": {talk}}}')
                ended = connected + talk
            return "answered", ended, operator_id if rng.random() < 0.97 else None
        if q < 0.98:
            waited = rng.uniform(1, 120)
            event("queue_abandoned", queued + waited, "{}")
            return "abandoned", queued + waited, None
        return "queued", None, None  # the end was never seen


class Loader:
    """Bulk load without the tables' own (non-unique) indexes, made again at the end: COPY on
    PostgreSQL (text format, UTC session), one executemany per table and batch on SQLite.
    stale_triggers=False: also without the rollups' stale-day triggers (made again at the end,
    nothing marked: the benchmark computes its month's rollup days itself); with the indexes gone
    each trigger's look-up of related rows scans a whole table per row loaded."""

    def __init__(self, engine, stale_triggers: bool = True) -> None:
        self.engine = engine
        self.triggers = [] if stale_triggers else _stale_triggers(engine.dialect.name)
        self.pg = engine.dialect.name == "postgresql"
        self.raw = engine.raw_connection()
        self.indexes = [ix for model in TABLES.values() for ix in model.__table__.indexes]
        cur = self.raw.cursor()
        if self.pg:
            cur.execute("SET TIME ZONE 'UTC'")
        else:
            cur.execute("PRAGMA synchronous=OFF")
            cur.execute("PRAGMA cache_size=-200000")
        for ix in self.indexes:
            cur.execute(f"DROP INDEX IF EXISTS {ix.name}")
        for drop, _create in self.triggers:
            for statement in drop:
                cur.execute(statement)
        self.raw.commit()
        cur.close()

    def load(self, batch: dict[str, list[tuple]]) -> None:
        cur = self.raw.cursor()
        if not self.pg:
            cur.execute("BEGIN")
        for name, rows in batch.items():
            if not rows:
                continue
            cols = COLUMNS[name]
            if self.pg:
                with cur.copy(f"COPY {name} ({', '.join(cols)}) FROM STDIN") as copy:
                    copy.write("".join("\t".join(map(_copy_text, r)) + "\n" for r in rows))
            else:
                cur.executemany(f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
            rows.clear()
        if self.pg:
            self.raw.commit()
        else:
            cur.execute("COMMIT")
        cur.close()

    def close(self) -> None:
        cur = self.raw.cursor()
        if self.pg:  # later inserts take ids after the loaded ones
            for name in TABLES:
                cur.execute(f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                            f"coalesce((SELECT max(id) FROM {name}), 0) + 1, false)")
        self.raw.commit()
        cur.close()
        self.raw.close()
        for ix in self.indexes:
            ix.create(self.engine, checkfirst=True)  # idempotent: a store another run left indexed

    def restore_triggers(self) -> None:
        """The stale-day triggers dropped for the load, made again (after the derived rows)."""
        with self.engine.begin() as conn:
            for _drop, create in self.triggers:
                for statement in create:
                    conn.exec_driver_sql(statement)


def _stale_triggers(dialect: str) -> list[tuple[list[str], list[str]]]:
    """(drop, create) statements of the figure rollups' stale-day triggers (migrations 0021, 0023)."""
    from ticketing.figure_days_model import drop_trigger_ddl, trigger_ddl
    from ticketing.queue_days_model import queue_drop_trigger_ddl, queue_trigger_ddl
    return [(drop_trigger_ddl(dialect), trigger_ddl(dialect)),
            (queue_drop_trigger_ddl(dialect), queue_trigger_ddl(dialect))]


def _copy_text(v) -> str:
    if v is None:
        return "\\N"
    if v is True:
        return "t"
    if v is False:
        return "f"
    return str(v)


def build_city(engine, shape: Shape, progress: Callable[[int, int], None] | None = None,
               stale_triggers: bool = True) -> None:
    """Generate the city into a migrated store whose member units are seeded (stale_triggers:
    see Loader)."""
    from pathlib import Path

    from ticketing.domain import Domain
    with engine.connect() as conn:
        units = dict(conn.execute(select(MemberUnit.code, MemberUnit.id)).all())
        discipline = units.get("discipline_commission") or next(iter(units.values()))
        first = {name: conn.execute(select(func.coalesce(func.max(m.id), 0))).scalar() for name, m in TABLES.items()}
        first_user = conn.execute(select(func.coalesce(func.max(User.id), 0))).scalar()
    config = Path(__file__).resolve().parent.parent / "config"
    categories = [c.code for c in Domain.load(config).city.categories]
    operators = [(first_user + i, f"{7000 + i}") for i in range(1, shape.operators + 1)]
    with engine.begin() as conn:
        conn.execute(insert(User), [{"id": uid, "username": f"bench_op_{ext}", "display_name": f"话务员{ext}",
                                         "role": "front_desk", "password_hash": "!", "active": True, "operator_extension": ext,
                                         "is_unit_leader": False, "created_at": shape.start} for uid, ext in operators])
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT setval(pg_get_serial_sequence('users', 'id'), :n)"),
                         {"n": first_user + shape.operators})
    city = City(shape, units, categories, discipline, operators, first)
    loader = Loader(engine, stale_triggers)
    batch: dict[str, list[tuple]] = {name: [] for name in TABLES}
    try:
        for i, (day, n_cases, n_calls) in enumerate(city.days()):
            for _ in range(n_calls):
                city.call(day, batch)
            for _ in range(n_cases):
                city.case(day, batch)
            if len(batch["call_events"]) > 200_000 or i == shape.days - 1:
                loader.load(batch)
                if progress:
                    progress(i + 1, shape.days)
    finally:
        loader.close()
    with engine.begin() as conn:  # the queue's derived rows, as migration 0016 fills them
        fill_all(conn)
    loader.restore_triggers()
