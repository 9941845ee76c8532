"""Evidence for docs/ami.md: panoramisk 1.4 vs our AMI client on the failure cases that matter.

Both talk to the same fake AMI server (callcenter.ami.fake), which records every action it receives.

    .venv/bin/python benchmarks/ami_panoramisk_replay.py

Scenarios:
  A. an Originate is in flight (no answer yet) when the link drops; the client reconnects.
     How many times does the server receive that Originate?
  B. an Originate is requested while the link is down; the link comes back.
     What does the caller get, and is the Originate sent later?
  C. an async Originate: what does the caller get back?
  D. a value with CR/LF (e.g. a caller ID name typed by a citizen): what reaches the server?
"""
from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from callcenter.ami import AMIClient, AMILinkLost, AMINotConnected, ActionEncodingError  # noqa: E402
from callcenter.ami.fake import FakeAMIServer  # noqa: E402

ORIGINATE = {"Action": "Originate", "Channel": "Local/s@test-citizen", "Application": "Playback",
             "Data": "silence/1", "Async": "false"}
INJECTED = dict(ORIGINATE, CallerID="x\r\n\r\nAction: Command\r\nCommand: core show version")


async def wait_until(predicate, timeout):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate() and loop.time() < end:
        await asyncio.sleep(0.02)
    return predicate()


async def panoramisk_case() -> dict[str, str]:
    from panoramisk import Manager

    out: dict[str, str] = {}
    async with FakeAMIServer() as ami:
        manager = Manager(host="127.0.0.1", port=ami.port, username=ami.username, secret=ami.secret,
                          ping_delay=60, reconnect_timeout=1, loop=asyncio.get_running_loop())
        await manager.connect()
        await wait_until(lambda: manager.authenticated, 2)

        # A: in flight when the link drops.
        ami.hold.add("originate")
        future_a = manager.send_action(dict(ORIGINATE))
        await ami.wait_for_action("Originate")
        ami.drop_all()
        await wait_until(lambda: len(ami.actions_named("Originate")) >= 2, 4)
        sent = ami.actions_named("Originate")
        out["A in flight, link drops"] = (
            f"server received the Originate {len(sent)}x (ActionIDs {sorted({a.action_id for a in sent})}); "
            f"caller's future done={future_a.done()}"
        )

        # B: requested while down.
        ami.hold.discard("originate")
        before = len(ami.actions_named("Originate"))
        await ami.stop_listening()
        ami.drop_all()
        await asyncio.sleep(0.2)
        try:
            future_b = manager.send_action(dict(ORIGINATE, Channel="Local/b@test-citizen"))
            raised = "no exception"
        except Exception as exc:  # noqa: BLE001 - report whatever it does
            future_b, raised = None, f"{type(exc).__name__}: {exc}"
        await ami.start()
        await wait_until(lambda: manager.authenticated and len(ami.sessions) >= 3, 5)
        await asyncio.sleep(1.5)
        done = future_b.done() if future_b is not None else "n/a"
        later = ami.actions_named("Originate")[before:]
        out["B requested while down"] = (
            f"send_action: {raised}; future done after reconnect+1.5s: {done}; sent later: "
            f"{sum(a.get('Channel') == 'Local/b@test-citizen' for a in later)}x "
            f"(and the unanswered Originate of A once more: {sum(a.get('Channel') == 'Local/s@test-citizen' for a in later)}x)"
        )

        # C: async Originate result type.
        result = await asyncio.wait_for(manager.send_action(dict(ORIGINATE, Async="true")), 3)
        out["C async Originate returns"] = type(result).__name__ + (
            f" of {len(result)} messages" if isinstance(result, list) else ""
        )

        # D: CR/LF in a value.
        ami.command_output["core show version"] = ["Asterisk 22"]
        commands_before = len(ami.actions_named("Command"))
        manager.send_action(dict(INJECTED))
        await asyncio.sleep(0.3)
        injected = len(ami.actions_named("Command")) - commands_before
        out["D CR/LF in CallerID"] = f"server received {injected} extra 'Command' action(s)"
        manager.close()
    return out


async def our_case() -> dict[str, str]:
    out: dict[str, str] = {}
    async with FakeAMIServer() as ami:
        client = AMIClient("127.0.0.1", ami.port, ami.username, ami.secret, reconnect_backoff=(0.1, 1.0))
        await client.start()

        ami.hold.add("originate")
        task = asyncio.create_task(client.send_action(dict(ORIGINATE), timeout=5))
        await ami.wait_for_action("Originate")
        ami.drop_all()
        try:
            await task
            outcome = "answered?!"
        except AMILinkLost:
            outcome = "AMILinkLost at once"
        await client.wait_connected(3)
        await asyncio.sleep(1.0)
        sent = ami.actions_named("Originate")
        out["A in flight, link drops"] = f"server received the Originate {len(sent)}x; caller got {outcome}"

        ami.hold.discard("originate")
        before = len(ami.actions_named("Originate"))
        await ami.stop_listening()
        ami.drop_all()
        await wait_until(lambda: not client.connected, 2)
        try:
            await client.send_action(dict(ORIGINATE, Channel="Local/b@test-citizen"))
            raised = "no exception"
        except AMINotConnected:
            raised = "AMINotConnected at once"
        await ami.start()
        await client.wait_connected(3)
        await asyncio.sleep(1.5)
        out["B requested while down"] = (
            f"send_action: {raised}; sent later: {len(ami.actions_named('Originate')) - before}x"
        )

        result = await client.originate("Local/s@test-citizen", application="Playback", data="silence/1")
        out["C async Originate returns"] = f"{type(result).__name__} {result.name} ({result.response})"

        try:
            await client.send_action(dict(INJECTED))
            out["D CR/LF in CallerID"] = "sent"
        except ActionEncodingError:
            out["D CR/LF in CallerID"] = (
                f"ActionEncodingError; server received {len(ami.actions_named('Command'))} 'Command' actions"
            )
        await client.stop()
    return out


async def main() -> None:
    logging.basicConfig(level=logging.CRITICAL)
    theirs = await panoramisk_case()
    ours = await our_case()
    for key in theirs:
        print(f"{key}\n  panoramisk 1.4: {theirs[key]}\n  callcenter.ami: {ours[key]}")


if __name__ == "__main__":
    asyncio.run(main())
