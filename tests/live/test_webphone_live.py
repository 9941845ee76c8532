"""The operator's browser phone (issue 17 item 1) against the real Asterisk: headless Chromium with
fake media devices logs in to the desk page, whose phone registers over wss (PJSIP webrtc=yes,
the install's certificate); a queued citizen rings it, the operator answers from the page and RTP
flows both ways, as Asterisk counts it on the WebRTC channel. Then the page's WebSocket is cut: the
phone says "not registered" within 10 s, a citizen queued meanwhile goes to another operator, and
the phone registers again by itself when the network is back.

Operator 8005 is the browser-phone operator of config/operators.yaml (phone: browser); 8004's
softphone (baresip) is the other operator. The page reaches Asterisk's wss port through a TCP relay
the test can cut (the network loss), so Asterisk itself keeps running.
"""
from __future__ import annotations

import asyncio
import uuid

import pytest

from callcenter.auth import create_user
from callcenter.pbx import process
from tests.conftest import PASSWORD
from tests.live.phones import operator_phones
from tests.live.test_operators_live import Stack, originate_queued_citizen
from ticketing.store import session_scope

pytestmark = pytest.mark.live

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                 "--autoplay-policy=no-user-gesture-required",
                 "--allow-loopback-in-peer-connection"]  # media over 127.0.0.1 where the machine has no other address
EXT = "8005"


class Relay:
    """The network between the page and Asterisk's wss port: a TCP relay the test can cut (connections
    reset, new ones refused) or freeze (open connections silently swallow everything, as when a cable
    is pulled: no reset reaches the page; new connections are refused)."""

    def __init__(self, port: int):
        self.target = ("127.0.0.1", port)
        self.server = None
        self.port = 0
        self.frozen = False
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> Relay:
        self.frozen = False
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader, writer):
        if self.frozen:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]

        async def pipe(src, dst):
            try:
                while data := await src.read(65536):
                    if not self.frozen:
                        dst.write(data)
                        await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for w in self.writers:
            w.transport.abort()
        self.writers.clear()

    def freeze(self) -> None:
        self.frozen = True


@pytest.fixture
async def desk(asterisk, tmp_path):
    """The stack of test_operators_live (CallControl + API on uvicorn) with the browser-phone operator,
    the wss relay the page connects through, and the desk page logged in as op8005."""
    from playwright.async_api import async_playwright

    st = Stack(asterisk, tmp_path)
    with session_scope(st.sessions) as s:
        create_user(s, username=f"op{EXT}", password=PASSWORD, role="front_desk", display_name="话务员8005",
                    operator_extension=EXT, now=st.clock())
    relay = await Relay(asterisk.wss_port).start()
    st.app.state.settings = asterisk.model_copy(update={"wss_url": f"wss://127.0.0.1:{relay.port}/ws"})
    await st.start()
    pw = await async_playwright().start()
    browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    # the install's certificate is self-signed: an operator accepts it once (README), the test here
    context = await browser.new_context(ignore_https_errors=True, locale="zh-CN", timezone_id="Asia/Shanghai")
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    await page.goto(str(st.http.base_url.join("/app/login")))
    await page.fill("input[name=username]", f"op{EXT}")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_url("**/app/desk")
    st.page, st.relay, st.errors = page, relay, errors
    try:
        yield st
    finally:
        if st.cc.link.connected:
            for chan in list(st.cc.link.channels.values()):  # this test's citizens, and the page's own legs
                if chan.linkedid.startswith("live-") or chan in st.cc.link.operator_channels(EXT):
                    await st.cc.link.ami.send_action({"Action": "Hangup", "Channel": chan.name})
            for ext in (EXT, "8004"):
                try:
                    await st.cc.queue.logout(ext)
                except Exception:
                    pass
        await browser.close()
        await pw.stop()
        await st.close()
        await relay.cut()


async def registered(page, timeout_s: float = 15) -> None:
    await page.wait_for_selector("#webphone-reg[data-state='registered']", timeout=timeout_s * 1000)


