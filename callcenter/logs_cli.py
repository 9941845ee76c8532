"""`callcenter logs ...`: what the hotline's logging needs from an administrator."""
from __future__ import annotations

import click

from callcenter.settings import get_settings


@click.group("logs")
def logs_group() -> None:
    """Log files and their rotation (settings CALLCENTER_LOG_LEVEL / _FORMAT / _FILE)."""


@logs_group.command("logrotate")
def logrotate_cmd() -> None:
    """Print the logrotate configuration of this install (the hotline's log file, Asterisk's logs);
    install it with `callcenter logs logrotate > /etc/logrotate.d/callcenter`."""
    from callcenter.logrotate import render

    click.echo(render(get_settings()), nl=False)
