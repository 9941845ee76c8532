"""`callcenter service install / status` and `callcenter doctor`."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from callcenter.settings import get_settings


@click.group("service")
def service_group() -> None:
    """systemd units: Asterisk in its root and the hotline (restart on failure, start at boot)."""


@service_group.command("install")
@click.option("--user", default="callcenter", show_default=True,
              help="Unprivileged user the hotline runs as (created if missing).")
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path), default=Path("/"), show_default=True,
              help="Write under DIR/etc/systemd/system; other than / writes the files only.")
@click.option("--dry-run", is_flag=True, help="Print the units, write nothing.")
def service_install(user: str, prefix: Path, dry_run: bool) -> None:
    """Write the systemd units for this install and enable them (Asterisk must be installed)."""
    from callcenter.ops.services import access_problems, install_units, render_units
    from callcenter.pbx.root import ProvisionError

    settings = get_settings()
    try:
        if dry_run:
            for unit in render_units(settings, user):
                click.echo(f"# --- {unit.name}\n{unit.text}")
            for problem in access_problems(settings):
                click.echo(f"warning: {problem}", err=True)
            return
        report = install_units(settings, user=user, prefix=prefix)
    except ProvisionError as exc:
        raise click.ClickException(str(exc)) from exc
    for path in report.written:
        click.echo(f"wrote {path}")
    for step in report.steps:
        click.echo(step)


@service_group.command("status")
def service_status() -> None:
    """One line per unit (state, enabled, pid, restarts). Exit 1 unless every unit is active."""
    from callcenter.ops import services

    settings = get_settings()
    names = services.unit_names(settings)
    if not services.systemd_running():
        click.echo("systemd is not running on this machine (PID 1 is "
                   f"{Path('/proc/1/comm').read_text().strip()}): no unit can be active here.")
        for name in names:
            path = Path("/") / services.UNIT_DIR / name
            click.echo(f"{name}: {'unit file ' + str(path) if path.exists() else 'no unit file in /etc/systemd/system'}")
        click.echo("Without systemd run the hotline with `callcenter run` (see `callcenter asterisk status`).")
        sys.exit(1)
    states = {name: services.unit_status(name) for name in names}
    for name, props in states.items():
        click.echo(services.describe(name, props))
    sys.exit(0 if all(p.get("ActiveState") == "active" for p in states.values()) else 1)


@click.command("doctor")
def doctor_command() -> None:
    """Check this install: configuration files, calendar coverage, Asterisk version and modules,
    certificates, disk, clock and time zone, database. Exit 1 on any FAIL."""
    from callcenter.ops.doctor import FAIL, WARN, format_finding, run_checks

    findings = run_checks(get_settings())
    for finding in findings:
        click.echo(format_finding(finding))
    fails = sum(f.level == FAIL for f in findings)
    warns = sum(f.level == WARN for f in findings)
    click.echo(f"{len(findings)} checks: {fails} FAIL, {warns} WARN")
    sys.exit(1 if fails else 0)
