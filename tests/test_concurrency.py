"""Real concurrent writers on one case: exactly one wins, the other gets 409, the case is never
half-written, and the audit chain (A1) stays whole. PostgreSQL relies on row locks and the
case's version column; SQLite on BEGIN IMMEDIATE serialising every writer."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm.exc import StaleDataError

from ticketing.errors import Conflict
from ticketing.models import AuditEvent, Case, WorkOrder
from ticketing.store import session_scope

from .conftest import CONFIG_DIR, PASSWORD
from tests.helpers import actor_named, chain_verified, serve

CASE = {"kind": "complaint", "channel": "mobile", "title": "夜间施工噪音",
        "description": "某工地夜间施工扰民", "citizen_phone": "13800002222"}


class Live:
    """httpx against the live server; one client per thread, like separate browsers."""

    def __init__(self, base: str):
        self.base = base
        self.tokens: dict[str, str] = {}

    def token(self, username: str) -> str:
        if username not in self.tokens:
            r = httpx.post(f"{self.base}/api/v1/auth/token", json={"username": username, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.tokens[username] = r.json()["access_token"]
        return self.tokens[username]

    def client(self, username: str) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=60,
                            headers={"Authorization": f"Bearer {self.token(username)}"})


@pytest.fixture
def live(seeded, domain, engine, tmp_path) -> Iterator[Live]:
    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine)
    with serve(app) as base:
        yield Live(base)




def _work_orders(sessions, number: str) -> list[tuple[str, str]]:
    with session_scope(sessions) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        return [(wo.unit.code, wo.status.value) for wo in case.work_orders]


def _race(*jobs):
    """Run the jobs at the same moment on their own threads; return what each returned or raised."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = [pool.submit(job) for job in jobs]
        out = []
        for f in futures:
            try:
                out.append(f.result(timeout=60))
            except Exception as exc:  # noqa: BLE001 - the loser's exception is the result under test
                out.append(exc)
        return out


# ---- PostgreSQL: both writers hold version N before either writes -----------------------------

