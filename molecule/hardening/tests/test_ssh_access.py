"""SSH from the outside (the controller): ssh-audit, key login, and every refusal.

OpenSSH >= 9.8 penalises sources that fail or do not authenticate (PerSourcePenalties): a refused
attempt may be answered "Not allowed at this time" for a few seconds, so every probe retries.
"""

import os
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import address_of

SSH_OPTS = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "ConnectTimeout=10", "-o", "ControlPath=none"]


def run_retrying(argv):
    for _attempt in range(4):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
        if "Not allowed at this time" not in proc.stdout + proc.stderr:
            return proc
        time.sleep(20)
    return proc


def ssh(address, port, key, user, *extra):
    return run_retrying(["ssh", "-i", key, "-p", str(port), *SSH_OPTS, *extra, f"{user}@{address}", "echo ok"])


def test_ssh_audit_clean(hardened, ssh_port):
    """ssh-audit (PyPI) exits 0: no failure and no warning."""
    address = address_of(hardened)
    audit = os.path.join(os.path.dirname(sys.executable), "ssh-audit")
    proc = run_retrying([audit, "--no-colors", "-p", str(ssh_port), address])
    # Kept for the closing note of a run (the ephemeral directory goes away with destroy).
    report = os.path.join(os.environ.get("COMPOSEOPS_SSH_AUDIT_DIR", tempfile.gettempdir()),
                          f"ssh-audit-{hardened.backend.host}.txt")
    with open(report, "w", encoding="utf-8") as out:
        out.write(proc.stdout)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout
    assert "[fail]" not in proc.stdout and "[warn]" not in proc.stdout


def test_admin_logs_in_with_key(hardened, ssh_port, ssh_key):
    proc = ssh(address_of(hardened), ssh_port, ssh_key, "molly")
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_admin_sudo_works_over_ssh(hardened, ssh_port, ssh_key):
    proc = run_retrying(["ssh", "-i", ssh_key, "-p", str(ssh_port), *SSH_OPTS, f"molly@{address_of(hardened)}",
                         "sudo -n true && echo sudo-ok"])
    assert "sudo-ok" in proc.stdout, proc.stderr


def test_root_login_refused(hardened, ssh_port, ssh_key):
    proc = ssh(address_of(hardened), ssh_port, ssh_key, "root")
    assert proc.returncode == 255 and "Permission denied" in proc.stderr


def test_password_login_not_offered(hardened, ssh_port, ssh_key):
    proc = ssh(address_of(hardened), ssh_port, ssh_key, "molly",
               "-o", "PubkeyAuthentication=no", "-o", "PreferredAuthentications=password,keyboard-interactive")
    assert proc.returncode == 255
    assert "Permission denied (publickey)" in proc.stderr


def test_user_outside_allow_groups_refused(hardened, hostvars, ssh_port, ssh_key):
    if not hostvars.get("hardening_ssh_allow_groups"):
        pytest.skip("AllowGroups not used here")
    with hardened.sudo():
        hardened.check_output("id outsider >/dev/null 2>&1 || useradd -m -p '*' outsider")
        hardened.check_output("install -d -m 700 -o outsider ~outsider/.ssh && "
                              "install -m 600 -o outsider ~molly/.ssh/authorized_keys ~outsider/.ssh/")
    proc = ssh(address_of(hardened), ssh_port, ssh_key, "outsider")
    assert proc.returncode == 255 and "Permission denied" in proc.stderr


def test_multiplexed_sessions_up_to_max_sessions(hardened, hostvars, ssh_port, ssh_key):
    """Ansible runs one session at a time over its ControlPersist master (this scenario's converge
    of hardening-debian12 did, over SSH); MaxSessions 2 allows one more, e.g. an operator's
    multiplexed shell, and refuses a third."""
    address = address_of(hardened)
    limit = int(hostvars.get("hardening_ssh_max_sessions", 2))
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "cm")
        cut = SSH_OPTS.index("ControlPath=none")
        base = ["ssh", "-i", ssh_key, "-p", str(ssh_port), *SSH_OPTS[:cut - 1], *SSH_OPTS[cut + 1:]]
        master = run_retrying([*base, "-o", "ControlMaster=yes", "-o", f"ControlPath={control}",
                               "-o", "ControlPersist=60", "-N", "-f", f"molly@{address}"])
        assert master.returncode == 0, master.stderr
        try:
            sessions = [subprocess.Popen([*base, "-o", f"ControlPath={control}", f"molly@{address}",
                                          "sleep 4; echo ok"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                         text=True) for _session in range(limit + 1)]
            results = [p.communicate(timeout=60) for p in sessions]
        finally:
            subprocess.run([*base, "-o", f"ControlPath={control}", "-O", "exit", f"molly@{address}"],
                           capture_output=True, timeout=30, check=False)
        # A refused session makes ssh fall back to a connection of its own: count what the master served.
        refused = [err for _out, err in results if "Session open refused by peer" in err]
        served = [out for out, err in results if out.strip() == "ok" and "Session open refused" not in err]
        assert len(served) == limit and len(refused) == 1, results
