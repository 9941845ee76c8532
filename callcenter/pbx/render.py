"""Rendering of Asterisk's configuration: the operators (config/operators.yaml) and the member
units' duty-phone routes (config/phone_routes.yaml), put into the ``asterisk/*.conf`` templates
(placeholders ``@@NAME@@``; Asterisk uses ``${}`` itself). It reads config and templates and
writes nothing (installation writes the result).
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from callcenter.pbx.credentials import check_secret
from callcenter.pbx.names import operator_endpoint, operator_interface
from callcenter.pbx.root import FAX_DIR, MOH_DIR, RECORDINGS_DIR, ProvisionError
from callcenter.pbx.tls import CERT_FILE, KEY_FILE, KEYS_DIR
from callcenter.settings import PROJECT_ROOT, Settings
from ticketing.dialing import dial_digits  # re-exported: its home is ticketing (voice notices dial it too)

TEMPLATE_DIR = PROJECT_ROOT / "asterisk"
_PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.-]+$")
PHONES = ("softphone", "browser", "secure")
# the endpoint block of each kind of operator phone; a secure phone is a softphone on TLS with SRTP
OPERATOR_TEMPLATES = {"softphone": "pjsip-operator.conf.in", "browser": "pjsip-operator-webrtc.conf.in",
                      "secure": "pjsip-operator.conf.in"}
# (transport, media encryption) of the SIP phone kinds: SDES keys travel in the SDP, so SRTP with
# them is only as secret as the signalling -- hence TLS, and no fallback to plain RTP
_SIGNALLING = {"softphone": ("transport-udp", "no"), "secure": ("transport-tls", "sdes")}
FRONT_OPERATOR_TEMPLATE = "pjsip-operator-front.conf.in"


# --------------------------------------------------------------------------------------------
# operators


@dataclass(frozen=True)
class Operator:
    """A front-desk operator's softphone account (config/operators.yaml)."""

    id: str  # extension, e.g. "8001"
    name: str
    # which phone the operator answers on: "softphone" (a SIP phone over UDP, e.g. baresip, MicroSIP),
    # "secure" (a SIP phone over TLS with SRTP) or "browser" (the WebRTC phone of the console page,
    # over wss); one endpoint is one of them
    phone: str = "softphone"

    @property
    def endpoint(self) -> str:
        return operator_endpoint(self.id)

    @property
    def interface(self) -> str:
        """What AMI QueueAdd / Dial take for this operator's phone."""
        return operator_interface(self.id)