@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a1_postgresql_two_dispatchers_read_the_same_version_one_wins(seeded, domain, sessions):
    """Operator and back office dispatch the same NEW case at once, each in its own session,
    both having loaded version N: one commits, the other's UPDATE ... WHERE version = N finds
    nothing and is rolled back whole."""
    with session_scope(sessions) as s:
        case = domain.workflow(s).accept(actor_named(s, "op1"), **CASE)
        number, version = case.number, case.version
    events_before = chain_verified(sessions)
    barrier = threading.Barrier(2, timeout=30)

    def dispatcher(username: str, unit: str):
        def job():
            with session_scope(sessions) as s:
                wf = domain.workflow(s)
                case = wf.get_case(number)
                assert case.version == version
                actor = actor_named(s, username)
                barrier.wait()  # both have read version N; neither has written
                wf.dispatch(actor, case, units=[unit])
            return username
        return job

    results = _race(dispatcher("op1", "urban_management"), dispatcher("bo1", "housing_construction"))
    winners = [r for r in results if isinstance(r, str)]
    losers = [r for r in results if not isinstance(r, str)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert isinstance(losers[0], StaleDataError), repr(losers[0])
    unit = "urban_management" if winners[0] == "op1" else "housing_construction"
    assert _work_orders(sessions, number) == [(unit, "dispatched")]  # one set of work orders, the winner's
    with session_scope(sessions) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        assert case.version > version
        dispatches = s.execute(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.case_id == case.id, AuditEvent.action == "dispatch")).scalar_one()
        assert dispatches == 1
    assert chain_verified(sessions) == events_before + 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a1_postgresql_unit_and_center_acting_on_one_case_at_once_serialise(seeded, domain, sessions):
    """A unit reports while the center urges the same work order: both are legitimate, neither
    may overwrite the other's change to the case (version check), so one must retry."""
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        case = wf.accept(actor_named(s, "op1"), **CASE)
        (wo,) = wf.dispatch(actor_named(s, "op1"), case, units=["urban_management"])
        wf.notify(actor_named(s, "urban1"), wo, channel="phone")
        wo_id = wo.id
    barrier = threading.Barrier(2, timeout=30)

    def job(action):
        def run():
            with session_scope(sessions) as s:
                wf = domain.workflow(s)
                wo = wf.get_work_order(wo_id)
                _ = wo.case.version  # loaded before the barrier
                barrier.wait()
                if action == "report":
                    wf.report(actor_named(s, "urban1"), wo, answer="已责令停工", satisfaction="satisfied")
                else:
                    wf.urge(actor_named(s, "bo1"), wo, note="请尽快办理")
            return action
        return run

    results = _race(job("report"), job("urge"))
    assert sorted(type(r).__name__ for r in results) == ["StaleDataError", "str"], results
    with session_scope(sessions) as s:
        wo = s.get(WorkOrder, wo_id)
        if "report" in results:
            assert wo.status.value == "reported" and wo.urge_count == 0 and wo.case.status.value == "reported"
        else:
            assert wo.status.value == "notified" and wo.urge_count == 1 and wo.case.status.value == "dispatched"
    chain_verified(sessions)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_r7_3h_postgresql_two_independent_units_reporting_at_once_still_report_the_case(seeded, domain, sessions):
    """Write skew: each unit's report checks whether the other has reported. Run at once, both
    would see the other still open and the case would stay 'dispatched' for ever; the version
    check makes one retry, and the retry sees the case complete."""
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        case = wf.accept(actor_named(s, "op1"), **CASE)
        orders = wf.dispatch(actor_named(s, "bo1"), case, units=["urban_management", "housing_construction"])
        assert {wo.role.value for wo in orders} == {"independent"}
        for wo, user in zip(orders, ("urban1", "housing1"), strict=True):
            wf.notify(actor_named(s, user), wo, channel="phone")
        number, ids = case.number, [wo.id for wo in orders]
    barrier = threading.Barrier(2, timeout=30)

    def report(wo_id, user, *, wait=True):
        def job():
            with session_scope(sessions) as s:
                wf = domain.workflow(s)
                wo = wf.get_work_order(wo_id)
                _ = [o.status for o in wo.case.work_orders]
                if wait:
                    barrier.wait()
                wf.report(actor_named(s, user), wo, answer=f"{user} 已处理")
            return user
        return job

    jobs = [report(ids[0], "urban1"), report(ids[1], "housing1")]
    results = _race(*jobs)
    assert sorted(type(r).__name__ for r in results) == ["StaleDataError", "str"], results
    retry = [i for i, r in enumerate(results) if not isinstance(r, str)][0]
    assert report(ids[retry], ("urban1", "housing1")[retry], wait=False)() in {"urban1", "housing1"}
    with session_scope(sessions) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        assert case.status.value == "reported"
        assert "urban1 已处理" in case.answer and "housing1 已处理" in case.answer
    chain_verified(sessions)


# ---- SQLite: BEGIN IMMEDIATE makes the second writer wait and see the first one's write --------

@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a1_sqlite_second_writer_waits_and_then_sees_the_new_version(seeded, domain, sessions):
    with session_scope(sessions) as s:
        case = domain.workflow(s).accept(actor_named(s, "op1"), **CASE)
        number, version = case.number, case.version
    first_has_read = threading.Event()
    seen: dict[str, float | int] = {}

    def first():
        with session_scope(sessions) as s:
            wf = domain.workflow(s)
            case = wf.get_case(number)  # BEGIN IMMEDIATE: this transaction holds the write lock
            first_has_read.set()
            time.sleep(0.5)
            wf.dispatch(actor_named(s, "op1"), case, units=["urban_management"], expected_version=version)
        return "first"

    def second():
        assert first_has_read.wait(10)
        started = time.monotonic()
        with session_scope(sessions) as s:
            wf = domain.workflow(s)
            case = wf.get_case(number)
            seen["waited"] = time.monotonic() - started
            seen["version"] = case.version
            wf.escalate(actor_named(s, "op1"), case, note="跨部门", expected_version=version)
        return "second"

    results = _race(first, second)
    assert results[0] == "first"
    assert isinstance(results[1], Conflict), results
    assert seen["version"] > version  # it read after the first committed, never a stale snapshot
    assert seen["waited"] >= 0.3
    assert _work_orders(sessions, number) == [("urban_management", "dispatched")]
    chain_verified(sessions)


