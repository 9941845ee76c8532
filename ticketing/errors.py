"""Domain errors. Each names the rule that refused the operation, so the API can say why."""
from __future__ import annotations


class DomainError(Exception):
    """An operation the case's state or the regulation does not allow (API: 409)."""

    status_code = 409

    def __init__(self, rule: str, message: str):
        self.rule = rule
        self.message = message
        super().__init__(f"{rule}: {message}")


class NotFound(DomainError):
    status_code = 404

    def __init__(self, what: str, ident: object):
        super().__init__("not_found", f"{what} {ident} does not exist")


class Forbidden(DomainError):
    """The actor's role may not do this (API: 403)."""

    status_code = 403


class InvalidInput(DomainError):
    """Well-formed but meaningless input, e.g. an unknown unit code (API: 422)."""

    status_code = 422


class Conflict(DomainError):
    """Someone else changed the case first (API: 409)."""

    def __init__(self, message: str = "the case was changed by someone else; reload and try again"):
        super().__init__("concurrent_update", message)
