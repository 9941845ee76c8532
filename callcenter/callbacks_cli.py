"""`callcenter callbacks ...`: list, run-now, pause, resume, run (the scheduler service)."""
from __future__ import annotations

import asyncio
import signal
import sys
import time
from datetime import datetime, timedelta

import click

from callcenter.settings import get_settings


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _clock(fake_now: str | None):
    """The real clock, or (tests) one that starts at `fake_now` and runs at real speed."""
    if not fake_now:
        from ticketing.workflow import utcnow

        return utcnow
    start = datetime.fromisoformat(fake_now)
    if start.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-03-04T10:00:00+08:00", param_hint="--fake-now")
    t0 = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - t0)


def _context(fake_now: str | None = None):
    from ticketing.domain import Domain
    from callcenter.audit_vault import install as install_audit_vault
    from ticketing.store import make_session_factory

    settings = get_settings()
    install_audit_vault(settings.state_dir)
    domain = Domain.load(settings.config_dir, clock=_clock(fake_now))
    engine = settings.store_engine()
    return settings, domain, engine, make_session_factory(engine)


def _options(channel_prefix: str, dial_timeout: float | None):
    from callback.runner import RunnerOptions

    opts = RunnerOptions(channel_prefix=channel_prefix)
    if dial_timeout:
        opts.dial_timeout = dial_timeout
    return opts


_fake_now = click.option("--fake-now", hidden=True, help="Tests: pretend the time is this ISO moment (it runs on).")
_prefix = click.option("--channel-prefix", default="", hidden=True, help="Tests: namespace for channel ids.")
_lease = click.option("--lease-seconds", type=float, default=20.0, hidden=True,
                      help="SQLite: how long the scheduler lease lasts without renewal.")
_dial_timeout = click.option("--dial-timeout", type=float, default=None, hidden=True,
                             help="Seconds of ringing before no answer.")


@click.group("callbacks")
def callbacks_group() -> None:
    """回访 callback surveys (R7.4) and deadline keeping (R7.7)."""


@callbacks_group.command("list")
@click.option("--state", "states", multiple=True,
              type=click.Choice(["scheduled", "dialing", "answered", "done", "no_answer", "busy", "failed",
                                 "not_rated", "cancelled"]), help="Only these states (repeatable).")
@click.option("--manual", is_flag=True, help="The front desk's manual-callback list instead.")
@click.option("--limit", default=50, show_default=True)
def list_cmd(states, manual, limit) -> None:
    """Callback attempts, newest first (phone numbers masked)."""
    from callback import attempts as A
    from callback.listing import list_attempts
    from callback.leader import current_leader, is_paused
    from ticketing.privacy import mask_phone
    from ticketing.store import session_scope

    _settings, domain, engine, sessions = _context()
    tz = domain.calendar.tz
    with session_scope(sessions) as s:
        if manual:
            cases = A.manual_list(s, limit)
            click.echo(f"{len(cases)} case(s) waiting for a manual callback")
            for c in cases:
                due = c.callback_due_at.astimezone(tz).strftime("%Y-%m-%d %H:%M") if c.callback_due_at else "-"
                click.echo(f"  {c.number}  {mask_phone(c.citizen_phone):<13}  due {due}  {c.title}")
            return
        rows = list_attempts(s, states=states or None, limit=limit)
        counts = A.counts(s)
    leader = current_leader(engine)
    click.echo(f"callbacks {'PAUSED' if is_paused(engine) else 'active'}; scheduler: {leader[0] if leader else 'none yet'}")
    click.echo("attempts: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"))
    for r in rows:
        when = r.scheduled_for.astimezone(tz).strftime("%Y-%m-%d %H:%M")
        click.echo(f"  {r.key:<28} {r.phone_masked:<13} #{r.attempt_no} {r.state:<10} {when}  "
                   f"{r.result or ''} {r.detail or ''}".rstrip())


@callbacks_group.command("pause")
def pause_cmd() -> None:
    """Stop placing callbacks (calls in progress finish). Applies to every scheduler process."""
    from callback.leader import set_paused

    _s, _d, engine, _f = _context()
    set_paused(engine, True)
    click.echo("callbacks paused")


@callbacks_group.command("resume")
def resume_cmd() -> None:
    """Place callbacks again."""
    from callback.leader import set_paused

    _s, _d, engine, _f = _context()
    set_paused(engine, False)
    click.echo("callbacks resumed")


@callbacks_group.command("run-now")
@click.option("--limit", type=int, default=None, help="Place at most this many calls.")
@click.option("--timeout", type=float, default=3600.0, show_default=True, help="Give up after this many seconds.")
@click.option("--wait-lock", type=float, default=0.0, show_default=True,
              help="Wait this many seconds for another scheduler to go away.")
