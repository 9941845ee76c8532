"""Operators at real softphones (baresip) on the real Asterisk: queue login over the API, a queued
citizen (an originated Local channel) rings the operator, the phone auto-answers, the operator's
event stream gets the screen-pop with the caller's open cases, and the call log holds every event
once. The reliability test restarts Asterisk in the middle of a call.

Operators 8003/8004 are used here (other live tests use 8001/8002): an endpoint keeps one contact.
"""
from __future__ import annotations

import asyncio
import collections
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from callcenter.api.app import create_app
from callcenter.auth import create_user
from callcenter.callcontrol import CallControl
from callcenter.pbx import credentials, process
from tests.conftest import CONFIG_DIR, PASSWORD, FakeClock
from tests.live.phones import operator_phones
from ticketing import calls
from ticketing.audit import SYSTEM
from ticketing.domain import Domain
from ticketing.enums import CaseKind, CaseStatus, Channel
from ticketing.models import Call, CallEvent, Case
from ticketing.seed import seed_units
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

pytestmark = pytest.mark.live

NOW = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 Shanghai


class Stack:
    """Store + domain + CallControl on the install's Asterisk + the API on top (ASGI, in-process)."""

    def __init__(self, asterisk, tmp_path):
        url = f"sqlite:///{tmp_path / 'ops.db'}"
        upgrade(url)
        self.settings = asterisk
        self.clock = FakeClock(NOW)
        base = Domain.load(CONFIG_DIR)
        self.domain = Domain(policy=base.policy, calendar=base.calendar, city=base.city, clock=self.clock)
        self.engine = make_engine(url)
        self.sessions = make_session_factory(self.engine)
        with session_scope(self.sessions) as s:
            seed_units(s, self.domain.city, self.clock())
            for ext in ("8003", "8004"):
                create_user(s, username=f"op{ext}", password=PASSWORD, role="front_desk",
                            display_name=f"话务员{ext}", operator_extension=ext, now=self.clock())
        self.cc = CallControl.from_settings(asterisk, self.sessions, self.domain)
        self.app = create_app(asterisk, domain=self.domain, engine=self.engine, callcontrol=self.cc)
        self.tokens: dict[str, str] = {}

    async def start(self) -> None:
        """The API on a real HTTP server (uvicorn, ephemeral port): SSE must really stream."""
        await self.cc.start()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.server_task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)

    async def token(self, username: str) -> dict[str, str]:
        if username not in self.tokens:
            r = await self.http.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.tokens[username] = r.json()["access_token"]
        return {"Authorization": f"Bearer {self.tokens[username]}"}

    async def close(self):
        await self.http.aclose()
        self.server.should_exit = True
        await self.server_task  # its lifespan stops the CallControl
        self.engine.dispose()


@pytest.fixture
async def stack(asterisk, tmp_path):
    st = Stack(asterisk, tmp_path)
    await st.start()
    try:
        yield st
    finally:
        for chan in list(st.cc.link.channels.values()):  # citizens this test left in the queue
            if chan.linkedid.startswith("live-") and st.cc.link.connected:
                try:
                    await st.cc.link.ami.send_action({"Action": "Hangup", "Channel": chan.name})
                except Exception:
                    pass
        for ext in ("8003", "8004"):
            if st.cc.link.connected:
                try:
                    await st.cc.queue.logout(ext)
                except Exception:
                    pass
        await st.close()


def seed_ivr_call(stack: Stack, *, caller: str, with_case: bool) -> tuple[str, str, int, int | None]:
    """What the voice menu leaves behind for a citizen it queues: the call record of the channel
    (flow path, digits, a complaint case made in the menu). Returns (linkedid, uniqueid, call id, case id)."""
    base = f"live-{uuid.uuid4().hex[:10]}"
    uniqueid = f"{base}-2"
    with session_scope(stack.sessions) as s:
        wf = stack.domain.workflow(s)
        old = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="旧的咨询",
                        description="上周的问题", citizen_phone=caller)
        call = calls.call_row(s, uniqueid=uniqueid, linkedid=base, caller_number=caller, started_at=stack.clock(),
                               answered_at=stack.clock())
        case_id = None
        if with_case:
            case = wf.accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title="电话投诉举报",
                             description="来电经语音菜单选择", citizen_phone=caller, call_id=call.id)
            case_id = case.id
        calls.finish_call(s, call.id, outcome="queued", reason="complaint", ended_at=stack.clock(),
                          flow_path=["greeting", "open_cases", "hours_check", "main_menu", "complaint"],
                          digits=[{"node": "main_menu", "digits": "3"}], case_id=case_id)
        call_id = call.id
        assert old.id
    return base, uniqueid, call_id, case_id


