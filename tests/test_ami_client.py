"""AMIClient against a fake AMI server on 127.0.0.1 (protocol level; the real Asterisk is in tests/live)."""
from __future__ import annotations

import asyncio
import logging
import time

import pytest

from callcenter.ami import (
    ActionEncodingError,
    AMIAuthError,
    AMIClient,
    AMIConnectError,
    AMILinkLost,
    AMINotConnected,
    AMIProtocolError,
    AMITimeout,
    Message,
)
from callcenter.ami.fake import FakeAMIServer, FakeSession

FAST = dict(ping_interval=5.0, connect_timeout=1.0, action_timeout=2.0, reconnect_backoff=(0.05, 0.2), boot_timeout=1.0)


@pytest.fixture
async def ami():
    server = FakeAMIServer()
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def make_client(ami):
    clients: list[AMIClient] = []

    def make(**kwargs) -> AMIClient:
        opts = dict(FAST)
        opts.update(kwargs)
        client = AMIClient("127.0.0.1", ami.port, opts.pop("username", ami.username),
                           opts.pop("secret", ami.secret), **opts)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.stop()


async def _eventually(predicate, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_login_ping_and_banner(ami, make_client):
    client = make_client()
    await client.start()
    assert client.connected
    assert client.banner == "Asterisk Call Manager/9.0.0"
    pong = await client.send_action({"Action": "Ping"})
    assert pong.success and pong.get("Ping") == "Pong"
    login = ami.actions_named("Login")[0]
    assert login.get("Username") == "callcenter" and login.get("Events") == "on"
    # Every action carries a unique ActionID chosen by the client.
    ids = [a.action_id for a in ami.actions]
    assert all(ids) and len(set(ids)) == len(ids)


async def test_command_output_lines(ami, make_client):
    ami.command_output["core show version"] = ["Asterisk 22.10.1", "second line"]
    client = make_client()
    await client.start()
    assert await client.command("core show version") == ["Asterisk 22.10.1", "second line"]


async def test_login_failure_raises_clear_error_and_leaves_nothing_running(ami, make_client):
    client = make_client(secret="wrong")
    with pytest.raises(AMIAuthError, match="refused.*Authentication failed"):
        await client.start()
    assert not client.connected
    await asyncio.sleep(0.3)
    assert ami.failed_logins == 1  # no background retries after start(wait=True) failed


async def test_unreachable_server_raises_connect_error(ami, make_client):
    await ami.stop_listening()
    client = make_client()
    with pytest.raises(AMIConnectError, match="cannot connect"):
        await client.start()


async def test_login_failure_retried_with_backoff_and_logged_once(ami, make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="callcenter.ami")
    client = make_client(secret="wrong", reconnect_backoff=(0.05, 0.2))
    await client.start(wait=False)
    await _eventually(lambda: ami.failed_logins >= 5, timeout=3)
    refusals = [r for r in caplog.records if r.levelno >= logging.WARNING and "refused" in r.getMessage()]
    assert len(refusals) == 1, "a repeated failure is logged once, not per attempt"
    # The delay between attempts doubles up to the maximum.
    times = [s for s in _login_times(ami)]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert gaps[0] < 0.18, "first retry after the initial 0.05 s"
    assert min(gaps[3:]) >= 0.19 and max(gaps) < 1.0, "then 0.1, 0.2, and capped at 0.2 s"
    # Fix the secret: the next attempt logs in.
    client._secret = ami.secret
    assert await client.wait_connected(2)
    assert client.stats.connect_failures >= 5
    assert not any("wrong" in r.getMessage() for r in caplog.records), "secret leaked into logs"


def _login_times(ami: FakeAMIServer) -> list[float]:
    return ami.login_times  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _record_login_times(monkeypatch):
    """Timestamp every Login the fake server receives (to measure the client's backoff)."""
    original = FakeAMIServer._login

    async def timed(self, session, action):
        self.__dict__.setdefault("login_times", []).append(time.monotonic())
        return await original(self, session, action)

    monkeypatch.setattr(FakeAMIServer, "_login", timed)


async def test_action_id_correlation_with_interleaved_events(ami, make_client):
    """Answers come back out of order, with events in between; each caller gets its own answer."""
    held: list[tuple[FakeSession, Message]] = []

    def hold_then_answer(session: FakeSession, action: Message):
        held.append((session, action))
        if len(held) == 2:
            (s1, a1), (s2, a2) = held
            s2.send({"Response": "Success", "ActionID": a2.action_id, "Value": "second"})
            s1.send({"Event": "VarSet", "Variable": "X", "Value": "1"})
            s1.send({"Event": "Newstate", "ActionID": a1.action_id, "ChannelState": "6"})
            s1.send({"Response": "Success", "ActionID": a1.action_id, "Value": "first"})
        return None

    ami.handlers["getvar"] = hold_then_answer
    client = make_client()
    seen: list[str] = []
    client.subscribe(lambda e: seen.append(e.name))
    await client.start()
    first, second = await asyncio.gather(
        client.send_action({"Action": "Getvar", "Variable": "A"}),
        client.send_action({"Action": "Getvar", "Variable": "B"}),
    )
    assert first.get("Value") == "first" and second.get("Value") == "second"
    assert first.action_id != second.action_id
    assert "VarSet" in seen and "Newstate" in seen  # events still reach subscribers


async def test_event_list_collects_items_and_ignores_unrelated_events(ami, make_client):
    ami.channels = [{"Channel": f"Local/s@test-citizen-{i};1", "Uniqueid": f"17.{i}"} for i in range(3)]
    client = make_client()
    await client.start()
    original = ami.handlers["coreshowchannels"]

    def with_noise(session, action):
        replies = original(session, action)
        replies.insert(2, {"Event": "Hangup", "Channel": "SIP/other"})  # not ours: no ActionID
        return replies

    ami.handlers["coreshowchannels"] = with_noise
    response, items = await client.send_action_list({"Action": "CoreShowChannels"})
    assert response.success and response.get("EventList") == "start"
    assert [i.get("Channel") for i in items] == [c["Channel"] for c in ami.channels]
    assert all(i.name == "CoreShowChannel" for i in items)  # the ...Complete event is not an item


async def test_event_list_error_response_returns_no_items(ami, make_client):
    ami.handlers["queuestatus"] = lambda s, a: [{"Response": "Error", "ActionID": a.action_id,
                                                 "Message": "Permission denied"}]
    client = make_client()
    await client.start()
    response, items = await client.send_action_list({"Action": "QueueStatus"})
    assert not response.success and items == []


async def test_async_originate_returns_the_originate_response_event(ami, make_client):
    ami.originate_delay = 0.05
    client = make_client()
    await client.start()
    result = await client.originate("Local/s@test-citizen", application="Playback", data="silence/1",
                                    variables={"CASE_ID": "C-9", "LANG": "zh"}, channel_id="case-C-9-call-1")
    assert isinstance(result, Message)
    assert result.name == "OriginateResponse" and result.response == "Success"
    assert result.get("Uniqueid") == "case-C-9-call-1"
    (sent,) = ami.actions_named("Originate")
    assert sent.get("Variable") == ["CASE_ID=C-9", "LANG=zh"]
    assert sent.get("Async") == "true" and sent.get("ChannelId") == "case-C-9-call-1"


async def test_originate_event_arriving_before_its_ack_is_matched(ami, make_client):
    def event_first(session, action):
        return [{"Event": "OriginateResponse", "ActionID": action.action_id, "Response": "Failure", "Reason": "0"},
                {"Response": "Success", "ActionID": action.action_id, "Message": "Originate successfully queued"}]

    ami.handlers["originate"] = event_first
    client = make_client()
    await client.start()
    result = await client.originate("Local/s@nowhere", context="x", exten="s")
    assert result.name == "OriginateResponse" and result.response == "Failure"


async def test_originate_refused_returns_the_error_response(ami, make_client):
    ami.handlers["originate"] = lambda s, a: [{"Response": "Error", "ActionID": a.action_id,
                                               "Message": "Originate failed"}]
    client = make_client()
    await client.start()
    result = await client.originate("Bogus/x", application="Playback", data="x", timeout=1)
    assert result.is_response and not result.success


async def test_originate_sets_a_channel_id_when_none_given(ami, make_client):
    client = make_client()
    await client.start()
    result = await client.originate("Local/s@test-citizen", context="test-citizen", exten="s")
    (sent,) = ami.actions_named("Originate")
    assert sent.get("ChannelId") and result.get("Uniqueid") == sent.get("ChannelId")
    assert sent.get("Context") == "test-citizen" and sent.get("Priority") == "1"


async def test_link_cut_mid_action_raises_link_lost_and_action_is_never_resent(ami, make_client):
    ami.hold.add("originate")
    client = make_client()
    connects: list[bool] = []
    client.on_connected(lambda c, first: connects.append(first))
    await client.start()
    task = asyncio.create_task(client.originate("Local/s@test-citizen", application="Playback", data="silence/1"))
    await ami.wait_for_action("Originate")
    ami.drop_all()
    with pytest.raises(AMILinkLost) as info:
        await task
    # The caller gets what it needs to reconcile (the ChannelId), without secrets.
    assert info.value.action["ChannelId"] == ami.actions_named("Originate")[0].get("ChannelId")
    assert await client.wait_connected(2)
    await _eventually(lambda: connects == [True, False])
    await client.send_action({"Action": "Ping"})  # the new link works
    assert len(ami.actions_named("Originate")) == 1, "an Originate in flight must never be dialled again"


async def test_action_while_down_raises_at_once_and_is_not_sent_after_reconnect(ami, make_client):
    client = make_client()
    await client.start()
    await ami.stop_listening()
    ami.drop_all()
    await _eventually(lambda: not client.connected)
    started = time.monotonic()
    with pytest.raises(AMINotConnected):
        await client.originate("Local/s@test-citizen", application="Playback", data="silence/1")
    with pytest.raises(AMINotConnected):
        await client.send_action({"Action": "Command", "Command": "core show channels"})
    assert time.monotonic() - started < 0.1, "must fail immediately, not wait for the link"
    await ami.start()
    assert await client.wait_connected(2)
    await client.send_action({"Action": "Ping"})
    await asyncio.sleep(0.1)
    assert ami.actions_named("Originate") == [] and ami.actions_named("Command") == []


async def test_reconnect_with_backoff_calls_on_connected_with_first_false(ami, make_client):
    client = make_client(reconnect_backoff=(0.05, 0.2))
    calls: list[tuple[bool, bool]] = []

    async def resync(c: AMIClient, first: bool):
        # Runs with the link up: the app re-reads channels here.
        await c.send_action_list({"Action": "CoreShowChannels"})
        calls.append((first, c.connected))

    client.on_connected(resync)
    await client.start()
    assert calls == [(True, True)]  # start() returns after the first resync ran
    await ami.stop_listening()
    ami.drop_all()
    await asyncio.sleep(0.6)  # several refused attempts, backoff grows to its 0.2 s cap
    assert not client.connected
    await ami.start()
    assert await client.wait_connected(1.0)
    await _eventually(lambda: len(calls) == 2)
    assert calls[1] == (False, True)
    assert client.stats.reconnects == 1 and client.stats.link_losses == 1
    assert client.stats.connect_failures >= 2


async def test_missed_pong_drops_the_link_and_reconnects(ami, make_client):
    client = make_client(ping_interval=0.1, ping_timeout=0.1)
    firsts: list[bool] = []
    client.on_connected(lambda c, first: firsts.append(first))
    await client.start()
    ami.answer_pings = False
    await _eventually(lambda: client.stats.ping_timeouts >= 1, timeout=2)
    ami.answer_pings = True
    await _eventually(lambda: firsts[-1:] == [False] and client.connected, timeout=2)
    assert ami.logins >= 2 and len(ami.sessions) >= 2


async def test_action_without_answer_times_out_with_unknown_outcome(ami, make_client):
    ami.hold.add("hangup")
    client = make_client()
    await client.start()
    with pytest.raises(AMITimeout) as info:
        await client.send_action({"Action": "Hangup", "Channel": "PJSIP/13812345678-0001"}, timeout=0.1)
    assert isinstance(info.value, TimeoutError)
    assert "13812345678" not in str(info.value.action)
    assert client.connected  # one slow action does not drop the link


async def test_injection_rejected_before_anything_is_sent(ami, make_client):
    client = make_client()
    await client.start()
    before = len(ami.actions)
    with pytest.raises(ActionEncodingError):
        await client.originate("Local/s@x\r\nAction: Command\r\nCommand: core stop now", context="c", exten="s")
    with pytest.raises(ActionEncodingError):
        await client.send_action({"Action": "Ping", "ActionID": "mine"})  # ids are the client's job
    await client.send_action({"Action": "Ping"})
    assert [a.get("Action") for a in ami.actions[before:]] == ["Ping"]


async def test_failing_subscribers_do_not_break_the_link_or_others(ami, make_client):
    client = make_client()
    got_sync: list[str] = []
    got_async: list[str] = []

    def broken_sync(event):
        raise RuntimeError("sync boom")

    async def broken_async(event):
        raise RuntimeError("async boom")

    async def good_async(event):
        await asyncio.sleep(0)
        got_async.append(event.get("Channel"))

    client.subscribe(broken_sync)
    client.subscribe(broken_async)
    client.subscribe(lambda e: got_sync.append(e.get("Channel")), event_names=["hangup"])
    client.subscribe(good_async, "Hangup")
    await client.start()
    for i in range(3):
        ami.broadcast({"Event": "Hangup", "Channel": f"c{i}"}, {"Event": "Newexten", "Channel": "n"})
    await _eventually(lambda: len(got_async) == 3)
    assert got_sync == ["c0", "c1", "c2"] and got_async == ["c0", "c1", "c2"]
    assert client.stats.callback_errors >= 8  # 6 events x 2 broken subscribers, FullyBooted too
    assert (await client.send_action({"Action": "Ping"})).success


async def test_events_stream_is_bounded_and_keeps_the_newest(ami, make_client):
    client = make_client()
    await client.start()
    stream = client.events(["UserEvent"], maxsize=3)
    ami.broadcast(*({"Event": "UserEvent", "N": str(i)} for i in range(5)))
    await _eventually(lambda: stream.dropped == 2)
    assert [(await stream.get(1)).get("N") for _ in range(3)] == ["2", "3", "4"]
    assert client.stats.events_dropped == 2
    ami.broadcast({"Event": "UserEvent", "N": "5"})

    async def consume():
        return [e.get("N") async for e in stream]

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    await client.stop()  # ends the iteration
    assert await asyncio.wait_for(consumer, 1) == ["5"]


async def test_link_waits_for_fully_booted_before_it_is_up(ami, make_client):
    ami.send_fully_booted = False
    client = make_client(boot_timeout=5.0)
    starting = asyncio.create_task(client.start())
    await ami.wait_for_action("Login")
    await asyncio.sleep(0.1)
    assert not client.connected and not starting.done()
    ami.broadcast({"Event": "FullyBooted", "Status": "Fully Booted"})
    await asyncio.wait_for(starting, 1)
    assert client.connected


async def test_no_secret_and_no_clear_phone_number_in_debug_logs(ami, make_client, caplog):
    caplog.set_level(logging.DEBUG, logger="callcenter.ami")
    client = make_client()
    await client.start()
    await client.originate("PJSIP/13812345678@trunk", context="callback", exten="s", caller_id="12345")
    ami.drop_all()
    await _eventually(lambda: client.stats.reconnects == 1)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "AMI -> " in text  # debug logging of actions is on in this test
    assert ami.secret not in text
    assert "13812345678" not in text and "138****5678" in text
    assert ami.secret not in repr(client)


@pytest.mark.parametrize("greeting, error", [(b"HTTP/1.1 400 Bad Request\r\n\r\n", AMIProtocolError),
                                             (b"", AMIConnectError)])
async def test_peer_that_is_not_ami_gives_a_clear_error(greeting, error):
    async def handle(reader, writer):
        writer.write(greeting)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = AMIClient("127.0.0.1", port, "u", "s", **FAST)
    try:
        with pytest.raises(error):
            await client.start()
        assert not client.connected
    finally:
        await client.stop()
        server.close()
        await server.wait_closed()
