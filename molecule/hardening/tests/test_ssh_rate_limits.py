"""The controller is never banned or rate limited; any other source is (issue 15, item 1).

The same burst of bad SSH connections (30, each a few seconds at most) goes to hardening-debian12
(reached over SSH, so the role exempted the address Ansible connects from) from the controller and
from the scanner test host: the controller keeps every connection and can still log in, the
scanner is cut off by the firewall's rate limit and banned by fail2ban.
"""

import base64
import socket
import subprocess
import time

import pytest
import testinfra

from conftest import address_of
from test_ssh_access import SSH_OPTS

BURST = 30
# Each connection sends a line that is not an SSH banner: sshd logs "banner exchange: Connection
# from <address> ... invalid format", one failure for fail2ban's sshd jail (mode aggressive).
BURST_SCRIPT = """
import socket, sys
ok = 0
for _ in range({burst}):
    try:
        with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
            if s.recv(64).startswith(b"SSH-"):
                ok += 1
            s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    except OSError:
        pass
print(ok)
""".format(burst=BURST)


def burst_from_here(address, port):
    """Run the burst on the controller; return (accepted connections, our source address)."""
    with socket.create_connection((address, port), timeout=5) as probe:
        # The address the controller connects from, as the host sees it (no route lookup).
        source = probe.getsockname()[0]
    proc = subprocess.run(["python3", "-c", BURST_SCRIPT, address, str(port)], capture_output=True,
                          text=True, timeout=BURST * 3 + 30, check=True)
    return int(proc.stdout.strip()), source


def banned(host):
    with host.sudo():
        return host.check_output("fail2ban-client status sshd | grep 'Banned IP list'")


@pytest.fixture
def target(host):
    if host.backend.host != "hardening-debian12":
        pytest.skip("the over-SSH host only: the controller is detected there")
    return host


def test_controller_burst_is_neither_banned_nor_limited(target, ssh_key):
    address = address_of(target)
    with target.sudo():
        ignore = target.check_output("fail2ban-client get sshd ignoreip")
        table = target.check_output("nft list table inet composeops_filter")
    accepted, source = burst_from_here(address, 22)
    assert source in ignore, ignore
    assert any("ip saddr" in line and source in line and "tcp dport 22 accept" in line
               for line in table.splitlines()), table
    assert accepted == BURST, f"the firewall dropped {BURST - accepted} of the controller's connections"
    time.sleep(3)
    assert source not in banned(target)
    login = subprocess.run(["ssh", "-i", ssh_key, *SSH_OPTS, f"molly@{address}", "echo ok"],
                           capture_output=True, text=True, timeout=60, check=False)
    assert login.stdout.strip() == "ok", login.stderr


def test_scanner_burst_is_limited_and_banned(target):
    address = address_of(target)
    scanner = testinfra.get_host("ansible://hardening-scanner", ansible_inventory=target.backend.ansible_inventory)
    source = address_of(scanner)
    script = base64.b64encode(BURST_SCRIPT.encode()).decode()
    try:
        accepted = int(scanner.check_output(
            f"echo {script} | base64 -d > /tmp/burst.py && timeout {BURST * 3 + 30} python3 /tmp/burst.py {address} 22"))
        # The first connections pass (burst), the rest are dropped by the rate limit or the ban.
        assert accepted < BURST, "the scanner was not rate limited"
        for _attempt in range(20):
            if source in banned(target):
                break
            time.sleep(1)
        assert source in banned(target), "fail2ban did not ban the scanner"
        with target.sudo():
            assert target.run(f"nft list table inet f2b-table | grep -q {source}").rc == 0
    finally:
        with target.sudo():
            target.run(f"fail2ban-client set sshd unbanip {source}")
            target.run("nft flush set inet composeops_filter ssh_meter4")
