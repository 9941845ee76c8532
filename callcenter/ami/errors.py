"""Exceptions of the AMI link. Callers mostly care about three:

- ``AMINotConnected``: nothing was sent (the link is down); safe to decide anew.
- ``AMILinkLost``: the action was written, the link dropped before its answer; the action MAY have run.
- ``AMITimeout``: the action was written, no answer in time; the action MAY have run.

For the last two, never retry blindly (an Originate would dial the citizen twice); reconcile first,
e.g. look for the ChannelId the client set on the Originate (``CoreShowChannels``, CEL, CDR).
"""
from __future__ import annotations

from typing import Any


class AMIError(Exception):
    """Base of every error raised by ``callcenter.ami``."""


class AMIProtocolError(AMIError):
    """The peer sent something that is not AMI (no banner, endless message)."""


class ActionEncodingError(AMIError, ValueError):
    """An action cannot be serialized safely (CR/LF injection, bad header name)."""


class AMIAuthError(AMIError):
    """Asterisk refused the Login (wrong username/secret, or no permission)."""


class AMIConnectError(AMIError):
    """TCP connect, banner or Login did not complete (refused, timed out, reset)."""


class _ActionError(AMIError):
    def __init__(self, message: str, *, action: dict[str, Any] | None = None, action_id: str | None = None):
        super().__init__(message)
        # Redacted copy (no secret, phone numbers masked): safe to log; holds e.g. the ChannelId to reconcile.
        self.action = action or {}
        self.action_id = action_id


class AMINotConnected(_ActionError):
    """The link is down; the action was NOT sent and will never be sent later."""


class AMILinkLost(_ActionError):
    """The link dropped after the action was written: outcome unknown. Reconcile, do not resend."""


class AMITimeout(_ActionError, TimeoutError):
    """No answer in time after the action was written: outcome unknown. Reconcile, do not resend."""
