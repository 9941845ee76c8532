"""R7.3c, R5.3: the server-sent-event streams (callcenter/api/routers/operators.py) show no role what
it must not see. The API gets the real call link, queue service and screen-pop, without an Asterisk
(no AMI connection is made); the AMI events of the discipline reporter's call are fed to the link as
Asterisk would send them: the caller joins the 12345 queue (the queue stream's snapshot), the queue
connects them to operator 8001 (the screen-pop: the call's menu path, its case and the number's open
cases, the discipline report among them). Each role opens each event stream of the schema (read
from the app, so a new stream is covered without editing this test) and the answer, a refusal or
the events, may not carry a canary the role must not see; nor may the telephony reads (/operators,
/queue, the call log), which answer from the same link."""
from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select

from callcenter.ami.client import AMIClient
from callcenter.ami.protocol import Message
from callcenter.api.app import create_app
from callcenter.callcontrol import CallControl
from callcenter.settings import Settings
from tests import canary_store as store
from tests.conftest import CONFIG_DIR, PASSWORD
from ticketing.models import User
from ticketing.store import session_scope

QUEUE = "hotline-12345"


def _event(**fields) -> Message:
    return Message(fields.items())


def _streams(spec: dict) -> list[str]:
    """Every GET operation that answers text/event-stream (their summaries say so: 'Server-sent events')."""
    return [path for path, ops in spec["paths"].items()
            if "get" in ops and "server-sent events" in ops["get"].get("summary", "").lower()]


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0.005)


async def _headers(client, who: str | None) -> dict:
    if who is None:
        return {}
    r = await client.post("/api/v1/auth/token", json={"username": who, "password": PASSWORD})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def _open(client, url, who, cc, feed_events) -> httpx.Response:
    """Open the stream for ``who``: once it subscribed, the call's events are fed to the link; the
    stream closes after its first event and the two the call causes (``limit``)."""
    headers = await _headers(client, who)
    before = cc.link.broker.subscribers
    task = asyncio.create_task(client.get(url, params={"limit": 3}, headers=headers))
    await asyncio.wait({task, asyncio.create_task(_until(lambda: cc.link.broker.subscribers > before))},
                       return_when=asyncio.FIRST_COMPLETED, timeout=10)
    if not task.done():
        await feed_events()
    return await asyncio.wait_for(task, 10)


async def test_r7_3c_no_event_stream_shows_a_role_what_it_must_not_see(api, seeded, domain, engine, tmp_path):
    made = store.build(api, seeded)
    with session_scope(seeded) as s:
        s.execute(select(User).where(User.username == "op1")).scalar_one().operator_extension = "8001"
    ami = AMIClient("127.0.0.1", 1, "nobody", "nothing")  # never started: no connection is tried
    cc = CallControl.create(ami, seeded, domain)
    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine,
                     callcontrol=cc)
    streams = _streams(store.openapi(app))
    assert len(streams) >= 2, streams
    pops = []

    async def feed_events():
        link = cc.link
        uid = store.CALL_UNIQUEID
        link._on_event(_event(Event="QueueCallerJoin", Queue=QUEUE, Uniqueid=uid, Linkedid=uid,
                              Channel="PJSIP/trunk-00000007", CallerIDNum=store.REPORTER, Position="1", Count="1"))
        await asyncio.sleep(0.2)  # the wallboard shows the caller waiting (it sends one update per burst)
        link._on_event(_event(Event="QueueCallerLeave", Queue=QUEUE, Uniqueid=uid, Count="0"))
        sent = len(cc.screenpop.sent)
        link._on_event(_event(Event="AgentConnect", Queue=QUEUE, Interface="PJSIP/op8001", MemberName="op1",
                              Uniqueid=uid, Linkedid=uid, DestUniqueid="1772430000.2",
                              CallerIDNum=store.REPORTER, HoldTime="5"))
        await asyncio.wait_for(_until(lambda: len(cc.screenpop.sent) > sent), 10)
        pops.append(cc.screenpop.sent[-1])

    leaks, opened = [], {}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        for who in store.FORBIDDEN:
            for url in streams:
                r = await _open(client, url, who, cc, feed_events)
                opened[(who, url)] = r
                leaks += [(who, url, r.status_code, c) for c in store.leaks_in(r.text, who)]
        # the telephony reads answer from the link here (503 in the GET sweep, which has none)
        reads = [url for _m, path, url, op in store.operations(store.openapi(app), ("get",), store.samples(made))
                 if {"operators", "board"} & set(op.get("tags", [])) and path not in streams]
        assert reads
        for who in store.FORBIDDEN:
            headers = await _headers(client, who)
            for url in reads:
                r = await client.get(url, headers=headers)
                leaks += [(who, url, r.status_code, c) for c in store.leaks_in(r.text, who)]
    assert not leaks, leaks[:20]
    # the test can see: op1's own stream carried the pop of the discipline reporter's call, with the
    # report among the number's open cases (as a placeholder), and the queue streams were open
    mine = opened[("op1", "/api/v1/operators/me/events")]
    assert mine.status_code == 200 and "event: screen_pop" in mine.text, mine.text
    assert made["numbers"][0] in mine.text and pops and pops[-1]["call_id"] == made["call_id"]
    assert all(opened[(who, "/api/v1/queue/events")].status_code == 200 for who in ("op1", "bo1", "sup1", "admin1"))
    assert opened[("disc1", "/api/v1/operators/me/events")].status_code == 403
    # the wallboard (back office, supervision) showed the reporter waiting, the number masked only
    board = "/api/v1/board/stream"
    assert all(opened[(who, board)].status_code == 200 for who in ("bo1", "sup1"))
    assert all(opened[(who, board)].status_code == 403 for who in ("op1", "admin1", "disc1", "water1"))
    assert all(store.REPORTER not in opened[(who, board)].text for who in store.FORBIDDEN)
    assert "139****7777" in opened[("sup1", board)].text
