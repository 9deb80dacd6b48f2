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
