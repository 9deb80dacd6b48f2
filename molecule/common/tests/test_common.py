"""Verify the common role on every converged host."""

import os
import subprocess
from pathlib import Path

import pytest

BASE_PACKAGES = ["ca-certificates", "curl", "gnupg", "acl", "python3-apt", "tzdata"]


@pytest.mark.parametrize("name", BASE_PACKAGES + ["less"])
def test_package_installed(host, name):
    assert host.package(name).is_installed


def test_timezone_is_utc(host):
    assert host.check_output("timedatectl show --property=Timezone --value") == "Etc/UTC"
    assert host.file("/etc/localtime").linked_to == "/usr/share/zoneinfo/Etc/UTC"


def test_state_dir_is_private(host):
    state_dir = host.file("/var/lib/composeops")
    assert state_dir.is_directory
    assert (state_dir.user, state_dir.group, state_dir.mode) == ("root", "root", 0o700)


def test_systemd_booted_the_host(host):
    assert host.check_output("ps -o comm= -p 1") == "systemd"
    assert host.run("systemctl is-system-running").stdout.strip() in ("running", "degraded")


def test_reached_over_real_ssh_where_asked(host):
    """Hosts in over_ssh are tested through sshd itself, not docker exec."""
    groups = host.ansible.get_variables().get("group_names", [])
    ssh_client = host.check_output("echo ${SSH_CONNECTION:-}")
    if "over_ssh" in groups:
        assert ssh_client, "expected an SSH session, got a non-SSH shell"
    else:
        assert not ssh_client


def test_timer_is_enabled_and_scheduled(host):
    timer = host.service("composeops-selftest.timer")
    assert timer.is_enabled and timer.is_running
    unit = host.file("/etc/systemd/system/composeops-selftest.timer").content_string
    assert "OnCalendar=*-*-* 04:00:00" in unit and "RandomizedDelaySec=600" in unit and "Persistent=true" in unit
    assert not host.file("/etc/systemd/system/composeops-selftest-absent.timer").exists


def test_timer_service_runs_inside_its_sandbox(host):
    """The job runs (both ExecStart lines) as root without capabilities on a read-only system,
    writing only where its ReadWritePaths says."""
    with host.sudo():
        host.run_test("rm -f /var/lib/composeops-selftest/ran")
        assert host.run("systemctl start composeops-selftest.service").rc == 0
        assert host.check_output("systemctl show -P Result composeops-selftest.service") == "success"
        assert host.file("/var/lib/composeops-selftest/ran").content_string.strip() == "0"
        show = host.check_output(
            "systemctl show -P CapabilityBoundingSet -P ProtectSystem -P NoNewPrivileges composeops-selftest.service"
        ).split("\n")
        assert show == ["", "strict", "yes"]


def test_timer_service_exposure_is_low(host):
    """systemd-analyze rates the service's sandbox (0 = fully locked down, 10 = exposed)."""
    with host.sudo():
        out = host.check_output("systemd-analyze security --no-pager composeops-selftest.service | tail -n 1")
    exposure = float(out.split("exposure level for composeops-selftest.service:")[1].split()[0])
    print(f"systemd-analyze exposure of composeops-selftest.service: {exposure}")
    assert exposure <= 2.0, out


# What the first play of site.yml must leave untouched when it refuses the input.
_FINGERPRINT = (
    "find /etc /var/lib/composeops /opt -xdev -type f -print0 2>/dev/null | sort -z | xargs -0 -r sha256sum;"
    " dpkg-query -W -f '${Package} ${Version} ${Status}\\n'"
)


@pytest.mark.parametrize("tags", [[], ["--tags", "hardening_ssh"]], ids=["all", "tags"])
def test_site_refuses_bad_input_before_any_change(host, tmp_path, tags):
    """site.yml with the example inventory's placeholder admin key fails in its first play, before
    any role changes anything: the message that says so must be true. A run limited with --tags
    to one concern checks every role's input too."""
    name = host.backend.get_hostname()
    if name != "common-debian13":
        pytest.skip("one host is enough")
    root = Path(__file__).resolve().parents[3]
    (tmp_path / "hosts.yml").write_text(f"composeops:\n  hosts:\n    {name}: {{}}\n")
    (tmp_path / "bad.yml").write_text(
        "hardening_admin_users:\n"
        "  - name: admin\n"
        '    keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI-replace-with-your-key admin@laptop"]\n'
    )
    with host.sudo():
        before = host.check_output(_FINGERPRINT)
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(root / "build" / "collections"), ANSIBLE_FORCE_COLOR="0")
    run = subprocess.run(
        ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], "-i", str(tmp_path / "hosts.yml"),
         "--limit", name, "-e", f"@{tmp_path / 'bad.yml'}", *tags, str(root / "playbooks" / "site.yml")],
        env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    with host.sudo():
        after = host.check_output(_FINGERPRINT)
    output = run.stdout + run.stderr
    assert run.returncode != 0, output[-3000:]
    assert "Check the input of every role" in output
    assert "Converge composeops hosts" not in output, "the roles ran after a refused check"
    assert "Admin user 'admin': key 1 of 1 is not a valid public key" in output, output[-3000:]
    assert "Nothing was changed" in output
    assert before == after
