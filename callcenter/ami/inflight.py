"""Actions in flight on one AMI link: which action waits for which answer, and what happens to it
when the link dies. A ``Link`` is one TCP connection with its parser and its table of ``Pending``
actions by ActionID; each ``Pending`` collects its answer (a Response, an event list up to its
``...Complete`` event, or an ``OriginateResponse``) into a future. When the link closes, every
action still pending on it fails with ``AMILinkLost``: it may or may not have run, and nothing
here ever writes it again (``connection.py`` writes each action once, or not at all).
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from callcenter.ami.errors import AMILinkLost
from callcenter.ami.protocol import Message, Parser, redacted


class Pending:
    """One written action waiting for its answer; lives and dies with the link it was written on."""

    __slots__ = ("kind", "action_id", "_action", "_shown", "future", "response", "items", "complete")

    def __init__(self, kind: str, action_id: str, action: dict[str, Any]) -> None:
        self.kind = kind  # "single" | "list" | "originate"
        self.action_id = action_id
        self._action = action  # as written (secrets included): never shown, see ``action``
        self._shown: dict[str, Any] | None = None
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.response: Message | None = None
        self.items: list[Message] = []
        self.complete = False

    @property
    def action(self) -> dict[str, Any]:
        """The redacted copy, for errors: made only when one needs it (most actions just succeed,
        and masking every Originate's values cost the callback runner ~15 us per call)."""
        if self._shown is None:
            self._shown = redacted(self._action)
        return self._shown

    def feed(self, msg: Message) -> None:
        if self.future.done():
            return
        if self.kind == "single":
            if msg.is_response:
                self.future.set_result(msg)
        elif self.kind == "list":
            if msg.is_response:
                if self.response is None:
                    self.response = msg
                    if not _starts_list(msg):
                        self.future.set_result((msg, []))
                        return
            elif msg.is_event:
                if _ends_list(msg):
                    self.complete = True
                else:
                    self.items.append(msg)
            if self.complete and self.response is not None:
                self.future.set_result((self.response, self.items))
        elif self.kind == "originate":
            if msg.is_response:
                self.response = msg
                if not msg.success:  # Error: no OriginateResponse event will follow
                    self.future.set_result(msg)
            elif (msg.name or "").lower() == "originateresponse":
                # May even come before the "successfully queued" ack: the dial runs in its own thread.
                self.future.set_result(msg)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


def _starts_list(msg: Message) -> bool:
    if not msg.success:
        return False
    if msg.event_list == "start":
        return True
    return "will follow" in (msg.get_first("Message") or "").lower()


def _ends_list(msg: Message) -> bool:
    marker = msg.event_list
    if marker is not None:
        return marker == "complete"
    return (msg.name or "").lower().endswith("complete")


class Link:
    """One TCP connection. Actions pending on it fail with AMILinkLost when it closes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str) -> None:
        self.reader = reader
        self.writer = writer
        self.label = label
        self.parser = Parser()
        self.pending: dict[str, Pending] = {}
        self.closed = False
        self.close_reason = ""
        self.greeted = asyncio.Event()  # banner seen
        self.booted = asyncio.Event()  # FullyBooted event seen
        self.done = asyncio.get_running_loop().create_future()
        self.reader_task: asyncio.Task[None] | None = None

    def close(self, reason: str, *, graceful: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        pending, self.pending = self.pending, {}
        for item in pending.values():
            item.fail(
                AMILinkLost(
                    f"AMI link to {self.label} lost ({reason}) before the answer to "
                    f"{item.action.get('Action')!r} (ActionID {item.action_id}); it may or may not have run",
                    action=item.action,
                    action_id=item.action_id,
                )
            )
        # Wake whoever waits for the banner or FullyBooted: they check ``closed`` next.
        self.greeted.set()
        self.booted.set()
        with contextlib.suppress(Exception):
            if graceful:
                self.writer.close()
            else:
                # A dead link must not flush stale bytes later: drop it now.
                self.writer.transport.abort()
        if not self.done.done():
            self.done.set_result(reason)


__all__ = ["Link", "Pending"]
