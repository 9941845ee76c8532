"""Live tests run against the project's real Asterisk (see docs/asterisk.md).

The session fixture `asterisk` makes sure it is installed (idempotent `install`: picks up template
and prompt changes) and running, and yields the settings. It stops Asterisk at the end only if it
started it: other sessions and engineers share the same PBX.
"""
from __future__ import annotations

import pytest

from callcenter.settings import get_settings
from tests.live.helpers import ensure_running, stop_if_started


def pytest_collection_modifyitems(items):
    # everything under tests/live/ needs the real PBX: `-m "not live"` deselects it
    for item in items:
        if "/tests/live/" in str(item.fspath):
            item.add_marker(pytest.mark.live)


@pytest.fixture(scope="session")
def asterisk():
    settings = get_settings()
    started = ensure_running(settings)
    yield settings
    stop_if_started(settings, started)
