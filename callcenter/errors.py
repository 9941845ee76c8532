"""The application's own failures: the telephone system is away, a call leg has ended, Asterisk
refused an action or its outcome is unknown, a request came without a login. They break no rule
of the regulation (those are ``ticketing.errors.DomainError``); the API answers both by kind at its
edge (callcenter/api/errors.py)."""
from __future__ import annotations

from ticketing.errors import CONFLICT, FORBIDDEN, INVALID, NOT_FOUND, REFUSED

# kinds only the application has (the domain's are re-used where they mean the same)
UNAUTHENTICATED = "unauthenticated"  # no valid login
GONE = "gone"                        # the call leg existed and has ended
UNAVAILABLE = "unavailable"          # the telephone system (or the link to it) is not there now
OUTCOME_UNKNOWN = "outcome_unknown"  # the action was sent and its answer lost: read the state again
UPSTREAM_FAILED = "upstream_failed"  # Asterisk refused or failed the action
THROTTLED = "throttled"              # too many failed logins: locked for a while
KINDS = frozenset({REFUSED, FORBIDDEN, NOT_FOUND, INVALID, CONFLICT,
                   UNAUTHENTICATED, GONE, UNAVAILABLE, OUTCOME_UNKNOWN, UPSTREAM_FAILED, THROTTLED})


class AppError(Exception):
    """A failure of the application, named by ``code`` (what the API answers as ``error``)."""

    kind = REFUSED

    def __init__(self, code: str, message: str):
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


__all__ = ["AppError", "CONFLICT", "FORBIDDEN", "GONE", "INVALID", "KINDS", "NOT_FOUND", "OUTCOME_UNKNOWN",
           "REFUSED", "THROTTLED", "UNAUTHENTICATED", "UNAVAILABLE", "UPSTREAM_FAILED"]
