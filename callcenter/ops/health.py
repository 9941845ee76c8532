"""Readiness of a running hotline (issue 19 item 2): one function per check, each reading state the
process already keeps (the AMI client's link flag, the scheduler's leadership, the calendar) or
asking the store one cheap question. No check opens a new AMI connection, and none names a person.

`/readyz` (callcenter/api/routers/health.py) answers 200 when every check passes, 503 naming the
failing ones; `/metrics` exports the same results as `callcenter_ready_check{check=...}`.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import text

from callback.leader import leader_present
from callcenter.eventloop import cancel
from ticketing.calendar import calendar_status

log = logging.getLogger("callcenter.ops")

# /proc/net/tcp state of a listening socket
_TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    # False: a failure is a warning for the day shift, not a reason to stop taking calls
    blocking: bool = True

    def public(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "blocking": self.blocking}


def check_store(app) -> Check:
    started = time.perf_counter()
    try:
        with app.state.engine.connect() as conn:
            conn.execute(text("select 1")).scalar_one()
    except Exception as exc:  # noqa: BLE001 - any failure means not ready; the kind is enough
        return Check("store", False, f"database unreachable ({type(exc).__name__})")
    return Check("store", True, f"answered in {1000 * (time.perf_counter() - started):.1f} ms")


def check_ami(app) -> Check:
    """The call-control link's own state (the client drops it on EOF at once, on a missing Pong
    after its ping timeout): read, never probed, so a scrape costs Asterisk nothing."""
    cc = app.state.callcontrol
    if cc is None:
        return Check("ami", True, "no call control in this process")
    if not cc.link.connected:
        down = cc.link.stats.down_since
        since = f" since {time.strftime('%H:%M:%S', time.localtime(down))}" if down else ""
        return Check("ami", False, f"AMI link to {cc.ami.label} is down{since}")
    return Check("ami", True, f"AMI link to {cc.ami.label} is up")


def _listening_ports() -> set[int] | None:
    ports: set[int] = set()
    found = False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports if found else None


def check_fastagi(app) -> Check:
    """Something listens on the FastAGI port (whether this process serves it or `callcenter agi
    serve` does). Read from the kernel's socket table: a test connection would be an AGI session
    that never sends a header, counted as an error by the server."""
    port = app.state.settings.agi_port
    ports = _listening_ports()
    if ports is None:
        return Check("fastagi", True, "cannot see listening sockets on this system; not checked")
    if port in ports:
        return Check("fastagi", True, f"listening on port {port}")
    return Check("fastagi", False, f"nothing listens on the FastAGI port {port}")


def scheduler_service(app):
    """The callback scheduler running in this process, if any (runtime.build_app puts it there)."""
    from callback.service import CallbackService

    return next((s for s in getattr(app.state, "background", ()) if isinstance(s, CallbackService)), None)


def check_scheduler(app) -> Check:
    service = scheduler_service(app)
    if service is not None and service.is_leader:
        return Check("scheduler", True, "this process is the active scheduler")
    try:
        present = leader_present(app.state.engine)
    except Exception as exc:  # noqa: BLE001
        return Check("scheduler", False, f"cannot read the scheduler's leadership ({type(exc).__name__})")
    if present:
        return Check("scheduler", True, "another process is the active scheduler")
    return Check("scheduler", False, "no process is the active callback and deadline scheduler")


def check_calendar(app) -> Check:
    """T1: the working-day calendar of this year is official or entered, and next year's from the
    policy's warning date on (the same rule as the back office's standing warning). Not blocking:
    the hotline serves on provisional deadlines (R8, 暂定), so a missing arrangement is paperwork for
    the back office, not a reason to wake the night shift or take the node out of service."""
    domain = app.state.domain
    today = domain.calendar.local_date(domain.clock())
    status = calendar_status(domain.calendar, today, domain.policy.calendar_warning_from)
    if status.missing_year is None:
        return Check("calendar", True, f"holiday arrangements known for {today.year}"
                     + (f" and {today.year + 1}" if domain.calendar.is_year_known(today.year + 1) else ""))
    return Check("calendar", False, f"the holiday arrangement of {status.missing_year} is not entered "
                 f"(deadlines in it are provisional): callcenter calendar set {status.missing_year}",
                 blocking=False)


def on_disk(path: Path) -> Path:
    """`path`, or its nearest existing parent: where it will be before it is provisioned."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def recordings_path(settings) -> Path:
    from callcenter.pbx.root import recordings_dir

    return on_disk(recordings_dir(settings))


def check_disk(app) -> Check:
    return disk_check(app.state.settings)


def disk_check(settings) -> Check:
    try:
        free_mb = shutil.disk_usage(recordings_path(settings)).free // (1024 * 1024)
    except OSError as exc:
        return Check("disk", False, f"cannot read free space for recordings ({type(exc).__name__})")
    if free_mb < settings.recordings_min_free_mb:
        return Check("disk", False, f"{free_mb} MiB free for recordings, below {settings.recordings_min_free_mb} MiB")
    return Check("disk", True, f"{free_mb} MiB free for recordings")


class DiskWatch:
    """The recordings disk, checked every `settings.recordings_check_s` by the running hotline (a
    background service): when it runs low (a full disk: Asterisk's MixMonitor cannot write, the calls
    themselves go on) the log says so at once, ERROR once per episode and again when space is back --
    the alarm beside /readyz and `callcenter_ready_check{check="disk"}`, which say it while it lasts."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.ok = True
        self._task: asyncio.Task | None = None

    def check_once(self) -> Check:
        check = disk_check(self.settings)
        if self.ok and not check.ok:
            log.error("recordings disk: %s: new call recordings fail (calls go on); free space in %s",
                      check.detail, recordings_path(self.settings))
        elif check.ok and not self.ok:
            log.warning("recordings disk: %s again", check.detail)
        self.ok = check.ok
        return check

    async def _run(self) -> None:
        while True:
            await asyncio.to_thread(self.check_once)
            await asyncio.sleep(self.settings.recordings_check_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None


CHECKS = (check_store, check_ami, check_fastagi, check_scheduler, check_calendar, check_disk)


def readiness(app) -> list[Check]:
    """Every check, in order (blocking: the store and disk are asked; run it off the event loop)."""
    return [check(app) for check in CHECKS]


def is_ready(checks: list[Check]) -> bool:
    return all(c.ok or not c.blocking for c in checks)


def readiness_report(checks: list[Check]) -> dict[str, Any]:
    failing = [c.name for c in checks if not c.ok and c.blocking]
    warnings = [c.name for c in checks if not c.ok and not c.blocking]
    return {"ready": not failing, "failing": failing, "warnings": warnings,
            "checks": {c.name: c.public() for c in checks}}


__all__ = ["CHECKS", "Check", "DiskWatch", "is_ready", "readiness", "readiness_report", "scheduler_service"]