# ---- through the HTTP API, both backends -------------------------------------------------------

def test_a1_two_tabs_dispatch_the_same_case_one_wins_the_other_409(live, sessions):
    """The same operator in two tabs (and the back office) dispatch the case they all see at
    version N; repeated on several cases so the race is really run."""
    with live.client("op1") as c:
        numbers = [c.post("/api/v1/cases", json=CASE).json()["number"] for _ in range(6)]
    live.token("op1"), live.token("bo1")  # before counting: a login is an audit event itself
    events_before = chain_verified(sessions)
    for i, number in enumerate(numbers):
        clients = [live.client("op1"), live.client("op1" if i % 2 else "bo1")]
        versions = [c.get(f"/api/v1/cases/{number}").json()["version"] for c in clients]
        assert versions[0] == versions[1]
        barrier = threading.Barrier(2, timeout=30)

        def dispatch(client, unit):
            def job():
                barrier.wait()
                return client.post(f"/api/v1/cases/{number}/dispatch",
                                   json={"units": [unit], "expected_version": versions[0]})
            return job

        results = _race(dispatch(clients[0], "urban_management"), dispatch(clients[1], "housing_construction"))
        for c in clients:
            c.close()
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 409], [r.text for r in results]
        loser = next(r for r in results if r.status_code == 409).json()
        assert loser["error"] == "concurrent_update", loser
        winner = next(r for r in results if r.status_code == 200).json()
        assert len(_work_orders(sessions, number)) == 1
        assert [wo["unit_code"] for wo in winner["work_orders"]] == [u for u, _ in _work_orders(sessions, number)]
    assert chain_verified(sessions) == events_before + len(numbers)


def test_a1_two_different_updates_with_the_same_expected_version_one_409(live, sessions):
    """Escalation and a direct answer, both sent against version N: one lands, one is 409."""
    with live.client("op1") as c:
        number = c.post("/api/v1/cases", json=CASE).json()["number"]
        version = c.get(f"/api/v1/cases/{number}").json()["version"]
    barrier = threading.Barrier(2, timeout=30)

    def call(path, body):
        def job():
            with live.client("op1") as c:
                barrier.wait()
                return c.post(f"/api/v1/cases/{number}/{path}", json={**body, "expected_version": version})
        return job

    results = _race(call("escalate", {"note": "需要后台协调"}),
                    call("answer", {"answer": "按政策可以办理", "satisfaction": "satisfied"}))
    assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
    winner = next(r for r in results if r.status_code == 200).json()
    assert winner["version"] > version
    assert winner["status"] in {"pending_back_office", "awaiting_close"}
    with live.client("op1") as c:
        now = c.get(f"/api/v1/cases/{number}").json()
        assert now["status"] == winner["status"] and now["version"] == winner["version"]
        # only one of the two actions is on the record
        actions = [e["action"] for e in c.get(f"/api/v1/cases/{number}/events").json()]
    assert actions.count("escalate") + actions.count("answer_directly") == 1
    chain_verified(sessions)


def test_a1_twenty_concurrent_creations_get_twenty_distinct_numbers(live, sessions):
    token = live.token("op1")  # before counting: a login is an audit event itself
    events_before = chain_verified(sessions)
    barrier = threading.Barrier(20, timeout=30)

    def create(i):
        def job():
            with httpx.Client(base_url=live.base, timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
                barrier.wait()
                return c.post("/api/v1/cases", json={**CASE, "title": f"并发受理 {i}"})
        return job

    results = _race(*(create(i) for i in range(20)))
    assert [r.status_code for r in results] == [201] * 20, [r.text for r in results if r.status_code != 201]
    numbers = [r.json()["number"] for r in results]
    assert len(set(numbers)) == 20
    day = numbers[0][:8]
    assert sorted(numbers) == [f"{day}-{i:06d}" for i in range(1, 21)]  # no gaps, no repeats
    with session_scope(sessions) as s:
        titles = set(s.execute(select(Case.title)).scalars())
    assert titles == {f"并发受理 {i}" for i in range(20)}
    assert chain_verified(sessions) == events_before + 20
