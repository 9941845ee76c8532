"""The `callcenter` command line, run as a subprocess the way an administrator runs it: against
a fresh SQLite state directory and against a fresh PostgreSQL schema."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import text

from callcenter.cli import main
from ticketing.store import make_engine

from .conftest import CONFIG_DIR, PG_BASE_URL

SCRIPT = Path(sys.executable).with_name("callcenter")


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    from ticketing.store import alembic_config

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def _commands(cmd: click.Command, path: tuple[str, ...] = ()):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name, sub in sorted(cmd.commands.items()):
            yield from _commands(sub, (*path, name))


# ---- help ---------------------------------------------------------------------------------

def test_callcenter_help_runs_from_the_installed_script():
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: callcenter")
    for command in ("db", "seed", "user", "serve", "audit"):
        assert f"  {command} " in result.stdout


@pytest.mark.parametrize("path", [" ".join(p) for p, _ in _commands(main) if p])
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path.split(), "--help"], prog_name="callcenter")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: callcenter {path}")
    command = dict((" ".join(p), c) for p, c in _commands(main))[path]
    assert command.get_short_help_str().strip(), f"`callcenter {path}` has no help text"


# ---- against a real store -------------------------------------------------------------------

@pytest.fixture(params=["sqlite", "postgresql"])
def cli_env(request, tmp_path):
    """Environment for a fresh install: an empty state dir, or an empty PostgreSQL schema."""
    env = {**os.environ, "CALLCENTER_STATE_DIR": str(tmp_path / "state"), "CALLCENTER_CONFIG_DIR": str(CONFIG_DIR),
           "CALLCENTER_DATABASE_URL": ""}
    env.pop("CALLCENTER_NEW_PASSWORD", None)
    if request.param == "sqlite":
        yield env
        assert (tmp_path / "state" / "callcenter.db").exists()
        return
    schema = f"cli_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    env["CALLCENTER_DATABASE_URL"] = f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"
    try:
        yield env
        with admin.connect() as conn:
            tables = conn.execute(text("SELECT count(*) FROM information_schema.tables WHERE table_schema = :s"),
                                  {"s": schema}).scalar_one()
        assert tables > 10  # the commands worked in the fresh schema, not somewhere else
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def cli(env, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, input=input, timeout=120)


def test_install_steps_are_repeatable_and_errors_are_clear(cli_env):
    head = _head_revision()
    for _ in range(2):  # db upgrade twice is fine
        r = cli(cli_env, "db", "upgrade")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"database at revision {head}"

    r = cli(cli_env, "seed")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("units added ") and "units added 0" not in r.stdout
    r = cli(cli_env, "seed")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "nothing to change: the store already matches config/"

    # user add: the good case, then every way of getting it wrong
    r = cli(cli_env, "user", "add", "op9", "--role", "front_desk", "--password", "a-long-password")
    assert (r.returncode, r.stdout.strip()) == (0, "user op9 (front_desk) added"), r.stderr
    r = cli({**cli_env, "CALLCENTER_NEW_PASSWORD": "another-long-pw"},  # password from the environment
            "user", "add", "water9", "--role", "unit_staff", "--unit", "water_supply")
    assert (r.returncode, r.stdout.strip()) == (0, "user water9 (unit_staff) added"), r.stderr
    events_before = _audit_events(cli_env)

    wrong = [
        (["user", "add", "x1", "--role", "unit_staff", "--unit", "no_such_unit"], "unknown member unit 'no_such_unit'"),
        (["user", "add", "x2", "--role", "unit_staff"], "belongs to one member unit"),
        (["user", "add", "x3", "--role", "front_desk", "--unit", "water_supply"], "does not belong to a member unit"),
        (["user", "add", "x4", "--role", "discipline", "--unit", "water_supply"], "discipline commission"),
        (["user", "add", "op9", "--role", "front_desk"], "already exists"),
        (["user", "add", "x5", "--role", "admin", "--password", "short"], "at least 8 characters"),
    ]
    for args, message in wrong:
        if "--password" not in args:
            args = [*args, "--password", "a-long-password"]
        r = cli(cli_env, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and r.stdout == ""

    # a role that does not exist is a usage error: click exits 2 and lists the roles
    r = cli(cli_env, "user", "add", "x6", "--role", "superuser", "--password", "a-long-password")
    assert r.returncode == 2, r.stderr
    assert "Invalid value for '--role'" in r.stderr and "front_desk" in r.stderr and "Traceback" not in r.stderr

    assert _audit_events(cli_env) == events_before  # the refused commands recorded nothing


def _audit_events(env) -> int:
    r = cli(env, "audit", "verify")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip().endswith("events checked: chain intact"), r.stdout
    return int(r.stdout.split()[0])


def test_serve_answers_http_on_the_given_port(cli_env):
    assert cli(cli_env, "db", "upgrade").returncode == 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(SCRIPT), "serve", "--host", "127.0.0.1", "--port", str(port)], env=cli_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, proc.stdout.read()
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not come up"
                time.sleep(0.1)
        assert r.json() == {"ok": True}
        assert httpx.get(f"http://127.0.0.1:{port}/api/v1/cases").status_code == 401
    finally:
        proc.terminate()
        proc.wait(10)


def test_user_disable_passwd_revoke_tokens_unlock(cli_env):
    """Issue 11: an administrator at the console disables a user, sets a password under the rules,
    revokes every token and lifts a login lock; each step revokes what it must and is audited (A1)."""
    from datetime import timedelta

    from callcenter import accounts
    from callcenter.auth import issue_token, resolve_token
    from ticketing.domain import Domain
    from ticketing.models import User
    from ticketing.store import make_session_factory, session_scope

    from callcenter.audit_vault import install

    assert cli(cli_env, "db", "upgrade").returncode == 0
    r = cli(cli_env, "user", "add", "op9", "--role", "front_desk", "--password", "a-long-password")
    assert r.returncode == 0, r.stderr
    # events this test writes itself are sealed with the install's key, as the CLI's are (A1)
    install(cli_env["CALLCENTER_STATE_DIR"])
    url = cli_env["CALLCENTER_DATABASE_URL"] or f"sqlite:///{cli_env['CALLCENTER_STATE_DIR']}/callcenter.db"
    engine = make_engine(url)
    domain = Domain.load(CONFIG_DIR)
    factory = make_session_factory(engine)

    def tokens(n: int) -> list[str]:
        with session_scope(factory) as s:
            user = accounts.user_named(s, "op9")
            return [issue_token(s, user, now=domain.clock(), ttl=timedelta(hours=1))[0] for _ in range(n)]

    def live(ts: list[str]) -> int:
        with session_scope(factory) as s:
            return sum(resolve_token(s, t, now=domain.clock()) is not None for t in ts)

    try:
        ts = tokens(2)
        r = cli(cli_env, "user", "revoke-tokens", "op9")
        assert (r.returncode, r.stdout.strip()) == (0, "2 tokens of op9 revoked"), r.stderr
        assert live(ts) == 0

        ts = tokens(2)
        r = cli(cli_env, "user", "passwd", "op9", "--password", "12345678")
        assert r.returncode == 1 and "most common" in r.stderr and "Traceback" not in r.stderr
        assert live(ts) == 2  # a refused change revokes nothing
        r = cli({**cli_env, "CALLCENTER_NEW_PASSWORD": "tea-kettle-5150"}, "user", "passwd", "op9")
        assert (r.returncode, r.stdout.strip()) == (0, "password of op9 changed; 2 tokens revoked"), r.stderr
        assert live(ts) == 0

        ts = tokens(1)
        r = cli(cli_env, "user", "disable", "op9")
        assert (r.returncode, r.stdout.strip()) == (0, "user op9 disabled; 1 tokens revoked"), r.stderr
        assert live(ts) == 0
        with session_scope(factory) as s:
            assert s.query(User).filter_by(username="op9").one().active is False
        assert cli(cli_env, "user", "enable", "op9").returncode == 0

        with session_scope(factory) as s:  # five wrong passwords lock the account
            for _ in range(5):
                out = accounts.login(s, domain.policy, username="op9", password="wrong-guess-1", address="10.0.0.9",
                                     now=domain.clock())
            assert isinstance(out.refusal, accounts.LoginLocked)
        with session_scope(factory) as s:
            out = accounts.login(s, domain.policy, username="op9", password="tea-kettle-5150", address="10.0.0.9",
                                 now=domain.clock())
            assert isinstance(out.refusal, accounts.LoginLocked)
        r = cli(cli_env, "user", "unlock", "op9")
        assert r.returncode == 0 and r.stdout.startswith("unlocked"), r.stderr
        with session_scope(factory) as s:
            assert accounts.login(s, domain.policy, username="op9", password="tea-kettle-5150", address="10.0.0.9",
                                  now=domain.clock()).user is not None

        r = cli(cli_env, "user", "disable", "nobody")
        assert r.returncode == 1 and "nobody" in r.stderr and "Traceback" not in r.stderr
        r = cli(cli_env, "user", "unlock")
        assert r.returncode == 1 and "give a user name" in r.stderr
        _audit_events(cli_env)  # the chain verifies after all of it
        with engine.connect() as conn:
            actions = {a for (a,) in conn.execute(text("SELECT action FROM audit_events"))}
        assert {"tokens_revoked", "password_change", "user_disable", "user_enable", "login_failed", "login_locked",
                "login_refused_locked", "login_unlock", "login"} <= actions
    finally:
        engine.dispose()
