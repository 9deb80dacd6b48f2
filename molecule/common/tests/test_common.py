"""Verify the common role on every converged host."""

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
