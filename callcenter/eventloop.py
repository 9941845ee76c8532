"""The event loop of the long-running processes (`callcenter run`, `callcenter agi serve`).

uvloop by default: the FastAGI server does a socket read and write per AGI command for every call,
and uvloop's loop does that for a fraction of the stock loop's CPU (docs/benchmarks.md, "FastAGI
throughput"). `CALLCENTER_EVENT_LOOP=asyncio` turns it off.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("callcenter.eventloop")

T = TypeVar("T")
EVENT_LOOPS = ("uvloop", "asyncio")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for the named loop; None means asyncio's own. uvloop missing (a platform without
    a wheel) falls back to asyncio's with a warning rather than not starting the hotline."""
    if name == "asyncio":
        return None
    if name != "uvloop":
        raise ValueError(f"event loop must be one of {', '.join(EVENT_LOOPS)}, not {name!r}")
    try:
        import uvloop
    except ImportError:
        log.warning("uvloop is not installed; running on asyncio's own event loop")
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], name: str = "uvloop") -> T:
    """asyncio.run(main) on the named event loop."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)


async def cancel(task: asyncio.Task | None) -> None:
    """Stop a background task of a long-running service and wait until it is over (its
    CancelledError is the expected end, not an error)."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
