"""FastAGI server over real TCP sockets on 127.0.0.1, with a client emulating Asterisk."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import pytest

from agi import AGIChannel, AGIError, AGIHangup, AGITimeout, FastAGIServer, Router, run_in_thread
from agi.testing import FakeAsterisk, make_header

HOST = "127.0.0.1"


@pytest.fixture
async def start():
    servers: list[FastAGIServer] = []

    async def _start(router, **kwargs) -> FastAGIServer:
        server = FastAGIServer(router, HOST, 0, **kwargs)
        await server.start()
        servers.append(server)
        return server

    yield _start
    for server in servers:
        await server.stop(timeout=2)


def session_tasks() -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("agi-") and not t.done()]


async def wait_until(predicate, timeout=3.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def server_warnings(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "agi.server" and r.levelno >= logging.WARNING]


async def test_full_session_reaches_routed_handler_with_request_fields(start):
    seen = {}
    router = Router()

    @router.route("ivr/main")
    async def main(channel: AGIChannel) -> None:
        req = channel.request
        seen.update(script=req.script, query=req.query, args=req.args, caller=req.caller_id, uid=req.unique_id)
        await channel.answer()
        seen["lang"] = await channel.get_variable("CHANNEL(language)")
        seen["unset"] = await channel.get_variable("NOPE")
        seen["barge"] = await channel.stream_file("welcome", "123")
        seen["data"] = await channel.get_data("menu", 5000, 4)
        seen["digit"] = await channel.wait_for_digit(3000)
        await channel.set_variable("IVR_NEXT", "self_served")
        await channel.verbose("menu done", 3)
        await channel.hangup()

    server = await start(router)
    fake = FakeAsterisk(HOST, server.port, "ivr/main", query={"lang": "zh"}, args=["a b", "x"], uniqueid="1732512345.9")
    replies = [
        "200 result=1",
        "200 result=1 (zh)",
        "200 result=0",
        "200 result=50 endpos=4000",
        "200 result=0123 (timeout)",
        "200 result=0",
        "200 result=1",
        "200 result=1",
        "200 result=1",
    ]
    async with fake:
        for reply in replies:
            assert await fake.read_command() is not None
            await fake.reply(reply)
        assert await fake.read_command() is None  # server closed after the handler returned
    assert fake.commands == [
        "ANSWER",
        "GET VARIABLE CHANNEL(language)",
        "GET VARIABLE NOPE",
        "STREAM FILE welcome 123",
        "GET DATA menu 5000 4",
        "WAIT FOR DIGIT 3000",
        "SET VARIABLE IVR_NEXT self_served",
        'VERBOSE "menu done" 3',
        "HANGUP",
    ]
    assert seen == {
        "script": "ivr/main",
        "query": {"lang": "zh"},
        "args": ("a b", "x"),
        "caller": "13812345678",
        "uid": "1732512345.9",
        "lang": "zh",
        "unset": None,
        "barge": "2",
        "data": ("0123", True),
        "digit": None,
    }
    await wait_until(lambda: server.stats.sessions_served == 1)
    assert server.stats.errors == {}


async def test_arguments_are_quoted_on_the_wire(start):
    async def handler(channel):
        await channel.set_variable("MSG", 'he said "hi" \\ bye')
        await channel.set_variable("EMPTY", "")
        await channel.say_digits("12345")
        await channel.say_number(305)
        await channel.user_event("AwaitInput", node="menu, main", Case="C-1")
        assert await channel.exec("Playback", "silence/1") == 0

    server = await start({"ivr/q": handler})
    async with FakeAsterisk(HOST, server.port, "ivr/q") as fake:
        commands = await fake.run()
    assert commands == [
        'SET VARIABLE MSG "he said \\"hi\\" \\\\ bye"',
        'SET VARIABLE EMPTY ""',
        'SAY DIGITS 12345 ""',
        'SAY NUMBER 305 ""',
        'EXEC UserEvent "AwaitInput,node: menu\\\\, main,Case: C-1"',
        "EXEC Playback silence/1",
    ]


async def test_510_and_520_raise_agierror_with_usage_then_call_continues(start):
    outcome = {}

    async def handler(channel):
        try:
            await channel.command("FOO BAR")
        except AGIError as exc:
            outcome["510"] = exc.response.code
        try:
            await channel.command("GET DATA")
        except AGIError as exc:
            outcome["520"] = exc.usage
        await channel.set_variable("AFTER", "1")

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        assert await fake.read_command() == "FOO BAR"
        await fake.reply("510 Invalid or unknown command")
        assert await fake.read_command() == "GET DATA"
        await fake.reply(
            "520-Invalid command syntax.  Proper usage follows:",
            "Usage: GET DATA <file> [timeout] [maxdigits]",
            "520 End of proper usage.",
        )
        assert await fake.read_command() == "SET VARIABLE AFTER 1"
        await fake.reply("200 result=1")
        assert await fake.read_command() is None
    assert outcome == {"510": 510, "520": "Usage: GET DATA <file> [timeout] [maxdigits]"}
    await wait_until(lambda: server.stats.sessions_served == 1)


async def test_511_raises_hangup_and_session_ends_normally(start):
    caught = []

    async def handler(channel):
        try:
            await channel.answer()
        except AGIHangup:
            caught.append("hangup")
            raise

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        commands = await fake.run({"ANSWER": "511 Command Not Permitted on a dead channel or intercept routine"})
    assert commands == ["ANSWER"]  # no safety SET VARIABLE on a dead channel
    assert caught == ["hangup"]
    await wait_until(lambda: server.stats.hangups == 1)
    assert server.stats.sessions_served == 1 and server.stats.errors == {}


async def test_hangup_line_raises_and_stream_stays_in_sync(start):
    """HANGUP before the response: AGIHangup now; the late response is skipped next time."""
    result = {}

    async def handler(channel):
        try:
            await channel.stream_file("welcome")
        except AGIHangup:
            result["first"] = "hangup"
        # dead-channel-permitted command afterwards gets its own answer
        result["var"] = await channel.get_variable("HANGUPCAUSE")

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        assert await fake.read_command() == "STREAM FILE welcome \"\""
        await fake.reply("HANGUP")
        await asyncio.sleep(0.05)
        await fake.reply("200 result=-1 endpos=160")  # the late answer to STREAM FILE
        assert await fake.read_command() == "GET VARIABLE HANGUPCAUSE"
        await fake.reply("200 result=1 (16)")
        assert await fake.read_command() is None
    assert result == {"first": "hangup", "var": "16"}


async def test_result_minus_one_then_hangup_line_is_a_hangup(start):
    errors = []

    async def handler(channel):
        try:
            await channel.stream_file("welcome", "1")
        except (AGIHangup, AGIError) as exc:
            errors.append(type(exc).__name__)
            raise

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        await fake.read_command()
        await fake.reply("200 result=-1 endpos=0", "HANGUP")
        assert await fake.read_command() is None
    assert errors == ["AGIHangup"]
    await wait_until(lambda: server.stats.hangups == 1)


async def test_missing_prompt_result_minus_one_sends_call_to_safety(start):
    async def handler(channel):
        await channel.stream_file("no-such-prompt")

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        commands = await fake.run({"STREAM FILE": "200 result=-1 endpos=0"})
    assert commands == [
        'STREAM FILE no-such-prompt ""',
        "SET VARIABLE IVR_NEXT queue",
        "SET VARIABLE AGI_ERROR AGIError",
    ]


async def test_eof_from_asterisk_is_a_hangup(start):
    done = asyncio.Event()
    got = []

    async def handler(channel):
        try:
            await channel.answer()
        except AGIHangup:
            got.append("hangup")
        finally:
            done.set()

    server = await start({"x": handler})
    fake = await FakeAsterisk(HOST, server.port, "x").connect()
    assert await fake.read_command() == "ANSWER"
    await fake.close()
    await asyncio.wait_for(done.wait(), 3)
    assert got == ["hangup"]
    await wait_until(lambda: not server.sessions)


async def test_handler_exception_sets_ivr_next_queue_and_agi_error(start, caplog):
    async def handler(channel):
        await channel.answer()
        raise ValueError("bad menu for caller 13912345678")

    server = await start({"ivr/main": handler})
    caplog.set_level(logging.INFO, logger="agi")
    async with FakeAsterisk(HOST, server.port, "ivr/main") as fake:
        commands = await fake.run()
    assert commands == ["ANSWER", "SET VARIABLE IVR_NEXT queue", "SET VARIABLE AGI_ERROR ValueError"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    line = errors[0].getMessage()
    assert "ValueError" in line and "139****5678" in line and "13912345678" not in line
    assert "138****5678" in line and "13812345678" not in line  # caller id masked too
    assert server.stats.errors["handler_exception"] == 1 and server.stats.sent_to_safety == 1


async def test_sync_handler_in_plain_mapping_goes_to_safety(start):
    def not_async(channel):
        return None

    server = await start({"x": not_async})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        commands = await fake.run()
    assert commands == ["SET VARIABLE IVR_NEXT queue", "SET VARIABLE AGI_ERROR TypeError"]


async def test_unknown_script_sends_call_to_safety(start, caplog):
    server = await start(Router())
    caplog.set_level(logging.INFO, logger="agi")
    async with FakeAsterisk(HOST, server.port, "ivr/nowhere") as fake:
        commands = await fake.run()
    assert commands == ["SET VARIABLE IVR_NEXT queue", "SET VARIABLE AGI_ERROR UnknownScript"]
    assert len(server_warnings(caplog)) == 1
    assert server.stats.errors["unknown_script"] == 1


async def test_custom_safe_next(start):
    server = await start({}, safe_next=("NEXT_STEP", "operator"))
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        commands = await fake.run()
    assert commands[0] == "SET VARIABLE NEXT_STEP operator"


async def test_command_timeout_raises_and_connection_is_released(start):
    got = []

    async def handler(channel):
        try:
            await channel.answer()
        except AGITimeout as exc:
            got.append(exc.command)
            raise

    server = await start({"x": handler}, command_timeout=0.2, safety_timeout=0.2)
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        assert await fake.read_command() == "ANSWER"
        # never answer: the server gives up, tries the safety variables, then closes
        assert await fake.read_command(timeout=3) == "SET VARIABLE IVR_NEXT queue"
        assert await fake.closed_by_server(timeout=3)
    assert got == ["ANSWER"]
    await wait_until(lambda: not server.sessions)
    assert server.stats.errors["safety_failed"] == 1


async def test_record_file_results(start):
    results = []

    async def handler(channel):
        results.append(await channel.record_file("/tmp/msg-1", silence_s=3))
        results.append(await channel.record_file("/tmp/msg-2", beep=False, timeout_ms=5000))
        results.append(await channel.record_file("/tmp/msg-3"))
        with pytest.raises(AGIHangup):
            await channel.verbose("after hangup")

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        replies = iter(
            [
                "200 result=35 (dtmf) endpos=16000",
                "200 result=0 (timeout) endpos=40000",
                "200 result=-1 (hangup) endpos=8000",
            ]
        )
        assert await fake.read_command() == "RECORD FILE /tmp/msg-1 wav # 60000 0 BEEP s=3"
        await fake.reply(next(replies))
        assert await fake.read_command() == "RECORD FILE /tmp/msg-2 wav # 5000 0"
        await fake.reply(next(replies))
        await fake.read_command()
        await fake.reply(next(replies), "HANGUP")
        assert await fake.read_command() == 'VERBOSE "after hangup" 1'
        await fake.reply("200 result=1")
        assert await fake.read_command() is None
    assert [(r.reason, r.digit, r.endpos) for r in results] == [
        ("dtmf", "#", 16000),
        ("timeout", None, 40000),
        ("hangup", None, 8000),
    ]


async def test_exec_missing_application_raises(start):
    async def handler(channel):
        await channel.exec("NoSuchApp", "x")

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        commands = await fake.run({"EXEC": "200 result=-2"})
    assert commands[1:] == ["SET VARIABLE IVR_NEXT queue", "SET VARIABLE AGI_ERROR AGIError"]


@pytest.mark.parametrize(
    "payload, kind",
    [
        (b"agi_network: yes\nthis is not a header\n\n", "malformed_header"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "malformed_header"),
        (b"\n", "malformed_header"),
        (b"agi_network: yes\nagi_calleridname: \xd5\xc5\xc8\xfd\n\n", "bad_encoding"),
        (b"agi_network: yes\nagi_x: " + b"a" * (70 * 1024) + b"\n\n", "header_too_long"),
        (b"agi_x: " + b"a" * (70 * 1024), "header_too_long"),
        (b"".join(b"agi_h%d: v\n" % i for i in range(300)) + b"\n", "too_many_header_lines"),
    ],
    ids=["garbage-line", "http", "empty-block", "non-utf8", "long-line", "long-line-no-newline", "too-many-lines"],
)
async def test_bad_header_closes_connection_with_one_log_line(start, caplog, payload, kind):
    called = []

    async def handler(channel):
        called.append(1)

    server = await start({"ivr/main": handler})
    caplog.set_level(logging.INFO, logger="agi")
    fake = await FakeAsterisk(HOST, server.port).connect(send_header=False)
    with contextlib.suppress(ConnectionError):
        await fake.send_raw(payload)
    assert await fake.closed_by_server(timeout=3)
    await fake.close()
    await wait_until(lambda: not server.sessions)
    assert called == []
    assert server.stats.errors == {kind: 1}
    warnings = server_warnings(caplog)
    assert len(warnings) == 1 and warnings[0].exc_info is None and kind in warnings[0].getMessage()
    assert session_tasks() == []


async def test_client_vanishing_mid_header_ends_session_without_spinning(start, caplog):
    server = await start({"ivr/main": lambda c: None})
    caplog.set_level(logging.INFO, logger="agi")
    fake = await FakeAsterisk(HOST, server.port).connect(send_header=False)
    await fake.send_raw(make_header()[:200])  # part of the header, no blank line
    cpu_before = time.process_time()
    await fake.close()
    await wait_until(lambda: not server.sessions)
    await asyncio.sleep(0.2)
    assert time.process_time() - cpu_before < 0.15  # the panoramisk defect was a 100 % CPU loop
    assert server.stats.errors == {"client_vanished": 1}
    assert len(server_warnings(caplog)) == 1
    assert session_tasks() == []


async def test_silent_client_is_closed_after_header_timeout_and_next_session_works(start, caplog):
    served = []

    async def handler(channel):
        await channel.answer()
        served.append(channel.request.unique_id)

    server = await start({"ivr/main": handler}, header_timeout=0.3)
    caplog.set_level(logging.INFO, logger="agi")
    silent = await FakeAsterisk(HOST, server.port).connect(send_header=False)
    t0 = time.monotonic()
    assert await silent.closed_by_server(timeout=3)
    elapsed = time.monotonic() - t0
    assert 0.25 <= elapsed < 1.5
    await silent.close()
    await wait_until(lambda: not server.sessions)
    assert session_tasks() == []
    assert server.stats.errors == {"header_timeout": 1}
    assert len(server_warnings(caplog)) == 1

    async with FakeAsterisk(HOST, server.port, uniqueid="1732512345.2") as fake:
        assert await fake.run() == ["ANSWER"]
    assert served == ["1732512345.2"]


async def test_slow_header_dribble_is_bounded_by_header_timeout(start):
    server = await start({}, header_timeout=0.4)
    fake = await FakeAsterisk(HOST, server.port).connect(send_header=False)

    async def dribble():
        with contextlib.suppress(ConnectionError):
            for i in range(40):
                await fake.send_raw(b"agi_x%d: y\n" % i)
                await asyncio.sleep(0.05)

    task = asyncio.create_task(dribble())
    assert await fake.closed_by_server(timeout=3)
    task.cancel()
    await fake.close()
    assert server.stats.errors == {"header_timeout": 1}


async def test_200_concurrent_sessions_are_all_served(start):
    async def handler(channel):
        await channel.answer()
        await channel.set_variable("UID", channel.request.unique_id)
        await asyncio.sleep(0.05)  # keep them overlapping
        await channel.verbose("done")
        await channel.hangup()

    server = await start({"bench": handler})

    async def one(i: int) -> list[str]:
        async with FakeAsterisk(HOST, server.port, "bench", uniqueid=f"1732512345.{i}") as fake:
            return await fake.run(timeout=20)

    results = await asyncio.gather(*(one(i) for i in range(200)))
    for i, commands in enumerate(results):
        assert commands == ["ANSWER", f"SET VARIABLE UID 1732512345.{i}", "VERBOSE done 1", "HANGUP"]
    await wait_until(lambda: server.stats.sessions_served == 200)
    assert server.stats.connections == 200 and server.stats.errors == {}


async def test_context_factory_wraps_each_call_and_exits_cleanly_on_hangup(start):
    events = []

    @contextlib.asynccontextmanager
    async def per_call(request):
        events.append(("enter", request.unique_id))
        try:
            yield {"uid": request.unique_id}
        except BaseException as exc:
            events.append(("exit-error", type(exc).__name__))
            raise
        else:
            events.append(("exit", request.unique_id))

    async def handler(channel):
        events.append(("ctx", channel.context["uid"]))
        await channel.answer()
        if channel.request.unique_id.endswith(".2"):
            raise RuntimeError("boom")

    server = await start({"x": handler}, context_factory=per_call)
    async with FakeAsterisk(HOST, server.port, "x", uniqueid="1.1") as fake:
        await fake.run({"ANSWER": "511 Command Not Permitted on a dead channel"})
    async with FakeAsterisk(HOST, server.port, "x", uniqueid="1.2") as fake:
        commands = await fake.run()
    assert events == [
        ("enter", "1.1"),
        ("ctx", "1.1"),
        ("exit", "1.1"),
        ("enter", "1.2"),
        ("ctx", "1.2"),
        ("exit-error", "RuntimeError"),
    ]
    assert commands[-2:] == ["SET VARIABLE IVR_NEXT queue", "SET VARIABLE AGI_ERROR RuntimeError"]


async def test_stop_lets_inflight_call_finish_and_closes_listener():
    release = asyncio.Event()
    finished = []

    async def handler(channel):
        await channel.answer()
        await release.wait()
        await channel.set_variable("DONE", "1")
        finished.append(1)

    server = FastAGIServer({"x": handler}, HOST, 0)
    await server.start()
    port = server.port
    fake = await FakeAsterisk(HOST, port, "x").connect()
    run = asyncio.create_task(fake.run())
    await wait_until(lambda: fake.commands == ["ANSWER"])
    stopping = asyncio.create_task(server.stop(timeout=5))
    await asyncio.sleep(0.1)
    with pytest.raises(OSError):
        await asyncio.open_connection(HOST, port)  # listener closed at once
    assert not stopping.done()  # still waiting for the call
    release.set()
    await asyncio.wait_for(stopping, 5)
    assert await run == ["ANSWER", "SET VARIABLE DONE 1"]
    assert finished == [1] and session_tasks() == []
    await fake.close()


async def test_stop_cancels_calls_that_outlive_the_grace_period():
    async def handler(channel):
        await channel.answer()
        await asyncio.sleep(60)

    async with FastAGIServer({"x": handler}, HOST, 0) as server:
        fake = await FakeAsterisk(HOST, server.port, "x").connect()
        await fake.read_command()
        await fake.reply("200 result=1")
        await wait_until(lambda: server.stats.active == 1)
        t0 = time.monotonic()
        await server.stop(timeout=0.2)
        assert time.monotonic() - t0 < 2
        assert server.sessions == frozenset() and server.stats.active == 0
        assert await fake.closed_by_server(timeout=2)
        await fake.close()


def test_run_in_thread_serves_calls_from_another_loop():
    served = []

    async def handler(channel):
        await channel.answer()
        served.append(channel.request.script)

    handle = run_in_thread(FastAGIServer({"ivr/main": handler}, HOST, 0))
    try:

        async def call():
            async with FakeAsterisk(HOST, handle.port) as fake:
                return await fake.run()

        assert asyncio.run(call()) == ["ANSWER"]
    finally:
        handle.stop()
    assert served == ["ivr/main"]
    assert not handle._thread.is_alive()


def test_router_rejects_sync_handlers_and_duplicates():
    router = Router()
    with pytest.raises(TypeError):
        router.add("x", lambda channel: None)

    async def h(channel):
        pass

    router.add("/ivr/main/", h)
    assert router["ivr/main"] is h and list(router) == ["ivr/main"]
    with pytest.raises(ValueError):
        router.add("ivr/main", h)


async def test_header_error_log_masks_phone_numbers(start, caplog):
    server = await start({})
    caplog.set_level(logging.INFO, logger="agi")
    fake = await FakeAsterisk(HOST, server.port).connect(send_header=False)
    await fake.send_raw(b"agi_callerid 13812345678\n\n")
    assert await fake.closed_by_server(timeout=3)
    await fake.close()
    await wait_until(lambda: not server.sessions)
    (record,) = server_warnings(caplog)
    assert "138****5678" in record.getMessage() and "13812345678" not in record.getMessage()


async def test_shorter_deadline_after_a_long_one_still_times_out_on_time(start):
    outcome = {}

    async def handler(channel):
        await channel.command("GET DATA menu 10000 4", timeout=30)  # arms a far deadline
        t0 = time.monotonic()
        try:
            await channel.command("ANSWER", timeout=0.2)
        except AGITimeout:
            outcome["elapsed"] = time.monotonic() - t0

    server = await start({"x": handler}, safety_timeout=0.2)
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        assert await fake.read_command() == "GET DATA menu 10000 4"
        await fake.reply("200 result=1 (timeout)")
        assert await fake.read_command() == "ANSWER"
        assert await fake.closed_by_server(timeout=3)
    assert 0.15 <= outcome["elapsed"] < 1.0


async def test_outside_cancellation_is_not_turned_into_a_timeout(start):
    outcome = {}

    async def handler(channel):
        task = asyncio.create_task(channel.command("WAIT FOR DIGIT -1"))
        await asyncio.sleep(0.1)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            outcome["cancelled"] = True
        except AGITimeout:
            outcome["cancelled"] = False

    server = await start({"x": handler}, command_timeout=5)
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        assert await fake.read_command() == "WAIT FOR DIGIT -1"
        assert await fake.closed_by_server(timeout=3)
    assert outcome == {"cancelled": True}


async def test_finished_session_leaves_nothing_behind(start):
    """The per-channel deadline timer is dropped, so 1,000 calls/s do not pile up channels for 120 s."""
    import gc
    import weakref

    refs = []

    async def handler(channel):
        refs.append(weakref.ref(channel))
        await channel.answer()

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        await fake.run()
    await wait_until(lambda: not server.sessions)
    gc.collect()
    assert refs and refs[0]() is None



async def test_commands_from_several_tasks_take_turns_and_a_cancelled_waiter_drops_out(start):
    outcome = {}
    third_waiting = asyncio.Event()

    async def handler(channel):
        first = asyncio.create_task(channel.get_variable("A"))
        await asyncio.sleep(0)  # first holds the turn, waiting for its answer
        cancelled = asyncio.create_task(channel.get_variable("NEVER"))
        third = asyncio.create_task(channel.get_variable("C"))
        await asyncio.sleep(0.05)
        cancelled.cancel()  # gives up while waiting for its turn: never sent
        third_waiting.set()
        outcome["values"] = await asyncio.gather(first, third)
        outcome["cancelled"] = cancelled.cancelled()

    server = await start({"x": handler})
    async with FakeAsterisk(HOST, server.port, "x") as fake:
        assert await fake.read_command() == "GET VARIABLE A"
        await third_waiting.wait()
        with pytest.raises(TimeoutError):  # nothing else goes out before A is answered
            await fake.read_command(timeout=0.1)
        await fake.reply("200 result=1 (a)")
        assert await fake.read_command() == "GET VARIABLE C"
        await fake.reply("200 result=1 (c)")
        assert await fake.closed_by_server(timeout=3)
    assert outcome == {"values": ["a", "c"], "cancelled": True}
