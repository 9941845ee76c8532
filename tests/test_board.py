"""The live wallboard (issue 12 item 4; R5.2, R6.1): its state from AMI events as Asterisk sends them
(fed to the real call link, no Asterisk), the day's figures as ticketing.figures counts them, the
overdue work by unit as ticketing.queries defines it, and who may watch (back office, supervision)."""
from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from callcenter.ami.client import AMIClient
from callcenter.ami.protocol import Message
from callcenter.api.app import create_app
from callcenter.callcontrol import CallControl
from callcenter.callcontrol.wallboard import (
    TOPIC,
    Wallboard,
    day_figures,
    overdue_by_unit,
    today,
)
from callcenter.settings import Settings
from tests.conftest import CONFIG_DIR, PASSWORD
from tests.helpers import actor_named
from ticketing import calls, queries
from ticketing.enums import CaseKind, Channel
from ticketing.figures import CallFigures, Thresholds
from ticketing.store import session_scope

QUEUE = "hotline-12345"
CALLER = "13912345678"


def ev(**fields) -> Message:
    return Message(fields.items())


def stamp(moment: datetime) -> str:
    return f"{moment.timestamp():.6f}"


def offline_cc(sessions, domain) -> CallControl:
    """The real call link, queue state and board, on an AMI client that is never started."""
    return CallControl.create(AMIClient("127.0.0.1", 1, "nobody", "nothing"), sessions, domain)


def member(cc, ext: str, event: str = "QueueMemberAdded", **fields) -> None:
    base = {"Event": event, "Queue": QUEUE, "Interface": f"PJSIP/op{ext}", "MemberName": f"话务员{ext}",
            "StateInterface": f"PJSIP/op{ext}", "Status": "1", "Paused": "0", "InCall": "0", "CallsTaken": "0"}
    cc.link._on_event(ev(**{**base, **fields}))


def join(cc, uid: str, at: datetime, caller: str = CALLER) -> None:
    cc.link._on_event(ev(Event="QueueCallerJoin", Queue=QUEUE, Uniqueid=uid, Linkedid=uid,
                         Channel=f"PJSIP/trunk-{uid}", CallerIDNum=caller, Position="1", Count="1", Timestamp=stamp(at)))


def connect(cc, uid: str, ext: str, at: datetime, holdtime: int) -> None:
    cc.link._on_event(ev(Event="QueueCallerLeave", Queue=QUEUE, Uniqueid=uid, Count="0", Timestamp=stamp(at)))
    cc.link._on_event(ev(Event="AgentConnect", Queue=QUEUE, Interface=f"PJSIP/op{ext}", MemberName=f"话务员{ext}",
                         Uniqueid=uid, Linkedid=uid, DestUniqueid=f"{uid}.op", CallerIDNum=CALLER,
                         HoldTime=str(holdtime), Timestamp=stamp(at)))


def complete(cc, uid: str, ext: str, at: datetime, holdtime: int, talktime: int) -> None:
    cc.link._on_event(ev(Event="AgentComplete", Queue=QUEUE, Interface=f"PJSIP/op{ext}", Uniqueid=uid, Linkedid=uid,
                         DestUniqueid=f"{uid}.op", HoldTime=str(holdtime), TalkTime=str(talktime),
                         Reason="caller", Timestamp=stamp(at)))


def abandon(cc, uid: str, at: datetime) -> None:
    cc.link._on_event(ev(Event="QueueCallerAbandon", Queue=QUEUE, Uniqueid=uid, Linkedid=uid, Position="1",
                         OriginalPosition="1", HoldTime="9", Timestamp=stamp(at)))


async def next_board(feed, timeout: float = 5.0) -> dict:
    while True:
        event = await feed.get(timeout=timeout)
        if event["type"] == "board":
            return event["state"]


async def board_where(feed, predicate, timeout: float = 5.0) -> dict:
    """The first board update for which `predicate(state)` holds (an update already on its way when
    the events were fed may come first)."""
    while True:
        state = await next_board(feed, timeout)
        if predicate(state):
            return state


