"""After-call work (话后整理): when a queue call ends, the operator gets a set time to complete the
case before the queue offers the next call; they may end it early by unpausing.

Driven by the application rather than queues.conf `wrapuptime`: Asterisk's wrap-up time is invisible
over AMI (the member just looks free) and cannot be ended early, while a pause with the reason
`after_call_work` shows on the desk and the wallboard with the time left. The gap between the
call's end (AgentComplete) and the pause is one AMI round trip; a call offered in it simply wins.
An operator who pauses or unpauses themselves meanwhile ends the wrap-up: their choice stands. After a restart of the
application, a member found in wrap-up is given the full time again and then released, so nobody
stays paused because the process that would have unpaused them died.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from callcenter.ami.errors import AMIError
from callcenter.callcontrol.link import CallLink
from callcenter.callcontrol.queue import QueueService
from callcenter.errors import AppError
from callcenter.pbx.names import operator_of_interface

log = logging.getLogger("callcenter.callcontrol.wrapup")

REASON = "after_call_work"


class AfterCallWork:
    def __init__(self, link: CallLink, queue: QueueService, seconds: float,
                 on_change: Callable[[], None] | None = None) -> None:
        self.link, self.queue, self.seconds = link, queue, float(seconds)
        self.on_change = on_change  # the wallboard, which otherwise redraws on AMI events only
        self._timers: dict[str, asyncio.Task] = {}
        link.on_event(self._on_event)
        queue.on_operator_pause.append(self.give_way)
        link.on_resync(self._after_resync)

    def _on_event(self, msg) -> None:
        if self.seconds <= 0 or (msg.name or "") != "AgentComplete" or msg.get_first("Queue") != self.queue.queue:
            return
        extension = operator_of_interface(msg.get_first("Interface") or "")
        if extension:
            self._start(extension, pause=True)

    async def _after_resync(self, link: CallLink, first: bool) -> None:
        if self.seconds <= 0:
            return
        for member in list(link.queue.members.values()):
            ext = member.extension
            if ext and member.paused and member.paused_reason == REASON and ext not in self._timers:
                self._start(ext, pause=False)

    def _start(self, extension: str, *, pause: bool) -> None:
        old = self._timers.pop(extension, None)
        if old is not None:
            old.cancel()
        self._timers[extension] = asyncio.ensure_future(self._run(extension, pause))

    async def _run(self, extension: str, pause: bool) -> None:
        me = asyncio.current_task()
        try:
            member = self.queue.member(extension)
            if member is None:
                return
            if pause:
                if member.paused:  # a pause of the operator's own (a break) stays as it is
                    return
                await self.queue.system_pause(extension, REASON)
            member = self.queue.member(extension)
            if member is not None:
                self.link.live.note_wrap_up(member.interface, time.time() + self.seconds)
                if self.on_change is not None:
                    self.on_change()
            await asyncio.sleep(self.seconds)
            member = self.queue.member(extension)
            if member is not None and member.paused and member.paused_reason == REASON:
                await self.queue.system_unpause(extension)
        except (AMIError, AppError) as exc:
            log.warning("after-call work of operator %s: %s; the next resync repairs the pause", extension, exc)
        finally:
            if self._timers.get(extension) is me:
                del self._timers[extension]

    def give_way(self, extension: str) -> None:
        """The operator paused or unpaused themselves: their choice stands, the wrap-up is over."""
        task = self._timers.pop(extension, None)
        if task is not None:
            task.cancel()
            member = self.queue.member(extension)
            if member is not None:
                self.link.live.note_wrap_up(member.interface, None)

    async def stop(self) -> None:
        timers, self._timers = list(self._timers.values()), {}
        for task in timers:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task


__all__ = ["REASON", "AfterCallWork"]
