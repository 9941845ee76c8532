"""`callcenter front ...`: the SIP front (Kamailio) and the Asterisk nodes behind it, from
config/cluster.yaml (docs/scaling.md). Each node has its own state directory (CALLCENTER_STATE_DIR);
run a command under `ip netns exec NS` to bind it in that namespace."""
from __future__ import annotations

import click

from callcenter.pbx import front, process
from callcenter.pbx.install import install
from callcenter.pbx.root import ProvisionError
from callcenter.settings import get_settings


def _cluster() -> front.Cluster:
    return front.load_cluster(front.cluster_path(get_settings()))


def _run(action):
    try:
        return action()
    except ProvisionError as exc:
        raise click.ClickException(str(exc)) from None


@click.group("front")
def front_group() -> None:
    """The SIP front (Kamailio) over several Asterisk nodes."""


@front_group.command("install")
def install_cmd() -> None:
    """Render the front's configuration (dispatcher over the nodes, registrar, bans) and check it."""
    changes = _run(lambda: front.install_front(get_settings(), _cluster()))
    click.echo("\n".join(changes) or "nothing changed")


@front_group.command("start")
def start_cmd() -> None:
    """Start Kamailio (as user kamailio)."""
    click.echo("front " + _run(lambda: front.start_front(get_settings())))


@front_group.command("stop")
def stop_cmd() -> None:
    """Stop Kamailio."""
    click.echo("front stopped" if _run(lambda: front.stop_front(get_settings())) else "front was not running")


@front_group.command("status")
def status_cmd() -> None:
    """The nodes as the dispatcher sees them (flags AP: up, IP: down) and the registered operators."""
    settings = get_settings()
    if not front.front_pid(settings):
        raise click.ClickException("the front is not running")
    click.echo(_run(lambda: front.rpc(settings, "dispatcher.list")))
    click.echo(_run(lambda: front.rpc(settings, "ul.dump", "brief")))


@front_group.command("node-install")
@click.argument("name")
def node_install_cmd(name: str) -> None:
    """Install node NAME's Asterisk (its addresses from cluster.yaml) into this state directory."""
    settings = _run(lambda: front.node_settings(get_settings(), _cluster(), name))
    click.echo(_run(lambda: install(settings)).summary())


@front_group.command("node-start")
@click.argument("name")
def node_start_cmd(name: str) -> None:
    """Start node NAME's Asterisk (run under `ip netns exec` to bind in a namespace)."""
    settings = _run(lambda: front.node_settings(get_settings(), _cluster(), name))
    click.echo(f"node {name}: Asterisk " + _run(lambda: process.start(settings)))


@front_group.command("node-stop")
@click.argument("name")
def node_stop_cmd(name: str) -> None:
    """Stop node NAME's Asterisk."""
    settings = _run(lambda: front.node_settings(get_settings(), _cluster(), name))
    click.echo(f"node {name}: " + ("stopped" if _run(lambda: process.stop(settings)) else "was not running"))
