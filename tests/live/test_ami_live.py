"""Our AMI client against the project's real Asterisk 22 (fixture `asterisk`, tests/live/conftest.py)."""
from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import pytest

from callcenter.ami import AMIClient, Message
from callcenter.pbx import credentials, process
from callcenter.pbx.root import ASTERISK_BIN, run_in_root

pytestmark = pytest.mark.live


def _client(settings, **kwargs) -> AMIClient:
    # The secret may have been generated after get_settings() was cached: read it where install wrote it.
    return AMIClient(settings.ami_host, settings.ami_port, settings.ami_username,
                     credentials.ami_secret(settings), **kwargs)


async def test_login_ping_command_and_channel_list(asterisk):
    client = _client(asterisk)
    await client.start()
    try:
        assert client.banner.startswith("Asterisk Call Manager/")
        pong = await client.send_action({"Action": "Ping"})
        assert pong.success and pong.get("Ping") == "Pong"
        version = await client.command("core show version")
        assert version[0].startswith("Asterisk 22"), version
        # A multi-line command arrives as several Output: headers on Asterisk 22.
        assert len(await client.command("core show help core show")) > 1
        response, items = await client.send_action_list({"Action": "CoreShowChannels"})
        assert response.success and response.event_list == "start"
        assert all(i.name == "CoreShowChannel" for i in items)
    finally:
        await client.stop()


async def test_originate_local_call_gives_response_and_channel_events(asterisk):
    client = _client(asterisk)
    seen: list[Message] = []
    client.subscribe(seen.append, ["Newchannel", "Hangup"])
    await client.start()
    channel_id = f"amilive-{uuid.uuid4().hex[:10]}"
    try:
        # ;1 plays 1 s of silence then hangs up, which ends ;2 (test-citizen loops on silence).
        result = await client.originate("Local/s@test-citizen", application="Playback", data="silence/1",
                                        channel_id=channel_id, dial_timeout=10)
        assert result.name == "OriginateResponse" and result.response == "Success", result
        assert result.get("Uniqueid") == channel_id  # our ChannelId became the channel's Uniqueid

        def ours(name: str) -> list[str]:
            return sorted(e.get("Uniqueid") for e in seen
                          if e.name == name and str(e.get("Uniqueid", "")).startswith(channel_id))

        deadline = time.monotonic() + 10
        while len(ours("Hangup")) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert ours("Newchannel") == [channel_id, f"{channel_id};2"]
        assert ours("Hangup") == [channel_id, f"{channel_id};2"]
    finally:
        await client.stop()


async def test_originate_to_missing_extension_reports_failure(asterisk):
    client = _client(asterisk)
    await client.start()
    try:
        result = await client.originate("Local/nosuchexten@test-citizen", application="Playback",
                                        data="silence/1", dial_timeout=5)
        # Asterisk 22 accepts the action ("successfully queued") and reports the failure in the event.
        assert result.name == "OriginateResponse" and result.response == "Failure", result
        assert result.get("Reason") == "0"
    finally:
        await client.stop()


async def test_client_reconnects_after_asterisk_restart(asterisk):
    """`core restart now`: the link drops, Asterisk comes back, the client logs in again on its own
    within 5 s of Asterisk accepting logins again, and on_connected fires with first=False.

    Measured here: Asterisk 22 keeps AMI sessions open while it shuts down (actions get
    "Asterisk is shutting down"), 0-16.5 s depending on the calls up; the link drops when it
    re-executes itself.
    This restarts the PBX shared by every live test: it holds the install/start/stop lock meanwhile
    and makes sure Asterisk is up again before it returns."""
    client = _client(asterisk)
    reconnected = asyncio.Event()
    firsts: list[bool] = []

    def on_connected(c: AMIClient, first: bool) -> None:
        firsts.append(first)
        if not first:
            reconnected.set()

    client.on_connected(on_connected)
    await client.start()
    secret = credentials.ami_secret(asterisk)

    async def asterisk_accepts_logins(deadline: float) -> float:
        while time.monotonic() < deadline:
            ok = await asyncio.to_thread(process.ami_login, asterisk.ami_host, asterisk.ami_port,
                                         asterisk.ami_username, secret, 1.0)
            if ok[1]:
                return time.monotonic()
            await asyncio.sleep(0.1)
        raise AssertionError("Asterisk did not come back within 60 s of `core restart now`")

    # Courtesy to parallel live sessions on the same PBX: restart in a moment without calls.
    quiet_until = time.monotonic() + 60
    while time.monotonic() < quiet_until:
        _, channels = await client.send_action_list({"Action": "CoreShowChannels"})
        if not channels:
            break
        await asyncio.sleep(0.5)

    try:
        with process.locked(asterisk):  # no install/start/stop of other sessions meanwhile
            started = time.monotonic()
            # The remote console may be cut by the restart itself: its exit status says nothing.
            await asyncio.to_thread(run_in_root, asterisk, [ASTERISK_BIN, "-rx", "core restart now"], 20)
            while client.connected and time.monotonic() < started + 60:
                await asyncio.sleep(0.02)
            dropped_at = time.monotonic()
            assert not client.connected, "link did not drop on restart"
            ready_at = await asterisk_accepts_logins(started + 60)
            await asyncio.wait_for(reconnected.wait(), 30)
            back_at = time.monotonic()
        print(f"restart: link dropped after {dropped_at - started:.1f} s, logins accepted after "
              f"{ready_at - started:.1f} s, client back after {back_at - started:.1f} s "
              f"({back_at - ready_at:.2f} s after Asterisk)")
        assert back_at - ready_at <= 5.0, (
            f"reconnected {back_at - ready_at:.1f} s after Asterisk was back (restart: link dropped after "
            f"{dropped_at - started:.1f} s, logins accepted after {ready_at - started:.1f} s)"
        )
        assert firsts == [True, False]
        assert client.stats.reconnects == 1
        assert (await client.send_action({"Action": "Ping"})).success
    finally:
        await client.stop()
        # Up again for everyone else, whatever happened above: wait out a slow shutdown, then start
        # it if it is gone.
        with contextlib.suppress(AssertionError):
            await asterisk_accepts_logins(time.monotonic() + 60)
        process.start(asterisk)
