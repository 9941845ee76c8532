"""Test hosts on one machine: network namespaces on one bridge (tests/live/test_scale_live.py).

Each host is a namespace with one veth leg on the bridge ``scl-br`` (10.77.0.1/24 on the host side,
so this test process reaches every host, and hosts reach services the test runs on 10.77.0.1).
Only these addresses are ever sent to. Needs root and iproute2; `available()` says why not.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator

BRIDGE = "scl-br"
HOST_ADDRESS = "10.77.0.1"
PREFIX = 24


def available() -> str:
    """'' if namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is missing"
    probe = subprocess.run(["ip", "netns", "list"], check=False, capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns` does not work here: {probe.stderr.strip()}"
    return ""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def ns_name(host: str) -> str:
    return f"scl-{host}"


def exec_argv(host: str, argv: list[str]) -> list[str]:
    """argv run inside host's namespace."""
    return ["ip", "netns", "exec", ns_name(host), *argv]


def teardown(hosts: dict[str, str]) -> None:
    for host in hosts:
        _ip("netns", "del", ns_name(host), check=False)
    _ip("link", "del", BRIDGE, check=False)


def setup(hosts: dict[str, str]) -> None:
    """hosts: name -> address in 10.77.0.0/24: one namespace each, all on the bridge."""
    teardown(hosts)  # what a killed earlier run left behind
    _ip("link", "add", BRIDGE, "type", "bridge")
    _ip("addr", "add", f"{HOST_ADDRESS}/{PREFIX}", "dev", BRIDGE)
    _ip("link", "set", BRIDGE, "up")
    for i, (host, address) in enumerate(hosts.items()):
        ns, outside, inside = ns_name(host), f"scl-v{i}", f"scl-p{i}"
        _ip("netns", "add", ns)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "master", BRIDGE)
        _ip("link", "set", outside, "up")
        _ip("-n", ns, "addr", "add", f"{address}/{PREFIX}", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")


@contextlib.contextmanager
def topology(hosts: dict[str, str]) -> Iterator[dict[str, str]]:
    """`setup`, and everything removed afterwards."""
    try:
        setup(hosts)
        yield hosts
    finally:
        teardown(hosts)