async def originate_queued_citizen(stack: Stack, base: str, caller: str, hold_seconds: int = 30) -> None:
    """A citizen channel straight into the queue context (the IVR already ran: seed_ivr_call)."""
    reply = await stack.cc.link.ami.send_action({
        "Action": "Originate", "Channel": "Local/s@hotline-queue", "Application": "Wait",
        "Data": str(hold_seconds), "CallerID": f'"citizen" <{caller}>', "Async": "true",
        "ChannelId": base, "OtherChannelId": f"{base}-2", "Timeout": "30000",
    })
    assert reply.success, reply


def call_events(stack: Stack, call_id: int) -> list[CallEvent]:
    with session_scope(stack.sessions) as s:
        rows = s.execute(select(CallEvent).where(CallEvent.call_id == call_id).order_by(CallEvent.at)).scalars().all()
        for row in rows:
            s.expunge(row)
        return rows


async def sse_until(response: httpx.Response, wanted_type: str, timeout: float) -> list[dict]:
    """Read the SSE stream's data messages until one of ``wanted_type`` (inclusive)."""
    import json

    events: list[dict] = []

    async def collect():
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] == wanted_type:
                    return

    await asyncio.wait_for(collect(), timeout)
    return events


async def test_r5_1_r4_1_queued_citizen_rings_operator_phone_and_screen_pop_has_open_cases(stack, tmp_path):
    """Queue → operator's softphone auto-answers → the operator's SSE stream carries the screen-pop
    (call id, caller number, menu path and digits, open and recent cases); R4.1: the operator owns the
    case the menu made; the call log (A2) has queued, operator connected, legs and bridge entries."""
    api = stack.http
    headers = await stack.token("op8003")
    with operator_phones(stack.settings, tmp_path, ["8003"]) as phones:
        r = await api.post("/api/v1/operators/me/queue/login", headers=headers)
        assert r.status_code == 200, r.text
        member = r.json()["member"]
        assert member["extension"] == "8003"
        # the phone is registered: Asterisk reports the member free within a moment
        for _ in range(50):
            q = (await api.get("/api/v1/queue", headers=headers)).json()
            if any(m["extension"] == "8003" and m["state"] == "free" for m in q["members"]):
                break
            await asyncio.sleep(0.1)
        assert any(m["extension"] == "8003" and m["state"] == "free" for m in q["members"]), q

        caller = "13912340001"
        base, uniqueid, call_id, case_id = seed_ivr_call(stack, caller=caller, with_case=True)
        async with api.stream("GET", "/api/v1/operators/me/events", headers=headers) as resp:
            assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
            await originate_queued_citizen(stack, base, caller)
            seen = await sse_until(resp, "screen_pop", 30)
            assert seen[-1]["caller_uniqueid"] == uniqueid, "another test's citizen was still queued"
        pop = seen[-1]
        assert seen[0]["type"] == "hello"
        assert pop["call_id"] == call_id and pop["caller_number"] == caller, (str(pop), uniqueid)
        assert pop["flow_path"][-1] == "complaint" and pop["digits"] == [{"node": "main_menu", "digits": "3"}]
        assert pop["case_id"] == case_id and pop["case_owner"] == "you"
        assert {c["id"] for c in pop["open_cases"]} >= {case_id} and len(pop["open_cases"]) == 2
        assert pop["caller_uniqueid"] == uniqueid
        phones["op8003"].wait_event("CALL_ESTABLISHED", timeout=10)
        await stack.cc.link.flush_log()

        with session_scope(stack.sessions) as s:
            case = s.get(Case, case_id)
            assert case.owner_id is not None and case.status == CaseStatus.NEW  # R4.1
            call = s.get(Call, call_id)
            assert call.operator_id == case.owner_id and call.outcome == "answered"

        # the operator sees the call leg and may hang it up; the queue shows the operator busy
        mine = (await api.get("/api/v1/operators/me/calls", headers=headers)).json()
        assert any(c["operator"] == "8003" for c in mine)
        q = (await api.get("/api/v1/queue", headers=headers)).json()
        assert q["operators"]["busy"] >= 1 and q["callers_waiting"] == 0
        op_leg = next(c for c in mine if c["operator"] == "8003")
        # waiting starts before the hangup: the citizen's Hangup event may arrive before the POST returns
        citizen_gone = asyncio.ensure_future(
            stack.cc.link.wait_for(lambda m: m.name == "Hangup" and m.get_first("Uniqueid") == uniqueid, 10))
        await asyncio.sleep(0)
        r = await api.post(f"/api/v1/operators/me/calls/{op_leg['uniqueid']}/hangup", headers=headers)
        assert r.status_code == 200, r.text
        await citizen_gone
        # hung up: acting on it again is a clear 410
        r = await api.post(f"/api/v1/operators/me/calls/{op_leg['uniqueid']}/hangup", headers=headers)
        assert r.status_code == 410 and r.json()["error"] == "call_ended"
        await asyncio.sleep(0.5)
        await stack.cc.link.flush_log()

    kinds = collections.Counter(e.kind for e in call_events(stack, call_id))
    assert kinds["queued"] == 1 and kinds["operator_connected"] == 1, kinds
    assert kinds["bridge_enter"] >= 2 and kinds["leg_end"] >= 2, kinds  # citizen's and operator's legs
    r = await api.get(f"/api/v1/calls/{call_id}/log", headers=headers)
    assert r.status_code == 200 and r.json()["caller_number"] == "139****0001"
    ops = [e for e in r.json()["events"] if e["data"].get("operator") == "8003"]
    assert {"leg_start", "leg_answer", "bridge_enter", "leg_end"} <= {e["kind"] for e in ops}


