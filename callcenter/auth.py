"""Users, password hashes (argon2) and bearer tokens (stored only as SHA-256)."""
from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from callcenter.passwords import check_password
from ticketing import audit
from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.errors import DomainError, InvalidInput
from ticketing.models import ApiToken, MemberUnit, User

_hasher = PasswordHasher()
UNIT_BOUND_ROLES = frozenset({Role.UNIT_STAFF, Role.DISCIPLINE})


def actor_of(user: User) -> Actor:
    return Actor(user_id=user.id, name=user.username, role=str(user.role.value if hasattr(user.role, "value") else user.role),
                 unit_id=user.unit_id, unit_leader=bool(user.is_unit_leader))


def create_user(session: Session, *, username: str, password: str, role: Role | str, display_name: str = "",
                unit_code: str | None = None, operator_extension: str | None = None, now: datetime,
                created_by: Actor = audit.SYSTEM, password_min_length: int = 8, unit_leader: bool = False) -> User:
    role = Role(role)
    if role == Role.SYSTEM:
        raise InvalidInput("users", "the system role is not for people")
    check_password(password, username=username, min_length=password_min_length)
    if session.execute(select(User).where(User.username == username)).scalar_one_or_none():
        raise DomainError("users", f"user '{username}' already exists")
    unit_id = unit_for_role(session, role, unit_code)
    check_unit_leader(role, unit_leader)
    user = User(username=username, display_name=display_name or username, role=role, unit_id=unit_id,
                password_hash=hash_password(password), active=True, operator_extension=operator_extension,
                is_unit_leader=unit_leader, created_at=now)
    session.add(user)
    session.flush()
    data = {"username": username, "role": role.value, "unit": unit_code}
    if unit_leader:  # said only when it is so: the events of every other account stay as they were
        data["unit_leader"] = True
    audit.record(session, created_by, "user_add", at=now, data=data)
    return user


def unit_for_role(session: Session, role: Role, unit_code: str | None) -> int | None:
    """The member unit a user of `role` belongs to (R5.3, R7.3c), or None for center roles."""
    if role == Role.SYSTEM:
        raise InvalidInput("users", "the system role is not for people")
    unit_id = None
    if role in UNIT_BOUND_ROLES:
        if not unit_code:
            raise InvalidInput("R5.3", f"a {role} user belongs to one member unit; give its code")
        unit = session.execute(select(MemberUnit).where(MemberUnit.code == unit_code)).scalar_one_or_none()
        if unit is None:
            raise InvalidInput("R5.3", f"unknown member unit '{unit_code}'")
        if role == Role.DISCIPLINE and unit.type != "discipline":
            raise InvalidInput("R7.3c", "discipline users belong to the discipline commission")
        unit_id = unit.id
    elif unit_code:
        raise InvalidInput("users", f"a {role} user does not belong to a member unit")
    return unit_id


def check_unit_leader(role: Role, unit_leader: bool) -> None:
    """Article 5 (二) 6: only a member unit's own staff can be its leader (who approves its reports)."""
    if unit_leader and role not in UNIT_BOUND_ROLES:
        raise InvalidInput("R5.3", f"a {role} user belongs to no member unit and cannot be a unit's leader")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_credentials(session: Session, username: str, password: str) -> tuple[User | None, str]:
    """(the user, "") if the password is right and the user active; else (None, why) for the
    audit record only -- the caller answers every failure alike."""
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None or not user.active:
        _hasher.hash("timing-equaliser")  # same cost whether or not the user exists
        return None, "unknown user" if user is None else "disabled"
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None, "wrong password"
    return user, ""


def authenticate(session: Session, username: str, password: str) -> User | None:
    return check_credentials(session, username, password)[0]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, user: User, *, now: datetime, ttl: timedelta) -> tuple[str, datetime]:
    token = secrets.token_urlsafe(32)
    expires = now + ttl
    session.add(ApiToken(token_hash=_digest(token), user_id=user.id, created_at=now, expires_at=expires))
    return token, expires


_TOKENS = ApiToken.__table__
_USERS = User.__table__
# One round trip through Core (no ORM objects): every request pays for this.
_ACTOR_OF_TOKEN = (
    select(_USERS.c.id, _USERS.c.username, _USERS.c.role, _USERS.c.unit_id, _USERS.c.is_unit_leader)
    .join_from(_TOKENS, _USERS, _USERS.c.id == _TOKENS.c.user_id)
    .where(_TOKENS.c.token_hash == bindparam("digest"), _TOKENS.c.revoked.is_(False),
           _TOKENS.c.expires_at > bindparam("now", type_=ApiToken.__table__.c.expires_at.type),
           _USERS.c.active.is_(True))
)


def resolve_token(session: Session, token: str, *, now: datetime) -> Actor | None:
    """The acting user of a bearer token; None if it is unknown, expired or revoked, or the user
    is no longer active."""
    row = session.connection().execute(_ACTOR_OF_TOKEN, {"digest": _digest(token), "now": now}).first()
    if row is None:
        return None
    role = row.role.value if hasattr(row.role, "value") else row.role
    return Actor(user_id=row.id, name=row.username, role=str(role), unit_id=row.unit_id,
                 unit_leader=bool(row.is_unit_leader))


def revoke_token(session: Session, token: str) -> None:
    row = session.execute(select(ApiToken).where(ApiToken.token_hash == _digest(token))).scalar_one_or_none()
    if row is not None:
        row.revoked = True
