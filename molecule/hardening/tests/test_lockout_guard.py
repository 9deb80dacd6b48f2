"""Bad input and the lockout guard: runs that must fail safely and leave the host unchanged.

The cases live in lockout_guard.yml (run here, after idempotence, so that they cannot hide a change
from it); each asserts its own error message and that /etc/ssh and the firewall are unchanged.
"""

import os
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def test_lockout_guard_playbook(host):
    if host.backend.host != "hardening-debian13":
        pytest.skip("runs once, driven from the controller")
    root = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.path.join(root, "build", "collections"))
    env["ANSIBLE_HOST_KEY_CHECKING"] = "False"
    proc = subprocess.run(
        ["ansible-playbook", "-i", host.backend.ansible_inventory, os.path.join(HERE, "..", "lockout_guard.yml")],
        capture_output=True, text=True, env=env, timeout=900, check=False)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
