"""A store that stops answering without refusing, for the failure drills (tests/live/test_drills_live.py):
every packet to and from one TCP port dropped, as a network partition does, by an nftables table of
its own (removed afterwards, and before, if a killed run left it), and how long each caller waited
in silence (the menu waiting on the store) before the operator queue. Needs root and nft (Debian `nftables`,
scripts/setup). Only the drill's own throwaway PostgreSQL port is ever touched.
"""
from __future__ import annotations

import collections
import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

from benchmarks.sip_load_events import PROMPT_COMMANDS
from tests.live import sipp
from tests.live.drills import DrillCalls

# An operator caller already in the menu when the store is cut or stopped: key 0 at 3 s, the transfer
# prompt (4 s and more on a busy machine), then the record's last write fails (a cut waits the store's
# deadline, 1.5 s) before the queue: over the drills' 12 s of patience in one run of five, and on a
# loaded CI machine once with the store stopped. This caller waits 20 s, so the drill
# measures the deadline's silence, not a caller's patience with the menu's own prompts.
PATIENT_OPERATOR = sipp.Behaviour("d-operator-patient", ((3.0, "0"),), 20.0, "operator")


def unavailable() -> str:
    """'' if packets can be dropped here, else why not."""
    if os.geteuid() != 0:
        return "dropping packets (nftables) needs root"
    if shutil.which("nft") is None:
        return "nft (Debian nftables) is missing: scripts/setup installs it"
    return ""


def _table(port: int) -> str:
    return f"callcenter_drill_{port}"


def _heal(port: int) -> None:
    subprocess.run(["nft", "delete", "table", "inet", _table(port)], capture_output=True, check=False)


@contextlib.contextmanager
def partitioned(port: int) -> Iterator[None]:
    """Packets to and from `port` (TCP, any local address) dropped while the block runs: no refusal,
    no reset, silence, as when the network between the hotline and its store is cut."""
    _heal(port)
    rules = (f"table inet {_table(port)} {{\n chain input {{\n  type filter hook input priority -10; policy accept;\n"
             f"  tcp dport {port} drop\n  tcp sport {port} drop\n }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, capture_output=True, check=True)
    try:
        yield
    finally:
        _heal(port)


def rules_left(port: int) -> bool:
    probe = subprocess.run(["nft", "list", "table", "inet", _table(port)], capture_output=True, check=False)
    return probe.returncode == 0


class HeardCalls(DrillCalls):
    """DrillCalls plus when each prompt the caller heard ended (AGIExecEnd of a prompt command)."""

    FILTERS = (*DrillCalls.FILTERS, "Event: AGIExecEnd")

    def __init__(self) -> None:
        super().__init__()
        self.prompt_ends: dict[str, list[float]] = collections.defaultdict(list)

    def on_event(self, msg: dict[str, str]) -> None:
        super().on_event(msg)
        if msg.get("Event") == "AGIExecEnd" and msg.get("Command", "").startswith(PROMPT_COMMANDS):
            with contextlib.suppress(ValueError):
                self.prompt_ends[msg.get("Uniqueid", "")].append(float(msg.get("Timestamp") or time.time()))

    def silences(self, since: float, until: float) -> list[float]:
        """Seconds each caller waited in silence before the queue (from the answer, their last key or the
        end of the last prompt they heard: when the menu went on to the store), for the callers whose
        silence began in [since, until)."""
        waits = []
        for uid, c in self.calls.items():
            if c.answered is None or c.queued is None:
                continue
            heard = [c.answered] + [at for at, _ in c.keys] + self.prompt_ends.get(uid, [])
            began = max(at for at in heard if at <= c.queued)
            if since <= began < until:
                waits.append(c.queued - began)
        return waits
