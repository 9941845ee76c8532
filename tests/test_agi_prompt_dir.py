"""The prompt directory a call asks for in its AGI URL (`ivr/main?prompts=bench-silent`): the
voice-menu benchmark runs the real menu with silent copies of the prompts, nothing else changes.
Also the menu end to end over our FastAGI server on both stores (a case and its call record, A2)."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from callcenter.pbx.root import RECORDINGS_DIR
from agi.driver import PROMPT_DIR, AGIDriver, prompt_dir_for
from agi.hotline import Hotline, router_for
from agi.server import FastAGIServer
from agi.testing import FakeAsterisk, pressing
from ticketing.models import Call, Case
from ticketing.store import session_scope


def test_prompt_dir_defaults_to_the_hotline_prompts():
    assert prompt_dir_for({}) == PROMPT_DIR == "hotline"
    assert prompt_dir_for({"prompts": ""}) == "hotline"
    assert prompt_dir_for({"prompts": "bench-silent"}) == "bench-silent"


@pytest.mark.parametrize("bad", ["../hotline", "a/b", "Bench", "x\n", "bench silent", "/etc", "..", "中文"])
def test_prompt_dir_outside_a_plain_name_is_ignored(bad):
    assert prompt_dir_for({"prompts": bad}) == "hotline"
    with pytest.raises(ValueError):
        AGIDriver(None, recordings_dir="/tmp", uniqueid="1.1", prompt_dir=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("query, folder", [({"prompts": "bench-silent"}, "bench-silent"), (None, "hotline"),
                                           ({"prompts": "../x"}, "hotline")])
async def test_a2_menu_key_1_over_fastagi_uses_the_asked_prompts_and_logs_call_and_case(store, domain, query,
                                                                                         folder):
    hotline = Hotline.create(domain, store, RECORDINGS_DIR)
    server = FastAGIServer(router_for(hotline), "127.0.0.1", 0)
    await server.start()
    try:
        fake = FakeAsterisk("127.0.0.1", server.port, "ivr/main", query=query, uniqueid="1732512345.7",
                            callerid="13900000001")
        await fake.connect()
        commands = await fake.run(pressing("1"), timeout=20)
    finally:
        await server.stop()
        await hotline.close()
    prompts = [c.split()[2] for c in commands if c.startswith(("STREAM FILE", "GET DATA"))]
    # the menu's 6 prompts are one Read(): EXEC Read "IVR_DIGITS,<folder>/menu_consultation&...,1,,1,5"
    read = next(c for c in commands if c.startswith("EXEC Read"))
    prompts += read.split(",")[1].split("&")
    assert prompts[0] == f"{folder}/welcome" and f"{folder}/menu_operator" in prompts
    assert all(p.startswith(f"{folder}/") for p in prompts), prompts
    with session_scope(store) as s:
        call = s.execute(select(Call).where(Call.uniqueid == "1732512345.7")).scalar_one()
        case = s.execute(select(Case).where(Case.created_by_call_id == call.id)).scalar_one()
        assert (call.outcome, call.outcome_reason, call.case_id) == ("queued", "consultation", case.id)
        assert f"SET VARIABLE IVR_RESULT queue|consultation|{case.id}" in commands
        assert case.citizen_phone == "13900000001" and case.kind.value == "consultation"
        spoken = next(c for c in commands if c.startswith("SAY DIGITS"))
        assert spoken.split()[2] == case.number.replace("-", "")


@pytest.fixture
def store(seeded):
    """The seeded store; afterwards the case -> call links are cut: cases.created_by_call_id and
    calls.case_id point at each other, and the shared `engine` fixture empties SQLite table by
    table, which that cycle would stop at the next test."""
    yield seeded
    with session_scope(seeded) as s:
        s.execute(update(Case).values(created_by_call_id=None))
