"""A fake PBX for the callback runner's tests without Asterisk: the fake AMI server answers
Originate like `[outbound-callback]` with a busy citizen line (the AstDB ledger entry is written
when the Originate arrives), and serves DBGet / DBDel / DBGetTree on that ledger. While a call is
up its own channel (`Local/<number>@<context>-<n>;1`, Uniqueid = the ChannelId) is listed by
CoreShowChannels; when it ends every session hears its Hangup."""
from __future__ import annotations

import asyncio
from collections import Counter

from callcenter.ami.fake import FakeAMIServer, _reply


class FakePBX:
    def __init__(self, *, busy_after: float = 0.01):
        self.server = FakeAMIServer()
        self.busy_after = busy_after
        self.ledger: set[str] = set()
        self.dialled: Counter[str] = Counter()  # ChannelId -> Originates received
        self.up = 0
        self.peak_up = 0
        self.hold = False  # True: calls never end (a test ends them)
        self.held: set[str] = set()  # ChannelIds kept up even when `hold` is False (a test releases them)
        self._n = 0
        self.server.handlers.update(originate=self._originate, dbget=self._dbget, dbdel=self._dbdel,
                                    dbgettree=self._dbgettree)

    async def __aenter__(self) -> FakePBX:
        await self.server.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.server.close()

    def client_args(self) -> tuple:
        return ("127.0.0.1", self.server.port, self.server.username, self.server.secret)

    async def _originate(self, session, action):
        chan = action.get_first("ChannelId")
        self.dialled[chan] += 1
        self.ledger.add(chan)  # [outbound-callback] writes it before it dials
        self.up += 1
        self.peak_up = max(self.peak_up, self.up)
        self._n += 1
        name = f"{action.get_first('Channel')}-{self._n:08x};1"  # Local/<number>@<context>-<n>;1
        channel = {"Channel": name, "Uniqueid": chan, "Context": action.get_first("Context")}
        self.server.channels.append(channel)
        session.send(_reply(action, Response="Success", Message="Originate successfully queued"))

        async def later():
            await asyncio.sleep(self.busy_after)
            while self.hold or chan in self.held:
                await asyncio.sleep(0.01)
            self.up -= 1
            if channel in self.server.channels:  # (a test may have replaced the list)
                self.server.channels.remove(channel)
            self.server.broadcast({"Event": "Hangup", "Channel": name, "Uniqueid": chan, "Cause": "17"})
            if not session.writer.transport.is_closing():
                session.send({"Event": "OriginateResponse", "ActionID": action.action_id, "Response": "Failure",
                              "Channel": action.get_first("Channel"), "Reason": "5", "Uniqueid": chan})
        asyncio.get_running_loop().create_task(later())
        return []

    def _dbget(self, session, action):
        key = action.get_first("Key")
        if key not in self.ledger:
            return [_reply(action, Response="Error", Message="Database entry not found")]
        return [_reply(action, Response="Success", EventList="start", Message="Result will follow"),
                {"Event": "DBGetResponse", "ActionID": action.action_id, "Family": action.get_first("Family"),
                 "Key": key, "Val": "1"},
                {"Event": "DBGetComplete", "ActionID": action.action_id, "EventList": "Complete", "ListItems": 1}]

    def _dbgettree(self, session, action):
        family = action.get_first("Family")
        items = [{"Event": "DBGetTreeResponse", "ActionID": action.action_id, "Key": f"/{family}/{key}", "Val": "1"}
                 for key in sorted(self.ledger)]
        return [_reply(action, Response="Success", EventList="start", Message="Result will follow"), *items,
                {"Event": "DBGetTreeComplete", "ActionID": action.action_id, "EventList": "Complete",
                 "ListItems": len(items)}]

    def _dbdel(self, session, action):
        key = action.get_first("Key")
        if key not in self.ledger:
            return [_reply(action, Response="Error", Message="Database entry not found")]
        self.ledger.discard(key)
        return [_reply(action, Response="Success", Message="Key deleted successfully")]
