"""Secrets of the install: the AMI secret (from the environment, else generated once into
``<state_dir>/secrets.env``) and the SIP passwords (``<state_dir>/sip-secrets.json``), written 0600
and checked to be safe in Asterisk's configuration files.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from callcenter.pbx.root import ProvisionError
from callcenter.settings import Settings

if TYPE_CHECKING:
    from callcenter.pbx.render import Operator

SECRETS_ENV = "secrets.env"
SIP_SECRETS = "sip-secrets.json"
AMI_SECRET_VAR = "CALLCENTER_AMI_SECRET"
SIP_PASSWORD_VAR = "CALLCENTER_SIP_PASSWORD_{id}"  # e.g. CALLCENTER_SIP_PASSWORD_8001
_SAFE_SECRET = re.compile(r"^[A-Za-z0-9._~+/=-]{12,128}$")  # nothing Asterisk's parser treats specially


def _secrets_env_path(settings: Settings) -> Path:
    return Path(settings.state_dir) / SECRETS_ENV


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return values
    for line in lines:
        if "=" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def ami_secret(settings: Settings) -> str:
    """The AMI secret: from the environment/settings, else from <state_dir>/secrets.env ('' if none yet)."""
    return settings.ami_secret or _read_env_file(_secrets_env_path(settings)).get(AMI_SECRET_VAR, "")


def write_private(path: Path, content: str) -> bool:
    """Write a 0600 file (atomically, never readable by others even for a moment). True if changed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_bytes() if path.exists() else None
    changed = old != content.encode()
    if changed:
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(content)
        os.replace(tmp, path)
    if stat.S_IMODE(path.stat().st_mode) != 0o600:
        os.chmod(path, 0o600)
        changed = True
    return changed


def check_secret(value: str, what: str) -> str:
    """``value`` if Asterisk's config parser takes it as it is; else ProvisionError naming ``what``."""
    if not _SAFE_SECRET.match(value):
        raise ProvisionError(
            f"{what} must be 12-128 characters of A-Z a-z 0-9 . _ ~ + / = - "
            "(';' and spaces would break Asterisk's config parser)"
        )
    return value


def ensure_ami_secret(settings: Settings, changes: list[str]) -> str:
    if settings.ami_secret:  # given via the environment (or the settings' own env file)
        return check_secret(settings.ami_secret, AMI_SECRET_VAR)
    path = _secrets_env_path(settings)
    existing = _read_env_file(path).get(AMI_SECRET_VAR)
    secret = existing or secrets.token_urlsafe(24)
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    lines = [line for line in lines if not line.startswith(f"{AMI_SECRET_VAR}=")]
    lines.append(f"{AMI_SECRET_VAR}={secret}")
    if write_private(path, "\n".join(lines) + "\n"):
        changes.append(f"{'generated the AMI secret into' if existing is None else 'rewrote'} {path} (0600)")
    settings.ami_secret = check_secret(secret, AMI_SECRET_VAR)  # so this process can log in right away
    return secret


def sip_passwords(settings: Settings) -> dict[str, str]:
    """endpoint name (op8001) -> SIP password, as installed (<state_dir>/sip-secrets.json)."""
    try:
        return json.loads((Path(settings.state_dir) / SIP_SECRETS).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {}


def ensure_sip_passwords(settings: Settings, operators: list[Operator], changes: list[str],
                         other_endpoints: tuple[str, ...] = ()) -> dict[str, str]:
    path = Path(settings.state_dir) / SIP_SECRETS
    current = sip_passwords(settings)
    wanted: dict[str, str] = {}
    for op in operators:
        given = os.environ.get(SIP_PASSWORD_VAR.format(id=op.id))
        if given:
            wanted[op.endpoint] = check_secret(given, SIP_PASSWORD_VAR.format(id=op.id))
        elif op.endpoint in current:
            wanted[op.endpoint] = current[op.endpoint]
        else:
            wanted[op.endpoint] = secrets.token_urlsafe(16)
            changes.append(f"generated the SIP password of {op.endpoint}")
    for name in other_endpoints:  # member-unit test phones (config/phone_routes.yaml)
        if name in current:
            wanted[name] = current[name]
        else:
            wanted[name] = secrets.token_urlsafe(16)
            changes.append(f"generated the SIP password of {name}")
    if write_private(path, json.dumps(wanted, indent=2, sort_keys=True) + "\n"):
        changes.append(f"wrote {path} (0600)")
    return wanted


__all__ = ["AMI_SECRET_VAR", "ami_secret", "check_secret", "ensure_ami_secret", "ensure_sip_passwords", "sip_passwords",
           "write_private"]
