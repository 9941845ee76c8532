"""A restart of the application while operators hold three-way calls or warm transfers (Asterisk and
its ConfBridge rooms keep running): the registry is rebuilt from the call log's control snapshots and
reconciled with what the PBX reports (callcenter.callcontrol.recovery). Fake PBX that tracks which
channel is in which room; tests/live/test_conference_live.py does the same on the real Asterisk."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select

from callcenter.callcontrol.recovery import ControlRecovery, held_calls
from callcenter.callcontrol.transfer import CallControl, Chan, DialResult
from tests.test_transfer_api import CITIZEN, OP1_CHAN, WATER_A, FakePbx, new_case, ok, refused
from ticketing.models import CallEvent
from ticketing.store import session_scope

CITIZEN_CHAN = "PJSIP/trunk-00000009"


class RoomPbx(FakePbx):
    """FakePbx whose redirects, dials and hang-ups move channels in and out of rooms."""

    def _leave_rooms(self, channel):
        for members in self.rooms.values():
            if channel in members:
                members.remove(channel)

    def _into(self, channel, context, exten):
        self._leave_rooms(channel)
        if context.startswith("cc-room-"):
            self.rooms.setdefault(exten, []).append(channel)

    async def redirect(self, channel, context, exten, extra=None):
        await super().redirect(channel, context, exten, extra)
        self._into(channel, context, exten)
        if extra is not None:
            self._into(*extra)

    async def hangup(self, channel):
        await super().hangup(channel)
        self.drop(channel)

    def drop(self, channel):
        self._leave_rooms(channel)
        for uid, chan in list(self.channels.items()):
            if chan.name == channel:
                del self.channels[uid]

    async def dial_into_room(self, number, room, ring_seconds):
        result = await super().dial_into_room(number, room, ring_seconds)
        if result.answered:
            self.channels[result.uniqueid] = Chan(result.channel, result.uniqueid, "")
        return result

    async def call_endpoint_into_room(self, endpoint, room, context, ring_seconds):
        self.actions.append(("call_endpoint", endpoint, room, context))
        self._n += 1
        chan = f"PJSIP/{endpoint}-{self._n:08x}"
        self.rooms.setdefault(room, []).append(chan)
        self.channels[f"o{self._n}"] = Chan(chan, f"o{self._n}", "")
        return DialResult(True, "answered", chan, f"o{self._n}")


@pytest.fixture
def pbx(api, seeded) -> RoomPbx:
    from ticketing.models import User

    with session_scope(seeded) as s:
        for username, ext in (("op1", "8001"), ("op2", "8002")):
            s.execute(select(User).where(User.username == username)).scalar_one().operator_extension = ext
    fake = RoomPbx()
    fake.add_call(CITIZEN, CITIZEN_CHAN, OP1_CHAN)
    api.client.app.state.call_transfers = CallControl(fake, ring_seconds=1)
    return fake


def restart(api, pbx, seeded) -> ControlRecovery:
    """A new process: an empty registry over the same PBX and store, restored before it serves."""
    control = CallControl(pbx, ring_seconds=1)
    recovery = ControlRecovery(control, seeded)
    asyncio.run(recovery.restore())
    api.client.app.state.call_transfers = control
    return recovery


def test_r7_3e_three_way_call_given_back_to_its_operator_after_a_restart(api, pbx, seeded):
    number = new_case(api)
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    room = body["room"]
    unit_leg = next(m for m in pbx.rooms[room] if m.startswith(f"Local/{WATER_A}"))
    assert sorted(pbx.rooms[room]) == sorted([CITIZEN_CHAN, OP1_CHAN, unit_leg])
    # the snapshot in the call log names no duty phone number (uniqueids only)
    with session_scope(seeded) as s:
        snap = s.execute(select(CallEvent).order_by(CallEvent.id.desc())).scalars().first().data["control"]
    assert snap["operator"] == "op8001" and snap["room"] == room and snap["state"] == "conference"
    assert WATER_A not in str(snap)

    recovery = restart(api, pbx, seeded)
    assert (recovery.restored_calls, recovery.dropped_calls) == (1, 0)
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="op2"), 403, "call_owner")
    listed = ok(api.get(f"/api/v1/calls/{CITIZEN}/conference", as_="op1"))
    assert listed["state"] == "conference" and listed["room"] == room
    left = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="op1"))
    assert left["operator_in_call"] is False and ("hangup", OP1_CHAN) in pbx.actions
    assert sorted(pbx.rooms[room]) == sorted([CITIZEN_CHAN, unit_leg])  # citizen and unit stay

    # restarted again while the operator is out of the room: rejoin, not leave
    restart(api, pbx, seeded)
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="op1"), 409, "call_state")
    back = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference/rejoin", as_="op1"))
    assert back["operator_in_call"] is True
    assert pbx.named("call_endpoint") == [("call_endpoint", "op8001", room, "cc-room-operator")]


def test_a2_room_that_ended_during_the_downtime_is_dropped_410(api, pbx, seeded):
    number = new_case(api)
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    for member in list(pbx.rooms[body["room"]]):  # everybody hangs up while the process is down
        pbx.drop(member)
    recovery = restart(api, pbx, seeded)
    assert (recovery.restored_calls, recovery.dropped_calls) == (0, 1)
    assert CITIZEN not in api.client.app.state.call_transfers.calls
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="op1"), 410, "call_ended")
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference/rejoin", as_="op2"), 410, "call_ended")
    refused(api.post("/api/v1/calls/1795600000.999/conference/leave", as_="op1"), 404, "call_unknown")


def test_operator_who_hung_up_during_the_downtime_is_out_of_the_room_and_may_rejoin(api, pbx, seeded):
    number = new_case(api)
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    pbx.drop(OP1_CHAN)
    restart(api, pbx, seeded)
    refused(api.post(f"/api/v1/calls/{CITIZEN}/conference/leave", as_="op1"), 409, "call_state")
    ok(api.post(f"/api/v1/calls/{CITIZEN}/conference/rejoin", as_="op1"))
    assert any(m.startswith("PJSIP/op8001-") for m in pbx.rooms[body["room"]])


def test_warm_transfer_in_progress_can_be_completed_after_a_restart(api, pbx, seeded):
    number = new_case(api)
    body = ok(api.post(f"/api/v1/calls/{CITIZEN}/transfer", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    assert body["state"] == "consulting"
    restart(api, pbx, seeded)
    refused(api.post(f"/api/v1/calls/{CITIZEN}/transfer/complete", as_="op2"), 403, "call_owner")
    done = ok(api.post(f"/api/v1/calls/{CITIZEN}/transfer/complete", as_="op1"))
    assert done["state"] == "transferred"
    assert any(m.startswith(f"Local/{WATER_A}") for m in pbx.rooms[body["room"]])
    # a completed transfer is no longer anybody's to take back
    restart(api, pbx, seeded)
    assert CITIZEN not in api.client.app.state.call_transfers.calls


def test_no_call_is_resolved_before_the_restore_is_done(api, pbx, seeded):
    control = CallControl(pbx, ring_seconds=1)
    ControlRecovery(control, seeded)  # registered, not run yet (the link has not resynced)
    control.restore_wait = 0.2
    api.client.app.state.call_transfers = control
    refused(api.get(f"/api/v1/calls/{CITIZEN}/conference", as_="op1"), 503, "pbx_unavailable")


def test_only_recent_snapshots_of_calls_still_in_a_room_are_read_back(api, pbx, seeded):
    number = new_case(api)
    ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1", json={"case_number": number, "unit": "water_supply"}))
    control = api.client.app.state.call_transfers
    with session_scope(seeded) as s:
        assert [h["uniqueid"] for h in held_calls(s, control.clock() - timedelta(hours=1))] == [CITIZEN]
        assert held_calls(s, control.clock() + timedelta(minutes=1)) == []


class SlowPbx(RoomPbx):
    """Hang-ups take a moment, so two requests overlap."""

    async def hangup(self, channel):
        await asyncio.sleep(0.05)
        await super().hangup(channel)


def test_concurrent_actions_on_a_restored_conference_run_one_at_a_time(api, pbx, seeded):
    from callcenter.callcontrol import conference
    from callcenter.callcontrol.transfer import CallStateError

    number = new_case(api)
    ok(api.post(f"/api/v1/calls/{CITIZEN}/conference", as_="op1", json={"case_number": number, "unit": "water_supply"}))
    slow = SlowPbx()
    slow.channels, slow.rooms = pbx.channels, pbx.rooms

    async def scenario():
        control = CallControl(slow, ring_seconds=1)
        recovery = ControlRecovery(control, seeded)
        await recovery.restore()
        cc = await control.resolve("op8001", CITIZEN)
        results = await asyncio.gather(conference.leave(control, cc), conference.leave(control, cc),
                                       recovery.restore(), return_exceptions=True)
        return cc, results

    cc, (first, second, restored) = asyncio.run(scenario())
    assert first.call.operator_channel is None and isinstance(second, CallStateError)
    assert restored is None and slow.named("hangup") == [("hangup", OP1_CHAN)]  # hung up once
    assert cc.state == "conference"
