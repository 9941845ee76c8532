"""Operators at work: the AMI link service (live state + call log), the 12345 queue, screen-pop and
the CEL reconciliation. See docs/call-control.md.

    cc = CallControl.from_settings(settings, session_factory, domain)
    app = create_app(settings, domain=domain, engine=engine, callcontrol=cc)   # the API starts/stops it
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callcenter.ami.client import AMIClient
from callcenter.callcontrol.broker import Feed
from callcenter.callcontrol.cel import CelFile, CelSource
from callcenter.callcontrol.link import CallControlError, CallLink, ChannelGone, LinkDown, NotYourCall, UnknownChannel
from callcenter.callcontrol.membership import MembershipSync, SharedMembership
from callcenter.callcontrol.queue import QueueService
from callcenter.callcontrol.recovery import ControlRecovery
from callcenter.callcontrol.screenpop import ScreenPop
from callcenter.callcontrol.state import BridgeState, ChannelState, QueueCaller, QueueMember
from callcenter.callcontrol.transfer import AmiPbx
from callcenter.callcontrol.transfer import CallControl as Transfers
from callcenter.callcontrol.wallboard import Wallboard
from callcenter.callcontrol.wrapup import AfterCallWork
from ticketing.domain import Domain


@dataclass
class CallControl:
    """The link with the services that hang off it; one per process."""

    link: CallLink
    queue: QueueService
    screenpop: ScreenPop
    transfers: Transfers | None = None  # transfers and three-way calls (the API's /calls/{uniqueid}/...)
    recovery: ControlRecovery | None = None  # gives those back to their operators after a restart
    board: Wallboard | None = None  # the live wallboard (/api/v1/board)
    wrapup: AfterCallWork | None = None  # after-call work: the pause after each queue call
    membership: MembershipSync | None = None  # several nodes: the queue follows the shared membership

    @classmethod
    def create(cls, ami: AMIClient, session_factory: sessionmaker[Session], domain: Domain, *,
               cel_source: CelSource | None = None, after_call_work_s: float = 0.0, shared_queue: bool = False,
               **link_kwargs: Any) -> CallControl:
        link = CallLink(ami, session_factory, cel_source=cel_source, **link_kwargs)
        transfers = Transfers(AmiPbx(ami))
        recovery = ControlRecovery(transfers, session_factory)
        link.on_resync(recovery.on_resync)
        queue = QueueService(link)
        membership = None
        if shared_queue:  # docs/scaling.md: one process per Asterisk node, one database
            queue.shared = SharedMembership(session_factory.kw["bind"], link.queue_name)
            membership = MembershipSync(queue)
        board = Wallboard.for_domain(link, session_factory, domain)
        return cls(link=link, queue=queue, screenpop=ScreenPop(link, session_factory, domain),
                   transfers=transfers, recovery=recovery, board=board,
                   wrapup=AfterCallWork(link, queue, after_call_work_s, on_change=board.live_changed),
                   membership=membership)

    @classmethod
    def from_settings(cls, settings: Any, session_factory: sessionmaker[Session], domain: Domain,
                      **ami_kwargs: Any) -> CallControl:
        """For the install's Asterisk: AMI from settings (reconnect backoff capped at 2 s: the link is
        back within seconds of Asterisk), the CEL file inside the Asterisk root."""
        ami_kwargs.setdefault("reconnect_backoff", (0.2, 2.0))
        # a restart is seen at once (EOF); the Pong deadline only catches a hung Asterisk, and under a
        # flood of events (benchmarks: 7,000/s) a Pong can queue behind seconds of events
        ami_kwargs.setdefault("ping_timeout", 15.0)
        ami = AMIClient.from_settings(settings, **ami_kwargs)
        return cls.create(ami, session_factory, domain, cel_source=CelFile.from_settings(settings),
                          after_call_work_s=getattr(settings, "after_call_work_s", 0.0),
                          shared_queue=getattr(settings, "queue_shared", False))

    @property
    def ami(self) -> AMIClient:
        return self.link.ami

    async def start(self, *, wait: bool = True) -> None:
        await self.link.start(wait=wait)
        if self.membership is not None:
            self.membership.start()

    async def stop(self) -> None:
        if self.membership is not None:
            await self.membership.stop()
        if self.wrapup is not None:
            await self.wrapup.stop()
        if self.board is not None:
            await self.board.stop()
        await self.link.stop()


__all__ = [
    "AfterCallWork", "BridgeState", "CallControl", "CallControlError", "CallLink", "ChannelGone", "ChannelState", "Feed",
    "LinkDown", "NotYourCall", "QueueCaller", "QueueMember", "QueueService", "ScreenPop", "UnknownChannel",
    "Wallboard",
]
