"""Verify the docker role: the Debian 13 host converged from the distribution, the Debian 12 host
failed where it must (converge.yml asserts the messages) and changed nothing."""

import json
import os
import re
import subprocess
import time
from pathlib import Path
from shlex import quote

import pytest

D13 = "docker-debian13"
D12 = "docker-debian12"
SCENARIO = Path(__file__).resolve().parent.parent
TEST_IMAGE = "composeops-test/busybox:local"


@pytest.fixture
def d13(host):
    if host.backend.get_hostname() != D13:
        pytest.skip("Debian 13 host only")
    return host


@pytest.fixture
def d12(host):
    if host.backend.get_hostname() != D12:
        pytest.skip("Debian 12 host only")
    return host


def docker_info(host):
    return json.loads(host.check_output("docker info --format '{{json .}}'"))


def vercmp(version):
    return tuple(int(part) for part in version.split("-")[0].split("+")[0].split("."))


@pytest.fixture(scope="module")
def test_image(host):
    """A busybox image built inside the host (no registry can be reached)."""
    if host.backend.get_hostname() != D13:
        pytest.skip("Debian 13 host only")
    if host.run(f"docker image inspect {TEST_IMAGE}").rc != 0:
        host.check_output(
            "set -e; d=$(mktemp -d); mkdir $d/bin; cp /bin/busybox $d/bin/;"
            " for a in sh yes head sleep; do ln -s busybox $d/bin/$a; done;"
            f" tar -C $d -c . | docker import - {TEST_IMAGE}; rm -rf $d"
        )
    return TEST_IMAGE


# --- Debian 13: engine, Compose, daemon.json -------------------------------------------------------


def test_engine_active_and_enabled(d13):
    service = d13.service("docker")
    assert service.is_running
    assert service.is_enabled


def test_compose_v2_plugin(d13):
    version = d13.check_output("docker compose version --short")
    assert vercmp(version) >= (2, 18, 0), version


def test_packages_from_the_distribution_on_hold(d13):
    held = d13.check_output("apt-mark showhold").split()
    for name in ["docker.io", "docker-cli", "docker-compose"]:
        assert d13.package(name).is_installed
        assert name in held
    assert not d13.package("docker-ce").is_installed
    assert not d13.file("/etc/apt/sources.list.d/docker.sources").exists


def test_daemon_json_applied(d13):
    config = json.loads(d13.file("/etc/docker/daemon.json").content_string)
    assert "iptables" not in config and "ip-forward" not in config
    info = docker_info(d13)
    assert info["LoggingDriver"] == "local"
    assert info["LiveRestoreEnabled"] is True
    assert "name=no-new-privileges" in info["SecurityOptions"]
    assert info["DefaultAddressPools"] == [{"Base": "172.20.0.0/14", "Size": 24}]
    assert info["RegistryConfig"]["Mirrors"] == ["https://mirror.example.invalid/"]
    assert info["Driver"] == "overlay2"
    assert config["log-opts"] == {"max-size": "1m", "max-file": "3"}


def test_metrics_endpoint(d13):
    assert "engine_daemon_engine_info" in d13.check_output("curl -fsS http://127.0.0.1:9323/metrics")


def test_firewall_left_alone(d13):
    """Docker keeps its own iptables rules, DOCKER-USER stays empty for the hardening role."""
    rules = d13.check_output("iptables -S DOCKER-USER")
    assert rules.splitlines() == ["-N DOCKER-USER", "-A DOCKER-USER -j RETURN"] or rules.splitlines() == [
        "-N DOCKER-USER"
    ]
    assert d13.file("/etc/sysctl.d/90-composeops-docker.conf").contains("^net.ipv4.ip_forward = 1$")


def test_new_network_from_the_address_pool(d13):
    d13.run("docker network rm composeops-pool-test")
    d13.check_output("docker network create composeops-pool-test")
    try:
        subnet = d13.check_output(
            "docker network inspect -f '{{range .IPAM.Config}}{{.Subnet}}{{end}}' composeops-pool-test"
        )
    finally:
        d13.run("docker network rm composeops-pool-test")
    assert subnet.startswith("172.2") and subnet.endswith("/24"), subnet


# --- Debian 13: containers ------------------------------------------------------------------------


def test_container_logs_rotate(d13, test_image):
    d13.run("docker rm -f composeops-logs")
    # 4 MB of output against max-size 1m, max-file 3.
    d13.check_output(
        f"docker run -d --name composeops-logs {test_image} sh -c "
        "'yes 0123456789012345678901234567890123456789012345678901234567890 | head -c 4000000; sleep 600'"
    )
    try:
        cid = d13.check_output("docker inspect -f '{{.Id}}' composeops-logs")
        logdir = f"/var/lib/docker/containers/{cid}/local-logs"
        # Wait for the final listing: container.log.1 is briefly there while dockerd compresses it.
        for _attempt in range(30):
            files = d13.check_output(f"ls {logdir}").split()
            if sorted(files) == ["container.log", "container.log.1.gz", "container.log.2.gz"]:
                break
            time.sleep(1)
        assert sorted(files) == ["container.log", "container.log.1.gz", "container.log.2.gz"], files
        assert d13.file(f"{logdir}/container.log").size <= 1024 * 1024 + 64 * 1024
        assert d13.check_output("docker logs --tail 1 composeops-logs").startswith("0123456789")
    finally:
        d13.run("docker rm -f composeops-logs")


