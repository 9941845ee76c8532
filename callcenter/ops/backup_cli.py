"""`callcenter backup` and `callcenter restore`: see callcenter/ops/backup.py and restore.py."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from callcenter.settings import get_settings


def _passphrase(env_var: str | None, confirm: bool) -> str:
    """From the named environment variable, else asked for: never on the command line (ps shows it)."""
    if env_var:
        value = os.environ.get(env_var)
        if not value:
            raise click.UsageError(f"${env_var} is not set or empty")
        return value
    return click.prompt("backup passphrase", hide_input=True, confirmation_prompt=confirm)


def _fail(exc) -> None:
    click.echo(f"error: {exc.message}", err=True)
    sys.exit(1)


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--passphrase-env", metavar="VAR",
              help="Environment variable holding the passphrase (default: asked for).")
def backup_command(file: Path, passphrase_env: str | None) -> None:
    """Write a consistent backup of this install to FILE while it runs: database, recordings,
    config/, and the state directory's secrets sealed with a passphrase."""
    from callcenter.ops.backup import BackupError, Sources, take_backup

    settings = get_settings()
    passphrase = _passphrase(passphrase_env, confirm=True)
    try:
        manifest = take_backup(Sources.of(settings), file, passphrase)
    except BackupError as exc:
        _fail(exc)
    audit = manifest["audit"]
    recordings = sum(name.startswith("recordings/") for name in manifest["files"])
    click.echo(f"backup written to {file}: {manifest['case_count']} cases, {recordings} recordings, "
               f"audit head {audit['head_id']}, schema {manifest['schema_revision']}")


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The new install's state directory (default: settings).")
@click.option("--database-url", help="The new install's database (default: SQLite in the state directory).")
@click.option("--config-dir", type=click.Path(file_okay=False, path_type=Path), help="Default: settings.")
@click.option("--passphrase-env", metavar="VAR",
              help="Environment variable holding the passphrase (default: asked for).")
@click.option("--force", is_flag=True, help="Write over a state directory, database or config that is not empty.")
def restore_command(file: Path, state_dir: Path | None, database_url: str | None, config_dir: Path | None,
                    passphrase_env: str | None, force: bool) -> None:
    """Rebuild an install from a backup FILE, then check it: every checksum, `audit verify`, the
    schema at head. Nothing is written unless every check passes."""
    from callcenter.ops.backup import BackupError
    from callcenter.ops.restore import Targets, restore
    from callcenter.pbx.root import recordings_dir

    settings = get_settings()
    if state_dir is not None:
        settings = settings.model_copy(update={"state_dir": state_dir.absolute(),
                                               "database_url": database_url or ""})
    elif database_url:
        settings = settings.model_copy(update={"database_url": database_url})
    if config_dir is not None:
        settings = settings.model_copy(update={"config_dir": config_dir})
    targets = Targets(Path(settings.state_dir), settings.effective_database_url, Path(settings.config_dir),
                      recordings_dir(settings))
    passphrase = _passphrase(passphrase_env, confirm=False)
    try:
        report = restore(file, targets, passphrase, force=force)
    except BackupError as exc:
        _fail(exc)
    for note in report.notes:
        click.echo(note)
    click.echo(f"restored into {targets.state_dir}: {report.case_count} cases, {report.recordings} recordings "
               f"(checksums equal), {report.audit_checked} audit events verified, schema {report.revision}")
    if not targets.database_url.startswith("sqlite"):
        click.echo("the hotline of this install needs CALLCENTER_DATABASE_URL set to that database")
