"""The AMI link service against the fake AMI server: resync after reconnect, queue state, the call
log written exactly once from live CEL events and the CEL file, queue actions never replayed, and
the operator API's refusals (403 another operator's call, 404 unknown, 410 hung up, 503 no link)."""
from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select

from callcenter.ami.client import AMIClient
from callcenter.ami.fake import FakeAMIServer
from callcenter.api.app import create_app
from callcenter.auth import create_user
from callcenter.callcontrol import CallControl
from callcenter.callcontrol.cel import CelFile, cel_entry, parse_cel_lines
from callcenter.settings import Settings
from tests.conftest import CONFIG_DIR, PASSWORD
from tests.helpers import PATIENCE_S
from ticketing import calls
from ticketing.models import Call, CallEvent
from ticketing.store import session_scope

QUEUE = "hotline-12345"


def _list_handler(items_of, complete: str):
    def handler(session, action):
        items = items_of(action)
        replies = [{"Response": "Success", "ActionID": action.action_id, "EventList": "start",
                    "Message": "will follow"}]
        replies += [{**item, "ActionID": action.action_id} for item in items]
        replies.append({"Event": complete, "ActionID": action.action_id, "EventList": "Complete",
                        "ListItems": len(items)})
        return replies
    return handler


class Fake:
    """The fake AMI server with the handful of actions the link uses."""

    def __init__(self) -> None:
        self.server = FakeAMIServer()
        self.bridges: list[dict] = []
        self.queue_items: list[dict] = []
        self.refuse: dict[str, str] = {}
        s = self.server
        s.handlers["bridgelist"] = _list_handler(lambda a: self.bridges, "BridgeListComplete")
        s.handlers["queuestatus"] = _list_handler(lambda a: self.queue_items, "QueueStatusComplete")
        for name in ("queueadd", "queueremove", "queuepause", "hangup", "getvar"):
            s.handlers[name] = self._ok(name)

    def _ok(self, name):
        def handler(session, action):
            if name in self.refuse:
                return [{"Response": "Error", "ActionID": action.action_id, "Message": self.refuse[name]}]
            return [{"Response": "Success", "ActionID": action.action_id, "Message": "ok", "Value": ""}]
        return handler

    def event(self, **fields) -> None:
        fields.setdefault("Timestamp", f"{time.time():.6f}")
        self.server.broadcast(fields)


def chan(uid, name, linkedid=None, bridge=""):
    return {"Channel": name, "Uniqueid": uid, "Linkedid": linkedid or uid, "ChannelState": "6",
            "ChannelStateDesc": "Up", "CallerIDNum": "13800001111", "ConnectedLineNum": "", "Context": "x",
            "Exten": "s", "BridgeId": bridge, "Duration": "00:00:10"}


@pytest.fixture
async def fake():
    f = Fake()
    await f.server.start()
    try:
        yield f
    finally:
        await f.server.close()