def test_containers_survive_a_daemon_restart(d13, test_image):
    d13.run("docker rm -f composeops-live")
    d13.check_output(f"docker run -d --name composeops-live {test_image} sleep 600")
    try:
        before = d13.check_output("docker inspect -f '{{.State.Pid}} {{.State.StartedAt}}' composeops-live")
        daemon_before = d13.check_output("systemctl show -p MainPID --value docker")
        d13.check_output("systemctl restart docker")
        assert d13.check_output("systemctl show -p MainPID --value docker") != daemon_before
        after = d13.check_output("docker inspect -f '{{.State.Pid}} {{.State.StartedAt}}' composeops-live")
        assert after == before
        assert d13.check_output("docker inspect -f '{{.State.Running}}' composeops-live") == "true"
    finally:
        d13.run("docker rm -f composeops-live")


def test_docker_group_works_for_the_users(d13):
    """Membership only: that it applies in the same play, over a persistent SSH connection opened
    before the change, is what converge.yml's last Debian 13 task proves (`docker ps` as the user)."""
    for user in ["deploy", "composeops-ssh"]:
        assert "docker" in d13.user(user).groups


OLD_IMAGE = "composeops-test/old:prune"

# An unused image created in 2020, older than any retention: a docker-archive built by hand (one
# layer, a config with an old `created`), since `docker import` and `docker build` stamp "now".
LOAD_OLD_IMAGE = r"""set -e; d=$(mktemp -d); cd "$d"; mkdir rootfs; echo old > rootfs/old.txt
tar -C rootfs -cf layer.tar .
sum=$(sha256sum layer.tar | cut -d' ' -f1); arch=$(dpkg --print-architecture)
printf '{"architecture":"%s","os":"linux","created":"2020-01-01T00:00:00Z","config":{},' "$arch" > config.json
printf '"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$sum" >> config.json
printf '[{"Config":"config.json","RepoTags":["%s"],"Layers":["layer.tar"]}]' IMAGE > manifest.json
tar -cf - config.json manifest.json layer.tar | docker load; cd /; rm -rf "$d"
""".replace("IMAGE", OLD_IMAGE)


def test_prune_timer(d13, test_image):
    """The sandboxed prune job (common role's timer template) still reaches dockerd and prunes."""
    timer = d13.service("composeops-docker-prune.timer")
    assert timer.is_enabled
    assert timer.is_running
    unit = d13.file("/etc/systemd/system/composeops-docker-prune.service").content_string
    assert "--filter until=168h" in unit
    for line in ["ProtectSystem=strict", "PrivateNetwork=yes", "CapabilityBoundingSet=", "NoNewPrivileges=yes"]:
        assert line in unit.splitlines(), line
    d13.check_output(f"bash -c {quote(LOAD_OLD_IMAGE)}")
    assert d13.run(f"docker image inspect {OLD_IMAGE}").rc == 0
    d13.check_output("systemctl start composeops-docker-prune.service")
    result = d13.check_output("systemctl show -p Result -p ExecMainStatus composeops-docker-prune.service")
    assert sorted(result.split()) == ["ExecMainStatus=0", "Result=success"], result
    assert d13.run(f"docker image inspect {OLD_IMAGE}").rc != 0, "the prune job left an old unused image"
    # Younger than the retention: kept.
    assert d13.run(f"docker image inspect {test_image}").rc == 0
    exposure = d13.check_output("systemd-analyze security composeops-docker-prune.service | tail -1")
    level = float(re.search(r"level for \S+: ([0-9.]+)", exposure).group(1))
    assert level <= 2.0, exposure


# --- Debian 13: reload or restart -----------------------------------------------------------------


def run_step(step, expect_ok=True):
    """Run the daemon part of the role (reload.yml) against the converged host."""
    inventory = os.environ["MOLECULE_INVENTORY_FILE"]
    result = subprocess.run(
        ["ansible-playbook", "-i", inventory, str(SCENARIO / "reload.yml"),
         "--tags", "docker_daemon", "-e", f"docker_test_step={step}"],
        capture_output=True,
        text=True,
        check=False,
    )
    output = result.stdout + result.stderr
    assert (result.returncode == 0) == expect_ok, output[-4000:]
    return output


def daemon_pid(host):
    return host.check_output("systemctl show -p MainPID --value docker")


