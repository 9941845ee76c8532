"""How the provisioned Asterisk names an operator's phone, and how we read those names back.

Operator 8001's softphone is the PJSIP endpoint ``op8001``; AMI shows the device (queue member
interface) as ``PJSIP/op8001`` and each of its calls as a channel ``PJSIP/op8001-0000002a``.
"""
from __future__ import annotations

import re

OPERATOR_INTERFACE = re.compile(r"^PJSIP/op([0-9]+)$")
OPERATOR_CHANNEL = re.compile(r"^PJSIP/op([0-9]+)-[0-9a-f]+$")
# the carrier trunk ([trunk] in asterisk/pjsip.conf): every call on it is a citizen calling 12345
TRUNK_CHANNEL = re.compile(r"^PJSIP/trunk-[0-9a-f]+$")


def from_carrier_trunk(channel: str | None) -> bool:
    """``PJSIP/trunk-0000002a`` (a citizen's call into [citizen-in]) -> True."""
    return bool(TRUNK_CHANNEL.match(channel or ""))


def operator_endpoint(extension: str) -> str:
    """``8001`` -> ``op8001``."""
    return f"op{extension}"


def operator_interface(extension: str) -> str:
    """``8001`` -> ``PJSIP/op8001``: what QueueAdd and Dial take."""
    return f"PJSIP/{operator_endpoint(extension)}"


def operator_of_channel(name: str | None) -> str | None:
    """``PJSIP/op8001-0000002a`` -> ``8001``; None for a channel that is no operator's phone."""
    match = OPERATOR_CHANNEL.match(name or "")
    return match.group(1) if match else None


def operator_of_interface(interface: str | None) -> str | None:
    """``PJSIP/op8001`` -> ``8001``."""
    match = OPERATOR_INTERFACE.match(interface or "")
    return match.group(1) if match else None


def endpoint_of_channel(name: str | None) -> str | None:
    """``PJSIP/op8001-0000002a`` -> ``op8001``: the endpoint a call's owner is known by."""
    extension = operator_of_channel(name)
    return operator_endpoint(extension) if extension is not None else None
