"""The operator queue across Asterisk nodes (docs/scaling.md): one application process per node, one
database. An operator's log-in, pause and log-out through one node's process reach every node's
queue (R5.1: the front desk answers the 12345 queue, whichever node a citizen's call landed on).
Runs on SQLite and PostgreSQL; each node is a fake AMI server."""
from __future__ import annotations

import pytest
from sqlalchemy import delete

from callcenter.ami.client import AMIClient
from callcenter.callcontrol import CallControl
from callcenter.callcontrol.membership import SharedMembership, membership_table
from tests.test_callcontrol_link import QUEUE, Fake


@pytest.fixture
async def nodes(sessions, domain):
    fakes = [Fake(), Fake()]
    controls = []
    SharedMembership(sessions.kw["bind"], QUEUE)  # creates the table on first use
    with sessions.kw["bind"].begin() as conn:  # it outlives each test's emptied domain tables
        conn.execute(delete(membership_table))
    for fake in fakes:
        await fake.server.start()
        ami = AMIClient("127.0.0.1", fake.server.port, fake.server.username, fake.server.secret,
                        reconnect_backoff=(0.05, 0.2), ping_interval=5)
        cc = CallControl.create(ami, sessions, domain, shared_queue=True)
        cc.membership.interval = 0.05
        controls.append(cc)
        await cc.start()
    try:
        yield list(zip(fakes, controls, strict=True))
    finally:
        for (fake, cc) in zip(fakes, controls, strict=True):
            await cc.stop()
            await fake.server.close()


def _for(actions, extension: str) -> list:
    return [a for a in actions if a.get_first("Interface") == f"PJSIP/op{extension}"]


async def test_r5_1_log_in_pause_and_log_out_on_one_node_reach_the_other(nodes):
    (fake_a, a), (fake_b, b) = nodes
    await a.queue.login("8001", "王芳")
    added = await fake_b.server.wait_for_action("QueueAdd", timeout=3)
    assert _for(added, "8001") and added[0].get_first("MemberName") == "王芳"

    await a.queue.pause("8001", "meal")
    paused = await fake_b.server.wait_for_action("QueuePause", timeout=3)
    assert paused[0].get_first("Paused") == "true" and paused[0].get_first("Reason") == "meal"

    # the other way round: a change through node B's process reaches node A
    await b.queue.unpause("8001")
    both = await fake_a.server.wait_for_action("QueuePause", count=2, timeout=3)
    assert [p.get_first("Paused") for p in both] == ["true", "false"]

    await b.queue.logout("8001")
    removed = await fake_a.server.wait_for_action("QueueRemove", timeout=3)
    assert _for(removed, "8001")
    assert SharedMembership(a.queue.shared.engine, QUEUE).load() == {}
    # nothing echoes back: each node got one QueueAdd and no second one from the sync
    assert len(fake_a.server.actions_named("QueueAdd")) == len(fake_b.server.actions_named("QueueAdd")) == 1


async def test_after_call_work_pause_on_one_node_holds_the_operator_on_every_node(nodes):
    (fake_a, a), (_, b) = nodes
    await b.queue.login("8002", "李娜")
    await fake_a.server.wait_for_action("QueueAdd", timeout=3)
    await b.queue.system_pause("8002", "after_call_work")  # wrapup.py, on the node that had the call
    paused = await fake_a.server.wait_for_action("QueuePause", timeout=3)
    assert paused[0].get_first("Reason") == "after_call_work"
    assert a.queue.wanted["8002"].paused