def handler_ran(output, name):
    """True when the task of the handler (tasks/apply_daemon.yml) ran, False when it was skipped or
    the handler did not run at all."""
    parts = re.split(rf"(?:RUNNING HANDLER|TASK) \[composeops\.platform\.docker : {re.escape(name)}\]", output, maxsplit=1)
    if len(parts) < 2:
        return False
    section = re.split(r"RUNNING HANDLER|TASK \[|PLAY RECAP", parts[1], maxsplit=1)[0]
    return "skipping:" not in section


PENDING = "/run/composeops/docker-pending-restart"


def daemon_json(host):
    return json.loads(host.file("/etc/docker/daemon.json").content_string)


def test_reload_restart_and_validation(d13, test_image):
    d13.run("docker rm -f composeops-reload")
    # Longer than the six runs of reload.yml on a loaded test host (at 600 s the container once
    # exited before the last check); `finally` removes it.
    d13.check_output(f"docker run -d --name composeops-reload {test_image} sleep 3600")
    try:
        container = d13.check_output("docker inspect -f '{{.State.Pid}}' composeops-reload")
        pid = daemon_pid(d13)

        since = d13.check_output("date +%s")
        out = run_step("reloadable")
        assert handler_ran(out, "Reload dockerd") and not handler_ran(out, "Restart dockerd")
        assert daemon_pid(d13) == pid, "a reloadable change restarted dockerd"
        # default-shm-size is among the keys dockerd reloads: the reload event carries the new value.
        shm = d13.check_output(
            f"docker events --since {since} --until $(( $(date +%s) + 1 )) --filter type=daemon"
            " --filter event=reload --format '{{index .Actor.Attributes \"default-shm-size\"}}'"
        )
        assert shm.split()[-1] == str(128 * 1024 * 1024), shm
        assert not d13.file(PENDING).exists

        out = run_step("restart")
        assert handler_ran(out, "Reload dockerd") and handler_ran(out, "Restart dockerd")
        assert daemon_pid(d13) != pid, "a change that needs a restart did not restart dockerd"
        assert daemon_json(d13)["log-level"] == "warn"
        assert not d13.file(PENDING).exists

        # dockerd --validate accepts a log option the driver does not know; dockerd does not start.
        # The role must put the previous file back, start dockerd with it and fail clearly.
        before = d13.file("/etc/docker/daemon.json").sha256sum
        out = run_step("broken", expect_ok=False)
        assert "dockerd did not start with the new /etc/docker/daemon.json" in out, out[-4000:]
        assert "syslog-address" in out and "previous daemon.json was restored" in out, out[-4000:]
        assert d13.file("/etc/docker/daemon.json").sha256sum == before
        assert d13.service("docker").is_running
        assert d13.check_output("docker info --format '{{.LoggingDriver}}'") == "local"
        assert d13.check_output("docker inspect -f '{{.State.Pid}}' composeops-reload") == container
        assert not d13.file(PENDING).exists

        # A change written but never applied (a run that stopped before the restart) is applied by
        # the next run, although daemon.json does not change any more.
        d13.check_output(f"mkdir -p {PENDING.rsplit('/', 1)[0]} && echo none > {PENDING}")
        pid = daemon_pid(d13)
        out = run_step("restart")
        assert handler_ran(out, "Restart dockerd")
        assert daemon_pid(d13) != pid, "a pending restart was lost"
        assert not d13.file(PENDING).exists

        before = d13.file("/etc/docker/daemon.json").sha256sum
        pid = daemon_pid(d13)
        out = run_step("invalid", expect_ok=False)
        assert "failed to validate" in out
        assert d13.file("/etc/docker/daemon.json").sha256sum == before
        assert daemon_pid(d13) == pid

        run_step("back")
        assert "log-level" not in daemon_json(d13)
        assert d13.check_output("docker inspect -f '{{.State.Pid}}' composeops-reload") == container
    finally:
        d13.run("docker rm -f composeops-reload")


# --- Debian 12: nothing installed, Docker's repository configured --------------------------------


def test_debian12_got_no_docker(d12):
    for name in ["docker.io", "docker-compose", "docker-ce"]:
        assert not d12.package(name).is_installed
    assert not d12.file("/etc/docker/daemon.json").exists


def test_debian12_docker_repository(d12):
    source = d12.file("/etc/apt/sources.list.d/docker.sources")
    assert source.mode == 0o644
    text = source.content_string
    assert text.startswith("#")
    for line in [
        "Types: deb",
        "URIs: file:///srv/docker-ce-test/debian",
        "Suites: bookworm",
        "Components: stable",
        "Architectures: amd64",
        "Signed-By: /etc/apt/keyrings/docker.asc",
    ]:
        assert line in text.splitlines()
    fingerprint = d12.file("/root/docker-test.fpr").content_string.strip()
    keys = d12.check_output("gpg --show-keys --with-colons /etc/apt/keyrings/docker.asc")
    assert fingerprint in keys
    # apt read the signed stand-in with that key (an unsigned or wrongly signed one gives no lists).
    assert d12.run("ls /var/lib/apt/lists/ | grep -q docker-ce-test").rc == 0