@_fake_now
@_prefix
@_dial_timeout
@_lease
def run_now_cmd(limit, timeout, wait_lock, fake_now, channel_prefix, dial_timeout, lease_seconds) -> None:
    """Place every due callback now (within calling hours, at the configured concurrency) and wait
    for the results, with a progress display. Refused while another process is the active scheduler."""
    from callback import attempts as A
    from callback.leader import is_paused, leadership_for
    from callback.runner import CallbackRunner
    from callcenter.ami.errors import AMIError
    from callcenter.callbacks import AmiCallbackPbx
    from ticketing.store import session_scope

    settings, domain, engine, sessions = _context(fake_now)
    if is_paused(engine):
        _fail("callbacks are paused (callcenter callbacks resume)")
    lead = leadership_for(engine, lease_seconds=lease_seconds)
    give_up = time.monotonic() + wait_lock
    while not lead.try_acquire():
        if time.monotonic() >= give_up:
            _fail("another process is the active scheduler and places the callbacks; pause it or wait")
        time.sleep(0.5)
    try:
        if not domain.policy.callback_may_call_at(domain.clock(), domain.calendar):
            nxt = domain.policy.next_callback_slot(domain.clock(), domain.calendar).astimezone(domain.calendar.tz)
            click.echo(f"outside calling hours; the next calling slot opens {nxt:%Y-%m-%d %H:%M}")
            return
        with session_scope(sessions) as s:
            A.plan_due(s, domain)
        with session_scope(sessions) as s:
            due = A.due_count(s, domain)
        total = due if limit is None else min(due, limit)
        click.echo(f"{due} callback(s) due; concurrency {domain.policy.callback.concurrency}")

        async def go():
            pbx = AmiCallbackPbx.from_settings(settings)
            ami = pbx.ami
            try:
                await ami.start()
            except AMIError as exc:
                _fail(str(exc))
            with click.progressbar(length=total, label="calling", show_pos=True,
                                   item_show_func=lambda r: r and f"{r.key} {r.outcome}") as bar:
                runner = CallbackRunner(domain, sessions, pbx, _options(channel_prefix, dial_timeout),
                                        on_result=lambda r: bar.update(1, r))

                async def keep_lock():
                    # the lease must outlive the batch; losing it means someone else leads now
                    while True:
                        await asyncio.sleep(max(lease_seconds / 4, 0.5))
                        if not await asyncio.to_thread(lead.still_held):
                            runner.budget = 0
                            runner.halt()  # spare claims are put back, never dialled
                            return
                renew = asyncio.create_task(keep_lock())
                try:
                    return await runner.drain(limit=limit, timeout=timeout)
                finally:
                    renew.cancel()
                    await runner.stop(wait=True)
                    await ami.stop()
        stats = asyncio.run(go())
        click.echo("placed {}: {}".format(stats.claimed, ", ".join(f"{k} {v}" for k, v in sorted(stats.outcomes.items()))
                                         or "nothing"))
        if stats.reconciled:
            # attempts a killed process left in flight, settled by asking Asterisk
            click.echo("settled after an interruption: " + ", ".join(f"{k} {v}" for k, v in sorted(stats.reconciled.items())))
        if stats.still_up or stats.ledger_removed:
            # left by a killed process: its calls held lines of the cap until they ended
            click.echo(f"calls still up from before: {stats.still_up}; "
                       f"ledger entries of settled attempts removed: {stats.ledger_removed}")
    finally:
        lead.release()


@callbacks_group.command("run")
@click.option("--sweep-seconds", default=30.0, show_default=True, help="How often due callbacks are looked for.")
@click.option("--deadline-seconds", default=300.0, show_default=True, help="How often deadlines are swept.")
@click.option("--poll-seconds", default=5.0, show_default=True, help="How often a standby checks for the leader.")
@_fake_now
@_prefix
@_dial_timeout
@_lease
def run_cmd(sweep_seconds, deadline_seconds, poll_seconds, fake_now, channel_prefix, dial_timeout,
            lease_seconds) -> None:
    """Run the scheduler in the foreground. With several processes on one database exactly one is
    active; the others stand by and take over if it dies."""
    from callcenter.callbacks import callback_service

    settings, domain, engine, _sessions = _context(fake_now)

    async def go():
        service = callback_service(settings, domain=domain, engine=engine,
                                   options=_options(channel_prefix, dial_timeout), sweep_seconds=sweep_seconds,
                                   deadline_seconds=deadline_seconds, poll_seconds=poll_seconds,
                                   lease_seconds=lease_seconds,
                                   on_leadership=lambda on: click.echo(
                                       f"{'ACTIVE' if on else 'STANDBY'} {service.holder}", err=False))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await service.start()
        click.echo(f"scheduler {service.holder} started (standby until it holds the lock)")
        try:
            await stop.wait()
        finally:
            await service.stop()
    asyncio.run(go())


__all__ = ["callbacks_group"]
