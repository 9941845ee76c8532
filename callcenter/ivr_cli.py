"""`callcenter ivr ...`: check and show the voice-menu flows."""
from __future__ import annotations

from pathlib import Path

import click

from ivr_flows import PROMPTS_PATH, flow_files, flow_path
from ivr_flows.actions import KNOWN_ACTIONS
from ivr_flows.check import check_flow
from ivr_flows.engine import FlowError, load_flow, load_prompts
from ivr_flows.show import flow_tree


@click.group("ivr")
def ivr_group() -> None:
    """Voice menus (ivr_flows/*.yaml): check and show."""


@ivr_group.command("check")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--prompts", "prompts_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="Prompt texts (default: ivr_flows/prompts.yaml).")
def check_command(files: tuple[Path, ...], prompts_file: Path | None) -> None:
    """Check FLOW_FILES (default: every flow in ivr_flows/); exit 1 on any problem."""
    try:
        prompts = set(load_prompts(prompts_file or PROMPTS_PATH))
    except (OSError, FlowError) as exc:
        raise click.ClickException(f"cannot read prompts: {exc}") from exc
    targets = list(files) or flow_files()
    count = 0
    for path in targets:
        try:
            problems = [str(p) for p in check_flow(load_flow(path), set(KNOWN_ACTIONS), prompts)]
        except (OSError, FlowError) as exc:
            problems = [f"<flow>: load_error: {exc}"]
        for line in problems:
            click.echo(f"{path}: {line}")
        count += len(problems)
    click.echo(f"{len(targets)} flow(s) checked, {count} problem(s)", err=True)
    if count:
        raise SystemExit(1)


@ivr_group.command("show")
@click.argument("flow")
def show_command(flow: str) -> None:
    """Print FLOW (a name like `main` or a YAML path) as an indented tree."""
    path = flow_path(flow)
    try:
        click.echo(flow_tree(load_flow(path)))
    except (OSError, FlowError) as exc:
        raise click.ClickException(str(exc)) from exc
