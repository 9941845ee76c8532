"""Prometheus metrics of a running hotline (issue 19 item 2), with `prometheus-client`.

What other parts already keep is read at scrape time by one custom collector, never copied into a
gauge that could go stale: the queue from the call-control link's live state (`queue_snapshot`),
the AMI clients' and the FastAGI server's own counters (`AMIStats`, `ServerStats`), the callback
runner's outcome counts (`RunStats`), the store's due callbacks and overdue work orders, and the
readiness checks (callcenter/ops/health.py). Only what nothing else measures is observed here:
HTTP request latency (by route template, never the raw path) and database statement latency (an
engine hook, so the API, the menu and the scheduler are all timed in one place).

Labels carry no personal data: routes are templates, operators are counted by state only.
Each app has its own registry (tests build many apps in one process).
"""
from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import Engine, event, func, select

from callcenter.ops.health import is_ready, readiness, scheduler_service

log = logging.getLogger("callcenter.metrics")

# [citizen-in] of asterisk/extensions.conf: a citizen's call runs the voice menu there
MENU_CONTEXT = "citizen-in"
OPERATOR_STATES = ("free", "busy", "paused", "unavailable")
# what callback/lines.py counts per finished call (RunStats.outcomes)
CALLBACK_OUTCOMES = ("answered", "no_answer", "busy", "failed", "not_sent", "unknown")
# the kinds agi/server.py's ServerStats counts, exported at 0 before the first (stable series for rate())
AGI_ERROR_KINDS = ("header_timeout", "malformed_header", "header_too_long", "bad_encoding", "too_many_header_lines",
                   "client_vanished", "unknown_script", "handler_exception", "context_error", "safety_failed",
                   "internal")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)

_DB_TIMERS: weakref.WeakKeyDictionary[Engine, Histogram] = weakref.WeakKeyDictionary()


def db_histogram(engine: Engine) -> Histogram:
    """The statement-latency histogram of ``engine``, hooked once per engine (apps may share one).
    It times what runs through SQLAlchemy's engine (queries, the ORM); the store writer's own
    statements, prepared on the DBAPI cursor (ticketing.writer), are not in it."""
    histogram = _DB_TIMERS.get(engine)
    if histogram is not None:
        return histogram
    histogram = Histogram("callcenter_db_query_duration_seconds", "Database statement latency",
                          buckets=DB_BUCKETS, registry=None)

    def before(_conn, _cursor, _statement, _parameters, context, _executemany) -> None:
        if context is not None:
            context._callcenter_started = time.perf_counter()

    def after(_conn, _cursor, _statement, _parameters, context, _executemany) -> None:
        started = getattr(context, "_callcenter_started", None)
        if started is not None:
            histogram.observe(time.perf_counter() - started)

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
    _DB_TIMERS[engine] = histogram
    return histogram


class RequestTimer:
    """ASGI middleware: each HTTP request's latency, labelled by the route's template
    (``/api/v1/cases/{case_id}``), so case numbers or ids in paths never become labels."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.http.labels(scope["method"], route_template(scope), str(status)).observe(
                time.perf_counter() - started)


def route_template(scope) -> str:
    """``/api/v1/cases/{number}`` for ``/api/v1/cases/20261125000001``: the matched route's path
    parameters put back in place of their values ("unmatched" when no route matched, so a scan of
    random paths adds one series, not one per path). Built from the ASGI scope's public keys: the
    route object's own ``path`` lacks the prefixes of included routers."""
    if scope.get("route") is None and scope.get("endpoint") is None:
        return "unmatched"
    names = {str(value): name for name, value in (scope.get("path_params") or {}).items()}
    if not names:
        return scope["path"]
    return "/".join(f"{{{names[part]}}}" if part in names else part for part in scope["path"].split("/"))


class Metrics:
    """The registry of one app and what it alone measures; ``render()`` is the /metrics body."""

    def __init__(self, app) -> None:
        self.app = app
        self.http = Histogram("callcenter_http_request_duration_seconds", "HTTP request latency by route template",
                              ["method", "route", "status"], buckets=LATENCY_BUCKETS, registry=None)
        self.db = db_histogram(app.state.engine)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(HotlineCollector(self))

    def render(self) -> bytes:
        """Blocking (the store is asked): call it off the event loop, through ``scrape``."""
        return generate_latest(self.registry)


# The call-control state as read on the event loop for the scrape under way: the loop changes those
# dicts, so the collector (in a worker thread) must not iterate them itself. to_thread carries it over.
_LIVE: ContextVar[dict[str, Any] | None] = ContextVar("callcenter_metrics_live", default=None)


def live_state(app) -> dict[str, Any] | None:
    """What the queue and menu metrics show, read from the call-control link (on the event loop)."""
    cc = app.state.callcontrol
    if cc is None:
        return None
    link = cc.link
    queued = set(link.queue.callers)
    in_menu = sum(1 for c in link.channels.values()
                  if c.context == MENU_CONTEXT and c.bridge_id is None and c.uniqueid not in queued)
    return {"queue": link.queue_snapshot(), "in_menu": in_menu}


async def scrape(app) -> bytes:
    """The /metrics body: live state read here on the loop, the rest (store, checks) in a thread."""
    token = _LIVE.set(live_state(app))
    try:
        return await asyncio.to_thread(app.state.metrics.render)
    finally:
        _LIVE.reset(token)


def install(app) -> Metrics:
    """Time every request of ``app`` and keep its registry in ``app.state.metrics``."""
    metrics = Metrics(app)
    app.state.metrics = metrics
    app.add_middleware(RequestTimer, metrics=metrics)
    return metrics


