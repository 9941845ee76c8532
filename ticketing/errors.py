"""Domain errors. Each names the rule that refused the operation and its kind; how a kind is
answered (an HTTP status, a CLI exit) is for the caller at its edge (callcenter/api/errors.py)."""
from __future__ import annotations

# The kinds of refusal. A kind says what went wrong in the domain's terms, not a transport's.
REFUSED = "refused"      # the case's state or the regulation does not allow the operation
FORBIDDEN = "forbidden"  # the actor's role may not do this
NOT_FOUND = "not_found"  # no such case, unit, work order...
INVALID = "invalid"      # well-formed but meaningless input, e.g. an unknown unit code
CONFLICT = "conflict"    # someone else changed the case first
KINDS = frozenset({REFUSED, FORBIDDEN, NOT_FOUND, INVALID, CONFLICT})


class DomainError(Exception):
    """An operation the case's state or the regulation does not allow."""

    kind = REFUSED

    def __init__(self, rule: str, message: str):
        self.rule = rule
        self.message = message
        super().__init__(f"{rule}: {message}")


class NotFound(DomainError):
    kind = NOT_FOUND

    def __init__(self, what: str, ident: object):
        super().__init__("not_found", f"{what} {ident} does not exist")


class Forbidden(DomainError):
    """The actor's role may not do this."""

    kind = FORBIDDEN


class InvalidInput(DomainError):
    """Well-formed but meaningless input, e.g. an unknown unit code."""

    kind = INVALID


class Conflict(DomainError):
    """Someone else changed the case first."""

    kind = CONFLICT

    def __init__(self, message: str = "the case was changed by someone else; reload and try again"):
        super().__init__("concurrent_update", message)
