"""What became of a callback whose runner lost track of it (killed, or the Originate's answer lost):
the one rule both runners settle such calls by (callback/runner.py for the 回访 survey,
callback/missed_runner.py for 漏接回拨). Asterisk is asked, never guessed:

- `UP`: a channel with the call's id is still up: watch it to its end like one's own call;
- `DIALLED`: gone, but the dialplan's ledger entry (written before it dials the citizen) is there:
  the citizen was dialled, outcome unknown; never dial it again blindly;
- `NEVER`: gone and no ledger entry: the citizen was never dialled; the same key may go again;
- None: Asterisk could not be asked now; try again later.
"""
from __future__ import annotations

from callback.pbx import CallbackPbx, PbxError

UP = "up"
DIALLED = "dialled"
NEVER = "never"


async def fate(pbx: CallbackPbx, channel_id: str, alive: set[str]) -> str | None:
    """`alive`: the channel ids up now (`pbx.channels_up`, asked once for a batch of calls)."""
    if channel_id in alive:
        return UP
    try:
        return DIALLED if await pbx.ledger_has(channel_id, timeout=5) else NEVER
    except PbxError:
        return None


__all__ = ["DIALLED", "NEVER", "UP", "fate"]
