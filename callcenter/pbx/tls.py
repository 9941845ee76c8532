"""The install's certificate for the browser phone: Asterisk's HTTPS server (the SIP WebSocket,
wss) and the DTLS of WebRTC media use one self-signed certificate, generated once per install into
``<state_dir>/tls/`` (key 0600) and copied into the Asterisk root. An administrator who has a
certificate browsers already trust puts it (PEM, key unencrypted) at the same two paths; install
then copies that one and never overwrites it.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from pathlib import Path

from callcenter.pbx.credentials import write_private
from callcenter.settings import Settings

TLS_DIR = "tls"
CERT_FILE = "wss-cert.pem"
KEY_FILE = "wss-key.pem"
# where Asterisk reads them (inside the root; rendered into http.conf and the WebRTC endpoints)
KEYS_DIR = "/etc/asterisk/keys"
VALID_DAYS = 3650  # a self-signed certificate is trusted by fingerprint/exception, not by expiry


def cert_paths(settings: Settings) -> tuple[Path, Path]:
    base = Path(settings.state_dir) / TLS_DIR
    return base / CERT_FILE, base / KEY_FILE


def _names(settings: Settings) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the certificate is valid for: this host and the wss bind address."""
    dns = {"localhost", socket.gethostname()}
    ips = {"127.0.0.1"}
    for value in (settings.wss_host,):
        try:
            address = ipaddress.ip_address(value)
        except ValueError:
            dns.add(value)
        else:
            if not address.is_unspecified:
                ips.add(value)
    return sorted(dns), sorted(ips)


def _generate(settings: Settings) -> tuple[bytes, bytes]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())  # P-256: what browsers and DTLS handle fastest
    dns, ips = _names(settings)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"12345 hotline phone ({socket.gethostname()})")])
    now = dt.datetime.now(dt.UTC)
    san = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def ensure_certificate(settings: Settings, changes: list[str]) -> tuple[bytes, bytes]:
    """The install's (certificate, key) PEM, generated the first time (both files 0600)."""
    cert_path, key_path = cert_paths(settings)
    if cert_path.exists() and key_path.exists():
        return cert_path.read_bytes(), key_path.read_bytes()
    cert, key = _generate(settings)
    write_private(key_path, key.decode())
    write_private(cert_path, cert.decode())
    changes.append(f"generated the browser phone's TLS/DTLS certificate into {cert_path.parent} (self-signed)")
    return cert, key


def fingerprint(settings: Settings) -> str | None:
    """SHA-256 fingerprint of the installed certificate (AA:BB:…), for the operator to compare when the
    browser asks to trust it; None before install."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    cert_path, _ = cert_paths(settings)
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


__all__ = ["CERT_FILE", "KEYS_DIR", "KEY_FILE", "cert_paths", "ensure_certificate", "fingerprint"]
