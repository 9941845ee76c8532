"""Operators in the 12345 queue: log in, log out, pause with a reason (AMI QueueAdd/QueueRemove/QueuePause).

Asterisk keeps no members across a restart (queues.conf ``persistentmembers = no``), so the service
remembers who asked to be in the queue and in which pause state, and puts them back after a resync
that finds them missing. When the application itself restarts while Asterisk keeps running, it
adopts the members Asterisk has. An action whose outcome is unknown (link lost before the answer) is
not retried: the next resync compares and repairs.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from callcenter.ami.errors import AMIError, AMILinkLost, AMINotConnected, AMITimeout
from callcenter.callcontrol.link import CallLink, LinkDown
from callcenter.callcontrol.membership import SharedMembership
from callcenter.callcontrol.state import QueueMember
from callcenter.errors import OUTCOME_UNKNOWN, REFUSED, UPSTREAM_FAILED, AppError
from callcenter.pbx.names import operator_endpoint, operator_interface, operator_of_interface

log = logging.getLogger("callcenter.callcontrol.queue")

# How long a queue login waits for Asterisk to report the member it has just added.
MEMBER_REPORT_WAIT_S = 2.0
PAUSE_REASONS = ("break", "meal", "training", "meeting", "after_call_work", "other")


class NotInQueue(AppError):
    kind = REFUSED

    def __init__(self, extension: str):
        super().__init__("not_in_queue", f"operator {extension} is not logged in to the queue; log in first")


class QueueActionFailed(AppError):
    kind = UPSTREAM_FAILED

    def __init__(self, message: str):
        super().__init__("queue_action_failed", message)


class OutcomeUnknown(AppError):
    kind = OUTCOME_UNKNOWN

    def __init__(self, what: str):
        super().__init__("telephony_outcome_unknown",
                         f"the link to Asterisk dropped before it answered {what}; the state is checked again "
                         "as soon as the link is back: read the queue state and retry if needed")


@dataclass
class Wanted:
    extension: str
    name: str
    paused: bool = False
    reason: str = ""


class QueueService:
    def __init__(self, link: CallLink) -> None:
        self.link = link
        self.queue = link.queue_name
        self.wanted: dict[str, Wanted] = {}
        # told of every pause or unpause an operator asks for (after-call work gives way to it)
        self.on_operator_pause: list[Callable[[str], None]] = []
        # several nodes (docs/scaling.md): the wanted membership lives in the shared database; changes
        # are published first, then made here, one at a time with the sync of the others' changes
        self.shared: SharedMembership | None = None
        self._lock = asyncio.Lock()
        link.on_resync(self._after_resync)

    def _guard(self) -> contextlib.AbstractAsyncContextManager:
        return self._lock if self.shared is not None else contextlib.nullcontext()

    async def _publish(self, extension: str) -> None:
        if self.shared is None:
            return
        wanted = self.wanted.get(extension)
        if wanted is None:
            await asyncio.to_thread(self.shared.remove, extension)
        else:
            await asyncio.to_thread(self.shared.put, extension, wanted.name, wanted.paused, wanted.reason)

    def member(self, extension: str) -> QueueMember | None:
        return self.link.queue.members.get(operator_interface(extension))

    def state_of(self, extension: str) -> dict[str, Any]:
        member = self.member(extension)
        return {"extension": extension, "logged_in": member is not None,
                "member": member.public() if member else None}

    async def _send(self, action: dict[str, Any], what: str, ok_when: tuple[str, ...] = ()) -> None:
        try:
            reply = await self.link.ami.send_action(action)
        except AMINotConnected:
            raise LinkDown() from None
        except (AMILinkLost, AMITimeout):
            raise OutcomeUnknown(what) from None
        if not reply.success:
            message = reply.get_first("Message") or ""
            if any(marker in message.lower() for marker in ok_when):
                return
            raise QueueActionFailed(f"Asterisk refused {what}: {message}")

    async def login(self, extension: str, name: str = "", *, paused: bool = False, reason: str = "") -> dict[str, Any]:
        """Add ``PJSIP/op<ext>`` to the queue (idempotent)."""
        async with self._guard():
            return await self._login(extension, name, paused, reason)

    async def _login(self, extension: str, name: str, paused: bool, reason: str) -> dict[str, Any]:
        self.link.require_link()
        before = self.wanted.get(extension)
        self.wanted[extension] = Wanted(extension, name or operator_endpoint(extension), paused, reason)
        await self._publish(extension)
        iface = operator_interface(extension)
        # Asterisk may answer QueueAdd before it reports the member (QueueMemberAdded): listen from
        # before the action, so the answer can show the operator in the queue.
        added = asyncio.ensure_future(self.link.wait_for(
            lambda m: (m.get_first("Event") or "").lower() == "queuememberadded" and m.get_first("Interface") == iface
            and m.get_first("Queue") == self.queue, timeout=MEMBER_REPORT_WAIT_S))
        try:
            await self._add(self.wanted[extension])
            if self.member(extension) is None:
                with contextlib.suppress(TimeoutError):
                    await added
        except LinkDown:
            # nothing was sent: forget the wish too, so no later resync acts on it by itself
            if before is None:
                self.wanted.pop(extension, None)
            else:
                self.wanted[extension] = before
            await self._publish(extension)
            raise
        finally:
            added.cancel()
        return self.state_of(extension)

    async def _add(self, wanted: Wanted) -> None:
        iface = operator_interface(wanted.extension)
        await self._send({"Action": "QueueAdd", "Queue": self.queue, "Interface": iface, "MemberName": wanted.name,
                          "StateInterface": iface, "Paused": "true" if wanted.paused else "false"},
                         f"the queue login of {wanted.extension}", ok_when=("already there",))
        if wanted.paused:
            await self._send({"Action": "QueuePause", "Queue": self.queue, "Interface": iface, "Paused": "true",
                              "Reason": wanted.reason}, f"the pause of {wanted.extension}")

    async def logout(self, extension: str) -> dict[str, Any]:
        async with self._guard():
            self.link.require_link()
            self.wanted.pop(extension, None)
            await self._publish(extension)
            return await self._remove(extension)

    async def _remove(self, extension: str) -> dict[str, Any]:
        await self._send({"Action": "QueueRemove", "Queue": self.queue, "Interface": operator_interface(extension)},
                         f"the queue logout of {extension}", ok_when=("not there",))
        self.link.queue.members.pop(operator_interface(extension), None)
        return self.state_of(extension)

    async def pause(self, extension: str, reason: str) -> dict[str, Any]:
        """The operator's own pause (or a supervisor's for them)."""
        for listener in self.on_operator_pause:
            listener(extension)
        async with self._guard():
            return await self._set_pause(extension, True, reason)

    async def unpause(self, extension: str) -> dict[str, Any]:
        for listener in self.on_operator_pause:
            listener(extension)
        async with self._guard():
            return await self._set_pause(extension, False, "")

    async def system_pause(self, extension: str, reason: str) -> dict[str, Any]:
        """A pause the application sets and lifts itself (after-call work)."""
        async with self._guard():
            return await self._set_pause(extension, True, reason)

    async def system_unpause(self, extension: str) -> dict[str, Any]:
        async with self._guard():
            return await self._set_pause(extension, False, "")

    async def _set_pause(self, extension: str, paused: bool, reason: str, publish: bool = True) -> dict[str, Any]:
        self.link.require_link()
        if self.member(extension) is None and extension not in self.wanted:
            raise NotInQueue(extension)
        wanted = self.wanted.setdefault(extension, Wanted(extension, operator_endpoint(extension)))
        wanted.paused, wanted.reason = paused, reason
        if publish:
            await self._publish(extension)
        action = {"Action": "QueuePause", "Queue": self.queue, "Interface": operator_interface(extension),
                  "Paused": "true" if paused else "false"}
        if paused:
            action["Reason"] = reason
        await self._send(action, f"the {'pause' if paused else 'unpause'} of {extension}")
        member = self.member(extension)
        if member is not None:  # the QueueMemberPause event follows; answer with the state asked for
            member.paused, member.paused_reason = paused, reason if paused else ""
        return self.state_of(extension)

    async def sync_shared(self) -> None:
        """Make this node's queue what the shared membership says: the changes other nodes'
        processes published (membership.MembershipSync calls it every second)."""
        if self.shared is None:
            return
        async with self._lock:
            want = await asyncio.to_thread(self.shared.load)
            for ext, (name, paused, reason) in want.items():
                mine = self.wanted.get(ext)
                if mine is None:
                    self.wanted[ext] = Wanted(ext, name, paused, reason)
                    await self._add(self.wanted[ext])
                elif (mine.paused, mine.reason) != (paused, reason):
                    await self._set_pause(ext, paused, reason, publish=False)
            for ext in [e for e in self.wanted if e not in want]:
                self.wanted.pop(ext)
                await self._remove(ext)

    async def _after_resync(self, link: CallLink, first: bool) -> None:
        present = {operator_of_interface(i): m for i, m in link.queue.members.items()}
        if first:
            for ext, member in present.items():
                if ext and ext not in self.wanted:
                    self.wanted[ext] = Wanted(ext, member.name, member.paused, member.paused_reason)
        for ext, wanted in list(self.wanted.items()):
            member = present.get(ext)
            try:
                if member is None:
                    log.info("queue: operator %s was logged in before the link dropped; logging in again", ext)
                    await self._add(wanted)
                elif member.paused != wanted.paused:
                    await self._set_pause(ext, wanted.paused, wanted.reason)
            except (AMIError, AppError) as exc:
                log.warning("queue: could not restore operator %s: %s", ext, exc)


__all__ = ["PAUSE_REASONS", "NotInQueue", "OutcomeUnknown", "QueueActionFailed", "QueueService"]
