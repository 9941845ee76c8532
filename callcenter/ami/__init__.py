"""The AMI link: our own small asyncio client for Asterisk's manager interface (see docs/ami.md)."""
from callcenter.ami.client import AMIClient
from callcenter.ami.connection import AMIStats
from callcenter.ami.errors import (
    ActionEncodingError,
    AMIAuthError,
    AMIConnectError,
    AMIError,
    AMILinkLost,
    AMINotConnected,
    AMIProtocolError,
    AMITimeout,
)
from callcenter.ami.events import EventStream, Subscription
from callcenter.ami.protocol import Message, Parser, encode_action, redacted

__all__ = [
    "AMIClient",
    "AMIStats",
    "EventStream",
    "Subscription",
    "Message",
    "Parser",
    "encode_action",
    "redacted",
    "AMIError",
    "AMIProtocolError",
    "ActionEncodingError",
    "AMIAuthError",
    "AMIConnectError",
    "AMINotConnected",
    "AMILinkLost",
    "AMITimeout",
]