async def test_r5_1_pause_with_reason_and_logout_reach_asterisk(stack, tmp_path):
    api = stack.http
    headers = await stack.token("op8004")
    with operator_phones(stack.settings, tmp_path, ["8004"]):
        assert (await api.post("/api/v1/operators/me/queue/login", headers=headers)).status_code == 200
        r = await api.post("/api/v1/operators/me/queue/pause", json={"reason": "meal"}, headers=headers)
        assert r.status_code == 200 and r.json()["member"]["state"] == "paused"
        await asyncio.sleep(0.3)
        shown = process.cli(stack.settings, "queue show hotline-12345")
        line = next(ln for ln in shown.splitlines() if "op8004" in ln)
        assert "paused" in line.lower() and "meal" in line, line
        r = await api.post("/api/v1/operators/me/queue/pause", json={"reason": "nap"}, headers=headers)
        assert r.status_code == 422
        assert (await api.post("/api/v1/operators/me/queue/unpause", headers=headers)).json()["member"]["paused"] is False
        assert (await api.post("/api/v1/operators/me/queue/logout", headers=headers)).json()["logged_in"] is False
        await asyncio.sleep(0.3)
        assert "op8004" not in process.cli(stack.settings, "queue show hotline-12345")


async def test_a2_asterisk_restart_during_call_link_back_in_5s_log_exactly_once(stack, tmp_path):
    """Reliability: Asterisk is restarted while an operator talks to a citizen. The link reconnects
    within 5 s, resyncs (the dead call is gone from the state, the operator is back in the queue),
    and the call log holds every event once although the CEL file is read again after the reconnect."""
    api = stack.http
    headers = await stack.token("op8004")
    link = stack.cc.link
    with operator_phones(stack.settings, tmp_path, ["8004"]) as phones:
        assert (await api.post("/api/v1/operators/me/queue/login", headers=headers)).status_code == 200
        caller = "13912340002"
        base, uniqueid, call_id, _ = seed_ivr_call(stack, caller=caller, with_case=False)
        feed = link.subscribe("operator:8004")
        await originate_queued_citizen(stack, base, caller, hold_seconds=120)
        while True:
            event = await feed.get(timeout=30)
            if event["type"] == "screen_pop":
                assert event["caller_uniqueid"] == uniqueid
                break
        phones["op8004"].wait_event("CALL_ESTABLISHED", timeout=10)
        await link.flush_log()
        before = collections.Counter((e.kind, e.dedup_key) for e in call_events(stack, call_id))
        assert before, "events were logged live"

        reconnects = link.ami.stats.reconnects
        try:
            await asyncio.to_thread(process.stop, stack.settings)
            assert not link.connected
        finally:
            await asyncio.to_thread(process.start, stack.settings)  # returns once AMI takes logins
        up_at = time.monotonic()
        assert await link.ami.wait_connected(timeout=5), "the link is back within 5 s of Asterisk"
        assert await link.wait_resynced(timeout=5)
        assert time.monotonic() - up_at < 5.0
        assert link.ami.stats.reconnects == reconnects + 1

        assert uniqueid not in link.channels and uniqueid in link.gone
        for _ in range(40):  # baresip re-registers on its own (its registration is gone with Asterisk)
            if "op8004" in process.endpoint_contacts(stack.settings):
                break
            await asyncio.sleep(0.25)
        for _ in range(40):  # the QueueMemberAdded event of the re-login follows the resync
            member = stack.cc.queue.member("8004")
            if member is not None:
                break
            await asyncio.sleep(0.25)
        assert member is not None, "the operator was put back into the queue after the restart"
        assert "op8004" in process.cli(stack.settings, "queue show hotline-12345")  # Asterisk agrees
        await link.reconcile()
        await link.flush_log()
        feed.close()

    events = call_events(stack, call_id)
    keys = collections.Counter(e.dedup_key for e in events)
    assert all(n == 1 for n in keys.values())
    facts = collections.Counter((e.kind, e.data.get("uniqueid"), e.at.replace(microsecond=0)) for e in events
                                if e.kind.startswith(("leg_", "bridge_")))
    assert all(n == 1 for n in facts.values()), facts
    ended = {e.data.get("uniqueid") for e in events if e.kind == "leg_end"}
    assert uniqueid in ended and any(e.kind == "leg_end" and e.data.get("operator") == "8004" for e in events)
    assert link.stats.log_duplicates >= 1, "the CEL file's copies of live events were seen and not stored"


