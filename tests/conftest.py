"""Shared fixtures: a migrated store on SQLite and on PostgreSQL, the city's config with a
controllable clock, and an API client that logs in as people of each role."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from callcenter.auth import create_user
from ticketing.domain import Domain
from ticketing.models import Base
from ticketing.seed import seed_units
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
PG_BASE_URL = os.environ.get("CALLCENTER_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PASSWORD = "correct-horse-12345"
# operators in tests take their next call at once; the tests of after-call work set its time themselves
os.environ.setdefault("CALLCENTER_AFTER_CALL_WORK_S", "0")


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    """argon2 at test strength: production cost is deliberate, but it would dominate the suite."""
    from argon2 import PasswordHasher

    import callcenter.auth

    monkeypatch.setattr(callcenter.auth, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


class FakeClock:
    """Injectable clock: tests travel across working days and holidays."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def set(self, iso: str) -> None:
        moment = datetime.fromisoformat(iso)
        if moment.tzinfo is None:
            from zoneinfo import ZoneInfo

            moment = moment.replace(tzinfo=ZoneInfo("Asia/Shanghai"))
        self.now = moment.astimezone(UTC)

    def advance(self, **kwargs) -> None:
        self.now = self.now + timedelta(**kwargs)


def _pg_url(schema: str) -> str:
    return f"{PG_BASE_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def db_url(request, tmp_path_factory) -> Iterator[str]:
    """A migrated, empty store: every store test runs on both backends."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.db'}"
        upgrade(url)
        yield url
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_BASE_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = _pg_url(schema)
    upgrade(url)
    yield url
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine_for(db_url):
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(engine_for):
    """The session's engine with every table emptied before the test."""
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine_for.begin() as conn:
        if engine_for.dialect.name == "postgresql":
            conn.execute(text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
        else:
            # cases and calls point at each other: cut those links before deleting
            conn.execute(text("UPDATE cases SET created_by_call_id = NULL"))
            conn.execute(text("UPDATE audit_events SET call_id = NULL"))
            for name in tables:
                conn.execute(text(f"DELETE FROM {name}"))
    return engine_for


@pytest.fixture
def clock() -> FakeClock:
    c = FakeClock(datetime(2026, 3, 2, 1, 0, tzinfo=UTC))  # Monday 2026-03-02 09:00 in Shanghai
    return c


@pytest.fixture(scope="session")
def base_domain() -> Domain:
    return Domain.load(CONFIG_DIR)


@pytest.fixture
def domain(base_domain, clock) -> Domain:
    return Domain(policy=base_domain.policy, calendar=base_domain.calendar, city=base_domain.city, clock=clock)


@pytest.fixture
def sessions(engine):
    return make_session_factory(engine)


@pytest.fixture
def seeded(sessions, domain):
    """Units and rosters from config/, and one user per role."""
    with session_scope(sessions) as s:
        seed_units(s, domain.city, domain.clock())
        for username, role, unit in USERS:
            create_user(s, username=username, password=PASSWORD, role=role, unit_code=unit, now=domain.clock())
    return sessions


USERS = [
    ("op1", "front_desk", None),
    ("op2", "front_desk", None),
    ("bo1", "back_office", None),
    ("sup1", "supervisor", None),
    ("admin1", "admin", None),
    ("disc1", "discipline", "discipline_commission"),
    ("water1", "unit_staff", "water_supply"),
    ("urban1", "unit_staff", "urban_management"),
    ("nat1", "unit_staff", "natural_resources"),
    ("housing1", "unit_staff", "housing_construction"),
    ("hr1", "unit_staff", "human_resources"),
    ("market1", "unit_staff", "market_regulation"),
    ("power1", "unit_staff", "power_supply"),
]


class Api:
    """A TestClient that remembers a token per user."""

    def __init__(self, client):
        self.client = client
        self.tokens: dict[str, str] = {}

    def login(self, username: str) -> str:
        if username not in self.tokens:
            r = self.client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
            assert r.status_code == 200, r.text
            self.tokens[username] = r.json()["access_token"]
        return self.tokens[username]

    def _headers(self, as_: str | None) -> dict:
        return {"Authorization": f"Bearer {self.login(as_)}"} if as_ else {}

    def get(self, path: str, as_: str | None = None, **kw):
        return self.client.get(path, headers=self._headers(as_), **kw)

    def post(self, path: str, as_: str | None = None, **kw):
        return self.client.post(path, headers=self._headers(as_), **kw)

    def put(self, path: str, as_: str | None = None, **kw):
        return self.client.put(path, headers=self._headers(as_), **kw)


@pytest.fixture
def api(seeded, domain, engine, tmp_path) -> Api:
    from fastapi.testclient import TestClient

    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    settings = Settings(state_dir=tmp_path, config_dir=CONFIG_DIR)
    app = create_app(settings, domain=domain, engine=engine)
    with TestClient(app) as client:
        yield Api(client)


@pytest.fixture(autouse=True)
def own_state_dir(request, tmp_path, monkeypatch):
    """Outside tests/live, no test may touch the install's real state directory (its audit key, its
    secrets): settings read from the environment point at the test's own. The live tests share the
    real one with Asterisk, and run beside these (scripts/test)."""
    if "/tests/live/" in str(request.node.fspath):
        yield
        return
    from callcenter.settings import get_settings

    monkeypatch.setenv("CALLCENTER_STATE_DIR", str(tmp_path))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def audit_vault(tmp_path):
    """A1: every test's audit key and checkpoints in its own state directory (tmp_path, the one
    `api` and the CLI subprocesses are given), as the composition root does for an install."""
    from callcenter.audit_vault import install
    from ticketing import audit_seal

    vault = install(tmp_path)
    yield vault
    audit_seal.configure(None)
