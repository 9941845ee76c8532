"""The SIP front and the nodes behind it, rendered from config/cluster.yaml without running anything
(the live side is tests/live/test_scale_live.py; docs/scaling.md)."""
from __future__ import annotations

import math
import shutil
import string
import subprocess
from pathlib import Path

import pytest

from callcenter.pbx import front
from callcenter.pbx.credentials import ensure_sip_passwords
from callcenter.pbx.render import load_operators, render_configs
from callcenter.pbx.root import ProvisionError
from callcenter.settings import PROJECT_ROOT, Settings

CLUSTER = """
front: {address: 10.77.0.10, sip_port: 5060}
carriers: [10.77.0.2, 192.0.2.0/28]
app: 10.77.0.1
nodes:
  - {name: node1, address: 10.77.0.11}
  - {name: node2, address: 10.77.0.12, sip_port: 5070}
security: {ban_after_failures: 7, ban_seconds: 900}
"""


@pytest.fixture
def setup(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(PROJECT_ROOT / "config/operators.yaml", config / "operators.yaml")
    (config / "cluster.yaml").write_text(CLUSTER)
    settings = Settings(state_dir=tmp_path / "var", config_dir=config, ami_secret="")
    return settings, front.load_cluster(front.cluster_path(settings))


def test_cluster_config_is_read_and_checked(setup, tmp_path):
    _, cluster = setup
    assert [(n.name, n.uri) for n in cluster.nodes] == [("node1", "sip:10.77.0.11:5060"), ("node2", "sip:10.77.0.12:5070")]
    assert cluster.carriers == ("10.77.0.2/32", "192.0.2.0/28")
    assert (cluster.ban_after_failures, cluster.ban_seconds, cluster.failure_window_s) == (7, 900, 600)
    bad = tmp_path / "bad.yaml"
    for text, message in (("front: {address: kamailio.local}\ncarriers: [10.0.0.1]\nnodes: [{name: a, address: 10.0.0.2}]",
                           "not an IP address"),
                          ("front: {address: 10.0.0.1}\nnodes: [{name: a, address: 10.0.0.2}]", "carriers"),
                          ("front: {address: 10.0.0.1}\ncarriers: [10.0.0.3]\n", "no nodes")):
        bad.write_text(text)
        with pytest.raises(ProvisionError, match=message):
            front.load_cluster(bad)


def test_front_config_dispatches_to_the_nodes_and_knows_only_softphone_operators(setup):
    settings, cluster = setup
    operators = load_operators(settings)
    passwords = ensure_sip_passwords(settings, operators, [])
    files = front.render_front(settings, cluster, passwords)
    assert files["dispatcher.list"] == ("1 sip:10.77.0.11:5060 0 0 name=node1\n"
                                        "1 sip:10.77.0.12:5070 0 0 name=node2\n")
    cfg = files["kamailio.cfg"]
    assert "listen=udp:10.77.0.10:5060" in cfg
    assert 'is_in_subnet("$si", "10.77.0.2/32") || is_in_subnet("$si", "192.0.2.0/28")' in cfg
    assert "$var(n) >= 7" in cfg and 'autoexpire=900;' in cfg
    for op in operators:  # the browser phone (op8005) registers on a node's wss, not at the front
        assert (f'$sht(pw=>{op.endpoint}) = "{passwords[op.endpoint]}";' in cfg) == (op.phone == "softphone")
    if shutil.which("kamailio") or Path(front.KAMAILIO_BIN).exists():
        path = settings.state_dir / "kamailio.cfg"
        path.write_text(cfg)
        (settings.state_dir / "dispatcher.list").write_text(files["dispatcher.list"])
        check = subprocess.run([front.KAMAILIO_BIN, "-c", "-f", str(path)], check=False, capture_output=True, text=True)
        assert check.returncode == 0, check.stderr[-1500:]


def test_operator_sip_passwords_are_long_random_secrets(setup):
    settings, _ = setup
    passwords = ensure_sip_passwords(settings, load_operators(settings), [])
    alphabet = set(string.ascii_letters + string.digits + "-_")
    for secret in passwords.values():
        # secrets.token_urlsafe(16): 22 characters of a 64-letter alphabet = 128 random bits
        assert len(secret) >= 22 and set(secret) <= alphabet
        assert len(secret) * math.log2(64) >= 128
    assert len(set(passwords.values())) == len(passwords)


def test_a_node_reaches_operators_through_the_front_and_takes_calls_only_from_it(setup):
    settings, cluster = setup
    node = front.node_settings(settings, cluster, "node2")
    assert (node.sip_host, node.sip_port, node.ami_host, node.agi_host) == ("10.77.0.12", 5070, "10.77.0.12", "10.77.0.1")
    operators = load_operators(node)
    configs = render_configs(node, "secret-0123456789", {op.endpoint: f"pw-{op.id}-abcdefgh" for op in operators},
                             operators)
    pjsip = configs["pjsip.conf"]
    assert "contact = sip:op8001@10.77.0.10:5060" in pjsip
    assert "password = pw-8001-abcdefgh" not in pjsip  # the front authenticates softphones
    assert "match = 10.77.0.10" in pjsip  # the trunk: citizens' calls come from the front only
    manager = configs["manager.conf"]
    assert "permit = 10.77.0.1/255.255.255.255" in manager and "permit = 10.77.0.12/255.255.255.255" in manager
    # the node names its uniqueids (node2-...): one store holds the calls of every node
    assert "\nsystemname = node2\n" in configs["asterisk.conf"]
    single = render_configs(settings, "secret-0123456789", {op.endpoint: "pw-abcdefgh-0123" for op in operators},
                            operators)
    assert "\nsystemname = \n" in single["asterisk.conf"]
    with pytest.raises(ProvisionError, match="no node"):
        front.node_settings(settings, cluster, "node3")


def test_callcenter_run_for_a_node_takes_its_settings_from_the_cluster_file(setup, monkeypatch):
    """Issue 16 item 4: `callcenter run --node NAME` is the node's application process as production
    runs it: its AMI, its uniqueids' name, its FastAGI address and the shared queue from cluster.yaml."""
    from click.testing import CliRunner

    from callcenter import cli, eventloop, runtime
    from callcenter.settings import get_settings

    settings, _ = setup
    monkeypatch.setenv("CALLCENTER_CONFIG_DIR", str(settings.config_dir))
    monkeypatch.setenv("CALLCENTER_AMI_SECRET", "secret-0123456789")
    get_settings.cache_clear()
    ran = []
    monkeypatch.setattr(runtime, "prepare", lambda s, asterisk: ran.append(("prepare", s, asterisk)))
    monkeypatch.setattr(runtime, "run_hotline", lambda s: ("hotline", s))
    monkeypatch.setattr(eventloop, "run", lambda what, loop: ran.append(what))
    result = CliRunner().invoke(cli.main, ["run", "--node", "node2", "--no-asterisk"])
    assert result.exit_code == 0, result.output
    (_, prepared, asterisk), (_, node) = ran
    assert asterisk is False and prepared == node
    assert (node.ami_host, node.system_name, node.agi_host, node.queue_shared) == (
        "10.77.0.12", "node2", "10.77.0.1", True)
    result = CliRunner().invoke(cli.main, ["run", "--node", "node3"])
    assert result.exit_code == 1 and "no node 'node3'" in result.output
    get_settings.cache_clear()
