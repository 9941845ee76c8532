"""FastAGI read deadlines kept by one server-wide timer (agi/stream.py Deadlines), on asyncio's own
loop (where connections receive into a shared buffer) and on uvloop (whose clock counts whole ms)."""
from __future__ import annotations

import asyncio

import pytest
import uvloop

from agi import AGITimeout, FastAGIServer
from agi.server import _BufferedConnection, _Connection
from agi.testing import FakeAsterisk

HOST = "127.0.0.1"
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def run_on(loop_name: str, coro_fn) -> object:
    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        return runner.run(coro_fn())


async def wait_until(predicate, tries: int = 300) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


@pytest.mark.parametrize("loop_name", LOOPS)
def test_header_and_command_deadlines_on_each_loop(loop_name):
    async def main() -> dict:
        outcome: dict = {}

        async def handler(channel):
            outcome["stream"] = type(channel._reader)
            try:
                await channel.command("WAIT FOR DIGIT -1", timeout=0.2)
            except AGITimeout:
                outcome["timeout"] = True
            await channel.set_variable("AFTER", "ok")  # the late answer is skipped, the next one read

        server = FastAGIServer({"x": handler}, HOST, 0, header_timeout=0.3)
        await server.start()
        try:
            silent = await FakeAsterisk(HOST, server.port).connect(send_header=False)
            assert await silent.closed_by_server(timeout=5)
            await silent.close()
            async with FakeAsterisk(HOST, server.port, "x") as fake:
                assert await fake.read_command() == "WAIT FOR DIGIT -1"
                assert await fake.read_command() == "SET VARIABLE AFTER ok"  # the deadline passed first
                await fake.reply("200 result=0", "200 result=1")
                assert await fake.closed_by_server(timeout=5)
            await wait_until(lambda: server.stats.sessions_served == 1)
            outcome["errors"] = dict(server.stats.errors)
            await wait_until(lambda: len(server._deadlines) == 0)  # finished connections leave it
        finally:
            await server.stop(timeout=2)
        return outcome

    outcome = run_on(loop_name, main)
    assert outcome["timeout"] is True
    assert outcome["errors"] == {"header_timeout": 1}
    assert outcome["stream"] is (_BufferedConnection if loop_name == "asyncio" else _Connection)


async def test_many_waiting_calls_share_one_timer():
    """50 calls waiting for answers: the loop holds one deadline timer, not one per call."""
    release = asyncio.Event()

    async def handler(channel):
        await channel.verbose("waiting")
        await release.wait()

    server = FastAGIServer({"x": handler}, HOST, 0)
    await server.start()
    loop = asyncio.get_running_loop()
    fakes = []
    try:
        before = sum(not h.cancelled() for h in loop._scheduled)  # type: ignore[attr-defined]
        for i in range(50):
            fake = await FakeAsterisk(HOST, server.port, "x", uniqueid=f"1.{i}").connect()
            assert await fake.read_command() == "VERBOSE waiting 1"
            fakes.append(fake)
        live = sum(not h.cancelled() for h in loop._scheduled)  # type: ignore[attr-defined]
        assert live - before <= 1
        assert len(server._deadlines) == 50
        for fake in fakes:
            await fake.reply("200 result=1")
        release.set()
        for fake in fakes:
            assert await fake.closed_by_server(timeout=5)
        await wait_until(lambda: server.stats.sessions_served == 50)
    finally:
        for fake in fakes:
            await fake.close()
        await server.stop(timeout=2)
