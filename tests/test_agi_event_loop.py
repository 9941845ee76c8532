"""The FastAGI server's event loop: uvloop by default, asyncio's own with CALLCENTER_EVENT_LOOP=asyncio
(callcenter/eventloop.py), and calls are served on either."""
from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import uvloop

from agi.testing import FakeAsterisk
from callcenter import eventloop
from callcenter.settings import Settings

from .conftest import CONFIG_DIR

SCRIPT = Path(sys.executable).with_name("callcenter")


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_default_setting_is_uvloop(monkeypatch):
    monkeypatch.delenv("CALLCENTER_EVENT_LOOP", raising=False)
    assert Settings().event_loop == "uvloop"
    monkeypatch.setenv("CALLCENTER_EVENT_LOOP", "asyncio")
    assert Settings().event_loop == "asyncio"


def test_unknown_event_loop_setting_is_refused(monkeypatch):
    monkeypatch.setenv("CALLCENTER_EVENT_LOOP", "trio")
    with pytest.raises(ValueError):
        Settings()
    with pytest.raises(ValueError):
        eventloop.loop_factory("trio")


def test_run_uses_the_named_loop():
    assert eventloop.run(_loop_type(), "uvloop") is uvloop.Loop
    plain = eventloop.run(_loop_type(), "asyncio")
    assert plain is not uvloop.Loop and issubclass(plain, asyncio.BaseEventLoop)


def test_missing_uvloop_falls_back_to_asyncio(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    assert eventloop.run(_loop_type(), "uvloop") is not uvloop.Loop
    assert "uvloop is not installed" in caplog.text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("setting", ["uvloop", "asyncio"])
def test_agi_serve_runs_on_the_configured_loop_and_serves_calls(tmp_path, setting):
    port = _free_port()
    env = {**os.environ, "CALLCENTER_STATE_DIR": str(tmp_path), "CALLCENTER_CONFIG_DIR": str(CONFIG_DIR),
           "CALLCENTER_EVENT_LOOP": setting}
    proc = subprocess.Popen([str(SCRIPT), "agi", "serve", "--port", str(port)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"FastAGI listening on 127.0.0.1:{port} ({setting} event loop)", proc.stderr.read()

        async def call() -> list[str]:
            async with FakeAsterisk("127.0.0.1", port, "no/such/script") as fake:
                return await fake.run()

        # an unknown script still sends the caller to an operator: the server answers on this loop
        assert asyncio.run(call()) == ["SET VARIABLE IVR_NEXT queue", "SET VARIABLE AGI_ERROR UnknownScript"]
    finally:
        proc.terminate()
        proc.wait(10)