async def test_r5_2_board_shows_waiting_callers_and_operators_with_state_reason_and_since(sessions, domain):
    """Callers waiting and the longest wait, operators free / busy / paused with the pause reason, each
    with since when it is in that state; a repeated event of the same state keeps its since; the
    caller's number only masked."""
    cc = offline_cc(sessions, domain)
    board = cc.board
    feed = board.subscribe()
    member(cc, "8001")
    member(cc, "8002")
    state = await next_board(feed)
    assert state["operators"]["counts"] == {"free": 2, "busy": 0, "paused": 0, "unavailable": 0}
    first = {o["extension"]: o for o in state["operators"]["list"]}
    assert first["8001"]["state"] == "free" and first["8001"]["name"] == "话务员8001"

    joined = datetime.now(UTC) - timedelta(seconds=30)
    join(cc, "c1", joined)
    join(cc, "c2", joined + timedelta(seconds=20), caller="13700001111")
    member(cc, "8002", "QueueMemberPause", Paused="1", PausedReason="meal")
    member(cc, "8001", "QueueMemberStatus", Status="2", InCall="1")
    state = await next_board(feed)  # one update for the burst
    assert state["queue"]["callers_waiting"] == 2
    assert state["queue"]["longest_wait_since"] == pytest.approx(joined.timestamp(), abs=0.01)
    ops = {o["extension"]: o for o in state["operators"]["list"]}
    assert (ops["8001"]["state"], ops["8002"]["state"], ops["8002"]["paused_reason"]) == ("busy", "paused", "meal")
    assert ops["8001"]["since"] > first["8001"]["since"]  # a new state starts its clock
    text = json.dumps(state, ensure_ascii=False)
    assert CALLER not in text and "139****5678" in text and "13700001111" not in text

    busy_since = ops["8001"]["since"]
    member(cc, "8001", "QueueMemberStatus", Status="2", InCall="1", CallsTaken="0")  # same state again
    member(cc, "8002", "QueueMemberPause", Paused="0")
    state = await board_where(feed, lambda st: {o["extension"]: o for o in st["operators"]["list"]}["8002"]["state"]
                              == "free")
    ops = {o["extension"]: o for o in state["operators"]["list"]}
    assert ops["8001"]["since"] == busy_since and ops["8002"]["state"] == "free"
    feed.close()
    await board.stop()


async def test_board_pushes_only_changes_and_one_update_per_burst(sessions, domain):
    cc = offline_cc(sessions, domain)
    feed = cc.board.subscribe()
    await cc.board.snapshot()  # the day's figures read once: the calls below change none of them
    member(cc, "8001")
    await next_board(feed)
    published = cc.board.published
    for _ in range(5):  # the same facts again: nothing new to show
        member(cc, "8001", "QueueMemberStatus")
    cc.link._on_event(ev(Event="Newchannel", Uniqueid="x1", Linkedid="x1", Channel="Local/s@x-0001;1",
                         ChannelStateDesc="Down"))
    with pytest.raises(TimeoutError):
        await next_board(feed, timeout=0.3)
    assert cc.board.published == published
    for uid in ("a", "b", "c"):
        join(cc, uid, datetime.now(UTC))
    state = await next_board(feed)
    assert state["queue"]["callers_waiting"] == 3 and cc.board.published == published + 1
    feed.close()
    await cc.board.stop()


async def test_a_new_viewer_gets_the_next_change_even_back_to_what_was_last_sent(sessions, domain):
    """Sent: one caller waiting. Unwatched, the caller leaves; a new viewer starts from "none waiting";
    the same caller is back (the very state last sent): the new viewer is told. (A board without a
    database: only the live part.)"""
    cc = offline_cc(sessions, domain)
    board = Wallboard(cc.link, None, domain.clock, Thresholds())
    joined = datetime.now(UTC)
    first = board.subscribe()
    join(cc, "r1", joined)
    assert (await next_board(first))["queue"]["callers_waiting"] == 1
    first.close()
    cc.link._on_event(ev(Event="QueueCallerLeave", Queue=QUEUE, Uniqueid="r1", Count="0"))
    second = board.subscribe()
    assert (await board.snapshot())["queue"]["callers_waiting"] == 0
    join(cc, "r1", joined)
    assert (await next_board(second, timeout=2.0))["queue"]["callers_waiting"] == 1
    second.close()
    await board.stop()
    await cc.board.stop()