class CuttableProxy:
    """A TCP relay to Asterisk's AMI that the test can cut (and keep cut) to simulate a link outage
    while Asterisk keeps running."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.server = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self):
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self):
        self.server.close()
        await self.server.wait_closed()
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()


async def test_a2_link_outage_gap_is_filled_from_cel_file_exactly_once(asterisk, tmp_path):
    """The AMI link is cut (Asterisk keeps running) while an operator's call ends: the hang-ups happen
    while nobody listens. After the reconnect the link resyncs (the call is gone) and the call log
    gets the missed leg ends from Asterisk's CEL file; nothing is logged twice."""
    st = Stack(asterisk, tmp_path)
    proxy = await CuttableProxy(asterisk.ami_host, asterisk.ami_port).start()
    from callcenter.ami.client import AMIClient
    from callcenter.callcontrol.cel import CelFile

    ami = AMIClient(asterisk.ami_host, proxy.port, asterisk.ami_username, credentials.ami_secret(asterisk),
                    reconnect_backoff=(0.2, 1.0))
    st.cc = CallControl.create(ami, st.sessions, st.domain, cel_source=CelFile.from_settings(asterisk))
    st.app = create_app(asterisk, domain=st.domain, engine=st.engine, callcontrol=st.cc)
    await st.start()
    link = st.cc.link
    try:
        with operator_phones(asterisk, tmp_path, ["8004"]) as phones:
            await st.cc.queue.login("8004", "话务员8004")
            caller = "13912340003"
            base, uniqueid, call_id, _ = seed_ivr_call(st, caller=caller, with_case=False)
            feed = link.subscribe("operator:8004")
            await originate_queued_citizen(st, base, caller, hold_seconds=120)
            while (await feed.get(timeout=30))["type"] != "screen_pop":
                pass
            phones["op8004"].wait_event("CALL_ESTABLISHED", timeout=10)
            await link.flush_log()
            live = {e.dedup_key for e in call_events(st, call_id)}
            assert not any(e.kind == "leg_end" for e in call_events(st, call_id))

            await proxy.cut()  # link down; Asterisk carries on
            phones["op8004"].hangup()  # the operator hangs up: the call ends while we are cut off
            phones["op8004"].wait_event("CALL_CLOSED", timeout=10)
            await asyncio.sleep(1.0)
            assert not link.connected
            await proxy.start()  # same port again
            assert await link.ami.wait_connected(timeout=5)
            assert await link.wait_resynced(timeout=10)
            await link.flush_log()
            feed.close()
            assert uniqueid not in link.channels, "resync dropped the call that ended during the outage"
            await st.cc.queue.logout("8004")
    finally:
        await st.close()
        await proxy.cut()

    events = call_events(st, call_id)
    assert len({e.dedup_key for e in events}) == len(events)
    new = [e for e in events if e.dedup_key not in live]
    assert any(e.kind == "leg_end" and e.data.get("uniqueid") == uniqueid for e in new), [e.kind for e in new]
    assert any(e.kind == "leg_end" and e.data.get("operator") == "8004" for e in new)
    assert link.stats.reconciled >= 2
