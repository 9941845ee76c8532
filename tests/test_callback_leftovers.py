"""Restarts leave nothing behind (issue 19 item 6): the calls a killed scheduler left up in Asterisk
count against the concurrency cap of the next one until they hang up, also those the store already
sees as settled (the survey stored the rating while the thank-you plays), and the AstDB ledger
entries of settled attempts are removed, those left by a killed process too. Against the fake PBX
(tests/callback_fake_pbx.py); on the real Asterisk: tests/live/test_callback_restart_live.py."""
from __future__ import annotations

import asyncio

import pytest

from callback import attempts as A
from callback.pbx import PbxError
from callcenter.ami.client import AMIClient
from callcenter.callbacks import AmiCallbackPbx
from tests.callback_fake_pbx import FakePBX
from tests.live.callback_helpers import reported_case
from tests.test_callback_batching import _crash, _policy, _runner, _states, _until
from ticketing.store import session_scope


async def test_issue19_the_port_lists_callback_calls_and_ledger_entries():
    """A callback call is its own channel (`Local/<number>@<context>-<n>;1`, Uniqueid = the id given
    to Originate); its ;2 half, the citizen's leg and other calls are not counted. The ledger's ids
    come without AstDB's family path."""
    async with FakePBX() as pbx:
        pbx.server.channels = [
            {"Channel": "Local/1@outbound-callback-00000001;1", "Uniqueid": "t-1"},
            {"Channel": "Local/1@outbound-callback-00000001;2", "Uniqueid": "x-2"},
            {"Channel": "Local/1@citizen-phones-00000002;1", "Uniqueid": "x-3"},
            {"Channel": "PJSIP/op-1001-00000004", "Uniqueid": "x-4"},
        ]
        pbx.ledger.update({"t-1", "t-5"})
        ami = AMIClient(*pbx.client_args(), action_timeout=2)
        await ami.start()
        port = AmiCallbackPbx(ami)
        try:
            assert await port.callback_calls("outbound-callback", timeout=2) == {"t-1"}
            assert await port.ledger_ids(timeout=2) == {"t-1", "t-5"}
            pbx.server.handlers["dbgettree"] = lambda s, a: [
                {"Response": "Error", "ActionID": a.action_id, "Message": "Permission denied"}]
            with pytest.raises(PbxError):
                await port.ledger_ids(timeout=2)  # unreadable: nothing is swept on a guess
        finally:
            await ami.stop()


async def test_issue19_calls_still_up_after_a_kill_hold_lines_of_the_cap_and_settled_entries_go(seeded, domain):
    """Cap 4; a scheduler is killed with 4 calls up, 2 of them already rated by the survey (settled
    in the store, still up in Asterisk). The restarted scheduler places nothing until a line is
    really free, one call per freed line, never more than 4 up at once; the ledger entries of the
    rated attempts go at its start, the others once settled; an entry it knows nothing of stays.
    Every callback is dialled exactly once (R7.4)."""
    d = _policy(domain, concurrency=4, max_attempts=1)
    numbers = [reported_case(seeded, d, f"2394000{i:04d}") for i in range(8)]
    keys = {f"cb-{n}-1": n for n in numbers}
    async with FakePBX(busy_after=0.01) as pbx:
        pbx.hold = True
        first, ami = await _runner(pbx, d, seeded)
        drain = asyncio.create_task(first.drain(timeout=60))
        await _until(lambda: pbx.up == 4)
        await _crash(first, ami, drain)
        up = set(pbx.dialled)
        assert len(up) == 4
        rated = sorted(up)[:2]
        with session_scope(seeded) as s:  # the survey stored the ratings; the thank-you still plays
            for key in rated:
                A.record_survey_answer(s, d, key=key, case_number=keys[key], value="satisfied")
        pbx.held, pbx.hold = set(up), False
        pbx.ledger.add("cb-elsewhere-1")  # not an attempt of this store: left alone

        runner, ami = await _runner(pbx, d, seeded)
        try:
            assert await runner.sweep() == 0, "4 calls up in Asterisk: no line is free"
            assert runner.stats.still_up == 4 and pbx.up == 4
            assert pbx.ledger == (up - set(rated)) | {"cb-elsewhere-1"}  # the rated ones' entries went

            pbx.held.discard(rated[0])  # one call ends: one line to fill
            await _until(lambda: len(pbx.dialled) == 5)
            assert pbx.up <= 4

            pbx.held.clear()
            await runner.drain(timeout=30)
        finally:
            await runner.stop()
            await ami.stop()
    assert pbx.peak_up == 4, pbx.peak_up
    assert sorted(pbx.dialled) == sorted(keys) and set(pbx.dialled.values()) == {1}, pbx.dialled
    assert all(st not in A.OPEN_STATES for st in _states(seeded).values())
    assert pbx.ledger == {"cb-elsewhere-1"}
    assert runner.stats.ledger_removed == 2