def seed_menu_calls(sessions, at: datetime) -> None:
    """Two calls the voice menu ended itself: one self-served, one that left a message."""
    with session_scope(sessions) as s:
        for uid, outcome in (("m1", "self_served"), ("m2", "message_left")):
            call = calls.call_row(s, uniqueid=uid, linkedid=uid, caller_number=CALLER, started_at=at)
            calls.finish_call(s, call.id, outcome=outcome, ended_at=at + timedelta(seconds=40))


async def test_board_today_figures_are_call_figures_after_call_end_events(sessions, domain):
    """Three queue calls today: answered after 3 s, answered after 20 s, abandoned after 9 s; two
    menu calls (one self-served). By hand: offered 3, answered 2, 接通率 2/3, answered within 15 s
    1/3 (the abandoned call is in the denominator), abandoned 1; inbound 3 + 2 = 5, self-served 1.
    The board's figures equal CallFigures over the local day, and arrive after the call-end events."""
    clock_now = domain.clock()
    base = clock_now - timedelta(minutes=30)
    seed_menu_calls(sessions, base)
    cc = offline_cc(sessions, domain)
    cc.link.calllog.start()
    try:
        feed = cc.board.subscribe()
        state = await cc.board.snapshot()
        assert state["today"]["offered"] == 0 and state["today"]["self_served"] == 1
        member(cc, "8001")
        join(cc, "q1", base)
        connect(cc, "q1", "8001", base + timedelta(seconds=3), 3)
        complete(cc, "q1", "8001", base + timedelta(seconds=63), 3, 60)
        join(cc, "q2", base + timedelta(minutes=2))
        connect(cc, "q2", "8001", base + timedelta(minutes=2, seconds=20), 20)
        join(cc, "q3", base + timedelta(minutes=3))
        abandon(cc, "q3", base + timedelta(minutes=3, seconds=9))
        for _ in range(20):
            state = await next_board(feed)
            if state["today"]["offered"] == 3 and state["today"]["abandoned"] == 1 and state["today"]["answered"] == 2:
                break
        t = state["today"]
        assert (t["offered"], t["answered"], t["abandoned"]) == (3, 2, 1)
        assert t["answer_rate"] == {"numerator": 2, "denominator": 3, "rate": 2 / 3}
        assert t["answered_within"] == {"numerator": 1, "denominator": 3, "rate": 1 / 3}
        assert (t["inbound"], t["self_served"], t["answer_within_s"]) == (5, 1, 15.0)
        with session_scope(sessions) as s:
            period = today(clock_now, cc.board.thresholds)
            q = CallFigures(s, cc.board.thresholds).queue(period)
            assert t == day_figures(s, period, cc.board.thresholds)
        assert (q.offered, q.answered, q.abandoned) == (3, 2, 1)
        # a configurable threshold (Thresholds.answer_within_s) is the board's too
        cc.board.thresholds = Thresholds(answer_within_s=30.0)
        await cc.board.refresh_figures()
        assert (await cc.board.snapshot())["today"]["answered_within"]["numerator"] == 2
        feed.close()
    finally:
        await cc.board.stop()
        await cc.link.calllog.stop()


def test_today_is_the_local_day(domain):
    """Monday 2026-03-02 00:30 Shanghai is still 03-01 in UTC: the board's day is Shanghai's."""
    period = today(datetime(2026, 3, 1, 16, 30, tzinfo=UTC), Thresholds())
    assert period.since == datetime(2026, 3, 1, 16, 0, tzinfo=UTC)
    assert period.until == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)