async def media(page, state: str, timeout_s: float = 15) -> None:
    """Wait until the phone's media line says ``state``; if it does not, fail with what it says instead
    (the state and the RTP counts the page sampled)."""
    from playwright.async_api import TimeoutError as PlaywrightTimeout

    try:
        await page.wait_for_selector(f"#webphone-media[data-state='{state}']", timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        shown = await page.text_content("#webphone-media")
        raise AssertionError(f"media not {state!r} after {timeout_s} s; the page says {shown!r}") from None


async def queue_citizen(st: Stack, caller: str, seconds: int = 90, base: str | None = None) -> str:
    """A citizen who talks all the time (hold music from the citizen's side): RTP towards the operator."""
    base = base or f"live-{uuid.uuid4().hex[:10]}"
    reply = await st.cc.link.ami.send_action({
        "Action": "Originate", "Channel": "Local/s@hotline-queue", "Application": "MusicOnHold",
        "Data": f"default,{seconds}", "CallerID": f'"citizen" <{caller}>', "Async": "true",
        "ChannelId": base, "OtherChannelId": f"{base}-2", "Timeout": "30000",
    })
    assert reply.success, reply
    return base


async def rtp_counts(st: Stack, channel: str) -> dict[str, int]:
    """What Asterisk has received from and sent to the browser on this channel (CHANNEL(rtcp,all,audio) of chan_pjsip)."""
    reply = await st.cc.link.ami.send_action({"Action": "Getvar", "Channel": channel,
                                              "Variable": "CHANNEL(rtcp,all,audio)"})
    assert reply.success, reply
    qos = reply.get_first("Value") or ""
    fields = dict(kv.split("=", 1) for kv in qos.split(";") if "=" in kv)
    assert "rxcount" in fields, qos
    return {"rxcount": int(fields["rxcount"]), "txcount": int(fields["txcount"])}


async def op_channel(st: Stack, timeout: float = 10) -> str:
    for _ in range(int(timeout * 10)):
        legs = st.cc.link.operator_channels(EXT)
        if legs:
            return legs[0].name
        await asyncio.sleep(0.1)
    raise AssertionError("no channel of the browser phone")


async def test_r5_1_browser_phone_registers_answers_a_queued_citizen_and_rtp_flows_both_ways(desk):
    """Issue 17 item 1: the page registers (Asterisk has the wss contact), the operator logs in to the
    queue and answers the ringing call from the page; Asterisk counts RTP received from and sent to the
    WebRTC channel, and the page's own counters agree; hang-up from the page ends the call."""
    page = desk.page
    await registered(page)
    contact = process.endpoint_contacts(desk.settings).get(f"op{EXT}")
    assert contact and contact["status"] == "Avail", contact  # reachable: it answers Asterisk's OPTIONS
    await page.click("#phone [data-queue='login']")
    for _ in range(50):
        member = desk.cc.queue.member(EXT)
        if member is not None and member.availability == "free":
            break
        await asyncio.sleep(0.1)
    assert member is not None and member.availability == "free", member

    await queue_citizen(desk, "13912340051")
    await page.wait_for_selector("#webphone-answer:not([hidden])", timeout=15000)
    assert "13912340051" in await page.text_content("#webphone-peer")
    await page.click("#webphone-answer")
    await media(page, "flowing", timeout_s=30)  # ICE and DTLS first: seconds when the machine is busy
    channel = await op_channel(desk)
    assert "/op8005-" in channel
    first = await rtp_counts(desk, channel)
    await asyncio.sleep(1.5)
    later = await rtp_counts(desk, channel)
    print("rtp", first, later)
    assert later["rxcount"] > first["rxcount"] > 0, (first, later)  # the browser's microphone reaches Asterisk
    assert later["txcount"] > first["txcount"] > 0, (first, later)  # the citizen's side reaches the browser
    sent = int(await page.get_attribute("#webphone-media", "data-sent"))
    got = int(await page.get_attribute("#webphone-media", "data-received"))
    assert sent > 0 and got > 0

    # mute and hold are real: the page says so and the buttons toggle back
    await page.click("#webphone-mute")
    await page.wait_for_selector("#webphone-mute:text('取消静音')", timeout=5000)
    await page.click("#webphone-mute")
    await page.click("#webphone-hold")
    await media(page, "held", timeout_s=10)
    await page.click("#webphone-hold")
    await media(page, "flowing", timeout_s=10)

    gone = asyncio.ensure_future(desk.cc.link.wait_for(
        lambda m: m.name == "Hangup" and m.get_first("Channel") == channel, 10))
    await asyncio.sleep(0)
    await page.click("#webphone-hangup")
    await gone
    await media(page, "idle", timeout_s=5)
    # the page's connection checks were answered all along: it never dropped a working connection
    drops, probes = await page.evaluate("[window.webphone.drops, window.webphone.probes]")
    assert drops == 0 and probes >= 1, (drops, probes)
    assert desk.errors == []


async def test_r5_1_network_loss_shows_not_registered_queue_skips_it_and_it_reregisters(desk, tmp_path):
    """The page's WebSocket is cut (the relay between page and Asterisk stops): the phone says "not
    registered" within 10 s; a citizen queued meanwhile is answered by the other operator (baresip);
    when the network returns the phone registers again by itself."""
    page = desk.page
    await registered(page)
    await desk.cc.queue.login(EXT, "话务员8005")
    with operator_phones(desk.settings, tmp_path, ["8004"]) as phones:
        await desk.relay.cut()
        await page.wait_for_selector("#webphone-reg[data-state='unregistered']", timeout=10000)
        for _ in range(50):  # Asterisk dropped the contact with the connection
            if f"op{EXT}" not in process.endpoint_contacts(desk.settings):
                break
            await asyncio.sleep(0.1)
        assert f"op{EXT}" not in process.endpoint_contacts(desk.settings)

        await desk.cc.queue.login("8004", "话务员8004")
        await originate_queued_citizen(desk, f"live-{uuid.uuid4().hex[:10]}", "13912340052", hold_seconds=20)
        phones["op8004"].wait_event("CALL_ESTABLISHED", timeout=15)
        assert not desk.cc.link.operator_channels(EXT)
        phones["op8004"].hangup()

    await desk.relay.start()  # same port: the network is back
    await registered(page, timeout_s=20)
    assert f"op{EXT}" in process.endpoint_contacts(desk.settings)
    assert desk.errors == []


async def test_r5_1_silent_network_loss_is_noticed_by_the_page_itself(desk):
    """A network that swallows packets without resetting the connection (the socket still looks open):
    the page's own check gets no answer and it shows "not registered" within 10 s; once the network
    is back it registers again by itself."""
    page = desk.page
    await registered(page)
    desk.relay.freeze()
    await page.wait_for_selector("#webphone-reg[data-state='unregistered']", timeout=10000)
    await asyncio.sleep(3)  # reconnect attempts meanwhile fail: it must not claim to be registered
    assert await page.get_attribute("#webphone-reg", "data-state") == "unregistered"
    desk.relay.frozen = False
    await registered(page, timeout_s=20)
    assert desk.errors == []