def _gauge(name: str, doc: str, value: float | None = None, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value, labels=labels)


def _counter(name: str, doc: str, value: float | None = None, labels: list[str] | None = None) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value, labels=labels)


class HotlineCollector:
    """Reads the hotline's state when Prometheus scrapes (see module doc)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        app = self.metrics.app
        yield from self.metrics.http.collect()
        yield from self.metrics.db.collect()
        yield from self._readiness(app)
        yield from self._ami(app)
        yield from self._calls(app)
        yield from self._agi(app)
        yield from self._scheduler(app)
        try:
            yield from self._store(app)
        except Exception:  # noqa: BLE001 - the store being away is what /readyz and its gauge say
            log.warning("metrics: the store could not be read", exc_info=True)

    def _readiness(self, app) -> Iterator[Metric]:
        checks = readiness(app)
        yield _gauge("callcenter_ready", "1 when every readiness check passes (/readyz answers 200)",
                     float(is_ready(checks)))
        per_check = _gauge("callcenter_ready_check", "1 when this readiness check passes", labels=["check"])
        for c in checks:
            per_check.add_metric([c.name], float(c.ok))
        yield per_check

    def _ami(self, app) -> Iterator[Metric]:
        up = _gauge("callcenter_ami_link_up", "1 while the AMI link is logged in", labels=["link"])
        reconnects = _counter("callcenter_ami_reconnects", "Logins after the first (link came back)", labels=["link"])
        losses = _counter("callcenter_ami_link_losses", "AMI links lost", labels=["link"])
        for name, client in _ami_clients(app):
            up.add_metric([name], float(client.connected))
            reconnects.add_metric([name], client.stats.reconnects)
            losses.add_metric([name], client.stats.link_losses)
        yield from (up, reconnects, losses)

    def _calls(self, app) -> Iterator[Metric]:
        live = _LIVE.get()
        if live is None:
            return  # no call control in this process (or rendered outside `scrape`)
        snap = live["queue"]
        yield _gauge("callcenter_calls_in_menu", "Citizens' calls in the voice menu now", live["in_menu"])
        yield _gauge("callcenter_queue_callers", "Callers waiting in the operator queue now", snap["callers_waiting"])
        yield _gauge("callcenter_queue_longest_wait_seconds", "How long the longest-waiting caller has waited",
                     snap["longest_wait_seconds"])
        operators = _gauge("callcenter_queue_operators", "Operators logged in to the queue, by state", labels=["state"])
        for state in OPERATOR_STATES:
            operators.add_metric([state], snap["operators"].get(state, 0))
        yield operators

    def _agi(self, app) -> Iterator[Metric]:
        server = getattr(app.state, "agi_server", None)
        if server is None:
            return
        stats = server.stats
        yield _gauge("callcenter_agi_sessions_active", "FastAGI sessions open now", stats.active)
        yield _counter("callcenter_agi_sessions", "FastAGI connections accepted", stats.connections)
        errors = _counter("callcenter_agi_errors", "FastAGI sessions that failed, by kind", labels=["kind"])
        for kind in sorted({*AGI_ERROR_KINDS, *stats.errors}):
            errors.add_metric([kind], stats.errors.get(kind, 0))
        yield errors
        yield _counter("callcenter_agi_sent_to_safety", "Calls sent to the queue after a menu failure",
                       stats.sent_to_safety)

    def _scheduler(self, app) -> Iterator[Metric]:
        service = scheduler_service(app)
        yield _gauge("callcenter_scheduler_leader", "1 when this process runs the callback and deadline scheduler",
                     float(service is not None and service.is_leader))
        calls = _counter("callcenter_callback_calls", "Callback calls finished by this process, by outcome",
                         labels=["outcome"])
        outcomes = service.runner.stats.outcomes if service is not None else {}
        for outcome in (*CALLBACK_OUTCOMES, *sorted(set(outcomes) - set(CALLBACK_OUTCOMES))):
            calls.add_metric([outcome], outcomes.get(outcome, 0))
        yield calls

    def _store(self, app) -> Iterator[Metric]:
        from callback.attempts import due_count
        from ticketing import queries

        domain = app.state.domain
        now = domain.clock()
        yield _gauge("callcenter_service_hours_open", "1 while the voice menu is within service hours",
                     float(domain.policy.ivr_open_at(now)))
        with app.state.session_factory() as session:
            due = due_count(session, domain)
            overdue = {deadline: session.execute(select(func.count()).select_from(query(now).subquery())).scalar_one()
                       for deadline, query in (("report", queries.overdue_reports),
                                               ("notify", queries.overdue_notifications))}
        yield _gauge("callcenter_callbacks_due", "Callback attempts due and not yet placed", due)
        orders = _gauge("callcenter_work_orders_overdue", "Open work orders past a deadline (R8.2 notify, R8.3 report)",
                        labels=["deadline"])
        for deadline, count in overdue.items():
            orders.add_metric([deadline], count)
        yield orders


def _ami_clients(app) -> list[tuple[str, Any]]:
    clients = []
    cc = app.state.callcontrol
    if cc is not None:
        clients.append(("callcontrol", cc.ami))
    service = scheduler_service(app)
    ami = getattr(getattr(service, "pbx", None), "ami", None)
    if ami is not None:
        clients.append(("callback", ami))
    return clients


__all__ = ["MENU_CONTEXT", "Metrics", "RequestTimer", "db_histogram", "install", "live_state", "route_template",
           "scrape"]