def load_operators(settings: Settings) -> list[Operator]:
    """Operators of config/operators.yaml (a list of {id, name, phone}; an `operators:` key is accepted too)."""
    path = Path(settings.config_dir) / "operators.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProvisionError(f"{path} is missing: list the operators as - {{id: \"8001\", name: ...}}") from None
    if isinstance(data, dict):
        data = data.get("operators")
    if not isinstance(data, list):
        raise ProvisionError(f"{path}: expected a list of {{id, name}}")
    operators: list[Operator] = []
    for entry in data:
        if not isinstance(entry, dict) or "id" not in entry:
            raise ProvisionError(f"{path}: each operator needs an id: {entry!r}")
        op_id, name = str(entry["id"]), str(entry.get("name") or "")
        if not re.fullmatch(r"[0-9]{2,8}", op_id):
            raise ProvisionError(f"{path}: operator id {op_id!r} must be 2-8 digits (it is an extension)")
        # the name goes into a SIP callerid line of pjsip.conf
        if any(c in name for c in '";\r\n<>@\\'):
            raise ProvisionError(f"{path}: operator {op_id} name {name!r} contains a forbidden character")
        if any(op.id == op_id for op in operators):
            raise ProvisionError(f"{path}: operator id {op_id} appears twice")
        phone = str(entry.get("phone") or "softphone")
        if phone not in PHONES:
            raise ProvisionError(f"{path}: operator {op_id} phone {phone!r} must be one of {', '.join(PHONES)}")
        operators.append(Operator(op_id, name, phone))
    return operators


# --------------------------------------------------------------------------------------------
# member units' duty phones (config/phone_routes.yaml)

_ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")


@dataclass(frozen=True)
class PhoneRoutes:
    """How the dialplan context [unit-phones] reaches a roster number: a number in ``routes`` rings a
    local SIP endpoint (test phones provisioned like operators), any other number ``default``."""

    endpoints: tuple[str, ...] = ()
    routes: dict[str, str] = field(default_factory=dict)  # digits -> endpoint
    default: str = "PJSIP/{number}@trunk"


def load_phone_routes(settings: Settings) -> PhoneRoutes:
    """config/phone_routes.yaml; no file = no test phones, everything to the trunk."""
    path = Path(settings.config_dir) / "phone_routes.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        return PhoneRoutes()
    if not isinstance(data, dict):
        raise ProvisionError(f"{path}: expected a mapping with endpoints, routes, default")
    endpoints = tuple(str(e) for e in data.get("endpoints") or ())
    for name in endpoints:
        # rendered into pjsip.conf section names: nothing the parser treats specially
        if not _ENDPOINT_NAME.match(name) or re.fullmatch(r"op[0-9]+", name):
            raise ProvisionError(f"{path}: endpoint name {name!r} must be lower-case letters, digits, '-' "
                                 "and not look like an operator's (opNNNN)")
    routes: dict[str, str] = {}
    for number, endpoint in (data.get("routes") or {}).items():
        digits = dial_digits(str(number))
        if not digits or len(digits) > 20:
            raise ProvisionError(f"{path}: route {number!r} is not a phone number")
        if str(endpoint) not in endpoints:
            raise ProvisionError(f"{path}: route {number} goes to {endpoint!r}, which is not under endpoints")
        routes[digits] = str(endpoint)
    default = str(data.get("default") or PhoneRoutes.default)
    if "{number}" not in default or any(c in default for c in ",;\r\n()&|"):
        raise ProvisionError(f"{path}: default {default!r} must be one dial string containing {{number}}")
    return PhoneRoutes(endpoints=endpoints, routes=routes, default=default)


def _render_unit_phone_routes(routes: PhoneRoutes) -> str:
    lines = []
    for number, endpoint in sorted(routes.routes.items()):
        lines.append(f"exten => {number},1,Set(UNIT_DIAL=PJSIP/{endpoint})")
        lines.append(" same => n,Goto(dial,1)")
    return "\n".join(lines) + "\n" if lines else "; (no routes to local test phones)\n"


# --------------------------------------------------------------------------------------------
# templates


def render_template(text: str, values: dict[str, str]) -> str:
    """Replace every @@NAME@@; an unknown name, or anything left looking like one, is an error."""
    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name not in values:
            raise ProvisionError(f"template placeholder @@{name}@@ has no value")
        return str(values[name])

    out = _PLACEHOLDER.sub(replace, text)
    if "@@" in out:
        raise ProvisionError("a template still contains '@@' after rendering")
    return out


def _trunk_match(value: str) -> str:
    """sip_trunk_match as pjsip.conf's identify `match`: IP addresses or networks, nothing else (an
    empty or malformed value would let the parser take anything, or nothing, as the carrier)."""
    parts = [p.strip() for p in value.split(",") if p.strip()]
    try:
        for part in parts:
            ipaddress.ip_network(part, strict=False)
    except ValueError:
        raise ProvisionError(f"setting sip_trunk_match={value!r}: expected IP addresses or networks, "
                             "comma-separated") from None
    if not parts:
        raise ProvisionError("setting sip_trunk_match is empty: give the carrier's SBC address(es)")
    return ",".join(parts)


def _ami_permit(value: str) -> str:
    """manager.conf `permit` lines: the addresses the application logs in from."""
    lines = []
    for part in (p.strip() for p in value.split(",")):
        try:
            address = ipaddress.ip_address(part)
        except ValueError:
            raise ProvisionError(f"setting ami_permit={value!r}: expected IP addresses, comma-separated") from None
        lines.append(f"permit = {address}/255.255.255.255")
    return "\n".join(lines)


def _template_values(settings: Settings, secret: str) -> dict[str, str]:
    for what, value in (("ami_username", settings.ami_username),
                        ("ami_host", settings.ami_host), ("sip_host", settings.sip_host),
                        ("agi_host", settings.agi_host), ("wss_host", settings.wss_host)):
        if not _SAFE_WORD.match(value):
            raise ProvisionError(f"setting {what}={value!r} is not a plain name/address")
    if settings.system_name and not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", settings.system_name):
        raise ProvisionError(f"setting system_name={settings.system_name!r}: letters, digits, '-' and '_' only")
    return {
        "SYSTEM_NAME": settings.system_name,
        "AMI_HOST": settings.ami_host,
        "AMI_PORT": str(int(settings.ami_port)),
        "AMI_USERNAME": settings.ami_username,
        "AMI_SECRET": secret,
        "AMI_PERMIT": _ami_permit(settings.ami_permit),
        "SIP_HOST": settings.sip_host,
        "SIP_PORT": str(int(settings.sip_port)),
        "SIP_TLS_PORT": str(int(settings.sip_tls_port)),
        "SIP_TRUNK_MATCH": _trunk_match(settings.sip_trunk_match),
        "AGI_HOST": settings.agi_host,
        "AGI_PORT": str(int(settings.agi_port)),
        "WSS_HOST": settings.wss_host,
        "WSS_PORT": str(int(settings.wss_port)),
        "TLS_CERT": f"{KEYS_DIR}/{CERT_FILE}",
        "TLS_KEY": f"{KEYS_DIR}/{KEY_FILE}",
        "RECORDINGS_DIR": RECORDINGS_DIR,
        "FAX_DIR": FAX_DIR,
        "MOH_DIR": MOH_DIR,
    }


def render_configs(settings: Settings, secret: str, passwords: dict[str, str],
                   operators: list[Operator] | None = None) -> dict[str, str]:
    """File name in /etc/asterisk -> rendered content, for every ``asterisk/*.conf`` template."""
    operators = load_operators(settings) if operators is None else operators
    values = _template_values(settings, secret)
    blocks = {kind: (TEMPLATE_DIR / name).read_text(encoding="utf-8") for kind, name in OPERATOR_TEMPLATES.items()}
    if settings.sip_front:  # a node behind the front: softphones register there (callcenter/pbx/front.py)
        if not re.fullmatch(r"[0-9.]+:[0-9]+", settings.sip_front):
            raise ProvisionError(f"setting sip_front={settings.sip_front!r}: expected address:port")
        blocks["softphone"] = (TEMPLATE_DIR / FRONT_OPERATOR_TEMPLATE).read_text(encoding="utf-8")
    endpoints = []
    for op in operators:
        if op.endpoint not in passwords:
            raise ProvisionError(f"no SIP password for {op.endpoint}")
        transport, media_encryption = _SIGNALLING.get(op.phone, ("", ""))
        endpoints.append(render_template(blocks[op.phone], {
            "OPERATOR_ID": op.id, "OPERATOR_NAME": op.name or op.endpoint,
            "ENDPOINT": op.endpoint, "PASSWORD": check_secret(passwords[op.endpoint], op.endpoint),
            "TLS_CERT": values["TLS_CERT"], "TLS_KEY": values["TLS_KEY"], "SIP_FRONT": settings.sip_front,
            "OPERATOR_TRANSPORT": transport, "MEDIA_ENCRYPTION": media_encryption,
        }))
    values["OPERATOR_ENDPOINTS"] = "".join(endpoints).rstrip("\n") + "\n"
    routes = load_phone_routes(settings)
    unit_block = (TEMPLATE_DIR / "pjsip-unit-phone.conf.in").read_text(encoding="utf-8")
    unit_endpoints = []
    for name in routes.endpoints:
        # a caller that passes only the operators' passwords (a render check) gets no test phones;
        # install always generates theirs
        if name in passwords:
            unit_endpoints.append(render_template(unit_block, {
                "ENDPOINT": name, "PASSWORD": check_secret(passwords[name], name)}))
    values["UNIT_PHONE_ENDPOINTS"] = "".join(unit_endpoints).rstrip("\n") + "\n"
    values["UNIT_PHONE_ROUTES"] = _render_unit_phone_routes(routes)
    values["UNIT_PHONE_DEFAULT"] = routes.default.replace("{number}", "${EXTEN}")
    return {
        path.name: render_template(path.read_text(encoding="utf-8"), values)
        for path in sorted(TEMPLATE_DIR.glob("*.conf"))
    }


__all__ = ["PHONES", "Operator", "PhoneRoutes", "dial_digits", "load_operators", "load_phone_routes", "render_configs",
           "render_template"]