def test_r8_2_r8_3_overdue_by_unit_counts_what_the_overdue_queries_list(seeded, domain, clock):
    """Two complaints to urban management and one discipline report (R7.3c) to the commission; after
    30 days none was notified or reported: each unit's counts are those of ticketing.queries, and
    the commission's report counts in the totals only, never for a unit (R7.3c, as every figure)."""
    with session_scope(seeded) as s:
        wf = domain.workflow(s)
        op = actor_named(s, "op1")
        for title in ("占道经营", "噪音扰民"):
            case = wf.accept(op, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title=title, description="请处理",
                             citizen_phone=CALLER)
            wf.dispatch(op, case, units=["urban_management"])
        disc = wf.accept(op, kind=CaseKind.COMPLAINT, channel=Channel.LANDLINE, title="举报某局长",
                         description="纪检内容", citizen_phone=CALLER, category_code="discipline_economic")
        wf.dispatch(op, disc, units=["discipline_commission"])
    clock.advance(days=30)
    with session_scope(seeded) as s:
        got = overdue_by_unit(s, clock())
        listed = {kind: len(s.execute(q(clock())).scalars().all())
                  for kind, q in (("report", queries.overdue_reports), ("notify", queries.overdue_notifications))}
    units = {u["code"]: u for u in got["units"]}
    assert (units["urban_management"]["report"], units["urban_management"]["notify"]) == (2, 2)
    assert "discipline_commission" not in units
    assert (got["report"], got["notify"]) == (listed["report"], listed["notify"]) == (3, 3)
    assert "纪检内容" not in json.dumps(got, ensure_ascii=False) and "举报" not in json.dumps(got, ensure_ascii=False)
    assert got["units"][0]["code"] == "urban_management"  # most overdue first


# -- the API ------------------------------------------------------------------------------------


async def _client(app):
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def _headers(client, who):
    r = await client.post("/api/v1/auth/token", json={"username": who, "password": PASSWORD})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def test_r5_2_board_for_back_office_and_supervision_only(seeded, domain, engine, tmp_path):
    cc = offline_cc(seeded, domain)
    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine,
                     callcontrol=cc)
    member(cc, "8001")
    async with await _client(app) as client:
        for who in ("bo1", "sup1"):
            r = await client.get("/api/v1/board", headers=await _headers(client, who))
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["operators"]["list"][0]["extension"] == "8001"
            assert body["today"]["offered"] == 0 and body["overdue"]["units"] == []
            r = await client.get("/api/v1/board/stream", params={"limit": 1}, headers=await _headers(client, who))
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            assert r.text.startswith("event: board\ndata: ")
            assert json.loads(r.text.split("data: ", 1)[1])["state"]["operators"]["counts"]["free"] == 1
        for who in ("op1", "admin1", "water1", "disc1"):
            headers = await _headers(client, who)
            for url in ("/api/v1/board", "/api/v1/board/stream"):
                r = await client.get(url, headers=headers)
                assert r.status_code == 403, (who, url, r.text)
        assert (await client.get("/api/v1/board")).status_code == 401
    assert cc.board.viewers == 0  # every stream's feed was closed


async def test_board_stream_carries_the_change_and_without_telephony_503(seeded, domain, engine, tmp_path):
    cc = offline_cc(seeded, domain)
    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine,
                     callcontrol=cc)
    async with await _client(app) as client:
        headers = await _headers(client, "sup1")
        task = asyncio.create_task(client.get("/api/v1/board/stream", params={"limit": 2}, headers=headers))
        while not (cc.board.viewers and cc.board._figures_at):  # the stream's first state is taken
            await asyncio.sleep(0.01)
        join(cc, "w1", datetime.now(UTC))
        r = await asyncio.wait_for(task, 10)
        states = [json.loads(line[6:])["state"] for line in r.text.splitlines() if line.startswith("data: ")]
        assert [s["queue"]["callers_waiting"] for s in states] == [0, 1]
    bare = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine)
    async with await _client(bare) as client:
        r = await client.get("/api/v1/board", headers=await _headers(client, "bo1"))
        assert r.status_code == 503


def test_board_page_is_served_and_linked_from_the_back_office(api):
    page = api.client.get("/app/board")
    assert page.status_code == 200 and "/app/static/board.js" in page.text
    assert api.client.get("/app/static/board.js").status_code == 200
    assert api.client.get("/app/static/board.css").status_code == 200
    assert 'href="/app/board"' in api.client.get("/app/back").text
    assert TOPIC == "board"
