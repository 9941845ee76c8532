"""`callcenter asterisk ...`: install, start, stop, status, cli, prompts."""
from __future__ import annotations

import json
import os
import sys

import click

from callcenter.pbx import process
from callcenter.pbx.install import install
from callcenter.pbx.prompts import render_prompts
from callcenter.pbx.root import ASTERISK_BIN, ROOT_ENV, ProvisionError, in_root, is_installed
from callcenter.settings import get_settings


def _fail(exc: ProvisionError) -> None:
    raise click.ClickException(str(exc))


@click.group("asterisk")
def asterisk_group() -> None:
    """Provision and control the hotline's Asterisk PBX."""


@asterisk_group.command("install")
def install_cmd() -> None:
    """Install/configure Asterisk, generate secrets, render prompts (safe to run again)."""
    try:
        report = install(get_settings())
    except ProvisionError as exc:
        _fail(exc)
    click.echo(report.summary())


@asterisk_group.command("start")
@click.option("--timeout", default=process.START_TIMEOUT, show_default=True, help="seconds to wait for AMI")
def start_cmd(timeout: float) -> None:
    """Start Asterisk (as user asterisk) and wait until AMI answers."""
    try:
        outcome = process.start(get_settings(), timeout=timeout)
    except ProvisionError as exc:
        _fail(exc)
    click.echo(f"Asterisk {outcome}")


@asterisk_group.command("stop")
def stop_cmd() -> None:
    """Stop Asterisk."""
    try:
        was_running = process.stop(get_settings())
    except ProvisionError as exc:
        _fail(exc)
    click.echo("Asterisk stopped" if was_running else "Asterisk was not running")


@asterisk_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status_cmd(as_json: bool) -> None:
    """Version, running, AMI and FastAGI reachability, operator phone registrations."""
    info = process.status(get_settings())
    if as_json:
        click.echo(json.dumps(info, ensure_ascii=False, indent=2))
    else:
        yes = {True: "yes", False: "no"}
        click.echo(f"installed: {yes[info['installed']]} ({info['mode']}, root {info['root']})")
        click.echo(f"version:   {info['version'] or '-'}")
        click.echo(f"running:   {yes[info['running']]}" + (f" (pid {', '.join(map(str, info['pids']))})" if info['pids'] else ""))
        ami = info["ami"]
        click.echo(f"AMI:       {ami['host']}:{ami['port']} reachable={yes[ami['reachable']]} login={yes[ami['login']]}"
                   + ("" if ami["login"] else f" ({ami['detail']})"))
        agi = info["agi"]
        click.echo(f"FastAGI:   {agi['host']}:{agi['port']} reachable={yes[agi['reachable']]}")
        for name, ep in info["endpoints"].items():
            state = f"registered {ep['contact']} ({ep['status']})" if ep["registered"] else "not registered"
            click.echo(f"  {name} {ep['name']}: {state}")
    if not info["running"]:
        sys.exit(3)  # like init scripts: scripts can test `status` alone


@asterisk_group.command("cli")
@click.option("-x", "command", help="run one CLI command and print its output; without it, open a console")
def cli_cmd(command: str | None) -> None:
    """Asterisk CLI: `-x 'pjsip show contacts'`, or an interactive console."""
    settings = get_settings()
    if command:
        try:
            click.echo(process.cli(settings, command), nl=False)
        except ProvisionError as exc:
            _fail(exc)
        return
    if not is_installed(settings):
        raise click.ClickException("Asterisk is not installed: run `callcenter asterisk install`")
    argv = in_root(settings, [ASTERISK_BIN, "-r"])
    os.execvpe(argv[0], argv, {**ROOT_ENV, "TERM": os.environ.get("TERM", "xterm")})


@asterisk_group.command("prompts")
def prompts_cmd() -> None:
    """Render the Mandarin prompts again (only those whose text or recording changed)."""
    settings = get_settings()
    try:
        with process.locked(settings):  # not while an install renders them
            report = render_prompts(settings)
    except ProvisionError as exc:
        _fail(exc)
    click.echo(report.summary())


if __name__ == "__main__":
    asterisk_group()