async def until(predicate, timeout=PATIENCE_S):
    """Wait for the predicate: as long as a starved nice-19 test process may need (tests/helpers.py)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


def make_cc(fake, sessions, domain, cel_path=None):
    ami = AMIClient("127.0.0.1", fake.server.port, fake.server.username, fake.server.secret,
                    reconnect_backoff=(0.05, 0.2), ping_interval=5)
    return CallControl.create(ami, sessions, domain, cel_source=CelFile(cel_path) if cel_path else None)


CEL_LINES = [
    # eventtype, eventtime, uniqueid, linkedid, channame, appname, extra
    ('CHAN_START', '2026-03-02 01:00:00.100000', 'c1', 'c1', 'PJSIP/trunk-00000001', '', ''),
    ('BRIDGE_ENTER', '2026-03-02 01:00:05.200000', 'c1', 'c1', 'PJSIP/trunk-00000001', 'Queue',
     '{"bridge_id":"b1","bridge_technology":"simple_bridge"}'),
    ('CHAN_START', '2026-03-02 01:00:04.000000', 'o1', 'c1', 'PJSIP/op8001-00000002', '', ''),
    ('ANSWER', '2026-03-02 01:00:05.000000', 'o1', 'c1', 'PJSIP/op8001-00000002', 'AppQueue', ''),
    ('CHAN_END', '2026-03-02 01:00:09.000000', 'o1', 'c1', 'PJSIP/op8001-00000002', '', ''),
    ('HANGUP', '2026-03-02 01:00:09.000000', 'o1', 'c1', 'PJSIP/op8001-00000002', '',
     '{"hangupcause":16,"hangupsource":"","dialstatus":""}'),
    ('HANGUP', '2026-03-02 01:00:09.500000', 'c1', 'c1', 'PJSIP/trunk-00000001', '', '{"hangupcause":16}'),
]


def csv_of(rows) -> str:
    return "".join(",".join(f'"{v.replace(chr(34), chr(34) * 2)}"' for v in row) + "\n" for row in rows)


def test_cel_file_rows_and_dedup_keys_match_live_ami_copies():
    """The same CEL record, live (time to the second) or from the file (microseconds), has one key."""
    rows = list(parse_cel_lines(csv_of(CEL_LINES)))
    assert [r["eventtype"] for r in rows] == ["CHAN_START", "BRIDGE_ENTER", "CHAN_START", "ANSWER", "HANGUP",
                                              "HANGUP"]  # CHAN_END skipped
    from_file = cel_entry(rows[1])
    live = cel_entry({**rows[1], "eventtime": "2026-03-02 01:00:05"})
    assert from_file.dedup_key == live.dedup_key and from_file.kind == "bridge_enter"
    assert from_file.data["bridge_id"] == "b1" and from_file.at.microsecond == 200000
    assert cel_entry(rows[3]).data["operator"] == "8001"
    masked = cel_entry({**rows[0], "channame": "Local/13812345678@citizen-phones-0001;1"})
    assert "13812345678" not in masked.data["channel"] and "138****5678" in masked.data["channel"]


async def test_a2_call_log_exactly_once_from_live_cel_and_file_and_gap_filled(fake, sessions, domain, tmp_path):
    """Live CEL events are logged; the file then has the same records plus ones missed during an
    outage: after the reconnect only the missed ones are added, and a second read adds nothing."""
    with session_scope(sessions) as s:
        call = calls.call_row(s, uniqueid="c1", linkedid="c1", caller_number="13800001111",
                               started_at=datetime(2026, 3, 2, 1, tzinfo=UTC))
        call_id = call.id
    cel_path = tmp_path / "cel.csv"
    cel_path.write_text("")
    cc = make_cc(fake, sessions, domain, cel_path)
    await cc.start()
    try:
        for row in CEL_LINES[:4]:  # seen live, time to the second as cel_manager sends it
            fake.event(Event="CEL", EventName=row[0], EventTime=row[1][:19], UniqueID=row[2], LinkedID=row[3],
                       Channel=row[4], Application=row[5], Extra=row[6])
        await until(lambda: cc.link.stats.log_written >= 4)
        await cc.link.flush_log()
        cel_path.write_text(csv_of(CEL_LINES))  # Asterisk's file: all of it
        fake.server.drop_all()  # outage; the reconnect reconciles
        await until(lambda: cc.link.stats.resyncs >= 2)
        await cc.link.wait_resynced(3)
        assert cc.link.stats.reconciled == 2  # the two hang-ups only
        assert await cc.link.reconcile() == 0
    finally:
        await cc.stop()
    with session_scope(sessions) as s:
        events = s.execute(select(CallEvent).where(CallEvent.call_id == call_id)).scalars().all()
        kinds = sorted((e.kind, e.data["uniqueid"]) for e in events)
        call = s.get(Call, call_id)
        assert call.ended_at is not None and call.ended_at.replace(tzinfo=UTC).second == 9
    assert kinds == sorted([("leg_start", "c1"), ("bridge_enter", "c1"), ("leg_start", "o1"), ("leg_answer", "o1"),
                            ("leg_end", "o1"), ("leg_end", "c1")])


async def test_resync_after_reconnect_reads_channels_bridges_queue_and_restores_operators(fake, sessions, domain):
    fake.server.channels = [chan("c1", "PJSIP/trunk-1", bridge="b1"), chan("o1", "PJSIP/op8001-1", "c1", "b1")]
    fake.bridges = [{"Event": "BridgeListItem", "BridgeUniqueid": "b1", "BridgeType": "basic",
                     "BridgeTechnology": "simple_bridge"}]
    fake.queue_items = [
        {"Event": "QueueParams", "Queue": QUEUE},
        {"Event": "QueueMember", "Queue": QUEUE, "Name": "王芳", "Location": "PJSIP/op8001",
         "StateInterface": "PJSIP/op8001", "Status": "2", "Paused": "0", "PausedReason": "", "InCall": "1",
         "CallsTaken": "3"},
        {"Event": "QueueEntry", "Queue": QUEUE, "Position": "1", "Channel": "PJSIP/trunk-2", "Uniqueid": "c2",
         "CallerIDNum": "13800002222", "Wait": "42"},
    ]
    cc = make_cc(fake, sessions, domain)
    await cc.start()
    try:
        link = cc.link
        assert link.bridge_peers("c1")[0].operator == "8001"
        snap = link.queue_snapshot()
        assert snap["callers_waiting"] == 1 and snap["longest_wait_seconds"] >= 42
        assert snap["operators"]["busy"] == 1 and snap["callers"][0]["caller_number"] == "138****2222"
        assert "8001" in cc.queue.wanted  # adopted from Asterisk at the first login

        # Asterisk restarted: the call is gone, the queue is empty
        fake.server.channels, fake.bridges, fake.queue_items = [], [], []
        queue_adds = len(fake.server.actions_named("QueueAdd"))
        fake.server.drop_all()
        await until(lambda: link.stats.resyncs >= 2)
        assert await link.wait_resynced(3)
        assert link.channels == {} and "c1" in link.gone and link.queue.callers == {}
        adds = fake.server.actions_named("QueueAdd")[queue_adds:]
        assert [a.get_first("Interface") for a in adds] == ["PJSIP/op8001"]
        assert adds[0].get_first("StateInterface") == "PJSIP/op8001" and adds[0].get_first("MemberName") == "王芳"
    finally:
        await cc.stop()


async def test_queue_login_while_link_down_is_refused_and_never_sent_later(fake, sessions, domain):
    cc = make_cc(fake, sessions, domain)
    await cc.start()
    try:
        await fake.server.stop_listening()
        fake.server.drop_all()
        await until(lambda: not cc.link.connected)
        from callcenter.callcontrol.link import LinkDown

        with pytest.raises(LinkDown):
            await cc.queue.login("8002", "李娜")
        await fake.server.start()
        await until(lambda: cc.link.stats.resyncs >= 2)
        await cc.link.wait_resynced(3)
        await asyncio.sleep(0.2)
        assert fake.server.actions_named("QueueAdd") == []
    finally:
        await cc.stop()


async def test_r5_1_queue_login_answers_with_the_member_asterisk_reports_after_its_response(fake, sessions, domain):
    """Asterisk may answer QueueAdd before it sends QueueMemberAdded: the login waits for the report
    (briefly), so the operator sees themselves in the queue instead of `member: null`."""
    answer = fake.server.handlers["queueadd"]

    def add_then_report_later(session, action):
        asyncio.get_running_loop().call_later(0.2, lambda: fake.event(
            Event="QueueMemberAdded", Queue=QUEUE, Interface=action.get_first("Interface"),
            MemberName=action.get_first("MemberName"), StateInterface=action.get_first("Interface"),
            Status="1", Paused="0", InCall="0"))
        return answer(session, action)
    fake.server.handlers["queueadd"] = add_then_report_later
    cc = make_cc(fake, sessions, domain)
    await cc.start()
    try:
        state = await cc.queue.login("8003", "张伟")
        assert state["logged_in"] and state["member"]["extension"] == "8003"
    finally:
        await cc.stop()


async def test_live_queue_events_update_state_and_feeds(fake, sessions, domain):
    cc = make_cc(fake, sessions, domain)
    await cc.start()
    link = cc.link
    queue_feed = link.subscribe("queue")
    op_feed = link.subscribe("operator:8001")
    try:
        fake.event(Event="QueueMemberAdded", Queue=QUEUE, Interface="PJSIP/op8001", MemberName="王芳",
                   StateInterface="PJSIP/op8001", Status="1", Paused="0", InCall="0")
        fake.event(Event="QueueCallerJoin", Queue=QUEUE, Uniqueid="c9", Linkedid="c9", Channel="PJSIP/t-9",
                   CallerIDNum="13800009999", Position="1")
        fake.event(Event="QueueMemberPause", Queue=QUEUE, Interface="PJSIP/op8001", Paused="1",
                   PausedReason="meal", Status="1")
        await until(lambda: link.queue.members.get("PJSIP/op8001") is not None
                    and link.queue.members["PJSIP/op8001"].paused)
        snap = (await queue_feed.get(1))["state"]
        while queue_feed.get_nowait() is not None:
            pass
        snap = link.queue_snapshot()
        assert snap["callers_waiting"] == 1 and snap["operators"] == {"free": 0, "busy": 0, "paused": 1,
                                                                      "unavailable": 0}
        assert snap["members"][0]["paused_reason"] == "meal"
        kinds = []
        while (event := op_feed.get_nowait()) is not None:
            kinds.append(event["type"])
        assert kinds.count("member") >= 2
        fake.event(Event="QueueCallerLeave", Queue=QUEUE, Uniqueid="c9")
        await until(lambda: link.queue.callers == {})
    finally:
        queue_feed.close()
        op_feed.close()
        await cc.stop()


# -- the API ----------------------------------------------------------------------------------


@pytest.fixture
async def api_stack(fake, seeded, domain, engine, tmp_path):
    with session_scope(seeded) as s:
        for ext in ("8001", "8002"):
            create_user(s, username=f"op{ext}", password=PASSWORD, role="front_desk", operator_extension=ext,
                        now=domain.clock())
    fake.server.channels = [chan("c1", "PJSIP/trunk-00000001", bridge="b1"),
                            chan("o1", "PJSIP/op8001-00000002", "c1", "b1"),
                            chan("o2", "PJSIP/op8002-00000003")]
    cc = make_cc(fake, seeded, domain)
    await cc.start()
    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine,
                     callcontrol=cc)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")

    async def headers(user):
        r = await client.post("/api/v1/auth/token", json={"username": user, "password": PASSWORD})
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    client.headers_for = headers
    try:
        yield client, cc
    finally:
        await client.aclose()
        await cc.stop()


async def test_api_refuses_an_operator_acting_on_another_operators_call(api_stack, fake):
    client, cc = api_stack
    op2 = await client.headers_for("op8002")
    for leg in ("c1", "o1", "PJSIP/op8001-00000002"):
        r = await client.post(f"/api/v1/operators/me/calls/{leg}/hangup", headers=op2)
        assert r.status_code == 403 and r.json()["error"] == "not_your_call", r.text
    assert fake.server.actions_named("Hangup") == []
    op1 = await client.headers_for("op8001")
    r = await client.post("/api/v1/operators/me/calls/c1/hangup", headers=op1)  # the citizen of op1's call
    assert r.status_code == 200 and r.json()["channel"] == "PJSIP/trunk-00000001"
    assert [a.get_first("Channel") for a in fake.server.actions_named("Hangup")] == ["PJSIP/trunk-00000001"]


async def test_api_unknown_and_hung_up_channels_are_clear_4xx(api_stack, fake):
    client, cc = api_stack
    op1 = await client.headers_for("op8001")
    r = await client.post("/api/v1/operators/me/calls/no-such-leg/hangup", headers=op1)
    assert r.status_code == 404 and r.json()["error"] == "unknown_channel"
    fake.event(Event="Hangup", Uniqueid="o1", Linkedid="c1", Channel="PJSIP/op8001-00000002", Cause="16")
    await until(lambda: "o1" not in cc.link.channels)
    r = await client.post("/api/v1/operators/me/calls/o1/hangup", headers=op1)
    assert r.status_code == 410 and r.json()["error"] == "call_ended" and "hung up" in r.json()["detail"]


async def test_api_roles_and_503_without_link(api_stack, fake):
    client, cc = api_stack
    bo = await client.headers_for("bo1")
    r = await client.post("/api/v1/operators/me/queue/login", headers=bo)
    assert r.status_code == 403  # R5.1: the queue is the front desk's
    op_plain = await client.headers_for("op1")  # front desk without a softphone extension
    r = await client.post("/api/v1/operators/me/queue/login", headers=op_plain)
    assert r.status_code == 403 and r.json()["error"] == "operator_extension"
    assert (await client.get("/api/v1/queue", headers=bo)).status_code == 200
    water = await client.headers_for("water1")
    assert (await client.get("/api/v1/queue", headers=water)).status_code == 403

    op1 = await client.headers_for("op8001")
    await fake.server.stop_listening()
    fake.server.drop_all()
    await until(lambda: not cc.link.connected)
    r = await client.post("/api/v1/operators/me/queue/login", headers=op1)
    assert r.status_code == 503 and r.json()["error"] == "telephony_unavailable"
    r = await client.post("/api/v1/operators/me/calls/o1/hangup", headers=op1)
    assert r.status_code == 503


async def test_api_without_telephony_answers_503_and_the_rest_works(api):
    r = api.get("/api/v1/queue", as_="bo1")
    assert r.status_code == 503 and "without the telephone link" in r.json()["detail"]
    assert api.get("/api/v1/cases", as_="bo1").status_code == 200


async def test_r4_1_r7_3c_screen_pop_gives_ownership_and_hides_confidential_content(fake, seeded, domain):
    """AgentConnect → the operator's feed gets the pop; the menu's case gets its first-contact
    owner (R4.1); an economic report of the same number shows as a placeholder (R7.3c)."""
    from ticketing.audit import SYSTEM
    from ticketing.enums import CaseKind, Channel
    from ticketing.models import Case, User

    with session_scope(seeded) as s:
        create_user(s, username="op8001", password=PASSWORD, role="front_desk", operator_extension="8001",
                    now=domain.clock())
        wf = domain.workflow(s)
        call = calls.call_row(s, uniqueid="c5;2", linkedid="c5", caller_number="13800005555",
                               started_at=domain.clock())
        # (no created_by_call_id: the shared fixture empties tables in an order that this cycle breaks)
        case = wf.accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title="噪音", description="x",
                         citizen_phone="13800005555")
        secret = wf.accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title="某官员受贿",
                           description="y", citizen_phone="13800005555")
        secret.confidential = True
        calls.finish_call(s, call.id, outcome="queued", reason="complaint", ended_at=domain.clock(),
                          flow_path=["greeting", "main_menu"], digits=[{"node": "main_menu", "digits": "3"}],
                          case_id=case.id)
        ids = (call.id, case.id, secret.id)
    cc = make_cc(fake, seeded, domain)
    await cc.start()
    feed = cc.link.subscribe("operator:8001")
    try:
        fake.event(Event="AgentConnect", Queue=QUEUE, Interface="PJSIP/op8001", MemberName="王芳",
                   Uniqueid="c5;2", Linkedid="c5", DestUniqueid="o5", CallerIDNum="13800005555", HoldTime="7")
        while (pop := await feed.get(3))["type"] != "screen_pop":
            pass
    finally:
        feed.close()
        await cc.stop()
    assert pop["call_id"] == ids[0] and pop["case_id"] == ids[1] and pop["case_owner"] == "you"
    assert pop["flow_path"] == ["greeting", "main_menu"] and pop["holdtime"] == 7.0
    by_id = {c["id"]: c for c in pop["open_cases"]}
    assert by_id[ids[1]]["title"] == "噪音"
    assert by_id[ids[2]]["confidential"] and "某官员" not in by_id[ids[2]]["title"]
    with session_scope(seeded) as s:
        owner = s.execute(select(User.id).where(User.username == "op8001")).scalar_one()
        assert s.get(Case, ids[1]).owner_id == owner and s.get(Call, ids[0]).operator_id == owner
